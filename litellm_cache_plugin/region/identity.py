"""Who is calling: one builder from an authenticated principal, and the signature that carries it.

Every path builds the identity here (the pre-call hook, the fast path's hint, the admin routes), so
all of them see the same fields, ``org_id`` included.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets

from litellm_cache_plugin.policy.keys import Identity


def _text(value: object) -> str | None:
    if value is None:
        return None
    text = str(value)
    return text or None


def identity_of(principal: object) -> Identity:
    """The identity of an authenticated principal (LiteLLM's ``UserAPIKeyAuth`` or anything with its
    attribute names): the key hash (``api_key``, else ``token``), team, user and organisation."""
    return Identity(
        api_key_hash=_text(getattr(principal, "api_key", None)) or _text(getattr(principal, "token", None)),
        team_id=_text(getattr(principal, "team_id", None)),
        user_id=_text(getattr(principal, "user_id", None)),
        org_id=_text(getattr(principal, "org_id", None)),
    )


class IdentitySigner:
    """Signs identities stamped by the pre-call hook; the carrier accepts only what it signed.

    The secret is random per process: the hook and the carrier run in the same worker, and a client
    can never produce a valid signature, so a forged ``metadata.lcp_identity`` is simply ignored.
    """

    def __init__(self, secret: bytes | None = None) -> None:
        self._secret = secret or secrets.token_bytes(32)
        # Tokens already verified (a request's token is checked several times: pre-call, lookup,
        # write); only exact strings this secret signed are in here, so a hit is as good as a check.
        self._verified: dict[str, Identity] = {}
        # Tokens already made (every request is signed, by the pre-call hook and the fast path's probe;
        # an identity's token never changes): bounded like ``_verified``.
        self._signed: dict[Identity, str] = {}

    def sign(self, identity: Identity) -> str:
        known = self._signed.get(identity)
        if known is not None:
            return known
        body = json.dumps(
            [identity.api_key_hash, identity.team_id, identity.user_id, identity.org_id],
            separators=(",", ":"),
        )
        mac = hmac.new(self._secret, body.encode(), hashlib.sha256).hexdigest()
        token = f"{body}|{mac}"
        if len(self._signed) >= 10_000:
            self._signed.clear()
        self._signed[identity] = token
        return token

    def verify(self, token: object) -> Identity | None:
        if not isinstance(token, str) or "|" not in token:
            return None
        known = self._verified.get(token)
        if known is not None:
            return known
        body, _, mac = token.rpartition("|")
        expected = hmac.new(self._secret, body.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(mac, expected):
            return None
        try:
            key, team, user, org = json.loads(body)
        except (ValueError, TypeError):
            return None
        identity = Identity(api_key_hash=key, team_id=team, user_id=user, org_id=org)
        if len(self._verified) >= 10_000:
            self._verified.clear()  # bounded; callers are few and come back
        self._verified[token] = identity
        return identity
