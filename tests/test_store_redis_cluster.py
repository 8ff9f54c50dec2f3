"""RedisClusterStore against a real 3-node cluster (see the ``redis_cluster_url`` fixture)."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator
from urllib.parse import parse_qs, urlsplit

import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from litellm_cache_plugin.store import GuardedStore, open_store
from litellm_cache_plugin.store.base import StoreError
from litellm_cache_plugin.store.redis_cluster import RedisClusterStore
from litellm_cache_plugin.testing import AdvanceTime, StoreConformance


def unique_prefix(url: str) -> str:
    """The run's prefix plus one unique to the caller, so tests never see each other's keys."""
    return parse_qs(urlsplit(url).query)["prefix"][0] + uuid.uuid4().hex[:12] + ":"


def node_ports(url: str) -> list[int]:
    return [int(hostport.rsplit(":", 1)[1]) for hostport in urlsplit(url).netloc.split(",")]


@pytest.fixture
async def store(redis_cluster_url: str) -> AsyncIterator[RedisClusterStore]:
    store = RedisClusterStore.from_url(redis_cluster_url, prefix=unique_prefix(redis_cluster_url))
    yield store
    await store.close()


class TestRedisClusterConformance(StoreConformance):
    @pytest.fixture
    def advance_time(self) -> AdvanceTime:
        return asyncio.sleep


# --- keys across nodes --------------------------------------------------------------------------------


async def test_keys_land_on_different_nodes_and_get_many_keeps_order(
    store: RedisClusterStore, redis_cluster_url: str
) -> None:
    keys = [f"lcp:x:{uuid.uuid4().hex}" for _ in range(30)]
    await store.set_many([(key, key.encode()) for key in keys[::2]], ttl=60)
    # Where each key really is: ask every node directly (a node answers GET only for its own slots,
    # with MOVED otherwise, so a plain client per node that finds the key proves where it lives).
    holders: dict[str, int] = {}
    for port in node_ports(redis_cluster_url):
        async with aioredis.Redis(host="127.0.0.1", port=port) as node:
            for key in keys[::2]:
                slot = key_slot((store.prefix + key).encode())
                owner = store.cluster.nodes_manager.get_node_from_slot(slot)
                if owner.port == port:
                    assert await node.get(store.prefix + key) == key.encode()
                    holders[key] = port
    assert len(set(holders.values())) == 3, "30 random keys should spread over all three nodes"
    expected = [key.encode() if i % 2 == 0 else None for i, key in enumerate(keys)]
    assert await store.get_many(keys) == expected
    assert await store.get_many(keys[::-1]) == expected[::-1]


async def test_hash_tagged_keys_share_a_slot(store: RedisClusterStore) -> None:
    tag = uuid.uuid4().hex
    keys = [f"lcp:x:{{{tag}}}", f"lcp:e:{{{tag}}}", f"lcp:gen:{{{tag}}}"]
    assert len({key_slot((store.prefix + key).encode()) for key in keys}) == 1
    await store.set(keys[0], b"entry", ttl=60)
    await store.incr(keys[2], 3)
    assert await store.get_many(keys) == [b"entry", None, b"3"]
    assert await store.get_counters([keys[2], keys[1] + "-missing"]) == [3, 0]


async def test_counters_across_slots(store: RedisClusterStore) -> None:
    keys = [f"lcp:gen:model:{uuid.uuid4().hex}" for _ in range(12)]
    for amount, key in enumerate(keys):
        if amount:
            await store.incr(key, amount)
    assert len({key_slot((store.prefix + key).encode()) for key in keys}) > 1
    assert await store.get_counters(keys) == list(range(12))


async def test_a_burst_beyond_max_connections_waits_its_turn(redis_cluster_url: str) -> None:
    # redis-py's cluster pools fail at once when exhausted, and then break the calls in flight.
    store = RedisClusterStore.from_url(
        redis_cluster_url, prefix=unique_prefix(redis_cluster_url), max_connections=2
    )
    try:
        keys = [f"burst:{i}" for i in range(6)]
        results = await asyncio.gather(*(store.incr(keys[i % 6]) for i in range(120)))
        assert sorted(results) == sorted(list(range(1, 21)) * 6)
        assert await store.get_counters(keys) == [20] * 6
    finally:
        await store.close()


async def test_every_key_carries_the_prefix(store: RedisClusterStore) -> None:
    await store.set("v", b"1", ttl=60)
    await store.incr("c")
    await store.acquire_lock("l", "owner", ttl=60)
    cluster = store.cluster
    for key in ("v", "c", "l"):
        assert await cluster.exists(store.prefix + key) == 1
        assert await cluster.exists(key) == 0
    assert await cluster.pttl(store.prefix + "c") == -1  # counters never expire
    assert 0 < await cluster.pttl(store.prefix + "v") <= 60_000


async def test_release_reloads_a_flushed_script_on_every_node(store: RedisClusterStore) -> None:
    keys = [f"lock:{uuid.uuid4().hex}" for _ in range(12)]  # locks on every node
    await store.cluster.script_flush()  # all primaries: EVALSHA answers NOSCRIPT everywhere
    for key in keys:
        assert await store.acquire_lock(key, "o", ttl=30)
        assert await store.release_lock(key, "o") is True
        assert await store.release_lock(key, "o") is False


# --- housekeeping -------------------------------------------------------------------------------------


async def test_stats_add_up_the_primaries(store: RedisClusterStore, redis_cluster_url: str) -> None:
    stats = await store.stats()
    assert stats.backend == "redis+cluster"
    assert stats.entries is None  # a prefix: counting our keys would need a SCAN of every node
    single = []
    for port in node_ports(redis_cluster_url):
        async with aioredis.Redis(host="127.0.0.1", port=port) as node:
            single.append((await node.info("memory"))["used_memory"])
    assert isinstance(stats.bytes, int) and stats.bytes > max(single)
    assert isinstance(stats.evictions, int) and isinstance(stats.expirations, int)
    whole = RedisClusterStore.from_url(redis_cluster_url, prefix="")
    try:
        await whole.set(f"stats-{uuid.uuid4().hex}", b"v", ttl=30)
        entries = (await whole.stats()).entries
        assert isinstance(entries, int) and entries >= 1  # DBSIZE summed over the primaries
    finally:
        await whole.close()


async def test_count_keys_scans_every_primary(store: RedisClusterStore, redis_cluster_url: str) -> None:
    stats = await store.stats()
    assert stats.coverage == {"bytes": "server", "evictions": "server", "expirations": "server"}
    keys = [f"lcp:x:{uuid.uuid4().hex}" for _ in range(40)]
    await store.set_many([(key, b"v") for key in keys], ttl=60)
    await store.incr("lcp:gen:model:m")
    await store.set("not-the-cache", b"v", ttl=60)
    slots = {key_slot((store.prefix + key).encode()) for key in keys}
    owners = {store.cluster.nodes_manager.get_node_from_slot(slot).name for slot in slots}
    assert len(owners) > 1  # the keys really are spread over the nodes
    # Keys of another application on the same cluster.
    other = RedisClusterStore.from_url(redis_cluster_url, prefix=f"other-app-{uuid.uuid4().hex}:")
    try:
        await other.set_many([(f"lcp:x:{i}", b"x") for i in range(30)], ttl=60)
        assert await store.count_keys("lcp:", max_keys=10**9) == 41
        assert await store.count_keys("", max_keys=10**9) == 42
        assert await store.count_keys("lcp:", max_keys=1) is None  # more keys than that: not scanned
    finally:
        await other.close()


async def test_ping_asks_every_primary(store: RedisClusterStore) -> None:
    assert await store.ping() is True


async def test_unreachable_cluster_raises_store_error() -> None:
    ports = []
    for _ in range(2):  # ports on this machine that nothing listens on
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
    url = f"redis+cluster://127.0.0.1:{ports[0]},127.0.0.1:{ports[1]}"
    store = RedisClusterStore.from_url(url, socket_connect_timeout=0.5)
    calls = (
        store.get("k"),
        store.get_many(["a", "b"]),
        store.set("k", b"v", 1),
        store.set_many([("k", b"v")], 1),
        store.incr("c"),
        store.get_counters(["c", "d"]),
        store.acquire_lock("l", "o", 1),
        store.release_lock("l", "o"),
        store.ping(),
        store.stats(),
    )
    try:
        for call in calls:
            with pytest.raises(StoreError):
                await call
    finally:
        await store.close()
    with pytest.raises(StoreError, match="closed"):
        await store.get("k")


async def test_open_store_finds_the_scheme(redis_cluster_url: str) -> None:
    guarded = open_store(redis_cluster_url, timeout=2.0)
    assert isinstance(guarded, GuardedStore) and isinstance(guarded.inner, RedisClusterStore)
    await guarded.set("open-store", b"v", ttl=5)
    assert await guarded.get("open-store") == b"v"
    await guarded.close()


async def test_decoding_client_is_refused() -> None:
    client = RedisCluster(host="127.0.0.1", port=1, decode_responses=True)
    with pytest.raises(ValueError, match="decode_responses"):
        RedisClusterStore(client)
    await client.aclose()


# --- from_url -----------------------------------------------------------------------------------------


async def test_from_url_options() -> None:
    store = RedisClusterStore.from_url(
        "redis+cluster://user:s%40cret@a.invalid:7000,b.invalid,[::1]:7002"
        "?prefix=app:&max_connections=7&socket_timeout=0.25&retries=2&client_name=lcp&pool_timeout=0.1",
        socket_connect_timeout=0.5,
    )
    cluster = store.cluster
    assert store.prefix == "app:"
    startup = cluster.nodes_manager.startup_nodes
    assert sorted(startup) == ["::1:7002", "a.invalid:7000", "b.invalid:6379"]
    kwargs = cluster.get_connection_kwargs()
    assert (kwargs["username"], kwargs["password"]) == ("user", "s@cret")
    assert (kwargs["socket_timeout"], kwargs["socket_connect_timeout"]) == (0.25, 0.5)
    assert kwargs["client_name"] == "lcp"
    assert kwargs["max_connections"] == 7
    assert store.pool_timeout == 0.1
    assert cluster.retry.get_retries() == 2
    assert store.client is cluster  # the inherited code talks to the same object
    await store.close()


@pytest.mark.parametrize(
    ("url", "options", "message"),
    [
        ("redis+cluster://h:7000?bogus=1", {}, "unknown option 'bogus'"),
        ("redis+cluster://h:7000", {"ssl_cert_reqs": "none"}, "unknown option 'ssl_cert_reqs'"),
        ("redis+cluster://h:7000?pool_timeout=0", {}, "'pool_timeout'.*positive"),
        ("redis+cluster://h:7000?max_connections=0", {}, "'max_connections'.*positive integer"),
        ("redis+cluster://h:7000/3", {}, "no database"),
        ("redis+cluster://h:7000,h:notaport", {}, "host\\[:port\\]"),
        ("redis+cluster://", {}, "host\\[:port\\]"),
        ("redis://h:7000", {}, "redis\\+cluster://"),
    ],
)
def test_from_url_rejects_bad_urls(url: str, options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RedisClusterStore.from_url(url, **options)
