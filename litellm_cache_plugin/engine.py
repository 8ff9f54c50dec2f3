"""The cache engine: policy decisions applied to a store. Knows nothing about LiteLLM.

Every backend call is bounded (the store is wrapped in :class:`GuardedStore` by the caller) and every
failure is a miss or a skipped write: the cache never fails a request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from litellm_cache_plugin.envelope import Entry, decode_entry, encode_entry
from litellm_cache_plugin.policy.controls import Outcome, RequestControls
from litellm_cache_plugin.policy.freshness import age_seconds, backend_ttl, classify
from litellm_cache_plugin.policy.keys import Tenant, model_generation_key
from litellm_cache_plugin.store.base import Store, StoreError, StoreStats

log = logging.getLogger("litellm_cache_plugin")


@dataclass(frozen=True)
class Lookup:
    outcome: Outcome
    reason: str
    entry: Entry | None = None
    age: int | None = None
    generation: int | None = None


@dataclass
class EngineStats:
    """In-process counters (per worker). Keys: (layer, model_group, outcome-or-event)."""

    counts: Counter[tuple[str, str, str]]
    saved_ms: dict[tuple[str, str], float]

    def bump(self, layer: str, model_group: str, what: str, amount: int = 1) -> None:
        self.counts[(layer, model_group, what)] += amount

    def snapshot(self) -> dict[str, dict[str, dict[str, float]]]:
        out: dict[str, dict[str, dict[str, float]]] = {}
        for (layer, model, what), count in sorted(self.counts.items()):
            out.setdefault(layer, {}).setdefault(model, {})[what] = count
        for (layer, model), saved in sorted(self.saved_ms.items()):
            out.setdefault(layer, {}).setdefault(model, {})["latency_saved_ms"] = round(saved, 3)
        for models in out.values():
            for row in models.values():
                hits = row.get("hit", 0) + row.get("stale", 0)
                looked = hits + row.get("miss", 0)
                row["hit_ratio"] = round(hits / looked, 4) if looked else 0.0
        return out


class CacheEngine:
    def __init__(self, store: Store, *, namespace: str, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.namespace = namespace
        self.clock = clock
        self.stats = EngineStats(Counter(), {})

    # -- exact layer -------------------------------------------------------------------------------

    async def lookup(
        self,
        key: str,
        *,
        tenant: Tenant,
        model_group: str,
        model_version: str,
        controls: RequestControls,
        layer: str = "exact",
    ) -> Lookup:
        if controls.no_cache:
            self.stats.bump(layer, model_group, "bypass")
            return Lookup("BYPASS", "no_cache")
        gen_key = model_generation_key(self.namespace, model_group)
        try:
            raw, (generation,) = await asyncio.gather(self.store.get(key), self.store.get_counters([gen_key]))
        except StoreError as error:
            self.stats.bump(layer, model_group, "backend_error")
            log.warning("cache lookup failed open: %s", error)
            return Lookup("MISS", "backend_error")
        return self._judge(raw, key, tenant, model_group, model_version, controls, generation, layer)

    def _judge(
        self,
        raw: bytes | None,
        key: str,
        tenant: Tenant,
        model_group: str,
        model_version: str,
        controls: RequestControls,
        generation: int,
        layer: str,
    ) -> Lookup:
        if raw is None:
            self.stats.bump(layer, model_group, "miss")
            return Lookup("MISS", "absent", generation=generation)
        entry = decode_entry(raw)
        if entry is None:
            self.stats.bump(layer, model_group, "corrupt")
            self.stats.bump(layer, model_group, "miss")
            self._spawn(self._delete_quietly(key))
            return Lookup("MISS", "undecodable", generation=generation)
        # Defence in depth: the tenant is already in the key; an entry of another tenant can only appear
        # here through a hash collision or a bug, and is never served.
        if entry.tenant != tenant.fingerprint or entry.kind != layer_kind(layer):
            self.stats.bump(layer, model_group, "tenant_mismatch")
            self.stats.bump(layer, model_group, "miss")
            return Lookup("MISS", "tenant_mismatch", generation=generation)
        if entry.generation < generation:
            self.stats.bump(layer, model_group, "miss")
            return Lookup("MISS", "invalidated", generation=generation)
        if entry.model_version != model_version:
            self.stats.bump(layer, model_group, "miss")
            return Lookup("MISS", "model_version_changed", generation=generation)
        now = self.clock()
        state = classify(entry.created_at, entry.fresh_for, entry.stale_for, now, controls.max_age)
        if state == "expired":
            self.stats.bump(layer, model_group, "miss")
            return Lookup("MISS", "expired", generation=generation)
        outcome: Outcome = "HIT" if state == "fresh" else "STALE"
        self.stats.bump(layer, model_group, outcome.lower())
        if entry.upstream_ms:
            slot = (layer, model_group)
            self.stats.saved_ms[slot] = self.stats.saved_ms.get(slot, 0.0) + entry.upstream_ms
        return Lookup(
            outcome, state, entry=entry, age=age_seconds(entry.created_at, now), generation=generation
        )

    async def store_entry(
        self,
        key: str,
        payload: bytes,
        *,
        tenant: Tenant,
        model_group: str,
        model_version: str,
        ttl: float,
        stale_for: float = 0.0,
        upstream_ms: float | None = None,
        generation: int | None = None,
        layer: str = "exact",
        max_bytes: int | None = None,
    ) -> bool:
        """Write an entry; returns False (and logs) when it was not stored."""
        if max_bytes is not None and len(payload) > max_bytes:
            self.stats.bump(layer, model_group, "too_large")
            return False
        try:
            if generation is None:
                (generation,) = await self.store.get_counters(
                    [model_generation_key(self.namespace, model_group)]
                )
            entry = Entry(
                payload=payload,
                created_at=self.clock(),
                fresh_for=ttl,
                stale_for=stale_for,
                tenant=tenant.fingerprint,
                generation=generation,
                model_version=model_version,
                kind=layer_kind(layer),
                upstream_ms=upstream_ms,
            )
            await self.store.set(key, encode_entry(entry), backend_ttl(ttl, stale_for))
        except StoreError as error:
            self.stats.bump(layer, model_group, "backend_error")
            log.warning("cache write skipped: %s", error)
            return False
        self.stats.bump(layer, model_group, "store")
        return True

    # -- embedding layer: many items at once ---------------------------------------------------------

    async def lookup_many(
        self,
        keys: Sequence[str],
        *,
        tenant: Tenant,
        model_group: str,
        model_version: str,
        controls: RequestControls,
    ) -> tuple[list[Entry | None], int | None]:
        layer = "embedding"
        if controls.no_cache:
            self.stats.bump(layer, model_group, "bypass", len(keys))
            return [None] * len(keys), None
        gen_key = model_generation_key(self.namespace, model_group)
        try:
            raws, (generation,) = await asyncio.gather(
                self.store.get_many(list(keys)), self.store.get_counters([gen_key])
            )
        except StoreError as error:
            self.stats.bump(layer, model_group, "backend_error")
            log.warning("cache lookup failed open: %s", error)
            return [None] * len(keys), None
        found: list[Entry | None] = []
        for key, raw in zip(keys, raws, strict=True):
            result = self._judge(raw, key, tenant, model_group, model_version, controls, generation, layer)
            found.append(result.entry if result.outcome == "HIT" else None)
        return found, generation

    async def store_many(
        self,
        items: Sequence[tuple[str, bytes]],
        *,
        tenant: Tenant,
        model_group: str,
        model_version: str,
        ttl: float,
        generation: int | None = None,
    ) -> int:
        layer = "embedding"
        try:
            if generation is None:
                (generation,) = await self.store.get_counters(
                    [model_generation_key(self.namespace, model_group)]
                )
            now = self.clock()
            encoded = [
                (
                    key,
                    encode_entry(
                        Entry(
                            payload=payload,
                            created_at=now,
                            fresh_for=ttl,
                            stale_for=0.0,
                            tenant=tenant.fingerprint,
                            generation=generation,
                            model_version=model_version,
                            kind="embedding",
                        )
                    ),
                )
                for key, payload in items
            ]
            await self.store.set_many(encoded, backend_ttl(ttl, 0.0))
        except StoreError as error:
            self.stats.bump(layer, model_group, "backend_error")
            log.warning("cache write skipped: %s", error)
            return 0
        self.stats.bump(layer, model_group, "store", len(items))
        return len(items)

    # -- invalidation and admin ------------------------------------------------------------------

    async def invalidate_model(self, model_group: str) -> int:
        """Constant time: bump the model group's generation. Every entry written under an older
        generation (every tenant, every layer) misses from now on and is cleaned up by its TTL."""
        generation = await self.store.incr(model_generation_key(self.namespace, model_group))
        self.stats.bump("admin", model_group, "invalidate_model")
        return generation

    async def backend_stats(self) -> StoreStats | None:
        try:
            return await self.store.stats()
        except StoreError:
            return None

    async def _delete_quietly(self, key: str) -> None:
        with contextlib.suppress(StoreError):
            await self.store.delete(key)

    _background: set[asyncio.Task[None]] = set()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        try:
            task = asyncio.ensure_future(coro)
        except RuntimeError:
            return
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def layer_kind(layer: str) -> str:
    return "embedding" if layer == "embedding" else "response"
