"""Deadlines for one backend call.

``stall_tolerant_timeout`` (the cache store's guard): ``asyncio.timeout`` that does not count time
the event loop could not run. When the loop stalls (a full garbage collection of a LiteLLM proxy
takes 0.3-0.7 s on a 2-core machine; a busy host), the backend's answer arrives meanwhile, but
``asyncio.timeout``'s timer, due during the stall, runs before the waiting task does and turns the
answer into a timeout: every lookup in flight fails open at once, and enough of them open the
circuit breaker. Here the expiry waits one turn of the loop, so an answer already received is taken,
and a timer that fires far later than due (the loop was stalled for over half the deadline) grants the
call the deadline once more, from then on.

``within_deadline`` (the shared vector index's guard):

``asyncio.timeout``/``wait_for`` cancel the call and then wait for it to unwind: whatever the client
library does on cancellation (close a socket, release a pooled connection, record metrics) or a
cancellation it swallows and turns into its own retry is added to the caller's wait. A request must
never wait past its deadline for a backend, so the call runs as its own task: at the deadline it is
cancelled and left to unwind in the background while the caller goes on.

Used by the guarded vector search (a semantic lookup costs milliseconds anyway). The cache store's
guard keeps ``asyncio.timeout``: a task per call on every Redis hit measured too dear
(``store.guarded``).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")

# A deadline timer firing more than this share of the deadline late found the loop stalled.
STALL_SHARE = 0.5


class _Deadline:
    """A timer that calls ``expire(now)`` once ``timeout`` seconds have passed, and grants them once
    more when it fires over ``STALL_SHARE`` of them late: the loop was stalled, so the call did not
    have its time."""

    __slots__ = ("_due", "_expire", "_graced", "_handle", "_loop", "_timeout")

    def __init__(
        self, loop: asyncio.AbstractEventLoop, timeout: float, expire: Callable[[float], object]
    ) -> None:
        self._loop = loop
        self._timeout = timeout
        self._expire = expire
        self._graced = False
        self._due = loop.time() + timeout
        self._handle = loop.call_at(self._due, self._on_due)

    def _on_due(self) -> None:
        now = self._loop.time()
        if not self._graced and now - self._due > self._timeout * STALL_SHARE:
            self._graced = True
            self._due = now + self._timeout
            self._handle = self._loop.call_at(self._due, self._on_due)
            return
        self._expire(now)

    def cancel(self) -> None:
        self._handle.cancel()


class stall_tolerant_timeout:  # named like asyncio.timeout, used like it
    """``async with stall_tolerant_timeout(timeout):`` is ``async with asyncio.timeout(timeout):``
    (:class:`TimeoutError` at the deadline, the block cancelled), except that time the loop could not
    run does not use up the deadline (module docstring): the block gets ``timeout`` seconds, plus at
    most one more ``timeout`` after a stall."""

    __slots__ = ("_block", "_deadline", "_timeout")

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout

    async def __aenter__(self) -> None:
        if sys.version_info >= (3, 11):
            self._block: Any = asyncio.timeout(None)
        else:  # pragma: no cover - Python 3.10: no reschedulable timeout
            self._block = _Expiry()
        await self._block.__aenter__()
        # Expiry is rescheduled to "now", i.e. one turn later: a task woken by an answer received in
        # the same turn as the timer runs first.
        self._deadline = _Deadline(asyncio.get_running_loop(), self._timeout, self._block.reschedule)

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> bool | None:
        self._deadline.cancel()
        suppress: bool | None = await self._block.__aexit__(exc_type, exc, tb)
        return suppress


class _Expiry:  # pragma: no cover - Python 3.10 only
    """What ``stall_tolerant_timeout`` needs of ``asyncio.timeout(None)`` on Python 3.10."""

    def __init__(self) -> None:
        self._expired = False
        self._handle: asyncio.Handle | None = None

    async def __aenter__(self) -> None:
        self._task = asyncio.current_task()

    def reschedule(self, when: float) -> None:
        self._handle = asyncio.get_running_loop().call_soon(self._expire)

    def _expire(self) -> None:
        self._expired = True
        if self._task is not None:
            self._task.cancel()

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> bool | None:
        if self._handle is not None:
            self._handle.cancel()
        if self._expired and exc_type is asyncio.CancelledError:
            raise TimeoutError from exc
        return None


# Calls cancelled at their deadline and still unwinding: the loop keeps only weak references to tasks.
_unwinding: set[asyncio.Future[Any]] = set()


def _forget(task: asyncio.Future[Any]) -> None:
    _unwinding.discard(task)
    if not task.cancelled():
        task.exception()  # retrieved, so asyncio does not log "exception was never retrieved"


def unwinding() -> int:
    """How many calls abandoned at their deadline are still unwinding (for tests and stats)."""
    return len(_unwinding)


async def within_deadline(start: Callable[[], Awaitable[T]], timeout: float) -> T:
    """``await start()``, or :class:`TimeoutError` once ``timeout`` seconds have passed, whatever
    the call does when cancelled. Cancelling the caller cancels the call and passes through. A
    deadline that passed while the loop was stalled for over half of it is granted once more, as in
    ``stall_tolerant_timeout``."""
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(start())
    woken: asyncio.Future[None] = loop.create_future()

    def wake(_: object = None) -> None:
        if not woken.done():
            woken.set_result(None)

    timer = _Deadline(loop, timeout, wake)
    task.add_done_callback(wake)
    try:
        await woken
    except BaseException:
        _abandon(task)
        raise
    finally:
        timer.cancel()
        task.remove_done_callback(wake)
    if task.done():
        return task.result()
    _abandon(task)
    raise TimeoutError(f"no answer within {timeout:g}s")


def _abandon(task: asyncio.Future[Any]) -> None:
    if task.done():
        _forget(task)
        return
    task.cancel()
    _unwinding.add(task)
    task.add_done_callback(_forget)
