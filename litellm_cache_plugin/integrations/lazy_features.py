"""Let the fast path's routes skip LiteLLM's lazy-feature middleware where it provably does nothing.

LiteLLM (1.106 on) puts ``LazyFeatureMiddleware`` in the proxy's middleware stack: until every one of
its optional features has loaded, which in practice is never, it tests each request's path against
every feature's prefixes and suffixes, and imports a feature on the first request that matches. For
``/v1/chat/completions`` and the other routes the fast path serves, no feature matches, so that test
changes nothing; but it runs on every request, and it was about two thirds of the cost of LiteLLM's
whole middleware stack on a hit (in-process, ``benchmarks/middleware_stack.py``).

The bypass replaces the middleware, in the built stack, by a dispatcher that hands a request straight
to the middleware's inner app when its path is one of those routes, LiteLLM's own ``matches`` said at
install time that no feature matches it, and no root path is in play (the middleware would strip one
before matching). Every other request goes through the middleware as before. The middleware's only
effect, loading a feature, therefore happens exactly as without the bypass. Misses and LiteLLM's own
pipeline on these routes save the same work. The dispatcher is put in place only once everything it
needs was read; an error on the way leaves the stack as built (``asgi.install_in_proxy_app``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from litellm_cache_plugin.integrations.asgi import Receive, Scope, Send, middleware_links

log = logging.getLogger("litellm_cache_plugin")

_MIDDLEWARE = ("litellm.proxy._lazy_features", "LazyFeatureMiddleware")


def idle_paths(paths: Iterable[str], features: Iterable[Any]) -> frozenset[str]:
    """The ``paths`` no feature's ``matches`` accepts (None of them when a feature cannot be asked: an
    unknown shape is never bypassed)."""
    kept = list(features)
    if not all(callable(getattr(feature, "matches", None)) for feature in kept):
        return frozenset()
    return frozenset(path for path in paths if not any(feature.matches(path) for feature in kept))


class IdleLazyFeatureBypass:
    """Stands in for a ``LazyFeatureMiddleware`` in the chain (see the module docstring)."""

    def __init__(self, middleware: Any, idle: frozenset[str]) -> None:
        self.middleware = middleware
        self.idle = idle

    @property
    def app(self) -> Any:
        # The chain goes on below the middleware (read each time: an installer may relink it).
        return self.middleware.app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("path") in self.idle and not scope.get("root_path"):
            await self.middleware.app(scope, receive, send)
        else:
            await self.middleware(scope, receive, send)


def bypass_idle_lazy_features(stack: Any, paths: Iterable[str]) -> bool:
    """Put an :class:`IdleLazyFeatureBypass` in place of LiteLLM's lazy-feature middleware in a built
    middleware ``stack`` (a chain of ``.app`` links) for those of ``paths`` it would do nothing for.
    False, changing nothing, when there is no such middleware, its shape is not the one read from
    LiteLLM's source, a root path is configured, or no path is idle."""
    found = next(
        (
            (parent, node)
            for parent, node in middleware_links(stack)
            if isinstance(node, IdleLazyFeatureBypass)
            or (type(node).__module__, type(node).__qualname__) == _MIDDLEWARE
        ),
        None,
    )
    if found is None or isinstance(found[1], IdleLazyFeatureBypass) or found[0] is None:
        return False  # no such middleware, bypassed already, or nothing above it to relink
    parent, node = found
    features = getattr(node, "_features", None)
    root_path = getattr(node, "_root_path", None)
    if not isinstance(features, tuple) or root_path != "" or getattr(node, "app", None) is None:
        return False
    idle = idle_paths(paths, features)
    if not idle:
        return False
    parent.app = IdleLazyFeatureBypass(node, idle)
    log.debug("litellm_cache_plugin: lazy-feature middleware bypassed for %s", sorted(idle))
    return True


__all__ = ["IdleLazyFeatureBypass", "bypass_idle_lazy_features", "idle_paths"]
