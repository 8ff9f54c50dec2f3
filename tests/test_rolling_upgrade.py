"""Rolling upgrades: old and new replicas share one backend. An entry a newer version writes (a higher
envelope format number) is a miss for the current code that it leaves where it is; only undecodable
bytes of a format it reads are deleted. On the memory store and on a real Redis (``redis_url``)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from urllib.parse import parse_qs, urlsplit

import pytest

from litellm_cache_plugin.engine import CacheEngine
from litellm_cache_plugin.envelope import FORMAT_VERSION, encode_entry
from litellm_cache_plugin.policy.controls import RequestControls
from litellm_cache_plugin.policy.keys import Tenant
from litellm_cache_plugin.policy.tags import counters_for
from litellm_cache_plugin.store.base import Store
from litellm_cache_plugin.store.memory import MemoryStore
from litellm_cache_plugin.store.redis import RedisStore

from .test_envelope_format import engine_entry, future_format_entry

TENANT = Tenant("team", "a")


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    if request.param == "memory":
        backend: Store = MemoryStore()
    else:
        url = request.getfixturevalue("redis_url")  # 127.0.0.1:6379 when it answers; a run prefix
        run_prefix = parse_qs(urlsplit(url).query)["prefix"][0]
        backend = RedisStore.from_url(url, prefix=f"{run_prefix}upgrade-{uuid.uuid4().hex[:12]}:")
    yield backend
    await backend.close()


async def settled(engine: CacheEngine) -> None:
    """Wait for the engine's background work (a delete of a corrupt entry would be there)."""
    while engine._background.tasks:
        await asyncio.gather(*list(engine._background.tasks))


def current_entry(engine: CacheEngine, layer_kind: str = "response") -> bytes:
    names = counters_for(engine.namespace, "llama", TENANT.fingerprint, ())
    entry = engine_entry(
        counters=dict.fromkeys(names, 0), created_at=engine.clock(), model_version="1", kind=layer_kind
    )
    return encode_entry(entry)


async def test_an_entry_of_a_future_format_survives_a_read_by_the_current_code(store: Store) -> None:
    engine = CacheEngine(store, namespace="lcp")
    written_by_new = future_format_entry(engine_entry())
    assert written_by_new[0] == FORMAT_VERSION + 1
    damaged = bytearray(current_entry(engine))
    damaged[-2] ^= 0x01  # payload no longer matches its checksum: corrupt, in a format this code reads
    await store.set("lcp:x:new", written_by_new, 60)
    await store.set("lcp:x:bad", bytes(damaged), 60)
    await store.set("lcp:x:ok", current_entry(engine), 60)

    async def lookup(key: str) -> tuple[str, str]:
        found = await engine.lookup(
            key, tenant=TENANT, model_group="llama", model_version="1", controls=RequestControls()
        )
        return found.outcome, found.reason

    assert await lookup("lcp:x:new") == ("MISS", "unknown_format")
    assert await lookup("lcp:x:bad") == ("MISS", "undecodable")
    assert await lookup("lcp:x:ok") == ("HIT", "fresh")
    await settled(engine)
    # Still there, byte for byte, after the read (and a second read is the same miss).
    assert await store.get("lcp:x:new") == written_by_new
    assert await lookup("lcp:x:new") == ("MISS", "unknown_format")
    await settled(engine)
    assert await store.get("lcp:x:new") == written_by_new
    assert await store.get("lcp:x:bad") is None  # the corrupt one was deleted: the wait above works
    assert engine.stats.get("exact", "llama", "unknown_format") == 2
    assert engine.stats.get("exact", "llama", "corrupt") == 1


async def test_embedding_items_of_a_future_format_are_misses_left_alone(store: Store) -> None:
    engine = CacheEngine(store, namespace="lcp")
    written_by_new = future_format_entry(engine_entry(kind="embedding"))
    damaged = b"\x00" + current_entry(engine, "embedding")[1:]  # a format number nobody writes
    await store.set_many(
        [("e:new", written_by_new), ("e:bad", damaged), ("e:ok", current_entry(engine, "embedding"))], 60
    )
    found, _ = await engine.lookup_many(
        ["e:new", "e:bad", "e:ok"],
        tenant=TENANT,
        model_group="llama",
        model_version="1",
        controls=RequestControls(),
    )
    assert [entry is not None for entry in found] == [False, False, True]
    await settled(engine)
    assert await store.get_many(["e:new", "e:bad"]) == [written_by_new, None]
    assert engine.stats.get("embedding", "llama", "unknown_format") == 1
    assert engine.stats.get("embedding", "llama", "corrupt") == 1
    assert engine.stats.get("embedding", "llama", "miss") == 2  # counted once each, with its reason


async def test_an_old_replica_that_misses_stores_its_own_answer_which_the_new_one_reads(store: Store) -> None:
    # The accepted consequence of "a miss left alone": the old replica goes upstream and stores its
    # answer under the same key in its own format; newer code reads older formats, so both serve it.
    engine = CacheEngine(store, namespace="lcp")
    await store.set("lcp:x:k", future_format_entry(engine_entry()), 60)
    group = {"model_group": "llama", "model_version": "1"}
    miss = await engine.lookup("lcp:x:k", tenant=TENANT, controls=RequestControls(), **group)
    assert miss.reason == "unknown_format"
    answer = b'{"choices":[]}'
    await engine.store_entry("lcp:x:k", answer, tenant=TENANT, ttl=60, counters=miss.counters, **group)
    hit = await engine.lookup("lcp:x:k", tenant=TENANT, controls=RequestControls(), **group)
    assert hit.outcome == "HIT" and hit.entry is not None and hit.entry.payload == answer
