"""The cache region: the request pipeline every adapter goes through (no LiteLLM, no telemetry
library). Public interface:

- :class:`CacheRegion` - lookup, store, single flight, stale-while-revalidate, accounting;
- :class:`RequestContext` / :class:`Decision` - a call as the region sees it, and its answer;
- :class:`EmbeddingItems` - per-item embedding lookups for adapters that ask item by item;
- :func:`identity_of` / :class:`IdentitySigner` - who is calling, built in one place;
- ports (:class:`Upstream`, :class:`ModelCosts`) the adapters implement.
"""

from litellm_cache_plugin.region.accounting import Accounting, saving_attributes
from litellm_cache_plugin.region.context import Decision, RequestContext
from litellm_cache_plugin.region.embeddings import EmbeddingItems
from litellm_cache_plugin.region.identity import IdentitySigner, identity_of
from litellm_cache_plugin.region.pipeline import CacheRegion
from litellm_cache_plugin.region.ports import ModelCosts, Upstream

__all__ = [
    "Accounting",
    "CacheRegion",
    "Decision",
    "EmbeddingItems",
    "IdentitySigner",
    "ModelCosts",
    "RequestContext",
    "Upstream",
    "identity_of",
    "saving_attributes",
]
