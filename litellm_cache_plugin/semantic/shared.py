"""The semantic layer's vector index on a shared search engine (``layers.semantic.index:
redis+search://...``) instead of in every process.

Same small interface as the in-process :class:`~litellm_cache_plugin.semantic.index.VectorIndex`
(add, search within a scope, remove, drop a scope), async because it is a network call. The vectors
live in the search engine only: a replica holds none of them, loads nothing at start and serves
semantic hits from its first request on.

Isolation: a scope (tenant, model group and version, system prompt and earlier turns, parameters,
embedder: the hashed id the layer computes) is the document's TAG, and every search is filtered by
it in the engine, then checked again on each hit; a hit also only names an exact-layer key, which the
region re-checks (tenant, invalidation counters, model version, freshness) before anything is served.

A conversation scoped by meaning (``layers.semantic.conversations: by_meaning``) stores its earlier
turns in the document's ``context`` field (JSON); the layer judges them (``conversation.decide``) in
process.

Expiry: a vector expires with its entry (the same backend TTL); an entry that dies earlier
(invalidated by model or tag, evicted) is found dead by the region's re-check, which then calls
:meth:`SharedVectorIndex.remove`. Every call has the backend deadline and a circuit breaker
(:class:`~litellm_cache_plugin.store.vector_search.GuardedVectorSearch`): a slow or dead server is
a ``StoreError`` within the deadline, which the layer turns into a miss.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson

from litellm_cache_plugin.semantic.guard import PromptFeatures
from litellm_cache_plugin.semantic.index import Candidate, Vector, decode_context, encode_context
from litellm_cache_plugin.store.vector_search import VectorSearch, open_vector_search

__all__ = ["SharedVectorIndex", "open_shared_index"]

_FIELDS = ("text", "entry", "created", "expires", "generation", "context")


def member_of(entry_key: str) -> str:
    """The document id of an exact-layer key within its scope (a hash: safe in keys and queries)."""
    return hashlib.sha256(entry_key.encode("utf-8")).hexdigest()[:32]


def _as_bytes(vector: Vector) -> bytes:
    return np.ascontiguousarray(vector, dtype="<f4").tobytes()


class SharedVectorIndex:
    """Semantic records of every scope in a :class:`VectorSearch` engine shared by all replicas.

    ``scope`` arguments are the layer's hashed scope ids (``[0-9a-f]{32}``), used as the TAG as they
    are. Errors are the engine's (``StoreError`` within the deadline, ``ValueError`` for a bad vector):
    the layer fails open on them."""

    kind = "redis+search"

    def __init__(self, search: VectorSearch) -> None:
        self.search_engine = search

    async def add(
        self,
        scope: str,
        entry_key: str,
        text: str,
        vector: Vector,
        *,
        ttl: float,
        expires_at: float,
        generation: int = 0,
        created_at: float = 0.0,
        context: tuple[tuple[str, str], ...] = (),
    ) -> None:
        fields = {
            "text": text,
            "entry": entry_key,
            "created": repr(float(created_at)),
            "expires": repr(float(expires_at)),
            "generation": str(int(generation)),
        }
        if context:
            fields["context"] = orjson.dumps(encode_context(context)).decode("utf-8")
        await self.search_engine.add(scope, member_of(entry_key), _as_bytes(vector), len(vector), fields, ttl)

    async def search(
        self,
        scope: str,
        query: Vector,
        *,
        threshold: float,
        k: int,
        now: float,
        min_generation: int = 0,
        features: Callable[[str], PromptFeatures],
    ) -> list[Candidate]:
        """Up to ``k`` live records of ``scope`` with similarity >= ``threshold``, best first.

        ``features`` computes a cached prompt's guard features (the layer keeps the last ones)."""
        hits = await self.search_engine.knn(scope, _as_bytes(query), len(query), k, _FIELDS)
        out: list[Candidate] = []
        for hit in hits:
            similarity = 1.0 - hit.distance
            if similarity < threshold:
                break  # nearest first: nothing further is close enough
            fields = hit.fields
            try:
                entry_key = fields["entry"]
                text = fields["text"]
                expires_at = float(fields["expires"])
                generation = int(fields["generation"])
                created_at = float(fields.get("created", "0"))
                raw_context = fields.get("context")
                context = decode_context(orjson.loads(raw_context)) if raw_context else ()
            except (KeyError, ValueError):  # orjson.JSONDecodeError is a ValueError
                continue
            # The engine may still hold a key past its expiry for a moment; a record written under an
            # older model generation is not served.
            if expires_at <= now or generation < min_generation or member_of(entry_key) != hit.member:
                continue
            out.append(Candidate(entry_key, text, similarity, features(text), created_at, context))
        return out

    async def remove(self, scope: str, entry_key: str, dims: int) -> bool:
        return await self.search_engine.delete(scope, member_of(entry_key), dims)

    async def drop_scope(self, scope: str, dims: int) -> int:
        return await self.search_engine.drop_tag(scope, dims)

    async def prepare(self, dims: int) -> None:
        """Connect and create the index now (start-up), so a first lookup is one round trip."""
        await self.search_engine.ensure_index(dims)

    async def count(self, dims: int) -> int | None:
        return await self.search_engine.count(dims)

    def stats(self) -> dict[str, Any]:
        counters = getattr(self.search_engine, "counters", None)
        found = counters() if callable(counters) else {}
        return {"index": self.kind, **{f"index_{name}": value for name, value in found.items()}}

    async def close(self) -> None:
        await self.search_engine.close()


def open_shared_index(url: str, *, timeout: float) -> SharedVectorIndex:
    """The shared index ``url`` names (``redis+search://host:port/db?prefix=...``), every call
    bounded by ``timeout`` seconds. Raises ``ValueError`` for a bad URL or option."""
    return SharedVectorIndex(open_vector_search(url, timeout=timeout))
