"""Freshness of a stored entry. Pure: every function takes ``now`` (seconds since the epoch)."""

from __future__ import annotations

from typing import Literal

Freshness = Literal["fresh", "stale", "expired"]


def classify(
    created_at: float,
    fresh_for: float,
    stale_for: float,
    now: float,
    max_age: float | None = None,
) -> Freshness:
    """``fresh`` within ``fresh_for`` seconds of creation, ``stale`` for ``stale_for`` seconds after,
    then ``expired``. A request's ``max_age`` (Cache-Control ``max-age`` / LiteLLM ``s-maxage``)
    narrows what counts as fresh and disables stale serving for that request."""
    age = max(0.0, now - created_at)
    if max_age is not None:
        return "fresh" if age <= max_age and age < fresh_for else "expired"
    if age < fresh_for:
        return "fresh"
    if age < fresh_for + stale_for:
        return "stale"
    return "expired"


def age_seconds(created_at: float, now: float) -> int:
    """The ``Age`` header value: whole seconds, never negative (clocks of replicas may differ)."""
    return max(0, int(now - created_at))


def backend_ttl(fresh_for: float, stale_for: float) -> float:
    """How long the backend keeps an entry: the cache decides expiry, the backend TTL only cleans up,
    so it covers the fresh and stale windows plus a small grace period."""
    return fresh_for + stale_for + 60.0
