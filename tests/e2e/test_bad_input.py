"""Hostile and broken input through the real proxy: a clear error or a clean bypass, never a crash,
never a poisoned entry; corrupted entries in the backend are misses, removed, never a 500."""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qs, urlsplit

import pytest
import redis.asyncio as aioredis

from litellm_cache_plugin.simulator import SimulatorThread
from tests.e2e.conftest import TEAM_A, Client, chat_body, unique
from tools.runner import ProxyProcess

pytestmark = pytest.mark.e2e


PASS_THROUGH_CALLS = (
    "await self.app(",
    "await pass_through(self.app,",
    "await app(scope, receive, marking)",
    "await self.middleware.app(",  # lazy_features' bypass hands the request on, or to the middleware
    "await self.middleware(",
)


def log_size(client: Client) -> int:
    return client.proxy.log_path.stat().st_size


def our_frames(client: Client, since: int) -> list[str]:
    """Traceback lines pointing into this package in what the proxy logged from offset ``since`` (this
    test's requests; other tests sharing the proxy fail upstream on purpose). There must be none. The
    fast path's pass-through frames (they await the rest of the app: ``self.app(`` or
    ``pass_through(self.app, ...)`` in the fast path, ``app(`` in ``after_response.pass_through``, the
    lazy-feature bypass's ``self.middleware...(``) are on every request's stack: not ours."""
    with client.proxy.log_path.open("rb") as log:
        log.seek(since)
        lines = log.read().decode(errors="replace").splitlines()
    return [
        line
        for number, line in enumerate(lines)
        if "litellm_cache_plugin/" in line
        and 'File "' in line
        and not (number + 1 < len(lines) and lines[number + 1].strip().startswith(PASS_THROUGH_CALLS))
    ]


def test_malformed_bodies_are_refused_cleanly(client: Client) -> None:
    since = log_size(client)
    for raw in [b"{not json", b"[]", b'{"model": "llama3.2"}', b'{"model": "llama3.2", "messages": "hi"}']:
        response = client.chat(TEAM_A, raw)
        # LiteLLM 1.106 itself answers 500 to a JSON array body (its auth reads body.get); the rest 4xx
        assert response.status_code >= 400, raw
        if raw != b"[]":
            assert response.status_code < 500, (raw, response.status_code)
    # the proxy and the cache still work afterwards, and none of the failures came from the plugin
    assert client.chat(TEAM_A, chat_body(unique("still alive?"), temperature=0)).status_code == 200
    assert our_frames(client, since) == []


@pytest.mark.parametrize(
    "prompt",
    [
        "x" * 300_000,
        "emoji 🧪🧪 and RTL \u202e text \u0000 nul",
        "combining e\u0301\u0301\u0301" * 50,
    ],
    # Short test ids: pytest puts the id in PYTEST_CURRENT_TEST, which the proxies it starts inherit.
    ids=["huge", "emoji_rtl_nul", "combining"],
)
def test_odd_and_huge_prompts_are_served(client: Client, prompt: str) -> None:
    body = chat_body(unique(prompt), temperature=0)
    first = client.chat(TEAM_A, body)
    assert first.status_code in (200, 400), first.text[:300]
    if first.status_code == 200:
        again = client.chat(TEAM_A, body)
        assert again.status_code == 200
        assert (
            again.json()["choices"][0]["message"]["content"]
            == first.json()["choices"][0]["message"]["content"]
        )


def test_lone_surrogates_are_served_or_refused_cleanly(client: Client) -> None:
    since = log_size(client)
    content = "a \\ud800 b " + unique("x")  # JSON escape of a lone surrogate: valid JSON, invalid UTF-16
    raw = (
        '{"model": "llama3.2", "temperature": 0, "messages": [{"role": "user", "content": "'
        + content
        + '"}]}'
    ).encode()
    first = client.chat(TEAM_A, raw)
    assert first.status_code in (200, 400), first.text[:300]
    assert client.chat(TEAM_A, raw).status_code == first.status_code
    assert our_frames(client, since) == []


def test_invalid_cache_controls_are_ignored_not_fatal(client: Client) -> None:
    since = log_size(client)
    body = chat_body(unique("controls"), temperature=0)
    for extra, headers in [
        ({"cache": {"ttl": "banana", "s-maxage": -1}}, {}),
        ({"cache": {"no-cache": "yes"}}, {"Cache-Control": "max-age=abc, no-such-directive"}),
        ({}, {"Cache-Control": "max-age=99999999999999999999999"}),
    ]:
        response = client.chat(TEAM_A, {**body, **extra}, headers=headers)
        assert response.status_code == 200, response.text[:300]
    # a non-object `cache` field: LiteLLM's own handler refuses it with a 400 (before the plugin)
    assert client.chat(TEAM_A, {**body, "cache": "no-cache please"}).status_code == 400
    assert our_frames(client, since) == []


async def _corrupt(url: str, key: str) -> bytes | None:
    parts = urlsplit(url)
    prefix = parse_qs(parts.query).get("prefix", [""])[0]
    connection = aioredis.Redis(
        host=parts.hostname or "127.0.0.1", port=parts.port or 6379, db=int(parts.path[1:] or 0)
    )
    try:
        full = prefix + key
        original = await connection.get(full)
        assert original is not None
        await connection.set(full, original[:-7] + b"garbage", keepttl=True)
        return original
    finally:
        await connection.aclose()


def test_corrupted_entry_is_a_miss_and_is_replaced(
    proxies: dict[str, ProxyProcess], simulator: SimulatorThread
) -> None:
    # Redis only: the test writes garbage into the backend from outside (memory:// lives in the proxy;
    # its decoding of damaged envelopes is covered by the unit tests of the envelope).
    client = Client(proxies["redis"], simulator)
    backend = client.proxy.config["cache_plugin"]["backend"]
    body = chat_body(unique("corrupt me"), temperature=0)
    stores = client.stores()
    client.chat(TEAM_A, body)
    client.wait_stored(stores)
    hit = client.chat(TEAM_A, body)
    assert hit.headers["x-cache"] == "HIT"
    key = hit.headers["x-litellm-cache-key"]
    asyncio.run(_corrupt(backend, key))
    damaged = client.chat(TEAM_A, body)
    assert damaged.status_code == 200
    assert damaged.headers["x-cache"] == "MISS"
    client.wait_stored(stores + 1)
    assert client.chat(TEAM_A, body).headers["x-cache"] == "HIT"
