"""Reuse of LiteLLM's auth verdict on fast-path hits (``fast_path.auth_reuse_seconds``): the decision
whether a remembered verdict may stand in for a new auth run is made here, in pure code."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

__all__ = ["expiry_of", "verdict_reusable"]


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
