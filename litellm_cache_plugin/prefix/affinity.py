"""Prefix-affinity routing: consistent hashing with bounded loads. Pure logic, no LiteLLM.

Requests that share a prefix (see :func:`~litellm_cache_plugin.prefix.canonical.affinity_key`) should
go to the deployment that already holds that prefix in its KV cache. Plain consistent hashing does
that, but a hot prefix would then pile all of its traffic onto one server. The fix is the "bounded
loads" variant (Mirrokni, Thorup, Zadimoghaddam, 2018):

- **Order**: rendezvous (highest-random-weight) hashing ranks the candidate deployments for a key by
  ``hash(key, deployment id)``. The first in that order is the prefix's home. Removing a deployment
  only moves the keys whose home it was; adding one only takes keys from others (minimal movement),
  and no ring or virtual nodes are needed for a handful of deployments.
- **Bound**: with ``total`` requests in flight on the candidates and ``n`` candidates, no deployment
  takes a new request once it holds ``cap = ceil(load_factor * (total + 1) / n)``; the request goes to
  the next deployment in the key's order that is below the cap. Since ``load_factor >= 1``, some
  candidate is always below it, and after any assignment the chosen deployment holds at most ``cap``.
  A hot prefix thus overflows to its second choice (always the same one, so that one warms up too)
  instead of overloading its home.
- **Floor**: the cap is never below ``floor`` (setting ``min_inflight_cap``). With the bare formula a
  quiet group has a cap of 1 (``ceil(1.25 * 2 / 3)``), so two concurrent requests for one prefix
  would already be split and the second evaluated cold on another server that sat idle anyway,
  although the home could have run both at once (a model server batches parallel requests). Below
  the floor affinity is exact; above it the bound holds as stated, with ``max(floor, cap)``.
- **Failures**: deployments to ``avoid`` (recently failed, or already tried by this request) are
  moved behind all others: they are used only when nothing else is left, so a down server's prefixes
  fall back to their next choice and come home once it is healthy again.

In-flight counts come from :class:`InflightTracker`: +1 when a request is routed, -1 when LiteLLM
reports its success or failure; entries whose end was never reported expire after ``max_age``.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping, Sequence

__all__ = [
    "FailureMemory",
    "InflightTracker",
    "choose_deployment",
    "load_cap",
    "rendezvous_order",
]


def _score(key: str, deployment_id: str) -> int:
    digest = hashlib.blake2b(f"{key}\x00{deployment_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def rendezvous_order(key: str, deployment_ids: Sequence[str]) -> list[str]:
    """Deployments in ``key``'s order of preference (highest hash first; ties by id, for determinism)."""
    return sorted(deployment_ids, key=lambda d: (-_score(key, d), d))


def load_cap(total_in_flight: int, deployments: int, load_factor: float, floor: int = 1) -> int:
    """Most requests one deployment may hold after taking the next one (never less than ``floor``)."""
    if deployments <= 0:
        raise ValueError("no deployments")
    return max(floor, 1, math.ceil(load_factor * (total_in_flight + 1) / deployments))


def choose_deployment(
    key: str,
    candidates: Sequence[str],
    loads: Mapping[str, int],
    load_factor: float,
    avoid: Collection[str] = (),
    floor: int = 1,
) -> str:
    """The deployment for a request with prefix ``key`` among ``candidates`` (all healthy, distinct).

    The first deployment in the key's rendezvous order below the load cap, preferring any deployment
    not in ``avoid``. If every non-avoided candidate is at the cap (possible only when some are
    avoided), the least loaded of them is taken: a bit over the bound beats a known-bad server.
    """
    if not candidates:
        raise ValueError("no candidates")
    if load_factor < 1:
        raise ValueError("load_factor must be >= 1")
    order = rendezvous_order(key, candidates)
    preferred = [d for d in order if d not in avoid] or order
    total = sum(loads.get(d, 0) for d in candidates)
    cap = load_cap(total, len(candidates), load_factor, floor)
    for deployment in preferred:
        if loads.get(deployment, 0) < cap:
            return deployment
    # min() keeps the first of equals, i.e. the best-ranked one.
    return min(preferred, key=lambda d: loads.get(d, 0))


class InflightTracker:
    """Requests in flight per deployment, keyed by a per-request route token.

    ``start`` for a token that is still in flight ends its previous attempt first (a retry re-routes
    the same request). Entries never finished (a lost callback, a cancelled task) expire after
    ``max_age`` seconds so the counts cannot drift upwards for ever.
    """

    def __init__(self, max_age: float = 600.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_age = max_age
        self._clock = clock
        # token -> (deployment, started); insertion order is start order (tokens restart at the end).
        self._routes: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self._counts: dict[str, int] = {}

    def start(self, token: str, deployment: str) -> str | None:
        """Count ``token`` on ``deployment``; returns the deployment of the attempt it replaces."""
        previous = self.finish(token)
        self._routes[token] = (deployment, self._clock())
        self._counts[deployment] = self._counts.get(deployment, 0) + 1
        return previous

    def finish(self, token: str, deployment: str | None = None) -> str | None:
        """The request ended (success or failure); returns the deployment it was counted on.

        With ``deployment``, only an attempt on that deployment ends: a late report about a failed
        attempt must not end the retry that already replaced it."""
        route = self._routes.get(token)
        if route is None or (deployment is not None and route[0] != deployment):
            return None
        del self._routes[token]
        self._decrement(route[0])
        return route[0]

    def deployment_of(self, token: str) -> str | None:
        route = self._routes.get(token)
        return route[0] if route is not None else None

    def loads(self) -> dict[str, int]:
        """In-flight count per deployment (after dropping expired entries)."""
        self._expire()
        return dict(self._counts)

    def _expire(self) -> None:
        horizon = self._clock() - self.max_age
        while self._routes:
            token, (deployment, started) = next(iter(self._routes.items()))
            if started > horizon:
                break
            del self._routes[token]
            self._decrement(deployment)

    def _decrement(self, deployment: str) -> None:
        left = self._counts.get(deployment, 0) - 1
        if left > 0:
            self._counts[deployment] = left
        else:
            self._counts.pop(deployment, None)

    def __len__(self) -> int:
        return len(self._routes)


class FailureMemory:
    """Deployments that failed recently, avoided for ``cooldown`` seconds after their last failure.

    LiteLLM's own cooldown needs several failures (or a 429) before it takes a deployment out, and
    until then its retries would follow affinity straight back to the failing server.
    """

    def __init__(self, cooldown: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.cooldown = cooldown
        self._clock = clock
        self._until: dict[str, float] = {}

    def mark(self, deployment: str) -> None:
        if self.cooldown > 0:
            self._until[deployment] = self._clock() + self.cooldown

    def clear(self, deployment: str) -> None:
        """A success: the deployment is fine again."""
        self._until.pop(deployment, None)

    def suspects(self) -> set[str]:
        if not self._until:
            return set()
        now = self._clock()
        for deployment in [d for d, until in self._until.items() if until <= now]:
            del self._until[deployment]
        return set(self._until)
