"""The one storage protocol every backend implements.

Backends move bytes and know nothing about cache policy: freshness, tenants, tags and versions are
decided by the engine from the envelope it stores. The backend TTL only cleans up (it is always at
least the logical lifetime of the entry).

A missing value is ``None``: the engine never stores ``None`` (values are non-empty envelopes), so
``None`` is unambiguous.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable


class StoreError(Exception):
    """A backend failed (connection refused, timeout, protocol error). The engine fails open on it."""


Coverage = Literal["cache", "database", "server"]
"""What a figure of :class:`StoreStats` counts: ``cache`` only what this cache holds (its keys);
``database`` the whole logical database the cache lives in (a Redis ``/db``), other applications'
keys included; ``server`` the whole server or servers (every database, every application)."""


@dataclass(frozen=True)
class StoreStats:
    """What a backend can say about itself; ``None`` where it cannot know cheaply.

    ``coverage`` says, per figure name (``entries``, ``bytes``, ``evictions``, ``expirations``), what
    the figure counts (see :data:`Coverage`); a figure without a key there is not described."""

    backend: str
    entries: int | None
    bytes: int | None
    evictions: int | None
    expirations: int | None
    coverage: Mapping[str, Coverage] = field(default_factory=dict)


@runtime_checkable
class KeyCounting(Protocol):
    """Optional capability of a store shared with other data (Redis): count the cache's own keys.

    It costs a scan of the backend's whole key space, so it never runs on the request path: see
    :class:`litellm_cache_plugin.store.own_entries.OwnEntries`."""

    async def count_keys(self, key_prefix: str, *, max_keys: int) -> int | None:
        """How many keys (values, counters, locks) start with ``key_prefix`` (after the store's own
        prefix); ``None`` when the backend holds more than ``max_keys`` keys, too many to scan."""
        ...


@runtime_checkable
class Store(Protocol):
    """Async byte store.

    Keys are ``str`` (ASCII, at most 250 bytes so that Memcached can hold them too); backends do not
    check this, the engine must. A key is used as one kind only: value, counter or lock.
    Counters (``incr``/``get_counters``) are never evicted by memory pressure in backends that
    can avoid it and never expire: they carry invalidation generations.

    Failures of the backend (unreachable, protocol error, closed store) raise :class:`StoreError`;
    invalid arguments (e.g. a ``ttl`` that is not a positive finite number) raise ``ValueError``.
    ``GuardedStore`` turns both, and timeouts, into ``StoreError``. Conformance:
    ``litellm_cache_plugin.testing.StoreConformance``.
    """

    name: str

    async def get(self, key: str) -> bytes | None: ...

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """Values in the order of ``keys``; ``None`` where missing. One round trip where possible."""
        ...

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        """Store ``value`` for ``ttl`` seconds (> 0), replacing any previous value and its TTL.

        Backends may round the TTL up (Redis: to whole milliseconds), never down."""
        ...

    async def set_many(self, items: Sequence[tuple[str, bytes]], ttl: float) -> None: ...

    async def delete(self, key: str) -> bool:
        """True when something was deleted."""
        ...

    async def incr(self, key: str, amount: int = 1) -> int:
        """Atomically add ``amount`` to an integer counter (missing = 0) and return the new value."""
        ...

    async def get_counters(self, keys: Sequence[str]) -> list[int]:
        """Current values of counters; 0 where missing. One round trip where possible."""
        ...

    async def get_with_counters(
        self, key: str, counter_keys: Sequence[str]
    ) -> tuple[bytes | None, list[int]]:
        """``get(key)`` and ``get_counters(counter_keys)`` together: the lookup of every request needs
        both, so backends answer them in one round trip where they can."""
        ...

    async def get_with_counters_or_lock(
        self, key: str, counter_keys: Sequence[str], lock_key: str, owner: str, ttl: float
    ) -> tuple[bytes | None, list[int], bool]:
        """``get_with_counters`` and, only when ``key`` holds nothing, ``acquire_lock(lock_key, owner,
        ttl)``; the third value says whether the lock was taken (never when the entry exists). A miss
        that is about to lead a single flight takes its fill lock in the read's round trip where the
        backend can (:func:`get_with_counters_then_lock` is the two-step version)."""
        ...

    async def acquire_lock(self, key: str, owner: str, ttl: float) -> bool:
        """Take the lock ``key`` for ``owner`` if nobody holds it; it expires after ``ttl`` seconds."""
        ...

    async def release_lock(self, key: str, owner: str) -> bool:
        """Release the lock only if ``owner`` still holds it (compare-and-delete). True if released."""
        ...

    async def stats(self) -> StoreStats: ...

    async def ping(self) -> bool:
        """True when the backend answers; raises ``StoreError`` when it cannot be reached."""
        ...

    async def close(self) -> None:
        """Release connections and memory. Idempotent; any other call afterwards raises ``StoreError``."""
        ...


async def get_with_counters_then_lock(
    store: Store, key: str, counter_keys: Sequence[str], lock_key: str, owner: str, ttl: float
) -> tuple[bytes | None, list[int], bool]:
    """:meth:`Store.get_with_counters_or_lock` in two steps, for backends with no atomic way to do
    both in one round trip (the lock is taken only after the read found nothing)."""
    raw, counters = await store.get_with_counters(key, counter_keys)
    if raw is not None:
        return raw, counters, False
    return None, counters, await store.acquire_lock(lock_key, owner, ttl)
