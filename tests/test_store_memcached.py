"""MemcachedStore against real memcached processes (see ``memcached_url`` / ``memcached_factory``)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from urllib.parse import parse_qs, urlsplit

import pytest

from litellm_cache_plugin.store import CircuitBreaker, GuardedStore, open_store
from litellm_cache_plugin.store.base import Store, StoreError
from litellm_cache_plugin.store.memcached import (
    MAX_KEY_LENGTH,
    MemcachedClient,
    MemcachedStore,
    MissingExtraError,
    memcached_key,
    parse_hosts,
    to_exptime,
)
from litellm_cache_plugin.testing import AdvanceTime, StoreConformance

from .conftest import MemcachedFactory

THIRTY_DAYS = 30 * 24 * 3600


def unique_prefix(memcached_url: str) -> str:
    """The run's prefix plus one unique to the caller, so tests never see each other's keys."""
    return parse_qs(urlsplit(memcached_url).query)["prefix"][0] + uuid.uuid4().hex[:12] + ":"


def server_address(memcached_url: str) -> tuple[str, int]:
    return parse_hosts(urlsplit(memcached_url).netloc, 11211)[0]


@pytest.fixture
async def store(memcached_url: str) -> AsyncIterator[MemcachedStore]:
    store = MemcachedStore.from_url(memcached_url, prefix=unique_prefix(memcached_url))
    yield store
    await store.close()


@pytest.fixture
async def raw(memcached_url: str) -> AsyncIterator[MemcachedClient]:
    """A client on the same server that sends keys exactly as given, to look behind the store."""
    client = MemcachedClient(*server_address(memcached_url))
    yield client
    await client.close()


class TestMemcachedConformance(StoreConformance):
    # Memcached's clock ticks in whole seconds and the store sends ceil(ttl) + 1 so that nothing
    # lives shorter than asked: a 0.2 s TTL lasts between 1 and 2 s.
    ttl_slack = 1.9
    # eviction_pressure_bytes stays unset: Memcached may evict counters too (see the module
    # docstring), and filling this shared 64 MiB server would evict other tests' entries.

    @pytest.fixture
    def advance_time(self) -> AdvanceTime:
        return asyncio.sleep


# --- keys ---------------------------------------------------------------------------------------------


async def test_every_key_carries_the_prefix(store: MemcachedStore, raw: MemcachedClient) -> None:
    await store.set("v", b"1", ttl=60)
    await store.set_many([("m", b"2")], ttl=60)
    await store.incr("c", 5)
    await store.acquire_lock("l", "owner", ttl=60)
    names = [(store.prefix + key).encode() for key in ("v", "m", "c", "l")]
    assert await raw.get_multi(names) == dict(zip(names, [b"1", b"2", b"5", b"owner"], strict=True))
    assert await raw.get_multi([b"v", b"m", b"c", b"l"]) == {}


async def test_long_keys_are_hashed_deterministically(store: MemcachedStore, raw: MemcachedClient) -> None:
    head = "lcp:x:" + "a" * 300
    keys = [head + "1", head + "2", "b" * (MAX_KEY_LENGTH - len(store.prefix))]
    await store.set_many([(key, key[-1].encode()) for key in keys], ttl=60)
    assert await store.get_many(keys) == [b"1", b"2", b"b"]  # same head, still distinct
    sent = [store.key_for(key) for key in keys]
    assert all(len(key) <= MAX_KEY_LENGTH for key in sent)
    assert sent[0] != sent[1] and b"%#" in sent[0]
    assert sent[2] == (store.prefix + keys[2]).encode()  # exactly 250 bytes: sent as is
    assert await raw.get_multi(sent[:1]) == {sent[0]: b"1"}
    # Another store with the same prefix (another process) finds the same entries.
    twin = MemcachedStore(
        [MemcachedClient(raw.host, raw.port)], prefix=store.prefix
    )  # same server, same prefix
    try:
        assert await twin.get(keys[0]) == b"1"
    finally:
        await twin.close()


def test_key_encoding_is_injective() -> None:
    keys = ["a b", "a%20b", "a\tb", "a%09b", "é", "%C3%A9", "a" * 250, "a" * 251, "a" * 251 + " "]
    encoded = [memcached_key(key) for key in keys]
    assert len(set(encoded)) == len(keys)
    for key in encoded:
        assert len(key) <= MAX_KEY_LENGTH
        assert all(0x21 <= byte <= 0x7E for byte in key)
    assert memcached_key("lcp:x:" + "0f" * 32) == ("lcp:x:" + "0f" * 32).encode()
    # A key spelled like the hashed form of another is escaped ('%' -> '%25'), so never equal to it.
    hashed = memcached_key("x" * 300)
    assert b"%#" in hashed and len(hashed) == MAX_KEY_LENGTH
    assert memcached_key(hashed.decode()) != hashed
    assert memcached_key("x" * 300) == hashed  # deterministic


async def test_non_ascii_and_control_keys_round_trip(store: MemcachedStore) -> None:
    keys = ["tab\there", "new\nline", "naïve", "nul\x00", "pct%20", "pct "]
    await store.set_many([(key, key.encode()) for key in keys], ttl=60)
    assert await store.get_many(keys) == [key.encode() for key in keys]


# --- TTLs ---------------------------------------------------------------------------------------------


def test_exptime_rounds_up_and_switches_to_a_timestamp_past_30_days() -> None:
    def now() -> float:
        return 1_700_000_000.4

    assert to_exptime(0.2, now) == 2  # memcached's whole-second clock: never shorter than asked
    assert to_exptime(1, now) == 2
    assert to_exptime(59.5, now) == 61
    assert to_exptime(THIRTY_DAYS - 1, now) == THIRTY_DAYS  # the largest relative exptime
    assert to_exptime(THIRTY_DAYS, now) == 1_700_000_001 + THIRTY_DAYS + 1  # a unix timestamp now
    assert to_exptime(10**12, now) == 2**32 - 1  # the end of memcached's clock
    for bad in (0, -1, float("inf"), float("nan"), True):
        with pytest.raises(ValueError, match="ttl"):
            to_exptime(bad, now)


async def test_ttls_beyond_30_days_are_kept(store: MemcachedStore) -> None:
    # Sent as is, 31 days would be a 1970 timestamp for memcached and the entry would be gone at once.
    for days in (29, 30, 31, 365):
        await store.set(f"d{days}", b"kept", ttl=days * 24 * 3600)
        assert await store.acquire_lock(f"l{days}", "o", ttl=days * 24 * 3600) is True
    await store.set_many([("many", b"kept")], ttl=40 * 24 * 3600)
    assert await store.get_many(["d29", "d30", "d31", "d365", "many"]) == [b"kept"] * 5
    assert await store.acquire_lock("l31", "p", ttl=60) is False


async def test_subsecond_ttl_is_never_cut_short(store: MemcachedStore) -> None:
    # Memcached's clock ticks once a second: with exptime 1 an entry could vanish at once.
    for i in range(5):
        await store.set(f"k{i}", b"v", ttl=0.01)
        assert await store.get(f"k{i}") == b"v"
        await asyncio.sleep(0.2)


# --- counters -----------------------------------------------------------------------------------------


async def test_counters_have_no_expiry_and_reject_negative_amounts(
    store: MemcachedStore, raw: MemcachedClient
) -> None:
    assert await store.incr("c", 0) == 0
    assert await store.incr("c", 2**40) == 2**40
    with pytest.raises(ValueError, match="amount"):
        await store.incr("c", -1)
    # Created by ``add key 0 0``: exptime 0, never expires; a decr-shortened value still parses.
    await raw.decr((store.prefix + "c").encode(), 2**40 - 5)
    assert await store.get_counters(["c"]) == [5]


async def test_concurrent_first_increments_on_many_counters(store: MemcachedStore) -> None:
    keys = [f"gen:{i}" for i in range(10)]
    await asyncio.gather(*(store.incr(key) for key in keys for _ in range(10)))
    assert await store.get_counters(keys) == [10] * 10


async def test_non_integer_counter_is_a_store_error(store: MemcachedStore) -> None:
    await store.set("c", b"not a number", ttl=60)
    with pytest.raises(StoreError):
        await store.get_counters(["c"])
    with pytest.raises(StoreError):
        await store.incr("c")
    assert await store.get("c") == b"not a number"  # and the pool still works


# --- locks --------------------------------------------------------------------------------------------


async def test_lock_release_by_non_owner_is_refused(store: MemcachedStore, raw: MemcachedClient) -> None:
    assert await store.acquire_lock("lock", "alice", ttl=30) is True
    assert await store.release_lock("lock", "mallory") is False
    assert await raw.get_multi([store.key_for("lock")]) == {store.key_for("lock"): b"alice"}
    assert await store.release_lock("lock", "alice") is True
    assert await raw.get_multi([store.key_for("lock")]) == {}  # expired at once by the cas
    assert await store.acquire_lock("lock", "bob", ttl=30) is True


async def test_release_leaves_a_lock_retaken_since_it_was_read(
    raw: MemcachedClient, store: MemcachedStore
) -> None:
    # The race release_lock closes with cas: alice reads her lock, it expires and bob takes it
    # before alice deletes. Her cas carries the CAS value she read, so bob's lock survives.
    key = store.key_for("lock")
    assert await store.acquire_lock("lock", "alice", ttl=30) is True
    (_, cas_read_by_alice) = (await raw.gets_multi([key]))[key]
    await raw.delete(key)  # as if it had expired
    assert await store.acquire_lock("lock", "bob", ttl=30) is True
    assert await raw.cas(key, b"", -1, cas_read_by_alice) is False
    assert await store.release_lock("lock", "alice") is False
    assert await store.release_lock("lock", "bob") is True


# --- values -------------------------------------------------------------------------------------------


async def test_value_too_large_for_the_server_is_not_stored(store: MemcachedStore) -> None:
    await store.set("big", b"old", ttl=60)
    await store.set("big", os.urandom(3 * 1024 * 1024), ttl=60)  # over the server's 2 MiB items
    assert await store.get("big") is None  # memcached drops the old value too
    await store.set_many([("a", b"1"), ("big", os.urandom(3 * 1024 * 1024)), ("b", b"2")], ttl=60)
    assert await store.get_many(["a", "big", "b"]) == [b"1", None, b"2"]


async def test_get_many_batches_and_duplicates(store: MemcachedStore) -> None:
    keys = [f"k{i}" for i in range(250)]  # more than one ``get`` line
    await store.set_many([(key, key.encode()) for key in keys[::3]], ttl=60)
    expected = [key.encode() if i % 3 == 0 else None for i, key in enumerate(keys)]
    assert await store.get_many(keys) == expected
    assert await store.get_many(["k0", "k0", "k1", "k0"]) == [b"k0", b"k0", None, b"k0"]


async def test_cancelled_calls_never_desynchronise_the_pool(store: MemcachedStore) -> None:
    big = os.urandom(1024 * 1024)
    await store.set("big", big, ttl=60)
    await store.set("small", b"small", ttl=60)
    for delay in (0, 0.0005, 0.001, 0.002, 0.005):
        calls = [asyncio.ensure_future(store.get("big")) for _ in range(4)]
        await asyncio.sleep(delay)
        for call in calls:
            call.cancel()
        await asyncio.gather(*calls, return_exceptions=True)
        # A connection abandoned half way through a reply would hand its rest to the next caller.
        assert await asyncio.gather(*(store.get("small") for _ in range(8))) == [b"small"] * 8
        assert await store.get("big") == big


# --- housekeeping, failures and recovery ---------------------------------------------------------------


async def test_stats(store: MemcachedStore, memcached_url: str) -> None:
    await store.set("k", b"v", ttl=60)
    stats = await store.stats()
    assert stats.backend == "memcached"
    assert stats.entries is None  # a prefix: memcached cannot count one prefix
    assert isinstance(stats.bytes, int) and stats.bytes > 0
    assert stats.evictions == 0
    assert isinstance(stats.expirations, int)
    whole = MemcachedStore.from_url(memcached_url, prefix="")
    try:
        entries = (await whole.stats()).entries
        assert isinstance(entries, int) and entries >= 1  # curr_items
    finally:
        await whole.close()


@contextlib.contextmanager
def unused_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    yield port


async def test_unreachable_server_raises_store_error() -> None:
    with unused_port() as port:
        # emcache reports a refused connection at the command's deadline (socket_timeout), not at
        # once: a short one keeps this test fast.
        store = MemcachedStore.from_url(
            f"memcached://127.0.0.1:{port}", socket_connect_timeout=0.5, socket_timeout=0.3
        )
        calls = (
            store.get("k"),
            store.get_many(["a", "b"]),
            store.set("k", b"v", 1),
            store.set_many([("k", b"v")], 1),
            store.delete("k"),
            store.incr("c"),
            store.get_counters(["c"]),
            store.acquire_lock("l", "o", 1),
            store.release_lock("l", "o"),
            store.ping(),
            store.stats(),
        )
        for call in calls:
            with pytest.raises(StoreError):
                await call
        await store.close()
        await store.close()
        with pytest.raises(StoreError, match="closed"):
            await store.get("k")


async def test_a_server_that_does_not_answer_times_out() -> None:
    with socket.socket() as listener:  # accepts connections (backlog) and never replies
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        store = MemcachedStore.from_url(
            f"memcached://127.0.0.1:{listener.getsockname()[1]}?socket_timeout=0.2"
        )
        with pytest.raises(StoreError, match="timed out"):
            await store.get("k")
        await store.close()


async def test_server_restart_fails_then_recovers(memcached_factory: MemcachedFactory) -> None:
    server = memcached_factory()
    store = MemcachedStore.from_url(f"memcached://127.0.0.1:{server.port}", socket_connect_timeout=0.5)
    try:
        await store.set("k", b"v", ttl=60)
        await store.incr("c")
        assert await store.get_many(["k", "c"]) == [b"v", b"1"]  # pooled connections now exist
        server.stop()
        for call in (store.get("k"), store.set("k", b"v", 60), store.incr("c"), store.ping()):
            with pytest.raises(StoreError):
                await call
        memcached_factory(port=server.port)  # the same port, empty memory
        assert await store.get("k") is None  # the very first call works again
        assert await store.incr("c") == 1
        await store.set("k", b"again", ttl=60)
        assert await store.get("k") == b"again"
        assert await store.ping() is True
    finally:
        await store.close()


async def test_restart_with_idle_pooled_connections_costs_no_error(
    memcached_factory: MemcachedFactory,
) -> None:
    server = memcached_factory()
    store = MemcachedStore.from_url(f"memcached://127.0.0.1:{server.port}")
    try:
        await asyncio.gather(*(store.set(f"k{i}", b"v", ttl=60) for i in range(5)))  # 5 pooled
        server.stop()
        memcached_factory(port=server.port)
        # Every pooled connection is dead; the first failure drops them all and retries once.
        assert await asyncio.gather(*(store.get(f"k{i}") for i in range(5))) == [None] * 5
    finally:
        await store.close()


async def test_keys_spread_over_several_servers(memcached_factory: MemcachedFactory) -> None:
    servers = [memcached_factory(), memcached_factory()]
    url = "memcached://" + ",".join(f"127.0.0.1:{server.port}" for server in servers) + "?prefix=multi:"
    store = MemcachedStore.from_url(url)
    try:
        keys = [f"lcp:x:{uuid.uuid4().hex}" for _ in range(40)]
        await store.set_many([(key, key.encode()) for key in keys[::2]], ttl=60)
        for i, key in enumerate(keys[1::4]):
            await store.incr(key, i + 1)
        per_server = []
        for client in store.clients:
            found = await client.get_multi([store.key_for(key) for key in keys[::2]])
            per_server.append(len(found))
        assert sum(per_server) == 20 and min(per_server) > 0  # each key on exactly one server
        expected: list[bytes | None] = [key.encode() if i % 2 == 0 else None for i, key in enumerate(keys)]
        for i in range(len(keys[1::4])):
            expected[1 + 4 * i] = str(i + 1).encode()
        assert await store.get_many(keys) == expected
        assert await store.get_many(keys[::-1]) == expected[::-1]
        assert (await store.stats()).entries is None
        assert await store.ping() is True
        # A second store over the same servers maps every key the same way.
        twin = MemcachedStore.from_url(url)
        assert await twin.get_many(keys) == expected
        await twin.close()
    finally:
        await store.close()


@pytest.mark.parametrize("deadline", ["socket_timeout", "guard"])
async def test_recovery_after_an_outage_needs_no_reconnection_backoff(
    memcached_factory: MemcachedFactory, deadline: str
) -> None:
    # emcache's pool retries a failed connection after 1, 2, 4... up to 60 s: left to itself, the
    # first commands after the server is back would still time out. The store starts a fresh
    # emcache client after a timeout, or after a command cancelled by a shorter deadline above it
    # (GuardedStore's, as in the proxy) while no connection could be opened, so the first command
    # after the restart connects at once.
    server = memcached_factory()
    url = f"memcached://127.0.0.1:{server.port}"
    if deadline == "socket_timeout":
        store: Store = MemcachedStore.from_url(url, socket_timeout=0.3)
    else:
        store = GuardedStore(MemcachedStore.from_url(url), 0.3, CircuitBreaker(failure_threshold=100))
    try:
        await store.set("k", b"v", ttl=60)
        server.stop()
        for _ in range(6):  # ~2 s of outage: emcache's own next attempt would be at 3 s
            with pytest.raises(StoreError):
                await store.get("k")
        memcached_factory(port=server.port)
        assert await store.get("k") is None
        await store.set("k", b"back", ttl=60)
        assert await store.get("k") == b"back"
    finally:
        await asyncio.wait_for(store.close(), 5)  # never waits on a reconnection loop


async def test_callers_beyond_max_connections_wait_for_a_slot_at_most_pool_timeout() -> None:
    with socket.socket() as listener:  # accepts connections (backlog) and never replies
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        store = MemcachedStore.from_url(
            f"memcached://127.0.0.1:{port}?max_connections=1&socket_timeout=2&pool_timeout=0.05"
        )
        hanging = asyncio.ensure_future(store.get("a"))  # holds the only slot until its deadline
        await asyncio.sleep(0)
        with pytest.raises(StoreError, match=r"no free connection within 0\.05 s"):
            await store.get("b")
        hanging.cancel()
        await asyncio.gather(hanging, return_exceptions=True)
        await store.close()


async def test_many_callers_on_few_connections_are_served_in_turn(memcached_url: str) -> None:
    store = MemcachedStore.from_url(
        memcached_url,
        prefix=unique_prefix(memcached_url),
        max_connections=2,
        socket_timeout=1.0,
        # Generous: this test is about the order callers are served in, and on a loaded CI host 200
        # callers of 2 connections waited more than the 1 s default (the pool deadline has its own
        # test, above).
        pool_timeout=30.0,
    )
    try:
        await store.set("k", b"v" * 50_000, ttl=60)
        # More callers than connections: they queue in arrival order for a slot (emcache's own
        # queue for a connection serves the newest first), and the deadline starts with the command.
        results = await asyncio.gather(*(store.get("k") for _ in range(200)))
        assert results == [b"v" * 50_000] * 200
    finally:
        await store.close()


def test_memcached_without_its_extra_is_refused_naming_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import litellm_cache_plugin.store.memcached as module
    from litellm_cache_plugin.integrations.litellm import CachePlugin
    from litellm_cache_plugin.settings import SettingsError, settings_from_mapping

    monkeypatch.setattr(module, "_emcache_module", None)
    monkeypatch.setitem(sys.modules, "emcache", None)  # as if not installed: importing it fails
    extra = r"\[memcached\] extra.*pip install 'litellm-cache-plugin\[memcached\]'"
    with pytest.raises(MissingExtraError, match=extra):
        open_store("memcached://127.0.0.1:11211")
    with pytest.raises(MissingExtraError, match=extra):
        MemcachedClient("127.0.0.1")
    settings = settings_from_mapping({"backend": "memcached://127.0.0.1:11211"}, environ={})
    with pytest.raises(SettingsError, match=r"cache_plugin\.backend: memcached:// needs the " + extra):
        CachePlugin(settings)
    # Other backends do not need it (Redis Cluster shares this module's host parsing).
    open_store("memory://")
    assert parse_hosts("a:1,b", 2) == [("a", 1), ("b", 2)]


async def test_open_store_finds_the_scheme(memcached_url: str) -> None:
    guarded = open_store(memcached_url, timeout=2.0)
    assert isinstance(guarded, GuardedStore) and isinstance(guarded.inner, MemcachedStore)
    await guarded.set(f"open-{uuid.uuid4().hex}", b"v", ttl=5)
    await guarded.close()


# --- from_url -----------------------------------------------------------------------------------------


async def test_from_url_options() -> None:
    store = MemcachedStore.from_url(
        "memcached://a.invalid:11212,b.invalid,[::1]:11213?prefix=app:&max_connections=7&socket_timeout=0.25",
        socket_connect_timeout=0.5,
        retries=0,
    )
    assert store.prefix == "app:"
    clients = store.clients
    assert [(c.host, c.port) for c in clients] == [("a.invalid", 11212), ("b.invalid", 11211), ("::1", 11213)]
    assert clients[2].address == "[::1]:11213"
    assert {(c.socket_timeout, c.socket_connect_timeout, c.pool_timeout, c.retries) for c in clients} == {
        (0.25, 0.5, 1.0, 0)
    }
    await store.close()


@pytest.mark.parametrize(
    ("url", "options", "message"),
    [
        ("memcached://h?bogus=1", {}, "unknown option 'bogus'.*accepted options: max_connections"),
        ("memcached://h?max_connections=0", {}, "'max_connections'.*positive integer"),
        ("memcached://h", {"socket_timeout": -1}, "'socket_timeout'.*positive"),
        ("memcached://h?retries=-1", {}, "'retries'"),
        ("memcached://h?prefix=a&prefix=b", {}, "more than once"),
        ("memcached://user:pw@h", {}, "no user or password"),
        ("memcached://h/0", {}, "no path"),
        ("memcached://h:99999", {}, "host\\[:port\\]"),
        ("memcached://h,,k", {}, "host\\[:port\\]"),
        ("memcached://", {}, "host\\[:port\\]"),
        ("redis://h", {}, "memcached://"),
    ],
)
def test_from_url_rejects_bad_urls(url: str, options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MemcachedStore.from_url(url, **options)
