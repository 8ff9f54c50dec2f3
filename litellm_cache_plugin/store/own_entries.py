"""The number of keys the cache itself holds in a backend it may share with other data.

Redis answers "how many keys in the database" in O(1) (DBSIZE) but has no count per prefix: the
only exact way is a SCAN of the whole database. :class:`OwnEntries` runs that scan (the store's
:meth:`~litellm_cache_plugin.store.base.KeyCounting.count_keys`) in the background, at most once
per ``max_age`` seconds and only when somebody reads the stats (``GET /v1/cache/stats``, the
telemetry sampler), never on the request path, and skips it when the database holds more than
``max_keys`` keys. The figure it reports is at most ``max_age`` seconds old (plus the scan's time).

Backends that cannot count (memcached) or need not (memory: everything it holds is the cache's)
keep the figures their ``stats()`` reports.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable

from litellm_cache_plugin.store.base import KeyCounting, Store, StoreStats
from litellm_cache_plugin.store.guarded import GuardedStore

__all__ = ["DEFAULT_MAX_AGE", "DEFAULT_MAX_KEYS", "OwnEntries"]

log = logging.getLogger("litellm_cache_plugin")

# A million keys: a thousand SCAN round trips of ~1-2 ms of server time each (measured: 200 000
# keys took 0.36 s of Redis CPU on a loaded 2-core machine), so about 2 s of server time per count.
DEFAULT_MAX_KEYS = 1_000_000
# Counted at most every 5 minutes per worker: at most ~0.6 % of a Redis core per worker at 1M keys.
DEFAULT_MAX_AGE = 300.0
# How long the first reader waits for the first count (later readers get the last figure at once).
DEFAULT_FIRST_WAIT = 1.0


class OwnEntries:
    """Counts the keys under ``key_prefix`` (the engine's namespace) in ``store`` and puts the figure
    into its stats as ``entries`` with coverage ``cache``.

    ``store`` may be a :class:`GuardedStore`: the count goes to the backend inside it, since a scan
    takes longer than any request-path deadline and must not count against the circuit breaker.
    """

    def __init__(
        self,
        store: Store,
        key_prefix: str,
        *,
        max_keys: int = DEFAULT_MAX_KEYS,
        max_age: float = DEFAULT_MAX_AGE,
        first_wait: float = DEFAULT_FIRST_WAIT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        inner = store.inner if isinstance(store, GuardedStore) else store
        self.counter: KeyCounting | None = inner if isinstance(inner, KeyCounting) else None
        self.key_prefix = key_prefix
        self.max_keys = max_keys
        self.max_age = max_age
        self.first_wait = first_wait
        self._clock = clock
        self._value: int | None = None
        self._counted_at: float | None = None  # when the last count ended (found a figure or not)
        self._task: asyncio.Task[None] | None = None

    async def apply(self, stats: StoreStats) -> StoreStats:
        """``stats`` with ``entries`` replaced by the cache's own key count, when one is known;
        starts a new count in the background when the last one is older than ``max_age``."""
        if self.counter is None:
            return stats
        task = self._task
        if task is not None and task.get_loop() is not asyncio.get_running_loop():
            task = self._task = None  # started on a loop that is gone (tests, SDK use across loops)
        due = self._counted_at is None or self._clock() - self._counted_at >= self.max_age
        if due and (task is None or task.done()):
            task = self._task = asyncio.ensure_future(self._count(self.counter))
        if self._counted_at is None and task is not None and not task.done():
            await asyncio.wait({task}, timeout=self.first_wait)
        if self._value is None:
            return stats  # not counted (yet), too many keys to count, or the count failed
        coverage = {**stats.coverage, "entries": "cache"}
        return dataclasses.replace(stats, entries=self._value, coverage=coverage)

    async def _count(self, counter: KeyCounting) -> None:
        try:
            value = await counter.count_keys(self.key_prefix, max_keys=self.max_keys)
        except Exception as error:  # StoreError and anything else: the figure is unknown, not wrong
            log.debug("counting the cache's keys failed: %s", error)
            value = None
        # Not reached when cancelled (its loop closing): the next reader counts again.
        self._value = value
        self._counted_at = self._clock()
