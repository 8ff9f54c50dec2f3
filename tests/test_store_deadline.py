"""``within_deadline``: the caller is back at its deadline whatever the call does when cancelled.
``stall_tolerant_timeout``: ``asyncio.timeout`` that does not count time the loop could not run.

The stalls here are real: a callback that blocks the loop with ``time.sleep`` (what a full garbage
collection of a LiteLLM proxy does for 0.3-0.7 s). Only lower bounds on time are asserted."""

from __future__ import annotations

import asyncio
import time

import pytest

from litellm_cache_plugin.store.base import StoreError
from litellm_cache_plugin.store.deadline import stall_tolerant_timeout, unwinding, within_deadline
from litellm_cache_plugin.store.guarded import CircuitBreaker, GuardedStore
from litellm_cache_plugin.store.memory import MemoryStore


async def _unwound() -> bool:
    """Whether every abandoned call has finished unwinding within 100 turns of the loop."""
    for _ in range(100):
        if unwinding() == 0:
            return True
        await asyncio.sleep(0)
    return unwinding() == 0


async def test_an_answer_in_time_is_returned() -> None:
    async def answer() -> int:
        await asyncio.sleep(0)
        return 7

    assert await within_deadline(answer, 5) == 7
    assert unwinding() == 0


async def test_an_error_in_time_is_raised_as_is() -> None:
    async def broken() -> int:
        raise ValueError("bad name")

    with pytest.raises(ValueError, match="bad name"):
        await within_deadline(broken, 5)


async def test_a_call_that_swallows_its_cancellation_does_not_hold_the_caller() -> None:
    # What a client library may do: turn the cancellation into its own cleanup or retry and wait on.
    released = asyncio.Event()
    cancelled = asyncio.Event()

    async def stubborn() -> str:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            await released.wait()  # unwinding takes as long as the test likes
            return "late"
        return "never"

    with pytest.raises(TimeoutError, match=r"within 0\.01s"):
        await within_deadline(stubborn, 0.01)
    await asyncio.wait_for(cancelled.wait(), 5)
    assert unwinding() == 1  # still unwinding in the background, and kept referenced
    released.set()
    assert await _unwound()


async def test_a_late_failure_is_retrieved_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    released = asyncio.Event()

    async def fails_while_unwinding() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await released.wait()
            raise RuntimeError("cleanup failed") from None

    with pytest.raises(TimeoutError):
        await within_deadline(fails_while_unwinding, 0.01)
    released.set()
    assert await _unwound()
    assert "never retrieved" not in caplog.text


async def test_cancelling_the_caller_cancels_the_call_and_passes_through() -> None:
    started = asyncio.Event()
    call_cancelled = asyncio.Event()

    async def slow() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            call_cancelled.set()
            raise

    caller = asyncio.ensure_future(within_deadline(slow, 60))
    await started.wait()
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    await asyncio.wait_for(call_cancelled.wait(), 5)


# ------------------------------------------------------------------------------ stall_tolerant_timeout


def _stall_loop(at: float, seconds: float) -> None:
    """Block the running loop for ``seconds``, ``at`` seconds from now."""
    asyncio.get_running_loop().call_later(at, time.sleep, seconds)


class AnswersIn(MemoryStore):
    """A real store whose reads are answered ``after`` seconds (a network round trip), or never."""

    def __init__(self, after: float | None) -> None:
        super().__init__()
        self.after = after

    async def get(self, key: str) -> bytes | None:
        answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        if self.after is not None:
            asyncio.get_running_loop().call_later(self.after, answer.set_result, b"answer")
        return await answer


async def test_an_answer_received_while_the_loop_was_stalled_is_taken() -> None:
    # The answer arrives 10 ms in; the loop is blocked from 5 ms to 305 ms, past the 100 ms deadline.
    # asyncio.timeout's timer would run before the woken task and turn the answer into a timeout.
    breaker = CircuitBreaker(failure_threshold=1)
    guarded = GuardedStore(AnswersIn(after=0.01), timeout=0.1, breaker=breaker)
    _stall_loop(0.005, 0.3)
    assert await guarded.get("k") == b"answer"
    assert guarded.counters() == {"failures": 0, "timeouts": 0, "short_circuits": 0}
    assert breaker.state == "closed"


async def test_a_stalled_call_gets_its_deadline_once_more_then_times_out() -> None:
    guarded = GuardedStore(AnswersIn(after=None), timeout=0.1, breaker=CircuitBreaker(failure_threshold=5))
    started = time.monotonic()
    _stall_loop(0.005, 0.3)  # the deadline passes while the loop cannot run
    _stall_loop(0.35, 0.3)  # ...and the second deadline too: no third
    with pytest.raises(StoreError, match=r"timed out after 0\.1s"):
        await asyncio.wait_for(guarded.get("k"), 10)
    # 0.3 s stalled, then a fresh 0.1 s (in which the second stall began), nothing after it.
    assert time.monotonic() - started >= 0.6
    assert guarded.timeouts == 1


async def test_without_a_stall_the_deadline_is_the_deadline() -> None:
    cancelled = asyncio.Event()

    async def hung() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(TimeoutError):
        async with stall_tolerant_timeout(0.05):
            await hung()
    assert loop.time() - started >= 0.05
    assert cancelled.is_set()  # the block was cancelled, as with asyncio.timeout


async def test_errors_and_the_caller_s_cancellation_pass_through() -> None:
    with pytest.raises(ValueError, match="bad"):
        async with stall_tolerant_timeout(5):
            raise ValueError("bad")

    async def waits() -> None:
        async with stall_tolerant_timeout(60):
            await asyncio.Event().wait()

    caller = asyncio.ensure_future(waits())
    await asyncio.sleep(0.01)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    # An answer in time: the value, and no timer left behind.
    async with stall_tolerant_timeout(5):
        await asyncio.sleep(0)


async def test_within_deadline_takes_an_answer_from_a_stall_and_grants_a_stalled_deadline_once() -> None:
    loop = asyncio.get_running_loop()

    async def answers_at_10_ms() -> str:
        answer: asyncio.Future[str] = loop.create_future()
        loop.call_later(0.01, answer.set_result, "answer")
        return await answer

    _stall_loop(0.005, 0.3)
    assert await within_deadline(answers_at_10_ms, 0.1) == "answer"

    async def hung() -> None:
        await asyncio.Event().wait()

    started = time.monotonic()
    _stall_loop(0.005, 0.3)
    _stall_loop(0.35, 0.3)  # the granted deadline passes in a stall too: no third
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(within_deadline(hung, 0.1), 10)
    assert time.monotonic() - started >= 0.6
    assert await _unwound()
