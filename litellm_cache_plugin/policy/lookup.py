"""What to do after the exact layer answered a lookup: a tagged plan, matched exhaustively by the
region's driver. Pure, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NoReturn

from litellm_cache_plugin.policy.controls import Outcome


@dataclass(frozen=True)
class Serve:
    """Answer from the entry found; ``stale``: also start one background refresh."""

    stale: bool


@dataclass(frozen=True)
class Bypass:
    """Do not use the cache for this request (ineligible, ``no-cache``...)."""

    reason: str


@dataclass(frozen=True)
class Miss:
    """No entry: try the semantic layer (``semantic``), then join or lead a single flight
    (``coalesce``), else go upstream."""

    reason: str
    semantic: bool
    coalesce: bool


LookupPlan = Serve | Bypass | Miss


def plan_after_exact(
    outcome: Outcome, reason: str, *, semantic: bool, single_flight: bool, no_store: bool
) -> LookupPlan:
    if outcome == "HIT":
        return Serve(stale=False)
    if outcome == "STALE":
        return Serve(stale=True)
    if outcome == "BYPASS":
        return Bypass(reason)
    return Miss(
        reason,
        semantic=semantic,
        # A backend that just failed is not asked to coordinate; a no-store answer is never stored,
        # so nobody may wait for it.
        coalesce=single_flight and reason != "backend_error" and not no_store,
    )


def assert_never(value: NoReturn) -> NoReturn:
    """Exhaustiveness check for ``match`` over a plan (``typing.assert_never`` needs Python 3.11)."""
    raise AssertionError(f"unhandled lookup plan: {value!r}")
