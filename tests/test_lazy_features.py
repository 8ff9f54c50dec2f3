"""The bypass of LiteLLM's lazy-feature middleware on the fast path's routes: which paths are idle (pure),
and, with LiteLLM's own middleware class in a chain, that an idle path skips it while every other
request, and any set-up the bypass does not know, still goes through it."""

from __future__ import annotations

from typing import Any

import pytest

from litellm_cache_plugin.integrations.fast_path.wire import ROUTES
from litellm_cache_plugin.integrations.lazy_features import (
    IdleLazyFeatureBypass,
    bypass_idle_lazy_features,
    idle_paths,
)

lazy = pytest.importorskip("litellm.proxy._lazy_features")


class CountingFeature:
    """A feature that never matches and counts how often the middleware asks."""

    def __init__(self, module_path: str = "tests.never_loaded") -> None:
        self.module_path = module_path
        self.asked: list[str] = []

    def matches(self, path: str) -> bool:
        self.asked.append(path)
        return False


class Prefixed:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def matches(self, path: str) -> bool:
        return path.startswith(self.prefix)


class Outer:
    """A middleware above the lazy one (the chain is a series of ``.app`` links)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


def test_idle_paths_are_those_no_feature_matches() -> None:
    paths = ["/v1/chat/completions", "/chat/completions", "/guardrails/list"]
    assert idle_paths(paths, [Prefixed("/guardrails"), Prefixed("/policies")]) == {
        "/v1/chat/completions",
        "/chat/completions",
    }
    assert idle_paths(paths, [Prefixed("/")]) == set()
    assert idle_paths(paths, []) == set(paths)


def test_a_feature_that_cannot_be_asked_leaves_no_path_idle() -> None:
    assert idle_paths(["/v1/chat/completions"], [Prefixed("/guardrails"), object()]) == set()


def test_no_feature_of_this_litellm_matches_a_fast_path_route() -> None:
    # What makes the bypass apply on the LiteLLM releases the plugin is tested with.
    assert idle_paths(ROUTES, lazy.LAZY_FEATURES) == set(ROUTES)


def _chain(feature: CountingFeature, inner_calls: list[str]) -> tuple[Outer, Any]:
    from fastapi import FastAPI

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        inner_calls.append(scope["path"])

    middleware = lazy.LazyFeatureMiddleware(inner, fastapi_app=FastAPI(), features=(feature,))
    return Outer(middleware), middleware


async def _call(app: Any, path: str, root_path: str = "") -> None:
    async def receive() -> Any:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        return None

    await app({"type": "http", "method": "POST", "path": path, "root_path": root_path}, receive, send)


async def test_an_idle_path_skips_the_middleware_and_every_other_request_goes_through_it() -> None:
    feature, inner_calls = CountingFeature(), []
    outer, middleware = _chain(feature, inner_calls)
    await _call(outer, "/v1/chat/completions")
    assert feature.asked == ["/v1/chat/completions"]  # before: the middleware tests every request

    assert bypass_idle_lazy_features(outer, ROUTES)
    assert isinstance(outer.app, IdleLazyFeatureBypass)
    assert outer.app.app is middleware.app
    feature.asked.clear()
    for path in ROUTES:
        await _call(outer, path)
    assert feature.asked == []
    await _call(outer, "/guardrails/list")
    await _call(outer, "/v1/chat/completions", root_path="/api")  # the middleware strips a root path
    assert feature.asked == ["/guardrails/list", "/v1/chat/completions"]
    assert inner_calls == [*(["/v1/chat/completions"]), *ROUTES, "/guardrails/list", "/v1/chat/completions"]


async def test_nothing_changes_where_the_bypass_cannot_be_sure(monkeypatch: pytest.MonkeyPatch) -> None:
    # No lazy-feature middleware in the chain.
    async def inner(scope: Any, receive: Any, send: Any) -> None:
        return None

    plain = Outer(Outer(inner))
    assert not bypass_idle_lazy_features(plain, ROUTES)
    assert isinstance(plain.app, Outer)

    # A feature matching every route: nothing idle.
    everything = _chain(CountingFeature(), [])[0]
    everything.app._features = (Prefixed("/"),)
    assert not bypass_idle_lazy_features(everything, ROUTES)
    assert isinstance(everything.app, lazy.LazyFeatureMiddleware)

    # A server root path: the middleware matches stripped paths, which the bypass does not compute.
    monkeypatch.setenv("SERVER_ROOT_PATH", "/api")
    rooted = _chain(CountingFeature(), [])[0]
    assert not bypass_idle_lazy_features(rooted, ROUTES)
    monkeypatch.delenv("SERVER_ROOT_PATH")

    # The middleware at the top of the stack (nothing above to relink), or already bypassed.
    top = _chain(CountingFeature(), [])[1]
    assert not bypass_idle_lazy_features(top, ROUTES)
    once = _chain(CountingFeature(), [])[0]
    assert bypass_idle_lazy_features(once, ROUTES)
    assert not bypass_idle_lazy_features(once, ROUTES)


def test_an_adjustment_that_fails_leaves_the_stack_as_built(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from litellm_cache_plugin.integrations import asgi, compat

    class Broken:
        module_path = "tests.broken"

        def matches(self) -> bool:  # not the signature the bypass calls: it raises TypeError
            return False

    outer, middleware = _chain(CountingFeature(), [])
    middleware._features = (Broken(),)

    class App:
        middleware_stack: Any = outer

    app = App()
    monkeypatch.setattr(compat, "proxy_app", lambda: app)
    state = asgi.install_in_proxy_app(
        "_test_marker", "test", lambda inner, inside: inner,
        lambda stack: bypass_idle_lazy_features(stack, ROUTES),
    )  # fmt: skip
    assert state == "installed"
    assert app.middleware_stack is outer
    assert outer.app is middleware  # not relinked
    assert "test: middleware stack left as built" in caplog.text
