"""The semantic layer's shared vector index (``layers.semantic.index: redis+search://...``) against a
real Redis-protocol server with the search module (``redis_search_url``): the driver
(store/vector_search.py), the semantic adapter (semantic/shared.py) and ``SemanticIndex`` on both index
kinds; scope isolation, expiry, deletion, cold replicas, and failing open within the deadline when the
server is dead or hung (SIGSTOP), resuming when it is back."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

np = pytest.importorskip("numpy", reason="the [semantic] extra is not installed")

from litellm_cache_plugin.semantic import SemanticIndex  # noqa: E402
from litellm_cache_plugin.semantic.shared import SharedVectorIndex, open_shared_index  # noqa: E402
from litellm_cache_plugin.settings import SemanticLayer, settings_from_mapping  # noqa: E402
from litellm_cache_plugin.store.base import StoreError  # noqa: E402
from litellm_cache_plugin.store.guarded import CircuitBreaker  # noqa: E402
from litellm_cache_plugin.store.memory import MemoryStore  # noqa: E402
from litellm_cache_plugin.store.vector_search import (  # noqa: E402
    GuardedVectorSearch,
    RedisVectorSearch,
    VectorHit,
    open_vector_search,
)
from tests.loop_stalls import LoopStalls  # noqa: E402
from tests.test_semantic_index import DIMS, TABLE, TableEmbedder, near, random_unit  # noqa: E402

PARAPHRASE = "What's the distance between Paris and Lyon?"
ORIGINAL = "How far is Paris from Lyon?"
TRAP = "How far is Paris from Lille?"


def with_prefix(url: str) -> str:
    """The session's search URL with a prefix of this test's own (keys and index names)."""
    base = url.split("?", 1)[0]
    return f"{base}?prefix=t{uuid.uuid4().hex[:12]}:"


def vec(seed: str) -> bytes:
    return np.asarray(random_unit(seed), dtype="<f4").tobytes()


@pytest.fixture
async def search(redis_search_url: str) -> AsyncIterator[RedisVectorSearch]:
    engine = RedisVectorSearch.from_url(with_prefix(redis_search_url))
    yield engine
    await engine.close()


def make(
    kind: str, url: str | None = None, embedder: TableEmbedder | None = None, **overrides: Any
) -> SemanticIndex:
    settings = SemanticLayer(enabled=True, threshold=0.9, **overrides)
    # 10 s per index call: these tests expect answers, not the deadline (the failing-open tests below
    # set their own); a full garbage collection alone stalled the loop for 0.45 s under load, and a
    # 1 s deadline failed a lookup in the suite (test_semantic_shared_adversarial.py). A failing or
    # hung server still fails them.
    shared = open_shared_index(url, timeout=10.0) if kind == "shared" and url else None
    return SemanticIndex(
        MemoryStore(),
        namespace="t",
        embedder=embedder or TableEmbedder(TABLE),
        settings=settings,
        shared=shared,
    )


@pytest.fixture(params=["local", "shared"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def url(kind: str, redis_search_url: str) -> str | None:
    return with_prefix(redis_search_url) if kind == "shared" else None


# --- the driver --------------------------------------------------------------------------------------


async def test_driver_knn_within_a_tag_only(search: RedisVectorSearch) -> None:
    await search.add("aa", "m1", vec("x"), DIMS, {"text": "one"}, ttl=60)
    await search.add(
        "aa", "m2", np.asarray(near(random_unit("x"), 0.9), dtype="<f4").tobytes(), DIMS, {"text": "two"}, 60
    )
    await search.add("bb", "m3", vec("x"), DIMS, {"text": "other tag, same vector"}, ttl=60)
    hits = await search.knn("aa", vec("x"), DIMS, 10, ["text"])
    assert [h.member for h in hits] == ["m1", "m2"]
    assert hits[0].distance == pytest.approx(0.0, abs=1e-5)
    assert hits[1].distance == pytest.approx(0.1, abs=1e-4)
    assert hits[0].fields == {"text": "one"}
    assert [h.member for h in await search.knn("bb", vec("x"), DIMS, 10, ["text"])] == ["m3"]
    assert await search.knn("cc", vec("x"), DIMS, 10, ["text"]) == []
    assert await search.count(DIMS) == 3
    # Replacing a member keeps one document.
    await search.add("aa", "m1", vec("x"), DIMS, {"text": "one again"}, ttl=60)
    assert await search.count(DIMS) == 3


async def test_driver_expiry_delete_drop_and_names(search: RedisVectorSearch) -> None:
    await search.add("aa", "short", vec("x"), DIMS, {}, ttl=0.2)
    await search.add("aa", "long", vec("y"), DIMS, {}, ttl=60)
    assert {h.member for h in await search.knn("aa", vec("x"), DIMS, 10, [])} == {"short", "long"}
    await asyncio.sleep(0.4)
    assert await search.client.exists(search.key("aa", "short", DIMS)) == 0  # gone with its TTL
    assert [h.member for h in await search.knn("aa", vec("x"), DIMS, 10, [])] == ["long"]
    ttl_ms = await search.client.pttl(search.key("aa", "long", DIMS))
    assert 55_000 < ttl_ms <= 60_000
    assert await search.delete("aa", "long", DIMS)
    assert not await search.delete("aa", "long", DIMS)
    for i in range(5):
        await search.add("dd", f"m{i}", vec(f"d{i}"), DIMS, {}, ttl=60)
    await search.add("ee", "keep", vec("e"), DIMS, {}, ttl=60)
    assert await search.drop_tag("dd", DIMS) == 5
    assert await search.knn("dd", vec("d1"), DIMS, 10, []) == []
    assert len(await search.knn("ee", vec("e"), DIMS, 10, [])) == 1
    with pytest.raises(ValueError):
        await search.add("a}b", "m", vec("x"), DIMS, {}, ttl=60)  # nothing reaches the query language
    with pytest.raises(ValueError):
        await search.knn("a b", vec("x"), DIMS, 1, [])
    with pytest.raises(ValueError):
        await search.add("aa", "m", vec("x"), DIMS + 1, {}, ttl=60)
    with pytest.raises(ValueError):
        await search.add("aa", "m", vec("x"), DIMS, {"tag": "forged"}, ttl=60)


async def test_driver_recreates_a_lost_index(search: RedisVectorSearch) -> None:
    await search.add("aa", "m1", vec("x"), DIMS, {}, ttl=60)
    await search.client.execute_command("FT.DROPINDEX", search.index_name(DIMS))  # keeps the keys
    assert await search.knn("aa", vec("x"), DIMS, 5, []) == []  # a miss, and the index is back
    for _ in range(100):
        if [h.member for h in await search.knn("aa", vec("x"), DIMS, 5, [])] == ["m1"]:
            break
        await asyncio.sleep(0.02)
    else:
        pytest.fail("the document was not indexed again")


def test_urls_and_options() -> None:
    engine = RedisVectorSearch.from_url(
        "redis+search://127.0.0.1:1/2?prefix=p:&algorithm=flat&max_connections=3"
    )
    assert (engine.prefix, engine.algorithm) == ("p:", "flat")
    assert engine.client.connection_pool.connection_kwargs["db"] == 2
    assert isinstance(open_vector_search("redis+search://127.0.0.1:1", timeout=0.05), GuardedVectorSearch)
    for bad in (
        "redis://127.0.0.1:1",
        "redis+search://127.0.0.1:1?algorithm=ivf",
        "redis+search://127.0.0.1:1?m=0",
        "redis+search://127.0.0.1:1?nope=1",
        "redis+search://127.0.0.1:1/x",
    ):
        with pytest.raises(ValueError):
            RedisVectorSearch.from_url(bad)
    # Settings: "local" or a redis+search URL; anything else stops the proxy with one line.
    assert settings_from_mapping({}, environ={}).layers.semantic.index == "local"
    good = {"layers": {"semantic": {"index": "redis+search://h:6379/0?prefix=x:"}}}
    assert settings_from_mapping(good, environ={}).layers.semantic.index.startswith("redis+search://")
    with pytest.raises(Exception, match="index"):
        settings_from_mapping({"layers": {"semantic": {"index": "redis://h:6379"}}}, environ={})


# --- SemanticIndex on both index kinds ------------------------------------------------------------


async def test_paraphrase_trap_and_scopes_on_both_kinds(kind: str, url: str | None) -> None:
    index = make(kind, url)
    try:
        assert await index.add("scope-a", ORIGINAL, "t:x:1", ttl=60)
        found = await index.resolve("scope-a", PARAPHRASE)
        assert found.outcome == "hit" and found.match is not None
        assert found.match.entry_key == "t:x:1" and found.match.prompt == ORIGINAL
        assert found.match.similarity == pytest.approx(0.95, abs=1e-3)
        trap = await index.resolve("scope-a", TRAP)
        assert trap.outcome == "refused" and trap.reason == "entity"
        assert (await index.resolve("scope-b", ORIGINAL)).outcome == "miss"  # same text, other scope
        assert (await index.resolve("scope-a", "Tell me a joke")).outcome == "miss"
        assert index.index_stats()["index" if kind == "shared" else "entries"] in ("redis+search", 1)
    finally:
        await index.close()


async def test_expiry_generation_forget_on_both_kinds(kind: str, url: str | None) -> None:
    index = make(kind, url)
    now = time.time()
    try:
        await index.add("s", ORIGINAL, "t:x:1", ttl=60, generation=1, now=now)
        assert await index.lookup("s", ORIGINAL, now=now + 1) is not None
        assert await index.lookup("s", ORIGINAL, now=now + 1, min_generation=2) is None
        assert await index.lookup("s", ORIGINAL, now=now + 61) is None  # expired (by its own clock)
        index.forget("s", "t:x:1")
        await asyncio.sleep(0.1)  # the shared index deletes in the background
        assert await index.lookup("s", ORIGINAL, now=now + 1) is None
    finally:
        await index.close()


async def test_shared_records_expire_with_their_entry_and_forget_deletes_them(redis_search_url: str) -> None:
    url = with_prefix(redis_search_url)
    engine = RedisVectorSearch.from_url(url)
    index = make("shared", url)
    try:
        await index.add("s", ORIGINAL, "t:x:1", ttl=0.3)
        await index.add("s", "Tell me a joke", "t:x:2", ttl=60)
        assert await engine.count(DIMS) == 2
        await asyncio.sleep(0.5)
        assert await engine.count(DIMS) == 1  # the server dropped the expired vector itself
        # An entry that died early (invalidated): the region finds it dead and calls forget.
        index.forget("s", "t:x:2")
        for _ in range(50):
            if await engine.count(DIMS) == 0:
                break
            await asyncio.sleep(0.02)
        assert await engine.count(DIMS) == 0
        assert index.stats["forgotten"] == 1
    finally:
        await index.close()
        await engine.close()


async def test_a_cold_replica_serves_at_once_without_loading(redis_search_url: str) -> None:
    url = with_prefix(redis_search_url)
    writer = make("shared", url)
    await writer.add("s", ORIGINAL, "t:x:1", ttl=60)
    cold = make("shared", url)  # its own empty MemoryStore: nothing can come through the store
    try:
        found = await cold.resolve("s", PARAPHRASE)
        assert found.outcome == "hit" and found.match is not None and found.match.entry_key == "t:x:1"
        assert cold.stats["synced"] == 0 and len(cold._index) == 0  # nothing was loaded into the process
    finally:
        await writer.close()
        await cold.close()


async def test_the_driver_drops_documents_of_another_tag_even_if_the_engine_returned_them(
    search: RedisVectorSearch, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Defence in depth: the engine filters by tag; were its ranking buggy, the driver still drops every
    document whose tag (or key) is not the one asked for (and the region re-checks the exact entry,
    whose tenant is part of its key and of its envelope)."""
    from redis.commands.search.document import Document

    await search.ensure_index(DIMS)
    mine = search.key("aa", "m1", DIMS)
    theirs = search.key("bb", "m2", DIMS)

    class LeakyResult:
        docs = [
            Document(theirs, tag="bb", dist="0", text="tenant B"),
            Document(theirs.replace(":bb:", ":aa:"), tag="bb", dist="0", text="forged key"),
            Document(theirs, tag="aa", dist="0", text="forged tag"),
            Document(mine, tag="aa", dist="0.01", text="mine"),
        ]

    class LeakyIndex:
        async def search(self, *args: Any, **kwargs: Any) -> LeakyResult:
            return LeakyResult()

    monkeypatch.setattr(search.client, "ft", lambda name: LeakyIndex())
    hits = await search.knn("aa", vec("x"), DIMS, 10, ["text"])
    assert [(h.member, h.fields["text"]) for h in hits] == [("m1", "mine")]


# --- failing open --------------------------------------------------------------------------------


async def test_dead_server_is_a_miss_within_the_deadline(redis_search_factory: Any) -> None:
    server = redis_search_factory()
    url = f"redis+search://127.0.0.1:{server.port}/0?prefix=dead:"
    shared = SharedVectorIndex(
        GuardedVectorSearch(RedisVectorSearch.from_url(url), 0.1, CircuitBreaker(3, 0.5))
    )
    index = SemanticIndex(
        MemoryStore(),
        namespace="t",
        embedder=TableEmbedder(TABLE),
        settings=SemanticLayer(enabled=True, threshold=0.9),
        shared=shared,
    )
    try:
        assert await index.add("s", ORIGINAL, "t:x:1", ttl=60)
        assert (await index.resolve("s", PARAPHRASE)).outcome == "hit"
        server.stop()
        stalls = LoopStalls()
        for _ in range(6):
            started = time.monotonic()
            stalls.reset()
            assert (await index.resolve("s", PARAPHRASE)).outcome == "error"
            assert stalls.excused(time.monotonic() - started, deadline=0.1) < 0.1 + 0.05
        stalls.stop()
        assert not await index.add("s", "Tell me a joke", "t:x:2", ttl=60)
        restarted = redis_search_factory(server.port)  # an empty server: index and vectors are gone
        deadline = time.monotonic() + 5
        while (await index.resolve("s", PARAPHRASE)).outcome == "error":
            assert time.monotonic() < deadline, "lookups did not resume after the restart"
            await asyncio.sleep(0.05)
        assert await index.add("s", ORIGINAL, "t:x:1", ttl=60)
        assert (await index.resolve("s", PARAPHRASE)).outcome == "hit"
        restarted.stop()
    finally:
        await index.close()


async def test_hung_server_is_a_miss_within_the_deadline_and_resumes(redis_search_factory: Any) -> None:
    server = redis_search_factory()
    url = f"redis+search://127.0.0.1:{server.port}/0?prefix=hung:"
    breaker = CircuitBreaker(3, 0.5)
    shared = SharedVectorIndex(GuardedVectorSearch(RedisVectorSearch.from_url(url), 0.1, breaker))
    index = SemanticIndex(
        MemoryStore(),
        namespace="t",
        embedder=TableEmbedder(TABLE),
        settings=SemanticLayer(enabled=True, threshold=0.9),
        shared=shared,
    )
    assert server.pid is not None
    try:
        assert await index.add("s", ORIGINAL, "t:x:1", ttl=60)
        os.kill(server.pid, signal.SIGSTOP)
        took, waited = [], []
        stalls = LoopStalls()
        for _ in range(8):
            started = time.monotonic()
            stalls.reset()
            assert (await index.resolve("s", PARAPHRASE)).outcome == "error"
            took.append(time.monotonic() - started)
            waited.append(stalls.excused(took[-1], deadline=0.1))
        stalls.stop()
        assert max(waited) < 0.1 + 0.05  # the deadline, plus the loop's own slack
        assert breaker.state in ("open", "half_open")
        assert min(took[3:]) < 0.01  # breaker open: no waiting at all
        os.kill(server.pid, signal.SIGCONT)
        deadline = time.monotonic() + 5
        while (await index.resolve("s", PARAPHRASE)).outcome != "hit":
            assert time.monotonic() < deadline, "lookups did not resume after SIGCONT"
            await asyncio.sleep(0.05)
    finally:
        if server.pid is not None:
            os.kill(server.pid, signal.SIGCONT)
        await index.close()
        server.stop()


async def test_guard_turns_every_failure_into_a_store_error() -> None:
    class Broken:
        async def knn(self, *args: Any) -> list[VectorHit]:
            raise RuntimeError("boom")

        async def delete(self, *args: Any) -> bool:
            await asyncio.sleep(10)
            return True

    guarded = GuardedVectorSearch(Broken(), 0.05)  # type: ignore[arg-type]
    with pytest.raises(StoreError):
        await guarded.knn("a", b"", 1, 1, [])
    stalls = LoopStalls()
    await asyncio.sleep(0)
    started = time.monotonic()
    with pytest.raises(StoreError):
        await guarded.delete("a", "b", 1)
    assert stalls.excused(time.monotonic() - started, deadline=0.05) < 0.2  # cut at 0.05 s, not after 10 s
    stalls.stop()
    assert guarded.counters() == {"failures": 2, "timeouts": 1, "short_circuits": 0}


async def test_start_connects_and_creates_the_index(redis_search_url: str) -> None:
    url = with_prefix(redis_search_url)
    engine = RedisVectorSearch.from_url(url)
    index = make("shared", url)
    try:
        assert await engine.count(DIMS) is None  # no index yet
        await index.start()
        assert await engine.count(DIMS) == 0  # created at start-up: the first lookup is one round trip
    finally:
        await index.close()
        await engine.close()
