"""Invalidation: constant-time, by bumping the counters every entry records when it is written (a
model group, a tag, a tenant's tag, a tenant); an entry whose counters moved misses from then on and
is cleaned up by its TTL (``policy/tags.py``)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Protocol

from litellm_cache_plugin.engine.stats import EngineStats
from litellm_cache_plugin.observe import INVALIDATION_KIND, Observer
from litellm_cache_plugin.policy.tags import model_counter, tag_counter, tenant_counter, tenant_tag_counter
from litellm_cache_plugin.store.base import Store

__all__ = ["Invalidation"]


class _Engine(Protocol):
    """What invalidation uses of its engine, read at each call (the engine's store and observer may be
    replaced after it was built)."""

    store: Store
    namespace: str
    stats: EngineStats
    telemetry: Observer | None


class Invalidation:
    """The engine's invalidations (``CacheEngine.invalidation``); each is counted under the ``admin``
    layer and, with telemetry, spanned."""

    def __init__(self, engine: _Engine) -> None:
        self._engine = engine

    async def invalidate_model(self, model_group: str) -> int:
        """Constant time: bump the model group's counter. Every entry of the group (every tenant,
        every layer) misses from now on and is cleaned up by its TTL."""
        with self._invalidation_span("model"):
            value = await self._engine.store.incr(model_counter(self._engine.namespace, model_group))
        self._engine.stats.bump("admin", model_group, "invalidate_model")
        return value

    async def invalidate_tag(self, tag: str) -> int:
        """Admin: every entry carrying ``tag``, whatever its tenant. Constant time."""
        with self._invalidation_span("tag"):
            value = await self._engine.store.incr(tag_counter(self._engine.namespace, tag))
        self._engine.stats.bump("admin", "-", "invalidate_tag")
        return value

    async def invalidate_tenant_tag(self, tenant_fingerprints: Iterable[str], tag: str) -> int:
        """A tenant's own entries carrying ``tag`` (the caller's tenants only). Constant time."""
        fingerprints = sorted(set(tenant_fingerprints))
        with self._invalidation_span("tenant_tag"):
            for fingerprint in fingerprints:
                await self._engine.store.incr(tenant_tag_counter(self._engine.namespace, fingerprint, tag))
        self._engine.stats.bump("admin", "-", "invalidate_tenant_tag")
        return len(fingerprints)

    async def invalidate_tenant(self, tenant_fingerprint: str) -> int:
        with self._invalidation_span("tenant"):
            return await self._engine.store.incr(tenant_counter(self._engine.namespace, tenant_fingerprint))

    @contextlib.contextmanager
    def _invalidation_span(self, kind: str) -> Iterator[None]:
        """Span and counter of one invalidation (counted when it succeeded)."""
        if self._engine.telemetry is None:
            yield
            return
        with self._engine.telemetry.span("llm_cache.invalidate", {INVALIDATION_KIND: kind}):
            yield
        self._engine.telemetry.record_invalidation(kind)
