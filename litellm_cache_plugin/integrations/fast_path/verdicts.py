"""Reuse on fast-path hits of LiteLLM's auth verdict (``fast_path.auth_reuse_seconds``) and of the
route's request setup (``fast_path.setup_reuse_seconds``): whether a remembered verdict may stand in
for a new auth run, which fresh verdicts a setup may be remembered under, and what identifies a
request whose setup may be reused, are decided here, in pure code."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

__all__ = [
    "PER_REQUEST_HEADERS",
    "expiry_of",
    "headers_digest",
    "refresh_setup",
    "setup_key",
    "setup_reusable_with",
    "verdict_reusable",
]

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


def setup_reusable_with(auth: Any) -> bool:
    """May a setup done under this fresh verdict of LiteLLM's auth be remembered for identical requests
    (``fast_path.setup_reuse_seconds``)? Not when auth reserved budget for this request or opened a
    trace span for it: setup copies both into the request, and they belong to this request alone."""
    if not callable(getattr(auth, "model_copy", None)):
        return False  # not LiteLLM's auth object
    return all(getattr(auth, name, None) is None for name in ("budget_reservation", "parent_otel_span"))


def setup_key(
    raw_headers: Iterable[tuple[bytes, bytes]], client_host: str | None, query_string: bytes, body: bytes
) -> str:
    """What LiteLLM's request setup (``add_litellm_data_to_request``) reads of a request besides the
    auth verdict, the request state and the proxy's settings: every header (trace and request-id
    headers included, which setup copies into the logged request), the client address, the query
    string and the body. Two requests with the same key under the same verdict get the same setup,
    except for :func:`refresh_setup`'s fields."""
    digest = hashlib.blake2b(digest_size=16)
    for name, value in raw_headers:
        name = name.lower()
        digest.update(len(name).to_bytes(4, "big") + name + len(value).to_bytes(4, "big") + value)
    for part in ((client_host or "").encode(), query_string, body):
        digest.update(b"|" + len(part).to_bytes(8, "big") + part)
    return digest.hexdigest()


def refresh_setup(data: dict[str, Any], *, received_at: datetime | None, now: float) -> None:
    """Set, on a copy of a remembered setup, the values setup takes from the request's time: when the
    proxy received it (``request.state.litellm_received_at``, else now)."""
    arrival = received_at.timestamp() if received_at is not None else now
    server_request = data.get("proxy_server_request")
    if isinstance(server_request, dict) and "arrival_time" in server_request:
        server_request["arrival_time"] = arrival
    for name in ("metadata", "litellm_metadata"):
        metadata = data.get(name)
        if isinstance(metadata, dict) and "litellm_received_at" in metadata:
            metadata["litellm_received_at"] = received_at
