"""A miss's answer is written after its response is sent (``integrations/after_response.py``).

Driven with LiteLLM's own detached write (``create_cache_write_task``) and the carrier's real write,
inside ``pass_through`` (what the proxy's fast-path handler runs the pipeline in).
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import pytest
from litellm.caching.caching_handler import create_cache_write_task

from litellm_cache_plugin.integrations import after_response as ar
from litellm_cache_plugin.integrations.litellm import CachePlugin
from litellm_cache_plugin.settings import settings_from_mapping
from tests.test_carrier_context import ANSWER, call_kwargs


@pytest.fixture
def plugin() -> CachePlugin:
    return CachePlugin(
        settings_from_mapping({"backend": "memory://", "telemetry": {"enabled": False}}, environ={}),
        proxy_mode=True,
    )


async def stored(plugin: CachePlugin, kwargs: dict[str, Any]) -> bool:
    key = plugin.carrier.get_cache_key(**kwargs)
    return await plugin.engine.store.get(key) is not None


async def receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


def pipeline(plugin: CachePlugin, kwargs: dict[str, Any], events: list[str], *, inline: bool = False) -> Any:
    """A stand-in for LiteLLM's pipeline under the proxy: the upstream answer is handed to the cache
    (LiteLLM's detached write, or awaited inline), then the response goes out in two messages with
    waits in between (the proxy's hooks), as the real pipeline's do."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if inline:
            await plugin.carrier.async_add_cache(json.dumps(ANSWER), **kwargs)
        else:
            create_cache_write_task(lambda: plugin.carrier.async_add_cache(json.dumps(ANSWER), **kwargs))
        for _ in range(3):
            await asyncio.sleep(0)  # the pipeline's post-call hooks and logging yield to the loop
        events.append(f"stored before the response: {await stored(plugin, kwargs)}")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await asyncio.sleep(0)
        await send({"type": "http.response.body", "body": b"{}", "more_body": False})

    return app


async def test_a_detached_write_waits_until_the_response_is_sent(plugin: CachePlugin) -> None:
    kwargs = await call_kwargs(plugin, "team-a", "call-1")
    events: list[str] = []

    async def send(message: Any) -> None:
        events.append(message["type"])

    await ar.pass_through(pipeline(plugin, kwargs, events), {"type": "http"}, receive, send)
    assert events == ["stored before the response: False", "http.response.start", "http.response.body"]
    for _ in range(20):
        if await stored(plugin, kwargs):
            break
        await asyncio.sleep(0)
    assert await stored(plugin, kwargs)


async def test_without_the_proxy_handler_the_write_is_not_deferred(plugin: CachePlugin) -> None:
    # SDK and Router use (no pass_through): as before, the write runs at the pipeline's next wait.
    kwargs = await call_kwargs(plugin, "team-a", "call-1")
    events: list[str] = []

    async def send(message: Any) -> None:
        events.append(message["type"])

    await pipeline(plugin, kwargs, events)({"type": "http"}, receive, send)
    assert events[0] == "stored before the response: True"


async def test_a_write_awaited_in_the_requests_own_task_never_waits_for_it(plugin: CachePlugin) -> None:
    # Not one of LiteLLM's detached write tasks: waiting would wait for the response it is part of.
    kwargs = await call_kwargs(plugin, "team-a", "call-1")
    events: list[str] = []

    async def send(message: Any) -> None:
        events.append(message["type"])

    await asyncio.wait_for(
        ar.pass_through(pipeline(plugin, kwargs, events, inline=True), {"type": "http"}, receive, send), 5
    )
    assert events[0] == "stored before the response: True"


async def test_a_request_that_fails_releases_its_writes(plugin: CachePlugin) -> None:
    kwargs = await call_kwargs(plugin, "team-a", "call-1")

    async def failing(scope: Any, receive: Any, send: Any) -> None:
        create_cache_write_task(lambda: plugin.carrier.async_add_cache(json.dumps(ANSWER), **kwargs))
        await asyncio.sleep(0)
        raise RuntimeError("the pipeline failed before answering")

    async def send(message: Any) -> None:
        raise AssertionError("nothing is sent")

    with pytest.raises(RuntimeError):
        await ar.pass_through(failing, {"type": "http"}, receive, send)
    for _ in range(20):
        if await stored(plugin, kwargs):
            break
        await asyncio.sleep(0)
    assert await stored(plugin, kwargs)  # the write went ahead when the request ended


async def test_a_write_waits_at_most_the_limit(plugin: CachePlugin, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ar, "WAIT_LIMIT_S", 0.05)
    kwargs = await call_kwargs(plugin, "team-a", "call-1")
    release = asyncio.Event()

    async def hanging(scope: Any, receive: Any, send: Any) -> None:
        create_cache_write_task(lambda: plugin.carrier.async_add_cache(json.dumps(ANSWER), **kwargs))
        await release.wait()  # a response that never goes out (a stream left open)

    async def send(message: Any) -> None:
        pass

    request = asyncio.create_task(ar.pass_through(hanging, {"type": "http"}, receive, send))
    for _ in range(200):
        if await stored(plugin, kwargs):
            break
        await asyncio.sleep(0.005)
    assert await stored(plugin, kwargs)
    release.set()
    await request


async def test_a_leader_with_waiters_writes_at_once(plugin: CachePlugin) -> None:
    # Requests waiting on the leader's single flight are woken by its write: it is not deferred.
    leader = await call_kwargs(plugin, "team-a", "call-1")
    key = plugin.carrier.get_cache_key(**leader)
    assert await plugin.carrier.async_get_cache(cache_key=key, **leader) is None  # the leader's miss
    follower = await call_kwargs(plugin, "team-a", "call-2")
    waiting = asyncio.create_task(
        plugin.carrier.async_get_cache(cache_key=plugin.carrier.get_cache_key(**follower), **follower)
    )
    await asyncio.sleep(0)
    assert plugin.region.awaited("call-1")
    events: list[str] = []

    async def send(message: Any) -> None:
        events.append(message["type"])

    await ar.pass_through(pipeline(plugin, leader, events), {"type": "http"}, receive, send)
    assert events == ["stored before the response: True", "http.response.start", "http.response.body"]
    served = await waiting
    assert served is not None and served["choices"][0]["message"]["content"] == "42"


async def test_without_waiters_the_leader_defers(plugin: CachePlugin) -> None:
    leader = await call_kwargs(plugin, "team-a", "call-1")
    key = plugin.carrier.get_cache_key(**leader)
    assert await plugin.carrier.async_get_cache(cache_key=key, **leader) is None
    assert not plugin.region.awaited("call-1")
    events: list[str] = []

    async def send(message: Any) -> None:
        events.append(message["type"])

    await ar.pass_through(pipeline(plugin, leader, events), {"type": "http"}, receive, send)
    assert events[0] == "stored before the response: False"
