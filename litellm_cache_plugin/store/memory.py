"""In-process store: LRU bounded by bytes, with TTLs, counters and locks.

Memory accounting: every key held costs ``len(key) + len(value) + ENTRY_OVERHEAD`` bytes (for a
counter the value length is 0, for a lock it is the owner's length). ``ENTRY_OVERHEAD`` is what CPython
(3.11, 64-bit) really spends per entry besides the raw characters and bytes: about 170 bytes for
the ordered-dict slot, the ``(value, expires_at)`` tuple and the expiry float, plus about 80 for
the headers of the ``str`` key and ``bytes`` value objects. So ``max_bytes`` bounds the real memory
held, not just the payload.

``max_bytes`` bounds everything the store holds. Cached values are evicted least recently used
first to stay under it; counters and locks are never evicted (a lost counter would resurrect
invalidated entries, a lost lock would let two owners in), so they only squeeze the space left for
values. A single value larger than ``max_bytes`` is not stored at all.

Expired values and locks are misses; they are removed when touched, by a cheap sweep that runs at
most once per ``sweep_interval`` seconds (on writes) and looks at no more than ``sweep_batch``
values from the least recently used end (where forgotten entries gather) plus as many of the
oldest locks, and finally by LRU eviction. Memory stays bounded whatever the sweep misses.

Everything runs on one event loop and no method awaits while it mutates, so asyncio concurrency
is safe without a lock. It is not thread-safe.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from itertools import islice
from typing import Any

from litellm_cache_plugin.store import byte_size, parse_options, positive_float, positive_int, url_options
from litellm_cache_plugin.store.base import StoreError, StoreStats, get_with_counters_then_lock

__all__ = ["DEFAULT_MAX_BYTES", "ENTRY_OVERHEAD", "MemoryStore"]

DEFAULT_MAX_BYTES = 256 * 1024 * 1024
ENTRY_OVERHEAD = 256


def _clock_option(value: object) -> Callable[[], float]:
    if isinstance(value, str) or not callable(value):
        raise ValueError("a callable returning seconds (keyword only, not in the URL)")
    return value


_OPTIONS = {
    "max_bytes": byte_size,
    "clock": _clock_option,
    "sweep_interval": positive_float,
    "sweep_batch": positive_int,
}


def _check_ttl(ttl: float) -> float:
    if not (isinstance(ttl, (int, float)) and math.isfinite(ttl) and ttl > 0):
        raise ValueError(f"ttl must be a positive finite number of seconds, got {ttl!r}")
    return ttl


class MemoryStore:
    """The embedded default backend. See the module docstring for accounting and expiry."""

    name = "memory"
    # No method ever suspends (module docstring), so a deadline around a call could never fire: the
    # guard (store.guarded) arms none for a class that declares this itself (a subclass that awaits
    # I/O does not inherit it).
    never_suspends = True

    __slots__ = (
        "_bytes",
        "_clock",
        "_closed",
        "_counters",
        "_entries",
        "_evictions",
        "_expirations",
        "_locks",
        "_max_bytes",
        "_next_sweep",
        "sweep_batch",
        "sweep_interval",
    )

    def __init__(
        self,
        max_bytes: int = DEFAULT_MAX_BYTES,
        clock: Callable[[], float] = time.monotonic,
        *,
        sweep_interval: float = 1.0,
        sweep_batch: int = 128,
    ) -> None:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
            raise ValueError(f"max_bytes must be a positive integer, got {max_bytes!r}")
        self._max_bytes = max_bytes
        self._clock = clock
        self.sweep_interval = positive_float(sweep_interval)
        self.sweep_batch = positive_int(sweep_batch)
        # key -> (value, expires_at); order is recency, least recently used first.
        self._entries: OrderedDict[str, tuple[bytes, float]] = OrderedDict()
        # Kept apart from the LRU so that eviction can never touch them.
        self._counters: dict[str, int] = {}
        self._locks: dict[str, tuple[str, float]] = {}
        self._bytes = 0
        self._evictions = 0
        self._expirations = 0
        self._next_sweep = clock() + self.sweep_interval
        self._closed = False

    @classmethod
    def from_url(cls, url: str, **options: Any) -> MemoryStore:
        """``memory://?max_bytes=268435456`` (or ``256MiB``); also ``sweep_interval``, ``sweep_batch``
        and, as a keyword only, ``clock``."""
        _, query = url_options(url)
        return cls(**parse_options("memory", {**query, **options}, _OPTIONS))

    @property
    def max_bytes(self) -> int:
        return self._max_bytes

    # --- values --------------------------------------------------------------------------------

    async def get(self, key: str) -> bytes | None:
        self._check_open()
        return self._get(key, self._clock())

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        self._check_open()
        now = self._clock()
        return [self._get(key, now) for key in keys]

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        self._check_open()
        now = self._clock()
        self._set(key, value, now + _check_ttl(ttl), now)
        self._maybe_sweep(now)

    async def set_many(self, items: Sequence[tuple[str, bytes]], ttl: float) -> None:
        self._check_open()
        now = self._clock()
        expires_at = now + _check_ttl(ttl)
        for key, value in items:
            self._set(key, value, expires_at, now)
        self._maybe_sweep(now)

    async def delete(self, key: str) -> bool:
        self._check_open()
        now = self._clock()
        deleted = False
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= len(key) + len(entry[0]) + ENTRY_OVERHEAD
            if entry[1] <= now:
                self._expirations += 1
            else:
                deleted = True
        counter = self._counters.pop(key, None)
        if counter is not None:
            self._bytes -= len(key) + ENTRY_OVERHEAD
            deleted = True
        lock = self._locks.pop(key, None)
        if lock is not None:
            self._bytes -= len(key) + len(lock[0]) + ENTRY_OVERHEAD
            if lock[1] <= now:
                self._expirations += 1
            else:
                deleted = True
        return deleted

    def _get(self, key: str, now: float) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[1] <= now:
            del self._entries[key]
            self._bytes -= len(key) + len(entry[0]) + ENTRY_OVERHEAD
            self._expirations += 1
            return None
        self._entries.move_to_end(key)
        return entry[0]

    def _set(self, key: str, value: bytes, expires_at: float, now: float) -> None:
        if type(value) is not bytes:
            # A bytearray the caller mutates later must not change the cache; bytes are kept as is.
            value = bytes(value)
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= len(key) + len(old[0]) + ENTRY_OVERHEAD
        size = len(key) + len(value) + ENTRY_OVERHEAD
        if size > self._max_bytes:
            return  # could never fit; dropping the old value too is what an LRU would end up doing
        self._entries[key] = (value, expires_at)
        self._bytes += size
        if self._bytes > self._max_bytes:
            self._evict(now)

    def _evict(self, now: float) -> None:
        entries = self._entries
        while self._bytes > self._max_bytes and entries:
            key, (value, expires_at) = entries.popitem(last=False)
            self._bytes -= len(key) + len(value) + ENTRY_OVERHEAD
            if expires_at <= now:
                self._expirations += 1  # it was dead already: not an eviction of live data
            else:
                self._evictions += 1

    # --- counters ------------------------------------------------------------------------------

    async def incr(self, key: str, amount: int = 1) -> int:
        self._check_open()
        current = self._counters.get(key)
        if current is None:
            self._counters[key] = amount
            self._bytes += len(key) + ENTRY_OVERHEAD
            if self._bytes > self._max_bytes:
                self._evict(self._clock())
            return amount
        current += amount
        self._counters[key] = current
        return current

    async def get_with_counters(
        self, key: str, counter_keys: Sequence[str]
    ) -> tuple[bytes | None, list[int]]:
        return await self.get(key), await self.get_counters(counter_keys)

    async def get_with_counters_or_lock(
        self, key: str, counter_keys: Sequence[str], lock_key: str, owner: str, ttl: float
    ) -> tuple[bytes | None, list[int], bool]:
        # In-process: nothing runs between the two steps, so they are one atomic step.
        return await get_with_counters_then_lock(self, key, counter_keys, lock_key, owner, ttl)

    async def get_counters(self, keys: Sequence[str]) -> list[int]:
        self._check_open()
        counters = self._counters
        return [counters.get(key, 0) for key in keys]

    # --- locks ---------------------------------------------------------------------------------

    async def acquire_lock(self, key: str, owner: str, ttl: float) -> bool:
        self._check_open()
        now = self._clock()
        expires_at = now + _check_ttl(ttl)
        held = self._locks.get(key)
        if held is not None:
            if held[1] > now:
                return False
            self._drop_lock(key, held)
            self._expirations += 1
        self._locks[key] = (owner, expires_at)
        self._bytes += len(key) + len(owner) + ENTRY_OVERHEAD
        if self._bytes > self._max_bytes:
            self._evict(now)
        self._maybe_sweep(now)
        return True

    async def release_lock(self, key: str, owner: str) -> bool:
        self._check_open()
        held = self._locks.get(key)
        if held is None:
            return False
        if held[1] <= self._clock():
            self._drop_lock(key, held)
            self._expirations += 1
            return False
        if held[0] != owner:
            return False
        self._drop_lock(key, held)
        return True

    def _drop_lock(self, key: str, held: tuple[str, float]) -> None:
        del self._locks[key]
        self._bytes -= len(key) + len(held[0]) + ENTRY_OVERHEAD

    # --- housekeeping --------------------------------------------------------------------------

    def _maybe_sweep(self, now: float) -> None:
        if now >= self._next_sweep:
            self._sweep(now, self.sweep_batch)

    def sweep(self, limit: int | None = None) -> int:
        """Remove expired values and locks now; inspect at most ``limit`` of each (all if None).

        Returns how many were removed. Runs by itself on writes; callable for tests and tools."""
        self._check_open()
        return self._sweep(self._clock(), limit)

    def _sweep(self, now: float, limit: int | None) -> int:
        self._next_sweep = now + self.sweep_interval
        # Collect first, delete after: a dict must not change size while it is iterated.
        dead_values = [k for k, (_, exp) in islice(self._entries.items(), limit) if exp <= now]
        for key in dead_values:
            value, _ = self._entries.pop(key)
            self._bytes -= len(key) + len(value) + ENTRY_OVERHEAD
        dead_locks = [(k, held) for k, held in islice(self._locks.items(), limit) if held[1] <= now]
        for key, held in dead_locks:
            self._drop_lock(key, held)
        removed = len(dead_values) + len(dead_locks)
        self._expirations += removed
        return removed

    async def stats(self) -> StoreStats:
        """``entries`` counts every key held (values, counters, locks not yet swept); ``bytes`` is
        their accounted size (see the module docstring), the figure bounded by ``max_bytes``."""
        self._check_open()
        return StoreStats(
            backend=self.name,
            entries=len(self._entries) + len(self._counters) + len(self._locks),
            bytes=self._bytes,
            evictions=self._evictions,
            expirations=self._expirations,
            coverage=dict.fromkeys(("entries", "bytes", "evictions", "expirations"), "cache"),
        )

    async def ping(self) -> bool:
        self._check_open()
        return True

    async def close(self) -> None:
        """Drop everything; later calls raise ``StoreError``. Idempotent."""
        self._closed = True
        self._entries.clear()
        self._counters.clear()
        self._locks.clear()
        self._bytes = 0

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("memory store is closed")
