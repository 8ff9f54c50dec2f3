"""Edge layer: HTTP caching headers for shared caches (nginx, a CDN) in front of the proxy. Pure.

Which answers a shared cache may store
    Only exact-layer answers (a fresh hit, or the miss that stores the entry) of a model group with
    ``layers.edge.enabled``, cached for being deterministic (``temperature 0``, ``top_k 1``, a fixed
    seed, ``force_zero``; not ``first_response``), never of a ``pii`` group, and only when the entry is
    shared by everyone (``scope: global``) or the group is marked ``layers.edge.public``. Those get
    ``Cache-Control: public, max-age=A, s-maxage=S[, stale-while-revalidate=W]``. Other cacheable
    answers of an edge-enabled group get ``private, max-age=A``: a client's own cache may keep them, a
    shared cache never. Everything else (bypasses, stale or semantic hits, PII, groups without the
    edge layer while another group has it) gets ``private, no-store``.

Freshness
    ``A`` and ``S`` are the configured values capped by the seconds the entry stays fresh at the proxy,
    so a shared cache never keeps an answer longer than the proxy would serve it. nginx ignores
    ``Age`` when it computes freshness, so the cap is the remaining lifetime, not the total one
    (an RFC 9111 cache that also subtracts ``Age`` is only more conservative).

Validators
    ``ETag`` is strong and derived from the stored answer (:func:`answer_etag`): the generation id and
    the choices, canonical JSON. Fields the proxy sets per response (the ``model`` name it reports, the
    ``"cached"`` body marker, usage, hidden params) are left out, so the miss that created an entry and
    every hit of it carry the same ETag, and a new generation (after an invalidation or expiry) gets a
    new one. ``Vary: Authorization`` unless the entry is global: what the answer depends on besides
    the body, which shared caches key on themselves.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson

from litellm_cache_plugin.policy.controls import Outcome
from litellm_cache_plugin.settings import EffectiveSettings, PluginSettings

PRIVATE_NO_STORE: Final[Mapping[str, str]] = {"Cache-Control": "private, no-store"}
# Eligibility verdicts (policy.eligibility) that mean "the same request always gets the same answer".
# Body fields that identify a generation and its answer; the rest is per-response decoration.
_ETAG_FIELDS: Final = ("id", "choices")


@dataclass(frozen=True)
class EdgeFacts:
    """What the edge policy needs to know about an exact-layer answer."""

    # Who shares the entry at the proxy: "global", "team", "user", "key" or "anonymous".
    tenant_scope: str
    # The request was cached because it is deterministic (``policy.eligibility.Verdict.deterministic``).
    deterministic: bool
    # Seconds the proxy keeps serving the entry as fresh from now.
    fresh_left: float
    # The entry's validator; None on a miss until the answer is known.
    etag: str | None = None


def edge_in_use(settings: PluginSettings) -> bool:
    """True when any model group has the edge layer: then every answer says whether shared caches may
    store it (a cache configured to store POST answers must never guess)."""
    if settings.layers.edge.enabled:
        return True
    return any(m.layers is not None and m.layers.edge.enabled for m in settings.models.values())


def _without_nulls(value: Any) -> Any:
    # Unset fields are null in one serialisation and absent in another: neither is part of the answer.
    if isinstance(value, Mapping):
        return {str(k): _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def answer_etag(body: Mapping[str, Any]) -> str:
    """The strong ETag of a chat/text completion body (stored payload or the response being sent)."""
    projection = {name: _without_nulls(body.get(name)) for name in _ETAG_FIELDS}
    digest = hashlib.sha256(orjson.dumps(projection, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return f'"{digest[:32]}"'


def payload_etag(payload: bytes) -> str | None:
    """:func:`answer_etag` of a stored payload (None when it is not a JSON object)."""
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    return answer_etag(body) if isinstance(body, dict) else None


def _seconds(configured: int, fresh_left: float) -> int:
    return max(0, min(configured, math.floor(fresh_left)))


def edge_headers(
    settings: EffectiveSettings, outcome: Outcome, facts: EdgeFacts | None, *, stream: bool
) -> dict[str, str]:
    """Headers for one answer of a model group whose effective settings are ``settings`` (call only
    when :func:`edge_in_use`). Keys use the canonical casing; callers merge them case-insensitively."""
    if stream:
        # SSE already carries ``Cache-Control: no-cache`` (never stored); let nginx pass it on at once.
        return {"X-Accel-Buffering": "no"}
    edge = settings.layers.edge
    if (
        not edge.enabled
        or settings.pii
        or outcome not in ("HIT", "MISS")
        or facts is None
        or facts.etag is None
        or not facts.deterministic
        or facts.fresh_left < 1
    ):
        return dict(PRIVATE_NO_STORE)
    max_age = _seconds(edge.max_age, facts.fresh_left)
    headers = {"ETag": facts.etag}
    if facts.tenant_scope == "global":
        shared = True
    else:
        shared = edge.public
        headers["Vary"] = "Authorization"
    if shared:
        directives = [f"public, max-age={max_age}, s-maxage={_seconds(edge.s_maxage, facts.fresh_left)}"]
        if edge.stale_while_revalidate:
            directives.append(f"stale-while-revalidate={edge.stale_while_revalidate}")
        headers["Cache-Control"] = ", ".join(directives)
    else:
        headers["Cache-Control"] = f"private, max-age={max_age}"
    return headers


def etag_matches(if_none_match: str | None, etag: str | None) -> bool:
    """``If-None-Match`` against the current ETag (RFC 9110 §13.1.2: weak comparison, ``*`` matches
    any current representation, a list matches when one member does)."""
    if not if_none_match or not etag:
        return False
    candidates = [part.strip() for part in if_none_match.split(",")]
    if "*" in candidates:
        return True
    opaque = etag.removeprefix("W/")
    return any(candidate.removeprefix("W/") == opaque for candidate in candidates if candidate)


# Header fields a 304 leaves out: it has no content (RFC 9110 §15.4.5 keeps the validators and the
# caching fields, which shared caches use to refresh their stored copy).
_CONTENT_FIELDS: Final = frozenset(
    {"content-length", "content-type", "content-encoding", "transfer-encoding"}
)


def not_modified_headers(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The raw (ASGI) header list of a 304 that replaces a 200 with ``headers``."""
    return [(name, value) for name, value in headers if name.decode("latin-1").lower() not in _CONTENT_FIELDS]
