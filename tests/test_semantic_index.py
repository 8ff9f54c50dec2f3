"""The semantic index: in-process search/evict/isolation, and replicas kept in sync through real stores
(MemoryStore and Redis). A small deterministic embedder stands in for the model here (the real model
is tested in test_semantic_embedder.py)."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

np = pytest.importorskip("numpy", reason="the [semantic] extra is not installed")

from litellm_cache_plugin.semantic import CallableEmbedder, SemanticIndex  # noqa: E402
from litellm_cache_plugin.semantic.index import (  # noqa: E402
    Record,
    VectorIndex,
    decode_record,
    encode_record,
    unit,
)
from litellm_cache_plugin.settings import SemanticLayer  # noqa: E402
from litellm_cache_plugin.store.base import StoreError  # noqa: E402
from litellm_cache_plugin.store.memory import MemoryStore  # noqa: E402
from litellm_cache_plugin.store.redis import RedisStore  # noqa: E402

DIMS = 16


def random_unit(seed: str) -> Any:
    rng = np.random.default_rng(int(hashlib.sha256(seed.encode()).hexdigest()[:8], 16))
    return unit(rng.standard_normal(DIMS).astype(np.float32))


def near(vector: Any, cosine: float, seed: str = "noise") -> Any:
    """A unit vector with the given cosine to ``vector``."""
    other = random_unit(seed)
    other = unit(other - (other @ vector) * vector)
    return unit(cosine * vector + np.sqrt(1 - cosine**2) * other)


class TableEmbedder:
    """Vectors from a table (random but fixed for unknown texts); counts calls; can be made to fail."""

    def __init__(self, table: dict[str, Any] | None = None, model_id: str = "test-model") -> None:
        self.table = dict(table or {})
        self.calls = 0
        self.fail = False
        self._model_id = model_id

    @property
    def model_id(self) -> str:
        return self._model_id

    async def embed(self, texts: Sequence[str]) -> list[Any]:
        self.calls += 1
        if self.fail:
            raise RuntimeError("embedder down")
        return [self.table.get(t, random_unit(t)) for t in texts]


class FlakyStore(MemoryStore):
    """A real MemoryStore whose calls raise StoreError while ``down`` is set."""

    down = False

    async def get_counters(self, keys: Sequence[str]) -> list[int]:
        if self.down:
            raise StoreError("down")
        return await super().get_counters(keys)

    async def incr(self, key: str, amount: int = 1) -> int:
        if self.down:
            raise StoreError("down")
        return await super().incr(key, amount)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if self.down:
            raise StoreError("down")
        return await super().get_many(keys)


BASE = random_unit("paris-lyon")
TABLE = {
    "How far is Paris from Lyon?": BASE,
    "What's the distance between Paris and Lyon?": near(BASE, 0.95),
    "How far is Paris from Lille?": near(BASE, 0.97, "lille"),  # closer than the paraphrase: a trap
    "Tell me a joke": random_unit("joke"),
}


def settings(**overrides: Any) -> SemanticLayer:
    return SemanticLayer(enabled=True, threshold=0.9, **overrides)


def make(store: Any, embedder: TableEmbedder | None = None, **overrides: Any) -> SemanticIndex:
    return SemanticIndex(
        store, namespace="t", embedder=embedder or TableEmbedder(TABLE), settings=settings(**overrides)
    )


# --- in-process index ----------------------------------------------------------------------------


def test_vector_index_search_threshold_expiry_generation() -> None:
    index = VectorIndex(max_per_scope=10, max_total=100)
    index.add("s", "k1", "How far is Paris from Lyon?", BASE, expires_at=100, generation=2)
    index.add("s", "k2", "other", random_unit("other"), expires_at=100)
    found = index.search("s", near(BASE, 0.95), threshold=0.9, k=4, now=0)
    assert [c.entry_key for c in found] == ["k1"]
    assert found[0].similarity == pytest.approx(0.95, abs=1e-5)
    assert index.search("s", near(BASE, 0.85), threshold=0.9, k=4, now=0) == []
    assert index.search("s", BASE, threshold=0.9, k=4, now=100) == []  # expired
    assert index.search("s", BASE, threshold=0.9, k=4, now=0, min_generation=3) == []  # invalidated
    assert index.search("other-scope", BASE, threshold=0.0, k=4, now=0) == []


def test_vector_index_lru_eviction_per_scope_and_in_total() -> None:
    index = VectorIndex(max_per_scope=2, max_total=3)
    index.add("s", "a", "a", random_unit("a"), expires_at=100)
    index.add("s", "b", "b", random_unit("b"), expires_at=100)
    index.touch("s", "a")  # b is now the least recently used
    index.add("s", "c", "c", random_unit("c"), expires_at=100)
    rows = index.scope("s")
    assert rows is not None and "a" in rows and "c" in rows and "b" not in rows
    index.add("t", "d", "d", random_unit("d"), expires_at=100)
    index.add("u", "e", "e", random_unit("e"), expires_at=100)  # over 3 in total: scope s goes
    assert index.scope("s") is None and len(index) == 2 and index.evictions == 3


def test_vector_index_remove_keeps_other_rows_findable() -> None:
    index = VectorIndex(max_per_scope=10, max_total=100)
    for name in "abcd":
        index.add("s", name, name, random_unit(name), expires_at=100)
    assert index.remove("s", "a")
    assert not index.remove("s", "a")
    for name in "bcd":
        (best,) = index.search("s", random_unit(name), threshold=0.99, k=1, now=0)
        assert best.entry_key == name
    index.add("s", "b", "b again", random_unit("b"), expires_at=100)  # same key: replaced, not added
    assert len(index) == 3


def test_sign_bit_prefilter_finds_near_neighbours() -> None:
    index = VectorIndex(max_per_scope=5000, max_total=5000, exact_below=0, rescore=32)
    for i in range(3000):
        index.add("s", f"k{i}", "x", random_unit(f"v{i}"), expires_at=100)
    target = random_unit("v1234")
    (best,) = index.search("s", near(target, 0.93), threshold=0.9, k=1, now=0)
    assert best.entry_key == "k1234"


def test_record_round_trip_and_corruption() -> None:
    record = Record("hi", "t:x:1", BASE, 1.0, 2.0, 3, "m")
    raw = encode_record(record)
    decoded = decode_record(raw)
    assert decoded is not None
    assert (decoded.text, decoded.entry_key, decoded.generation, decoded.model_id) == ("hi", "t:x:1", 3, "m")
    assert np.allclose(decoded.vector, BASE)
    assert decode_record(raw[:-1]) is None
    assert decode_record(raw[:-4] + b"\x00\x00\x00\x00") is None
    assert decode_record(b"\x02" + raw[1:]) is None
    assert decode_record(b"") is None


# --- SemanticIndex on a real MemoryStore -----------------------------------------------------------


async def test_lookup_serves_paraphrase_refuses_trap_and_never_crosses_scopes() -> None:
    index = make(MemoryStore())
    assert await index.add("scope-a", "How far is Paris from Lyon?", "t:x:1", ttl=60)
    match = await index.lookup("scope-a", "What's the distance between Paris and Lyon?")
    assert match is not None and match.entry_key == "t:x:1" and match.prompt == "How far is Paris from Lyon?"
    assert match.similarity == pytest.approx(0.95, abs=1e-4)
    assert await index.lookup("scope-a", "How far is Paris from Lille?") is None  # guard: entity
    assert index.stats["guard_entity"] == 1
    assert await index.lookup("scope-b", "How far is Paris from Lyon?") is None  # same text, other scope
    assert await index.lookup("scope-a", "Tell me a joke") is None


async def test_guard_off_serves_the_trap() -> None:
    index = make(MemoryStore(), guard=False)
    await index.add("s", "How far is Paris from Lyon?", "t:x:1", ttl=60)
    assert await index.lookup("s", "How far is Paris from Lille?") is not None


async def test_add_after_missed_lookup_does_not_embed_again() -> None:
    embedder = TableEmbedder(TABLE)
    index = make(MemoryStore(), embedder)
    assert await index.lookup("s", "How far is Paris from Lyon?") is None
    await index.add("s", "How far is Paris from Lyon?", "t:x:1", ttl=60)
    assert embedder.calls == 1


async def test_replicas_share_records_through_the_store() -> None:
    store = MemoryStore()
    a, b = make(store), make(store)
    await a.add("s", "How far is Paris from Lyon?", "t:x:1", ttl=60)
    match = await b.lookup("s", "What's the distance between Paris and Lyon?")
    assert match is not None and match.entry_key == "t:x:1"
    await a.add("s", "Tell me a joke", "t:x:2", ttl=60)
    match = await b.lookup("s", "Tell me a joke")
    assert match is not None and match.entry_key == "t:x:2"
    assert b.stats["synced"] == 2  # each record loaded once
    await b.add("s", "Something else entirely", "t:x:3", ttl=60)
    assert (await a.lookup("s", "Something else entirely")) is not None
    assert a.stats["synced"] == 1


class CountingStore(MemoryStore):
    """A real MemoryStore that records the keys of every ``get_many``."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[list[str]] = []

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        self.batches.append(list(keys))
        return await super().get_many(keys)


async def test_large_backlog_loads_newest_first_in_bounded_batches() -> None:
    store = CountingStore()
    writer, reader = make(store), make(store, sync_batch=2)
    for i in range(7):
        await writer.add("s", f"prompt number {i} about topic {i}", f"t:x:{i}", ttl=60)
    assert await reader.lookup("s", "unrelated question") is None
    await asyncio.gather(*list(reader._tasks))
    assert reader.stats["synced"] == 7
    assert all(len(batch) <= 2 for batch in store.batches)
    assert store.batches[0] == [reader.record_key("s", 7), reader.record_key("s", 6)]  # newest first
    await reader.close()


async def test_record_not_yet_written_is_retried() -> None:
    store = MemoryStore()
    reader = make(store)
    writer = make(store)
    seq = writer.sequence_key("s")
    await store.incr(seq)  # a writer took number 1 but its SET has not landed yet
    assert await reader.lookup("s", "How far is Paris from Lyon?") is None
    record = Record("How far is Paris from Lyon?", "t:x:1", BASE, 0.0, 1e12, 0, "test-model")
    await store.set(writer.record_key("s", 1), encode_record(record), 60)
    match = await reader.lookup("s", "What's the distance between Paris and Lyon?")
    assert match is not None and match.entry_key == "t:x:1"


async def test_records_of_another_embedder_are_never_seen() -> None:
    store = MemoryStore()
    a = make(store, TableEmbedder(TABLE, model_id="model-1"))
    b = make(store, TableEmbedder(TABLE, model_id="model-2"))
    await a.add("s", "How far is Paris from Lyon?", "t:x:1", ttl=60)
    assert await b.lookup("s", "How far is Paris from Lyon?") is None
    assert a.record_key("s", 1) != b.record_key("s", 1)


async def test_generation_expiry_forget_and_too_long() -> None:
    index = make(MemoryStore(), max_chars=40)
    await index.add("s", "How far is Paris from Lyon?", "t:x:1", ttl=60, generation=1, now=1000)
    assert await index.lookup("s", "How far is Paris from Lyon?", now=1001) is not None
    assert await index.lookup("s", "How far is Paris from Lyon?", now=1001, min_generation=2) is None
    assert await index.lookup("s", "How far is Paris from Lyon?", now=1061) is None  # expired
    index.forget("s", "t:x:1")
    assert await index.lookup("s", "How far is Paris from Lyon?", now=1001) is None
    assert await index.lookup("s", "x" * 41) is None and index.stats["too_long"] == 1
    assert not await index.add("s", "x" * 41, "t:x:2", ttl=60)


async def test_fails_open_on_embedder_and_store_errors() -> None:
    store = FlakyStore()
    embedder = TableEmbedder(TABLE)
    index = make(store, embedder)
    await index.add("s", "How far is Paris from Lyon?", "t:x:1", ttl=60)
    store.down = True
    # The store is down: the local index still answers (the glue re-checks the exact entry anyway).
    assert await index.lookup("s", "What's the distance between Paris and Lyon?") is not None
    assert await index.add("s", "Tell me a joke", "t:x:2", ttl=60)  # kept locally, not shared
    store.down = False
    embedder.fail = True
    assert await index.lookup("s", "Something new") is None
    assert not await index.add("s", "Something new", "t:x:3", ttl=60)
    assert index.stats["error"] >= 2


async def test_counter_reset_drops_the_scope() -> None:
    store = MemoryStore()
    a, b = make(store), make(store)
    await a.add("s", "How far is Paris from Lyon?", "t:x:1", ttl=60)
    assert await b.lookup("s", "How far is Paris from Lyon?") is not None
    fresh = MemoryStore()  # the shared store was flushed
    b.store = fresh
    assert await b.lookup("s", "How far is Paris from Lyon?") is None


async def test_callable_embedder_wraps_a_function() -> None:
    async def embed(texts: Sequence[str]) -> list[list[float]]:
        return [list(map(float, random_unit(t) * 3)) for t in texts]  # not normalized: the index does it

    index = SemanticIndex(
        MemoryStore(), namespace="t", embedder=CallableEmbedder("litellm:emb", embed), settings=settings()
    )
    await index.add("s", "Tell me a joke", "t:x:1", ttl=60)
    match = await index.lookup("s", "Tell me a joke")
    assert match is not None and match.similarity == pytest.approx(1.0, abs=1e-5)


# --- replicas through a real Redis -------------------------------------------------------------------


@pytest.fixture
async def redis_pair(redis_url: str) -> AsyncIterator[tuple[RedisStore, RedisStore]]:
    prefix = parse_qs(urlsplit(redis_url).query)["prefix"][0] + uuid.uuid4().hex[:12] + ":"
    first = RedisStore.from_url(redis_url, prefix=prefix)
    second = RedisStore.from_url(redis_url, prefix=prefix)
    yield first, second
    await first.close()
    await second.close()


async def test_replicas_share_records_through_redis(redis_pair: tuple[RedisStore, RedisStore]) -> None:
    a, b = make(redis_pair[0]), make(redis_pair[1])
    assert await b.lookup("s", "How far is Paris from Lyon?") is None
    await a.add("s", "How far is Paris from Lyon?", "t:x:1", ttl=60)
    match = await b.lookup("s", "What's the distance between Paris and Lyon?")
    assert match is not None and match.entry_key == "t:x:1"
    assert await b.lookup("other", "How far is Paris from Lyon?") is None
    assert await b.lookup("s", "How far is Paris from Lille?") is None
    # A third process starting later rebuilds the scope lazily on its first lookup.
    c = make(redis_pair[1])
    assert (await c.lookup("s", "How far is Paris from Lyon?")) is not None
    assert c.stats["synced"] == 1
