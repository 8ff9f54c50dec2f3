from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import pytest

from litellm_cache_plugin.store.base import Store, StoreError, StoreStats
from litellm_cache_plugin.store.guarded import CircuitBreaker, CircuitOpenError, GuardedStore
from litellm_cache_plugin.store.memory import MemoryStore
from litellm_cache_plugin.testing import AdvanceTime, StoreConformance
from tests.fake_clock import FakeClock
from tests.loop_stalls import LoopStalls


class ScriptedStore:
    """A real Store whose every call sleeps ``delay`` seconds, then raises ``error`` if set."""

    name = "scripted"

    def __init__(self, delay: float = 0.0, error: BaseException | None = None) -> None:
        self.delay = delay
        self.error = error
        self.calls = 0
        self.closed = False

    async def _act(self) -> None:
        self.calls += 1
        await asyncio.sleep(self.delay)
        if self.error is not None:
            raise self.error

    async def get(self, key: str) -> bytes | None:
        await self._act()
        return b"value"

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        await self._act()
        return [None for _ in keys]

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        await self._act()

    async def set_many(self, items: Sequence[tuple[str, bytes]], ttl: float) -> None:
        await self._act()

    async def delete(self, key: str) -> bool:
        await self._act()
        return True

    async def incr(self, key: str, amount: int = 1) -> int:
        await self._act()
        return amount

    async def get_counters(self, keys: Sequence[str]) -> list[int]:
        await self._act()
        return [0 for _ in keys]

    async def get_with_counters(
        self, key: str, counter_keys: Sequence[str]
    ) -> tuple[bytes | None, list[int]]:
        await self._act()
        return None, [0 for _ in counter_keys]

    async def get_with_counters_or_lock(
        self, key: str, counter_keys: Sequence[str], lock_key: str, owner: str, ttl: float
    ) -> tuple[bytes | None, list[int], bool]:
        await self._act()
        return None, [0 for _ in counter_keys], True

    async def acquire_lock(self, key: str, owner: str, ttl: float) -> bool:
        await self._act()
        return True

    async def release_lock(self, key: str, owner: str) -> bool:
        await self._act()
        return True

    async def stats(self) -> StoreStats:
        await self._act()
        return StoreStats("scripted", None, None, None, None)

    async def ping(self) -> bool:
        await self._act()
        return True

    async def close(self) -> None:
        await self._act()
        self.closed = True


def state_of(subject: GuardedStore | CircuitBreaker) -> str:
    # Through a plain str so that mypy does not narrow the Literal across calls that change it.
    return subject.state


def every_call(store: Store) -> list[Callable[[], Awaitable[object]]]:
    """One coroutine factory per protocol method."""
    return [
        lambda: store.get("k"),
        lambda: store.get_many(["a", "b"]),
        lambda: store.set("k", b"v", 1),
        lambda: store.set_many([("k", b"v")], 1),
        lambda: store.delete("k"),
        lambda: store.incr("k"),
        lambda: store.get_counters(["k"]),
        lambda: store.get_with_counters("k", ["c"]),
        lambda: store.get_with_counters_or_lock("k", ["c"], "l", "o", 1),
        lambda: store.acquire_lock("k", "o", 1),
        lambda: store.release_lock("k", "o"),
        store.stats,
        store.ping,
    ]


# --- deadline and error mapping -----------------------------------------------------------------------


async def test_every_call_is_cut_at_the_deadline() -> None:
    inner = ScriptedStore(delay=10)
    guarded = GuardedStore(inner, timeout=0.05, breaker=CircuitBreaker(failure_threshold=1000))
    calls = [*every_call(guarded), guarded.close]
    stalls = LoopStalls()
    await asyncio.sleep(0)
    for call in calls:
        started = time.monotonic()
        stalls.reset()
        with pytest.raises(StoreError, match=r"timed out after 0\.05s") as info:
            await call()
        assert stalls.excused(time.monotonic() - started, deadline=0.05) < 0.5  # cut at 0.05 s, not 10 s
        assert isinstance(info.value.__cause__, (TimeoutError, asyncio.TimeoutError))
    stalls.stop()
    assert guarded.timeouts == guarded.failures == len(calls)
    assert inner.calls == len(calls)


async def test_results_pass_through_under_the_deadline() -> None:
    guarded = GuardedStore(ScriptedStore(delay=0.001), timeout=1)
    assert await guarded.get("k") == b"value"
    assert await guarded.get_many(["a", "b"]) == [None, None]
    assert await guarded.incr("k", 4) == 4
    assert await guarded.get_counters(["a"]) == [0]
    assert (await guarded.stats()).backend == "scripted"
    assert await guarded.ping() is True
    assert guarded.name == "scripted"
    assert guarded.counters() == {"failures": 0, "timeouts": 0, "short_circuits": 0}


class SleepyMemoryStore(MemoryStore):
    """A MemoryStore subclass whose reads wait: it does not declare ``never_suspends`` itself."""

    async def get(self, key: str) -> bytes | None:
        await asyncio.sleep(10)
        return None


async def test_a_store_that_never_suspends_gets_no_deadline_timer(monkeypatch: pytest.MonkeyPatch) -> None:
    from litellm_cache_plugin.store import guarded as guarded_module

    armed: list[float] = []
    real = guarded_module.stall_tolerant_timeout

    def counting(timeout: float) -> object:
        armed.append(timeout)
        return real(timeout)

    monkeypatch.setattr(guarded_module, "stall_tolerant_timeout", counting)
    memory = GuardedStore(MemoryStore(), timeout=0.05)
    await memory.set("k", b"v", 60)
    assert await memory.get("k") == b"v"
    assert await memory.get_with_counters_or_lock("k", ["c"], "lock", "me", 5) == (b"v", [0], False)
    assert armed == []
    assert memory.counters() == {"failures": 0, "timeouts": 0, "short_circuits": 0}

    timed = GuardedStore(ScriptedStore(delay=0.001), timeout=0.05)
    assert await timed.get("k") == b"value"
    assert armed == [0.05]

    # Not inherited: a subclass that awaits is timed, and cut at the deadline.
    sleepy = GuardedStore(SleepyMemoryStore(), timeout=0.05)
    with pytest.raises(StoreError, match=r"get timed out after 0\.05s"):
        await sleepy.get("k")
    assert armed == [0.05, 0.05]


async def test_any_exception_becomes_store_error() -> None:
    guarded = GuardedStore(ScriptedStore(error=ConnectionResetError("peer reset")), timeout=1)
    with pytest.raises(StoreError, match="get failed: ConnectionResetError: peer reset") as info:
        await guarded.get("k")
    assert isinstance(info.value.__cause__, ConnectionResetError)
    assert (guarded.failures, guarded.timeouts) == (1, 0)


async def test_store_error_is_passed_on_as_is() -> None:
    original = StoreError("redis GET failed")
    guarded = GuardedStore(ScriptedStore(error=original), timeout=1)
    with pytest.raises(StoreError) as info:
        await guarded.get("k")
    assert info.value is original
    assert guarded.failures == 1


async def test_programming_errors_from_the_backend_are_store_errors_too() -> None:
    guarded = GuardedStore(MemoryStore(), timeout=1)
    with pytest.raises(StoreError, match="ValueError: ttl must be"):
        await guarded.set("k", b"v", ttl=0)


async def test_cancellation_is_not_a_failure() -> None:
    inner = ScriptedStore(delay=10)
    guarded = GuardedStore(inner, timeout=5)
    task = asyncio.create_task(guarded.get("k"))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert guarded.failures == 0
    assert state_of(guarded) == "closed"


def test_rejects_bad_timeouts() -> None:
    for timeout in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="timeout"):
            GuardedStore(ScriptedStore(), timeout=timeout)


# --- circuit breaker through the store -------------------------------------------------------------


async def test_breaker_opens_short_circuits_and_recovers() -> None:
    clock = FakeClock(100.0)
    inner = ScriptedStore(error=ConnectionRefusedError("refused"))
    guarded = GuardedStore(inner, timeout=1, clock=clock)
    for _ in range(5):
        with pytest.raises(StoreError, match="refused"):
            await guarded.get("k")
    assert state_of(guarded) == "open"

    # Open: fails at once without touching the backend, for every method.
    for call in every_call(guarded):
        with pytest.raises(CircuitOpenError, match="circuit open"):
            await call()
    assert inner.calls == 5
    assert guarded.short_circuits == len(every_call(guarded))

    clock.now += 5  # reset_after passed: one probe goes through, and fails
    assert state_of(guarded) == "half_open"
    with pytest.raises(StoreError, match="refused"):
        await guarded.get("k")
    assert inner.calls == 6
    assert state_of(guarded) == "open"
    with pytest.raises(CircuitOpenError):
        await guarded.get("k")

    clock.now += 5
    inner.error = None  # the backend is back: the probe succeeds and closes the circuit
    assert await guarded.get("k") == b"value"
    assert state_of(guarded) == "closed"
    assert await guarded.get("k") == b"value"
    assert guarded.counters() == {
        "failures": 6,
        "timeouts": 0,
        "short_circuits": len(every_call(guarded)) + 1,
    }


async def test_timeouts_open_the_breaker() -> None:
    inner = ScriptedStore(delay=10)
    guarded = GuardedStore(inner, timeout=0.02, breaker=CircuitBreaker(failure_threshold=2))
    for _ in range(2):
        with pytest.raises(StoreError, match="timed out"):
            await guarded.ping()
    stalls = LoopStalls()
    await asyncio.sleep(0)
    started = time.monotonic()
    with pytest.raises(CircuitOpenError):
        await guarded.ping()
    assert stalls.excused(time.monotonic() - started) < 0.01
    assert inner.calls == 2  # the open circuit did not reach the store at all
    stalls.stop()


async def test_half_open_lets_exactly_one_probe_through() -> None:
    clock = FakeClock(100.0)
    inner = ScriptedStore(delay=0.05)
    guarded = GuardedStore(inner, timeout=1, breaker=CircuitBreaker(failure_threshold=1, clock=clock))
    inner.error = OSError("down")
    with pytest.raises(StoreError):
        await guarded.get("k")
    inner.error = None
    clock.now += 5
    results = await asyncio.gather(*(guarded.get("k") for _ in range(10)), return_exceptions=True)
    assert results.count(b"value") == 1
    assert all(isinstance(r, CircuitOpenError) for r in results if r != b"value")
    assert inner.calls == 2
    assert state_of(guarded) == "closed"


async def test_cancelled_probe_frees_the_probe_slot() -> None:
    clock = FakeClock(100.0)
    inner = ScriptedStore(error=OSError("down"))
    guarded = GuardedStore(inner, timeout=5, breaker=CircuitBreaker(failure_threshold=1, clock=clock))
    with pytest.raises(StoreError):
        await guarded.get("k")
    clock.now += 5
    inner.error, inner.delay = None, 10
    probe = asyncio.create_task(guarded.get("k"))
    await asyncio.sleep(0.01)
    with pytest.raises(CircuitOpenError):  # the probe is in flight
        await guarded.get("k")
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    inner.delay = 0
    assert await guarded.get("k") == b"value"  # a new probe was allowed
    assert state_of(guarded) == "closed"


async def test_close_reaches_the_backend_even_when_open() -> None:
    clock = FakeClock(100.0)
    inner = ScriptedStore(error=OSError("down"))
    guarded = GuardedStore(inner, timeout=1, breaker=CircuitBreaker(failure_threshold=1, clock=clock))
    with pytest.raises(StoreError):
        await guarded.get("k")
    inner.error = None
    await guarded.close()
    assert inner.closed
    assert state_of(guarded) == "open"  # close says nothing about health


# --- the breaker alone (pure logic) -----------------------------------------------------------------


def test_breaker_counts_consecutive_failures_only() -> None:
    clock = FakeClock(100.0)
    breaker = CircuitBreaker(failure_threshold=3, reset_after=2, clock=clock)
    for _ in range(2):
        assert breaker.allow()
        breaker.on_failure()
    breaker.on_success()  # resets the streak
    assert breaker.consecutive_failures == 0
    for _ in range(2):
        breaker.on_failure()
    assert state_of(breaker) == "closed" and breaker.allow()
    breaker.on_failure()
    assert state_of(breaker) == "open" and not breaker.allow()


def test_breaker_half_open_cycle() -> None:
    clock = FakeClock(100.0)
    breaker = CircuitBreaker(failure_threshold=1, reset_after=2, clock=clock)
    breaker.on_failure()
    clock.now += 1.999
    assert state_of(breaker) == "open" and not breaker.allow()
    clock.now += 0.001
    assert state_of(breaker) == "half_open"
    assert breaker.allow()  # the probe
    assert not breaker.allow()  # nobody else while it runs
    breaker.on_failure()  # probe failed: open again, the wait restarts now
    assert state_of(breaker) == "open"
    clock.now += 1
    assert not breaker.allow()
    clock.now += 1
    assert breaker.allow()
    breaker.on_abandon()  # probe cancelled: undecided, next caller probes
    assert state_of(breaker) == "half_open"
    assert breaker.allow()
    breaker.on_success()
    assert state_of(breaker) == "closed"
    assert all(breaker.allow() for _ in range(3))


def test_breaker_validates_arguments() -> None:
    with pytest.raises(ValueError, match="failure_threshold"):
        CircuitBreaker(failure_threshold=0)
    with pytest.raises(ValueError, match="reset_after"):
        CircuitBreaker(reset_after=-1)


# --- the wrapper keeps the protocol's semantics ---------------------------------------------------------


class TestGuardedMemoryConformance(StoreConformance):
    eviction_pressure_bytes = 4 * 1024 * 1024

    @pytest.fixture
    def clock(self) -> FakeClock:
        return FakeClock(100.0)

    @pytest.fixture
    async def store(self, clock: FakeClock) -> AsyncIterator[GuardedStore]:
        guarded = GuardedStore(MemoryStore(max_bytes=2 * 1024 * 1024, clock=clock), timeout=1)
        yield guarded
        await guarded.close()

    @pytest.fixture
    def advance_time(self, clock: FakeClock) -> AdvanceTime:
        async def advance(seconds: float) -> None:
            clock.now += seconds

        return advance
