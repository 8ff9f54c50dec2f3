"""The cache engine: policy decisions applied to a store. Knows nothing about LiteLLM.

Every backend call is bounded (the store is wrapped in :class:`GuardedStore` by the caller) and every
failure is a miss or a skipped write: the cache never fails a request.

- ``core`` — :class:`CacheEngine`: lookups, writes, the count of every result, background tasks.
- ``flights`` — :class:`SingleFlight` (``CacheEngine.flights``): coalesced misses across replicas,
  the refresh lock of stale-while-revalidate.
- ``invalidation`` — :class:`Invalidation` (``CacheEngine.invalidation``): model, tag, tenant.
- ``stats`` — :class:`EngineStats`: the per-worker counters and savings.
"""

from __future__ import annotations

from litellm_cache_plugin.engine.core import CacheEngine, Lookup, Prefetched, layer_kind
from litellm_cache_plugin.engine.flights import FlightRole, SingleFlight, SingleFlightSettings
from litellm_cache_plugin.engine.invalidation import Invalidation
from litellm_cache_plugin.engine.stats import SAVING_FIELDS, UNRATED_LAYERS, EngineStats

__all__ = [
    "SAVING_FIELDS",
    "UNRATED_LAYERS",
    "CacheEngine",
    "EngineStats",
    "FlightRole",
    "Invalidation",
    "Lookup",
    "Prefetched",
    "SingleFlight",
    "SingleFlightSettings",
    "layer_kind",
]
