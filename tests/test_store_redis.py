"""RedisStore against a real server (see the ``redis_url`` fixture), plus URL/option handling."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator
from urllib.parse import parse_qs, urlsplit

import pytest
import redis.asyncio as aioredis
from redis.asyncio.connection import SSLConnection

from litellm_cache_plugin.store.base import StoreError
from litellm_cache_plugin.store.redis import RedisStore
from litellm_cache_plugin.testing import AdvanceTime, StoreConformance


def unique_prefix(redis_url: str) -> str:
    """The run's prefix plus one unique to the caller, so tests never see each other's keys."""
    return parse_qs(urlsplit(redis_url).query)["prefix"][0] + uuid.uuid4().hex[:12] + ":"


# The conformance suite checks what the store does, not how fast a loaded CI host opens sockets:
# 100 concurrent INCRs open up to 50 connections at once, and one of them once took longer than the
# 1 s default to connect on a busy 2-core host (the INCR count was never wrong). Deadlines have their
# own tests below and in test_store_deadline.py.
CONFORMANCE_CONNECT_TIMEOUT_S = 5.0


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[RedisStore]:
    store = RedisStore.from_url(
        redis_url, prefix=unique_prefix(redis_url), socket_connect_timeout=CONFORMANCE_CONNECT_TIMEOUT_S
    )
    yield store
    await store.close()


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """A plain client on the same database, to look behind the store's back."""
    client = aioredis.Redis.from_url(urlsplit(redis_url)._replace(query="").geturl())
    yield client
    await client.aclose()


class TestRedisConformance(StoreConformance):
    # ``store`` is the module fixture above: a unique prefix per test on the real server.

    @pytest.fixture
    def advance_time(self) -> AdvanceTime:
        return asyncio.sleep


# --- keys and TTLs on the server ------------------------------------------------------------------


async def test_every_key_carries_the_prefix(store: RedisStore, raw: aioredis.Redis) -> None:
    await store.set("v", b"1", ttl=60)
    await store.set_many([("m", b"2")], ttl=60)
    await store.incr("c")
    await store.acquire_lock("l", "owner", ttl=60)
    keys = sorted(k.decode() if isinstance(k, bytes) else k for k in await raw.keys(store.prefix + "*"))
    assert keys == [store.prefix + k for k in ("c", "l", "m", "v")]
    assert await raw.exists("v", "m", "c", "l") == 0
    assert await raw.get(store.prefix + "l") == b"owner"


async def test_ttl_is_sent_in_milliseconds_rounded_up(store: RedisStore, raw: aioredis.Redis) -> None:
    await store.set("a", b"v", ttl=1.0004)
    await store.set_many([("b", b"v")], ttl=2.5)
    await store.acquire_lock("l", "o", ttl=0.0001)  # rounds up to the 1 ms minimum, never to 0
    assert 900 < await raw.pttl(store.prefix + "a") <= 1001
    assert 2400 < await raw.pttl(store.prefix + "b") <= 2500
    assert await raw.pttl(store.prefix + "c") == -2
    await store.incr("c")
    assert await raw.pttl(store.prefix + "c") == -1  # counters never expire


async def test_release_reloads_a_flushed_script(store: RedisStore, raw: aioredis.Redis) -> None:
    assert await store.acquire_lock("l", "o", ttl=30)
    await raw.script_flush()  # as after a restart or failover: EVALSHA answers NOSCRIPT
    assert await store.release_lock("l", "o") is True
    assert await store.acquire_lock("l", "o", ttl=30)
    assert await store.release_lock("l", "o") is True  # and again with the script cached


async def test_non_integer_counter_is_a_store_error(store: RedisStore) -> None:
    await store.set("c", b"not a number", ttl=60)
    with pytest.raises(StoreError):
        await store.get_counters(["c"])
    with pytest.raises(StoreError):
        await store.incr("c")


async def test_stats_are_server_wide(store: RedisStore, redis_url: str) -> None:
    stats = await store.stats()
    assert stats.backend == "redis"
    assert stats.entries is None  # a prefix: counting our keys would need a SCAN
    assert isinstance(stats.bytes, int) and stats.bytes > 0
    assert isinstance(stats.evictions, int)
    assert isinstance(stats.expirations, int)
    whole_db = RedisStore.from_url(redis_url, prefix="")
    try:
        assert isinstance((await whole_db.stats()).entries, int)  # DBSIZE
    finally:
        await whole_db.close()


async def test_stats_say_what_each_figure_covers(store: RedisStore, redis_url: str) -> None:
    stats = await store.stats()
    assert stats.coverage == {"bytes": "server", "evictions": "server", "expirations": "server"}
    whole_db = RedisStore.from_url(redis_url, prefix="")
    try:
        assert (await whole_db.stats()).coverage["entries"] == "database"  # DBSIZE: every key of the db
    finally:
        await whole_db.close()


async def test_count_keys_counts_only_the_caches_keys(
    store: RedisStore, raw: aioredis.Redis, redis_url: str
) -> None:
    # The cache's keys: values, a counter and a lock under "<prefix>lcp:"; under the same store
    # prefix but outside the namespace, one key that is not the cache's.
    await store.set_many([(f"lcp:x:{i}", b"v") for i in range(25)], ttl=60)
    await store.incr("lcp:gen:model:m")
    await store.acquire_lock("lcp:lock:fill:k", "o", ttl=60)
    await store.set("elsewhere:1", b"v", ttl=60)
    # Another application in the same database: its own keys, some that would match an unescaped
    # glob of our prefix.
    other = f"other-app-{uuid.uuid4().hex}:"
    await raw.mset({f"{other}{i}": b"x" for i in range(40)})
    try:
        assert await store.count_keys("lcp:", max_keys=10**9) == 27
        assert await store.count_keys("", max_keys=10**9) == 28  # everything under the store prefix
        assert await store.count_keys("lcp:x:", max_keys=10**9) == 25
        assert await store.count_keys("nothing-here:", max_keys=10**9) == 0
        # Bounded: a database larger than max_keys is not scanned at all.
        assert await store.count_keys("lcp:", max_keys=1) is None
    finally:
        await raw.delete(*[f"{other}{i}" for i in range(40)])


async def test_count_keys_takes_glob_characters_in_the_prefix_literally(
    raw: aioredis.Redis, redis_url: str
) -> None:
    base = unique_prefix(redis_url)
    store = RedisStore.from_url(redis_url, prefix=base + "a*[b]?\\:")
    try:
        await store.set("lcp:1", b"v", ttl=60)
        # Keys a glob "a*[b]?\\:" would match if the prefix were not escaped.
        await raw.set(base + "aXXbZ:lcp:1", b"v", ex=60)
        await raw.set(base + "a*b!:lcp:1", b"v", ex=60)
        assert await store.count_keys("lcp:", max_keys=10**9) == 1
    finally:
        await store.close()


async def test_unreachable_server_raises_store_error() -> None:
    with socket.socket() as sock:  # a port on this machine that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    store = RedisStore.from_url(f"redis://127.0.0.1:{port}/0", socket_connect_timeout=0.5)
    try:
        for call in (store.get("k"), store.set("k", b"v", 1), store.ping(), store.stats()):
            with pytest.raises(StoreError):
                await call
    finally:
        await store.close()


async def test_decoding_client_is_refused() -> None:
    client = aioredis.Redis(decode_responses=True)
    with pytest.raises(ValueError, match="decode_responses"):
        RedisStore(client)
    await client.aclose()


async def test_wraps_a_given_client(redis_url: str) -> None:
    client = aioredis.Redis.from_url(urlsplit(redis_url)._replace(query="").geturl())
    store = RedisStore(client, prefix=unique_prefix(redis_url))
    await store.set("k", b"v", ttl=5)
    assert await store.get("k") == b"v"
    await store.close()
    await store.close()


# --- from_url ----------------------------------------------------------------------------------------


async def test_from_url_options() -> None:
    store = RedisStore.from_url(
        "redis://user:secret@cache.invalid:6380/3?prefix=app:&max_connections=7&socket_timeout=0.25",
        socket_connect_timeout=0.5,
        retries=0,
    )
    pool = store.client.connection_pool
    assert isinstance(pool, aioredis.BlockingConnectionPool)
    assert store.prefix == "app:"
    assert pool.max_connections == 7
    kwargs = pool.connection_kwargs
    assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("cache.invalid", 6380, 3)
    assert (kwargs["username"], kwargs["password"]) == ("user", "secret")
    assert (kwargs["socket_timeout"], kwargs["socket_connect_timeout"]) == (0.25, 0.5)
    assert pool.connection_class is not SSLConnection
    await store.close()


async def test_from_url_defaults_and_keyword_precedence() -> None:
    store = RedisStore.from_url("redis://cache.invalid?prefix=url:", prefix="kw:")
    pool = store.client.connection_pool
    assert store.prefix == "kw:"
    assert pool.max_connections == 50
    assert pool.connection_kwargs["socket_timeout"] == pool.connection_kwargs["socket_connect_timeout"] == 1.0
    await store.close()


async def test_rediss_builds_an_ssl_client_without_connecting() -> None:
    store = RedisStore.from_url("rediss://cache.invalid:6380/0?ssl_cert_reqs=none&ssl_check_hostname=false")
    pool = store.client.connection_pool
    assert pool.connection_class is SSLConnection
    assert pool.connection_kwargs["ssl_cert_reqs"] == "none"
    assert pool.connection_kwargs["ssl_check_hostname"] is False
    await store.close()  # never connected: cache.invalid does not even resolve


@pytest.mark.parametrize(
    ("url", "options", "message"),
    [
        ("redis://h?bogus=1", {}, "unknown option 'bogus'.*accepted options: client_name"),
        ("redis://h", {"decode_responses": True}, "unknown option 'decode_responses'"),
        ("redis://h?max_connections=0", {}, "'max_connections'.*positive integer"),
        ("redis://h?max_connections=many", {}, "'max_connections'.*positive integer"),
        ("redis://h", {"socket_timeout": -1}, "'socket_timeout'.*positive"),
        ("redis://h?socket_timeout=inf", {}, "'socket_timeout'.*positive finite"),
        ("redis://h?retries=-1", {}, "'retries'"),
        ("redis://h?ssl_cert_reqs=none", {}, "unknown option 'ssl_cert_reqs'"),  # TLS options need rediss
        ("rediss://h?ssl_cert_reqs=maybe", {}, "'ssl_cert_reqs'.*one of none, optional, required"),
        ("redis://h?prefix=a&prefix=b", {}, "more than once"),
        ("redis://h/notadb", {}, "database number"),
        ("redis://h/1/2", {}, "database number"),
        ("memory://", {}, "redis:// or rediss://"),
    ],
)
def test_from_url_rejects_bad_options(url: str, options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RedisStore.from_url(url, **options)


def test_bad_url_error_does_not_leak_the_password() -> None:
    with pytest.raises(ValueError) as info:
        RedisStore.from_url("redis://user:hunter2@h/notadb")
    assert "hunter2" not in str(info.value)
