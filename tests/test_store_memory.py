from __future__ import annotations

from collections.abc import AsyncIterator, Coroutine
from typing import Any, TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from litellm_cache_plugin.store.memory import ENTRY_OVERHEAD, MemoryStore
from litellm_cache_plugin.testing import AdvanceTime, StoreConformance
from tests.fake_clock import FakeClock

T = TypeVar("T")
KiB = 1024
MiB = 1024 * KiB


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Drive a MemoryStore coroutine without a loop; it must finish without ever suspending."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coro.close()
    raise AssertionError("MemoryStore suspended inside a call")


def entry_size(key: str, value: bytes) -> int:
    return len(key) + len(value) + ENTRY_OVERHEAD


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


class TestMemoryConformance(StoreConformance):
    eviction_pressure_bytes = 4 * MiB

    @pytest.fixture
    async def store(self, clock: FakeClock) -> AsyncIterator[MemoryStore]:
        # Room for the 1 MiB conformance value, small enough for eviction_pressure_bytes to evict.
        store = MemoryStore(max_bytes=2 * MiB, clock=clock)
        yield store
        await store.close()

    @pytest.fixture
    def advance_time(self, clock: FakeClock) -> AdvanceTime:
        async def advance(seconds: float) -> None:
            clock.advance(seconds)

        return advance


def test_lru_evicts_least_recently_used(clock: FakeClock) -> None:
    value = b"x" * 100
    store = MemoryStore(max_bytes=3 * entry_size("a", value), clock=clock)
    for key in "abc":
        run(store.set(key, value, 60))
    assert run(store.get("a")) == value  # a becomes most recent: b is now the oldest
    run(store.set("d", value, 60))
    assert run(store.get_many(["a", "b", "c", "d"])) == [value, None, value, value]
    run(store.get_many(["c"]))  # get_many refreshes recency too: a is now the oldest
    run(store.set("e", value, 60))
    assert run(store.get("a")) is None
    assert run(store.stats()).evictions == 2


def test_overwrite_refreshes_recency(clock: FakeClock) -> None:
    value = b"x" * 100
    store = MemoryStore(max_bytes=2 * entry_size("a", value), clock=clock)
    run(store.set("a", value, 60))
    run(store.set("b", value, 60))
    run(store.set("a", value, 60))
    run(store.set("c", value, 60))
    assert run(store.get_many(["a", "b", "c"])) == [value, None, value]


def test_byte_accounting_is_exact(clock: FakeClock) -> None:
    store = MemoryStore(max_bytes=MiB, clock=clock)
    run(store.set("key", b"12345", 60))
    run(store.incr("counter"))
    run(store.acquire_lock("lock", "owner", 60))
    stats = run(store.stats())
    assert stats.entries == 3
    expected = entry_size("key", b"12345") + entry_size("counter", b"") + entry_size("lock", b"owner")
    assert stats.bytes == expected
    run(store.set("key", b"1", 60))  # overwrite: the old size is given back
    assert run(store.stats()).bytes == stats.bytes - 4
    for key in ("key", "counter", "lock"):
        assert run(store.delete(key)) is True
    assert run(store.stats()).bytes == 0
    assert run(store.stats()).entries == 0


def test_evicting_expired_entries_counts_as_expiration(clock: FakeClock) -> None:
    value = b"x" * 100
    store = MemoryStore(max_bytes=2 * entry_size("a", value), clock=clock)
    run(store.set("a", value, 1))
    run(store.set("b", value, 60))
    clock.advance(2)
    run(store.set("c", value, 60))  # pushes out "a", which was dead already
    stats = run(store.stats())
    assert (stats.evictions, stats.expirations) == (0, 1)


def test_value_larger_than_capacity_is_not_stored(clock: FakeClock) -> None:
    store = MemoryStore(max_bytes=1000, clock=clock)
    run(store.set("small", b"v", 60))
    run(store.set("big", b"v", 60))
    run(store.set("big", b"x" * 1000, 60))  # also drops the previous, smaller value under that key
    assert run(store.get_many(["small", "big"])) == [b"v", None]
    assert run(store.stats()).bytes == entry_size("small", b"v")


def test_counters_and_locks_are_never_evicted(clock: FakeClock) -> None:
    value = b"x" * 100
    store = MemoryStore(max_bytes=4 * entry_size("v0", value), clock=clock)
    run(store.incr("c1", 5))
    run(store.acquire_lock("l1", "o", 60))
    for i in range(20):
        run(store.set(f"v{i}", value, 60))
    assert run(store.get_counters(["c1"])) == [5]
    assert run(store.acquire_lock("l1", "other", 60)) is False
    stats = run(store.stats())
    assert stats.bytes is not None and stats.bytes <= store.max_bytes
    # New counters squeeze values out rather than being refused.
    run(store.incr("c2"))
    assert run(store.stats()).evictions > stats.evictions  # type: ignore[operator]


def test_values_are_not_copied(clock: FakeClock) -> None:
    store = MemoryStore(clock=clock)
    value = b"payload" * 10
    run(store.set("k", value, 60))
    assert run(store.get("k")) is value
    mutable = bytearray(b"abc")
    run(store.set("m", mutable, 60))  # type: ignore[arg-type]
    mutable[0] = ord("z")
    assert run(store.get("m")) == b"abc"


def test_expired_entries_are_swept_without_being_read(clock: FakeClock) -> None:
    store = MemoryStore(clock=clock, sweep_interval=5)
    run(store.set_many([(f"k{i}", b"v") for i in range(10)], ttl=1))
    run(store.acquire_lock("lock", "owner", 1))
    run(store.set("live", b"v", 60))
    clock.advance(2)
    run(store.set("trigger", b"v", 60))  # interval not over yet: nothing swept
    assert run(store.stats()).expirations == 0
    clock.advance(4)
    run(store.set("trigger", b"v", 60))  # the next write after the interval sweeps
    stats = run(store.stats())
    assert stats.expirations == 11
    assert stats.entries == 2
    assert stats.bytes == entry_size("live", b"v") + entry_size("trigger", b"v")


def test_sweep_is_bounded_and_callable(clock: FakeClock) -> None:
    store = MemoryStore(clock=clock, sweep_batch=4)
    run(store.set_many([(f"k{i}", b"v") for i in range(10)], ttl=1))
    clock.advance(2)
    assert store.sweep(limit=4) == 4
    assert store.sweep() == 6
    assert store.sweep() == 0
    assert run(store.stats()).entries == 0


def test_rejects_bad_arguments(clock: FakeClock) -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        MemoryStore(max_bytes=0)
    store = MemoryStore(clock=clock)
    for ttl in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="ttl"):
            run(store.set("k", b"v", ttl))
        with pytest.raises(ValueError, match="ttl"):
            run(store.acquire_lock("k", "o", ttl))


# --- random workloads ---------------------------------------------------------------------------------

KEYS = [f"key{i}" for i in range(12)]
operation = st.one_of(
    st.tuples(st.just("set"), st.sampled_from(KEYS), st.integers(0, 3000), st.sampled_from([0.5, 5, 60])),
    st.tuples(
        st.just("set_many"),
        st.lists(st.tuples(st.sampled_from(KEYS), st.integers(0, 1500)), max_size=4),
        st.sampled_from([0.5, 60]),
    ),
    st.tuples(st.just("get"), st.sampled_from(KEYS)),
    st.tuples(st.just("delete"), st.sampled_from(KEYS)),
    st.tuples(st.just("incr"), st.sampled_from(["c1", "c2", "c3"]), st.integers(-3, 3)),
    st.tuples(st.just("lock"), st.sampled_from(["l1", "l2"]), st.sampled_from(["o1", "o2"])),
    st.tuples(st.just("unlock"), st.sampled_from(["l1", "l2"]), st.sampled_from(["o1", "o2"])),
    st.tuples(st.just("advance"), st.sampled_from([0.1, 1, 10])),
)


@settings(max_examples=150, deadline=None)
@given(max_bytes=st.integers(1500, 12000), ops=st.lists(operation, max_size=60))
def test_random_workload_respects_bound_and_never_returns_wrong_data(max_bytes: int, ops: list[Any]) -> None:
    clock = FakeClock()
    store = MemoryStore(max_bytes=max_bytes, clock=clock, sweep_interval=2, sweep_batch=3)
    latest: dict[str, tuple[bytes, float]] = {}  # what a get may return: the last write, until expiry
    counters: dict[str, int] = {}
    serial = 0
    for op in ops:
        kind = op[0]
        if kind == "set":
            serial += 1
            value = serial.to_bytes(4, "big") * (op[2] // 4 + 1)
            run(store.set(op[1], value, op[3]))
            latest[op[1]] = (value, clock.now + op[3])
        elif kind == "set_many":
            items = []
            for key, size in op[1]:
                serial += 1
                items.append((key, serial.to_bytes(4, "big") * (size // 4 + 1)))
            run(store.set_many(items, op[2]))
            for key, value in items:
                latest[key] = (value, clock.now + op[2])
        elif kind == "get":
            got = run(store.get(op[1]))
            if got is not None:
                value, expires_at = latest[op[1]]
                assert got == value and clock.now < expires_at
        elif kind == "delete":
            run(store.delete(op[1]))
            latest.pop(op[1], None)
        elif kind == "incr":
            counters[op[1]] = counters.get(op[1], 0) + op[2]
            assert run(store.incr(op[1], op[2])) == counters[op[1]]
        elif kind == "lock":
            run(store.acquire_lock(op[1], op[2], 1))
        elif kind == "unlock":
            run(store.release_lock(op[1], op[2]))
        else:
            clock.advance(op[1])

        # Counters and locks here take < 1500 bytes, so the bound must always hold.
        stats = run(store.stats())
        assert stats.bytes is not None and stats.bytes <= max_bytes
        held = (
            sum(entry_size(k, v) for k, (v, _) in store._entries.items())
            + sum(entry_size(k, b"") for k in store._counters)
            + sum(entry_size(k, owner.encode()) for k, (owner, _) in store._locks.items())
        )
        assert stats.bytes == held
        assert stats.entries == len(store._entries) + len(store._counters) + len(store._locks)
    assert run(store.get_counters(sorted(counters))) == [counters[k] for k in sorted(counters)]
