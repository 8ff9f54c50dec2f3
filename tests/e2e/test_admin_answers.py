"""Admin answers that tell the truth, through a real proxy on a Redis database shared with another
application: the stats count the cache's own keys and say what each figure covers, single-flight
events are counted under the model group, ``DELETE /v1/cache/<unknown group>`` is a 404, and what
LiteLLM's SDK, as a client of the proxy, sees of a hit.

The proxy runs with the default store prefix (none) and its own namespace, and without telemetry:
nothing but these tests reads its stats, so the first stats call makes its first key count.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import redis

from litellm_cache_plugin.simulator import SimulatorThread
from tests.e2e.conftest import TEAM_A, Client, chat_body, unique
from tools.runner import DEMO_AUTH_MODULE, ProxyProcess, proxy_config, running

pytestmark = pytest.mark.e2e

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

NAMESPACE = f"lcp-admin-{uuid.uuid4().hex[:10]}"
OTHER_APP = f"other-app-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def database(redis_url: str) -> Iterator[redis.Redis]:
    """The Redis database the proxy uses, with 200 keys of another application in it."""
    client = redis.Redis.from_url(urlsplit(redis_url)._replace(query="").geturl())
    client.mset({f"{OTHER_APP}:session:{i}": b"not the cache's" for i in range(200)})
    try:
        yield client
    finally:
        for pattern in (f"{OTHER_APP}:*", f"{NAMESPACE}:*"):
            keys = list(client.scan_iter(match=pattern, count=1000))
            for start in range(0, len(keys), 500):
                client.delete(*keys[start : start + 500])
        client.close()


@pytest.fixture(scope="module")
def admin_proxy(
    simulator: SimulatorThread,
    redis_url: str,
    database: redis.Redis,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ProxyProcess]:
    plugin = {
        "backend": urlsplit(redis_url)._replace(query="").geturl(),  # no prefix: the default
        "namespace": NAMESPACE,
        "ttl": 600,
        "telemetry": {"enabled": False},
        # A model group the plugin has settings for but the router does not serve (yet).
        "models": {"docs-bot": {"ttl": 60}},
    }
    proxy = ProxyProcess(
        proxy_config(simulator.url, plugin),
        tmp_path_factory.mktemp("admin-proxy"),
        extra_files={"demo_auth.py": DEMO_AUTH_MODULE},
        name="proxy-admin",
    )
    with running([proxy], timeout=180):
        yield proxy


@pytest.fixture
def admin_client(admin_proxy: ProxyProcess, simulator: SimulatorThread) -> Iterator[Client]:
    c = Client(admin_proxy, simulator)
    yield c
    c.http.close()


def _admin(client: Client) -> dict[str, str]:
    return {"Authorization": f"Bearer {client.proxy.master_key}"}


# Runs first in this module (pytest keeps file order): the first stats call makes the first count.
def test_redis_stats_count_the_caches_own_keys_and_say_what_each_figure_covers(
    admin_client: Client, database: redis.Redis
) -> None:
    for i in range(3):
        response = admin_client.chat(TEAM_A, chat_body(unique(f"Count me {i}."), temperature=0))
        assert response.status_code == 200 and response.headers["x-cache"] == "MISS"
    # Stored in the background; the single-flight locks go right after. Waiting for 3 keys is not
    # enough: two entries and the third request's lock (not yet released, its entry not yet written)
    # are 3 keys too (CI at 672c604 counted 4 right after). Wait until no lock is left.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        ours = sorted(database.scan_iter(match=f"{NAMESPACE}:*", count=1000))
        if len(ours) == 3 and not any(b":lock:" in key for key in ours):
            break
        time.sleep(0.05)
    assert len(ours) == 3, ours  # the keys, to tell an entry from a lock left behind
    assert not any(b":lock:" in key for key in ours), ours

    stats = admin_client.http.get("/v1/cache/stats", headers=_admin(admin_client))
    assert stats.status_code == 200, stats.text
    backend = stats.json()["backend"]
    assert backend["backend"] == "redis"
    # The cache's own keys: not the database's 200+ keys of another application.
    assert backend["entries"] == 3
    assert database.dbsize() >= 203
    assert backend["coverage"] == {
        "entries": "cache",
        "bytes": "server",
        "evictions": "server",
        "expirations": "server",
    }


def test_concurrent_identical_requests_are_counted_in_their_own_group(admin_client: Client) -> None:
    body = chat_body(unique("Everyone asks this at once."), temperature=0)

    def exact_rows() -> dict[str, Any]:
        stats = admin_client.http.get("/v1/cache/stats", headers=_admin(admin_client))
        return stats.json()["layers"].get("exact", {})  # type: ignore[no-any-return]

    before = exact_rows().get("llama3.2", {})

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=admin_client.proxy.url, timeout=60) as http:
            headers = {"Authorization": f"Bearer {TEAM_A}"}
            return await asyncio.gather(
                *(http.post("/v1/chat/completions", json=body, headers=headers) for _ in range(6))
            )

    upstream_before = admin_client.upstream_calls()
    responses = asyncio.run(burst())
    assert all(r.status_code == 200 for r in responses)
    outcomes = sorted(r.headers["x-cache"] for r in responses)
    assert admin_client.upstream_calls() - upstream_before == outcomes.count("MISS")

    # Every count below is made before the request it counts is answered.
    rows = exact_rows()
    assert "-" not in rows  # no row for a made-up model group
    row = rows["llama3.2"]

    def delta(name: str) -> int:
        return int(row.get(name, 0)) - int(before.get(name, 0))

    # Each request counted once, in its group: a miss, a coalesced wait, or (late) a plain hit.
    assert delta("miss") + delta("coalesced") + delta("hit") == 6
    assert delta("miss") == outcomes.count("MISS")
    assert delta("coalesced") == delta("flight_waited")  # every waiter got the leader's answer


def test_delete_of_an_unknown_model_group_is_a_404_listing_the_known_groups(admin_client: Client) -> None:
    for name in ("llama3.3", "ollama/llama3.2", "llama3.2/extra"):
        response = admin_client.http.delete(f"/v1/cache/{name}", headers=_admin(admin_client))
        assert response.status_code == 404, (name, response.text)
        detail = response.json()["detail"]
        assert detail["error"] == f"unknown model group {name!r}"
        assert detail["known_groups"] == ["docs-bot", "llama3.2", "llama3.2-text", "nomic-embed-text"]
    # Only an admin learns which groups exist: anyone else is refused first.
    refused = admin_client.http.delete("/v1/cache/llama3.3", headers={"Authorization": f"Bearer {TEAM_A}"})
    assert refused.status_code in (401, 403)


def test_delete_of_a_known_model_group_still_invalidates_it(admin_client: Client) -> None:
    body = chat_body(unique("Forget me after the delete."), temperature=0)
    stored_before = admin_client.stores()
    assert admin_client.chat(TEAM_A, body).headers["x-cache"] == "MISS"
    admin_client.wait_stored(stored_before)
    assert admin_client.chat(TEAM_A, body).headers["x-cache"] == "HIT"
    done = admin_client.http.delete("/v1/cache/llama3.2", headers=_admin(admin_client))
    assert done.status_code == 200, done.text
    assert done.json()["invalidated"] == "llama3.2"
    assert admin_client.chat(TEAM_A, body).headers["x-cache"] == "MISS"
    # A group known from cache_plugin.models only is known too.
    settings_only = admin_client.http.delete("/v1/cache/docs-bot", headers=_admin(admin_client))
    assert settings_only.status_code == 200, settings_only.text


def test_litellm_sdk_as_a_client_sees_the_hit_in_headers_and_body_but_not_in_cache_hit(
    admin_client: Client,
) -> None:
    """``_hidden_params["cache_hit"]`` is LiteLLM's own cache's flag: the SDK sets it only when its
    own cache answered (``caching/caching_handler.py``), never from a response header or body. What
    the proxy can give it is headers (``additional_headers``, ``llm_provider-`` prefixed) and, on
    non-streamed hits, the body marker (an attribute of the response)."""
    import litellm

    messages = [{"role": "user", "content": unique("Asked through LiteLLM's SDK.")}]

    async def ask(stream: bool = False) -> Any:
        return await litellm.acompletion(
            model="litellm_proxy/llama3.2",
            api_base=admin_client.proxy.url,
            api_key=TEAM_A,
            messages=messages,
            temperature=0,
            stream=stream,
        )

    async def streamed() -> tuple[Any, str]:
        response = await ask(stream=True)
        text = ""
        async for chunk in response:
            text += chunk.choices[0].delta.content or ""
        return response, text

    stored_before = admin_client.stores()
    miss = asyncio.run(ask())
    assert miss._hidden_params["additional_headers"]["llm_provider-x-cache"] == "MISS"
    admin_client.wait_stored(stored_before)

    hit = asyncio.run(ask())
    headers = hit._hidden_params["additional_headers"]
    assert headers["llm_provider-x-cache"] == "HIT"
    assert headers["llm_provider-x-cache-layer"] == "exact"
    assert getattr(hit, "cached", None) is True  # the body marker
    assert hit.choices[0].message.content == miss.choices[0].message.content
    assert hit._hidden_params.get("cache_hit") is None  # see the docstring

    stream, text = asyncio.run(streamed())
    assert text == miss.choices[0].message.content
    assert stream._hidden_params["additional_headers"]["llm_provider-x-cache"] == "HIT"
    assert stream._hidden_params.get("cache_hit") is None
