"""A hard deadline for one backend call.

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
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")

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
    the call does when cancelled. Cancelling the caller cancels the call and passes through."""
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(start())
    woken: asyncio.Future[None] = loop.create_future()

    def wake(_: object = None) -> None:
        if not woken.done():
            woken.set_result(None)

    timer = loop.call_later(timeout, wake)
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
