from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.asyncio.connection import SSLConnection

from litellm_cache_plugin.store import GuardedStore, Store, open_store, supported_schemes
from litellm_cache_plugin.store.memory import DEFAULT_MAX_BYTES, MemoryStore
from litellm_cache_plugin.store.redis import RedisStore


def make_plain_store(url: str, **options: Any) -> MemoryStore:
    """An entry point may name a plain factory function instead of a class with from_url."""
    return MemoryStore(max_bytes=int(options.get("size", 1000)))


def make_not_a_store(url: str, **options: Any) -> object:
    return object()


@pytest.fixture
def entry_points(monkeypatch: pytest.MonkeyPatch) -> list[metadata.EntryPoint]:
    """Stand-in for the installed distributions' ``litellm_cache_plugin.backends`` entry points."""
    registered: list[metadata.EntryPoint] = []

    def fake_entry_points(*, group: str) -> list[metadata.EntryPoint]:
        assert group == "litellm_cache_plugin.backends"
        return registered

    monkeypatch.setattr(metadata, "entry_points", fake_entry_points)
    return registered


def register(registered: list[metadata.EntryPoint], name: str, target: str) -> None:
    registered.append(metadata.EntryPoint(name=name, value=target, group="litellm_cache_plugin.backends"))


async def test_memory_is_guarded_by_default() -> None:
    store = open_store("memory://")
    assert isinstance(store, GuardedStore)
    assert store.timeout == 0.05
    assert isinstance(store.inner, MemoryStore)
    assert store.inner.max_bytes == DEFAULT_MAX_BYTES
    assert isinstance(store, Store)
    await store.set("k", b"v", ttl=5)
    assert await store.get("k") == b"v"
    await store.close()


def test_timeout_none_returns_the_bare_backend() -> None:
    store = open_store("memory://?max_bytes=268435456", timeout=None)
    assert isinstance(store, MemoryStore)
    assert store.max_bytes == 268435456


@pytest.mark.parametrize(
    ("spelled", "size"),
    [("1024", 1024), ("512KiB", 512 * 1024), ("256MiB", 256 << 20), ("1G", 1 << 30), ("64 kb", 64 << 10)],
)
def test_memory_sizes(spelled: str, size: int) -> None:
    store = open_store(f"memory://?max_bytes={spelled}", timeout=None)
    assert isinstance(store, MemoryStore) and store.max_bytes == size


def test_keywords_configure_and_win_over_the_query() -> None:
    def clock() -> float:
        return 0.0

    store = open_store("MEMORY://?max_bytes=1000", timeout=None, max_bytes=2000, clock=clock, sweep_batch="8")
    assert isinstance(store, MemoryStore)
    assert (store.max_bytes, store.sweep_batch) == (2000, 8)


@pytest.mark.parametrize(
    ("url", "options", "message"),
    [
        ("memory://?max_bytes=0", {}, "option 'max_bytes' of the memory store must be a positive byte size"),
        ("memory://?max_bytes=lots", {}, "'max_bytes'.*got 'lots'"),
        ("memory://?max_bytes=-5", {}, "'max_bytes'"),
        ("memory://", {"max_bytes": 1.5}, "'max_bytes'"),
        ("memory://", {"max_bytes": True}, "'max_bytes'"),
        ("memory://?maxbytes=10", {}, "unknown option 'maxbytes'.*accepted options: clock, max_bytes"),
        ("memory://?clock=time", {}, "'clock'.*callable"),
        ("memory://?sweep_interval=0", {}, "'sweep_interval'"),
        ("memory://?max_bytes=1&max_bytes=2", {}, "more than once"),
        ("memory://?max_bytes", {}, "'max_bytes'"),
    ],
)
def test_memory_option_errors(url: str, options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        open_store(url, **options)


async def test_redis_urls_build_without_connecting() -> None:
    store = open_store("redis://cache.invalid:6379/3?prefix=myapp:&max_connections=50", timeout=0.1)
    assert isinstance(store, GuardedStore)
    inner = store.inner
    assert isinstance(inner, RedisStore)
    assert inner.prefix == "myapp:"
    pool = inner.client.connection_pool
    assert isinstance(pool, aioredis.BlockingConnectionPool)
    assert (pool.max_connections, pool.connection_kwargs["db"]) == (50, 3)
    await store.close()

    tls = open_store("rediss://cache.invalid:6380", timeout=None)
    assert isinstance(tls, RedisStore)
    assert tls.client.connection_pool.connection_class is SSLConnection
    await tls.close()


SCHEMES = r"memory, redis, rediss, redis\+cluster, memcached"


@pytest.mark.parametrize("url", ["foo://", "mongodb://h:27017"])
def test_unknown_scheme_lists_the_supported_ones(url: str) -> None:
    expected = r"unknown store scheme '.*'; supported schemes: " + SCHEMES
    with pytest.raises(ValueError, match=expected):
        open_store(url)


@pytest.mark.parametrize("url", ["", "memory", "localhost:6379", "://x", "1redis://h"])
def test_malformed_urls(url: str) -> None:
    with pytest.raises(ValueError, match="scheme://"):
        open_store(url)


def test_errors_never_echo_the_url_password() -> None:
    with pytest.raises(ValueError) as info:
        open_store("nosuch://user:hunter2@host:1/0")
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize("timeout", [0, -1.0, float("nan"), float("inf")])
def test_bad_timeout(timeout: float) -> None:
    with pytest.raises(ValueError, match="timeout"):
        open_store("memory://", timeout=timeout)


def test_entry_point_with_from_url(entry_points: list[metadata.EntryPoint]) -> None:
    register(entry_points, "tiny", "litellm_cache_plugin.store.memory:MemoryStore")
    store = open_store("tiny://?max_bytes=4096", timeout=None)
    assert isinstance(store, MemoryStore) and store.max_bytes == 4096
    assert supported_schemes() == ["memory", "redis", "rediss", "redis+cluster", "memcached", "tiny"]


def test_entry_point_plain_factory(entry_points: list[metadata.EntryPoint]) -> None:
    register(entry_points, "plain", f"{__name__}:make_plain_store")
    store = open_store("plain://", size=2048)
    assert isinstance(store, GuardedStore)
    assert isinstance(store.inner, MemoryStore) and store.inner.max_bytes == 2048


def test_unknown_scheme_message_includes_entry_points(entry_points: list[metadata.EntryPoint]) -> None:
    register(entry_points, "tiny", "litellm_cache_plugin.store.memory:MemoryStore")
    with pytest.raises(ValueError, match=r"supported schemes: " + SCHEMES + ", tiny$"):
        open_store("nope://")


def test_builtin_schemes_take_precedence(entry_points: list[metadata.EntryPoint]) -> None:
    register(entry_points, "memory", f"{__name__}:make_not_a_store")
    assert isinstance(open_store("memory://", timeout=None), MemoryStore)
    assert supported_schemes().count("memory") == 1


def test_backend_that_is_not_a_store(entry_points: list[metadata.EntryPoint]) -> None:
    register(entry_points, "broken", f"{__name__}:make_not_a_store")
    with pytest.raises(TypeError, match="not a Store"):
        open_store("broken://")


def test_backends_are_imported_only_when_used() -> None:
    code = (
        "import sys\n"
        "from litellm_cache_plugin.store import open_store\n"
        "open_store('memory://')\n"
        "assert 'litellm_cache_plugin.store.redis' not in sys.modules\n"
        "open_store('redis://cache.invalid')\n"
        "assert 'litellm_cache_plugin.store.redis' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
