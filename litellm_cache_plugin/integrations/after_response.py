"""A miss's answer is stored after its client has it, not before.

LiteLLM writes a response to ``litellm.cache`` from a task it detaches (``create_cache_write_task``)
before the response goes back up the proxy's pipeline; the task runs at the pipeline's next wait, so
the write (the carrier's encoding, the store, the accounting; a round trip with a remote backend)
ran before the response was sent and added to every miss's latency. The proxy's request handler (the fast
path, which sees every cacheable route) marks when the response body has been sent; a write running
in one of LiteLLM's detached write tasks of that request waits for the mark first.

Only such a task waits: a write awaited inline (another LiteLLM release, a stream's end handled in
the request's own task) never waits for the response it is part of. The mark is also set when the
request ends in any way, so a write waits at most as long as its request lasts (and at most
:data:`WAIT_LIMIT_S`). The carrier does not wait when requests of its process wait on the call's
single flight: they are woken by the write. Outside the proxy (SDK, Router) nothing is marked and
writes happen as before.
"""

from __future__ import annotations

import asyncio
import contextlib
from contextvars import ContextVar

from litellm_cache_plugin.integrations import compat
from litellm_cache_plugin.integrations.asgi import ASGIApp, Message, Receive, Scope, Send

WAIT_LIMIT_S = 30.0


# Set once the response of the request whose context a task runs in has been sent (tasks copy
# their creator's context).
_SENT: ContextVar[asyncio.Event | None] = ContextVar("litellm_cache_plugin_response_sent", default=None)


async def pass_through(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    """``await app(scope, receive, send)``, marking the response sent after its last body message
    (or when ``app`` returns or raises)."""
    sent = asyncio.Event()
    token = _SENT.set(sent)

    async def marking(message: Message) -> None:
        await send(message)
        if message.get("type") == "http.response.body" and not message.get("more_body", False):
            sent.set()

    try:
        await app(scope, receive, marking)
    finally:
        sent.set()
        _SENT.reset(token)


def in_detached_write() -> bool:
    """Is the running task one of LiteLLM's detached cache-write tasks? (False on a LiteLLM without
    them: its writes are then never deferred.)"""
    pending = compat.internal("pending_cache_writes")
    if pending is None:
        return False
    try:
        return asyncio.current_task() in pending
    except RuntimeError:  # no running loop
        return False


async def after_response() -> None:
    """Return once the response of this task's request has been sent, when the task is a detached
    cache write of a proxy request; at once otherwise."""
    sent = _SENT.get()
    if sent is None or sent.is_set() or not in_detached_write():
        return
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(sent.wait(), WAIT_LIMIT_S)
