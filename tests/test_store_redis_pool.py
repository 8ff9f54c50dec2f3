"""RedisStore's connection pool: bounded, waits for a free connection, never leaks a slot."""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from urllib.parse import parse_qs, urlsplit

import pytest
import redis.asyncio as aioredis

from litellm_cache_plugin.store.base import StoreError
from litellm_cache_plugin.store.redis import RedisStore, WaitingConnectionPool


def unique_prefix(redis_url: str) -> str:
    return parse_qs(urlsplit(redis_url).query)["prefix"][0] + uuid.uuid4().hex[:12] + ":"


def pool_of(store: RedisStore) -> WaitingConnectionPool:
    pool = store.client.connection_pool
    assert isinstance(pool, WaitingConnectionPool)
    assert isinstance(pool, aioredis.BlockingConnectionPool)  # same contract as redis-py's
    return pool


async def test_a_burst_beyond_max_connections_waits_its_turn(redis_url: str) -> None:
    store = RedisStore.from_url(redis_url, prefix=unique_prefix(redis_url), max_connections=2)
    try:
        await asyncio.gather(*(store.set(f"k{i}", f"v{i}".encode(), 60) for i in range(30)))
        values = await asyncio.gather(*(store.get(f"k{i}") for i in range(30)))
        assert values == [f"v{i}".encode() for i in range(30)]
        pool = pool_of(store)
        assert len(pool._available_connections) + len(pool._in_use_connections) <= 2
        assert not pool._in_use_connections and not pool._holding
        assert not pool._slots.locked()
    finally:
        await store.close()


async def test_no_free_connection_within_pool_timeout_is_a_store_error(redis_url: str) -> None:
    store = RedisStore.from_url(
        redis_url, prefix=unique_prefix(redis_url), max_connections=1, pool_timeout=0.05
    )
    try:
        pool = pool_of(store)
        held = await pool.get_connection()
        started = time.monotonic()
        with pytest.raises(StoreError, match="No connection available"):
            await store.get("k")
        assert time.monotonic() - started < 1.0
        await pool.release(held)
        assert await store.get("k") is None  # the slot came back
    finally:
        await store.close()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_a_failed_connect_frees_its_slot() -> None:
    store = RedisStore.from_url(
        f"redis://127.0.0.1:{_closed_port()}/0", max_connections=1, pool_timeout=0.05, retries=0
    )
    try:
        for _ in range(3):
            with pytest.raises(StoreError) as caught:
                await store.get("k")
            assert "No connection available" not in str(caught.value)  # refused, not starved
        pool = pool_of(store)
        assert not pool._slots.locked() and not pool._holding
    finally:
        await store.close()


async def test_a_cancelled_command_frees_its_slot(redis_url: str) -> None:
    store = RedisStore.from_url(redis_url, prefix=unique_prefix(redis_url), max_connections=1)
    try:
        task = asyncio.ensure_future(store.get("k"))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await asyncio.wait_for(store.get("k"), 2) is None
        assert not pool_of(store)._slots.locked()
    finally:
        await store.close()
