"""ASGI types and installation shared by the handlers the plugin puts in the proxy app (the fast path,
the edge layer's 304 wrapper)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from typing import Any, Literal

from litellm_cache_plugin.integrations import compat

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


log = logging.getLogger("litellm_cache_plugin")

# Builds the handler to install around ``app``; the flag says whether it sits inside Starlette's
# ExceptionMiddleware (then exceptions it raises are rendered by the proxy's own handlers).
Wrapper = Callable[[ASGIApp, bool], ASGIApp]


def install_in_proxy_app(
    marker: str, name: str, wrap: Wrapper, adjust: Callable[[Any], object] | None = None
) -> Literal["installed", "deferred"] | None:
    """Put ``wrap(...)`` just inside the LiteLLM proxy app's ExceptionMiddleware (else around the whole
    stack), once per app (``marker`` is set on it), then call ``adjust`` with the stack (it may relink
    the middleware above). Before Starlette has built the stack (it does on the first ASGI call) the
    builder is wrapped instead. None: no proxy app, or already installed."""
    app = compat.proxy_app()
    if app is None or getattr(app, marker, False):
        return None
    setattr(app, marker, True)

    def installed(stack: Any) -> Any:
        stack = _wrap_inside_exceptions(stack, name, wrap)
        if adjust is not None:
            try:
                adjust(stack)
            except Exception:
                # An adjustment only saves work: whatever it meets, the stack stays as built.
                log.warning("litellm_cache_plugin %s: middleware stack left as built", name, exc_info=True)
        return stack

    if app.middleware_stack is not None:
        app.middleware_stack = installed(app.middleware_stack)
        return "installed"
    build = app.build_middleware_stack

    def build_with_wrapper() -> Any:
        return installed(build())

    app.build_middleware_stack = build_with_wrapper
    return "deferred"


def middleware_links(stack: Any) -> Iterator[tuple[Any, Any]]:
    """``(parent, node)`` down a built middleware stack's ``.app`` links, outermost first (``parent``
    None for the top). At most 64 links: a chain is short, and a cycle must never loop forever."""
    parent: Any = None
    node = stack
    for _ in range(64):
        if node is None:
            return
        yield parent, node
        parent, node = node, getattr(node, "app", None)


def _wrap_inside_exceptions(stack: Any, name: str, wrap: Wrapper) -> Any:
    from starlette.middleware.exceptions import ExceptionMiddleware

    for _, node in middleware_links(stack):
        if isinstance(node, ExceptionMiddleware):
            node.app = wrap(node.app, True)
            return stack
    log.warning("litellm_cache_plugin %s: no ExceptionMiddleware found, wrapping the whole app", name)
    return wrap(stack, False)
