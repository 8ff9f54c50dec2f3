"""Per-request cache controls and response headers. Pure functions, no I/O.

Request controls come from LiteLLM's ``cache`` request field (``{"no-cache": true, "no-store": true,
"ttl": 60, "s-maxage": 30}``) and the HTTP ``Cache-Control`` request header (RFC 9111 §5.2.1), with
the meanings LiteLLM's own caching handler gives them: ``no-cache`` = do not serve from the cache but
store the fresh answer; ``no-store`` = may be served from the cache, store nothing (RFC 9111
§5.2.1.5: a request's no-store forbids storing, not serving); both = neither;
``max-age=N`` = accept only entries at most N seconds old. A per-request TTL can lower the
configured TTL but never raise it. Invalid values are ignored (the request is still served).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

Outcome = Literal["HIT", "MISS", "STALE", "BYPASS"]


@dataclass(frozen=True)
class RequestControls:
    no_cache: bool = False  # do not serve from the cache (the fresh answer is stored)
    no_store: bool = False  # store nothing (a cached answer may be served)
    ttl: float | None = None
    max_age: float | None = None


def _seconds(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number >= 0 and number == number and number != float("inf") else None


def parse_cache_control(header: str | None) -> RequestControls:
    if not header:
        return RequestControls()
    no_cache = no_store = False
    max_age: float | None = None
    for directive in header.split(","):
        name, _, value = directive.strip().partition("=")
        name = name.strip().lower()
        if name == "no-cache":
            no_cache = True
        elif name == "no-store":
            no_store = True
        elif name == "max-age":
            max_age = _seconds(value.strip().strip('"'))
    return RequestControls(no_cache=no_cache, no_store=no_store, max_age=max_age)


def parse_litellm_cache_field(field: Any) -> RequestControls:
    if not isinstance(field, Mapping):
        return RequestControls()
    no_store = field.get("no-store") is True
    max_age = _seconds(field.get("s-maxage", field.get("s-max-age")))
    ttl = _seconds(field.get("ttl"))
    return RequestControls(
        no_cache=field.get("no-cache") is True,
        no_store=no_store,
        ttl=ttl if ttl else None,
        max_age=max_age,
    )


def merge_controls(*controls: RequestControls) -> RequestControls:
    """The strictest combination: any no-cache/no-store wins, the smallest ttl and max-age win."""
    ttls = [c.ttl for c in controls if c.ttl is not None]
    ages = [c.max_age for c in controls if c.max_age is not None]
    return RequestControls(
        no_cache=any(c.no_cache for c in controls),
        no_store=any(c.no_store for c in controls),
        ttl=min(ttls) if ttls else None,
        max_age=min(ages) if ages else None,
    )


def effective_ttl(configured: float, requested: float | None) -> float:
    """A request may shorten the configured TTL, never extend it."""
    if requested is None or requested <= 0:
        return configured
    return min(configured, requested)


def response_headers(outcome: Outcome, layer: str | None = None, age: int | None = None) -> dict[str, str]:
    """``x-cache`` always; ``x-cache-layer`` and ``Age`` on hits (HIT and STALE)."""
    headers: dict[str, str] = {"x-cache": outcome}
    if outcome in ("HIT", "STALE"):
        if layer:
            headers["x-cache-layer"] = layer
        if age is not None:
            headers["Age"] = str(max(0, age))
    return headers
