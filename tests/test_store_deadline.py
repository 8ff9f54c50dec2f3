"""``within_deadline``: the caller is back at its deadline whatever the call does when cancelled."""

from __future__ import annotations

import asyncio

import pytest

from litellm_cache_plugin.store.deadline import unwinding, within_deadline


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
