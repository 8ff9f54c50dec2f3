"""Reuse of LiteLLM's auth verdict on fast-path hits (``fast_path.auth_reuse_seconds``): the decision
whether a remembered verdict may stand in for a new auth run is made here, in pure code."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

__all__ = ["PER_REQUEST_HEADERS", "expiry_of", "headers_digest", "verdict_reusable"]

# Headers that differ between requests without changing what LiteLLM's auth decides or records.
# Every other header is part of a verdict's key: auth and the route's setup read headers (agent
# callers, callback controls, trace destinations), so a request with any other difference runs
# LiteLLM's auth again.
PER_REQUEST_HEADERS = frozenset(
    {
        "content-length",
        "x-litellm-call-id",
        "x-request-id",
        "traceparent",
        "tracestate",
        "x-stainless-retry-count",
        "x-stainless-read-timeout",
    }
)


def headers_digest(raw_headers: Iterable[tuple[bytes, bytes]]) -> str:
    """A digest of a request's headers as the ASGI scope holds them (every occurrence, names
    lower-cased), without :data:`PER_REQUEST_HEADERS`."""
    kept = sorted(
        (name.lower(), value)
        for name, value in raw_headers
        if name.lower().decode("latin-1") not in PER_REQUEST_HEADERS
    )
    digest = hashlib.blake2b(digest_size=16)
    for name, value in kept:
        digest.update(len(name).to_bytes(4, "big") + name + len(value).to_bytes(4, "big") + value)
    return digest.hexdigest()


def expiry_of(auth: Any) -> datetime | bool | None:
    """The key's expiry as an aware datetime, ``None`` when it has none, ``False`` when it cannot be
    read (then the verdict is never reused)."""
    expires = getattr(auth, "expires", None)
    if expires is None:
        return None
    if isinstance(expires, str):
        try:
            expires = datetime.fromisoformat(expires.replace("Z", "+00:00"))
        except ValueError:
            return False
    if not isinstance(expires, datetime):
        return False
    return expires if expires.tzinfo is not None else expires.replace(tzinfo=timezone.utc)


def verdict_reusable(auth: Any, *, age: float, window: float, now: datetime) -> bool:
    """May a verdict ``age`` seconds old stand in for LiteLLM's auth now? Only within ``window``, and
    never for a blocked key or one that has expired since (or whose expiry cannot be read)."""
    if window <= 0 or not 0 <= age < window:
        return False
    if getattr(auth, "blocked", None):
        return False
    expiry = expiry_of(auth)
    if expiry is False:
        return False
    return expiry is None or (isinstance(expiry, datetime) and expiry > now)
