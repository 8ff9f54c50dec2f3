"""Ports of a :class:`~litellm_cache_plugin.region.CacheRegion` for unit tests that never go upstream
and price nothing (the region's own tests of lookup, verification and conversations)."""

from __future__ import annotations

from litellm_cache_plugin.region import RequestContext


class NoUpstream:
    """:class:`region.ports.Upstream`: a stale-while-revalidate refresh does nothing."""

    async def refresh(self, ctx: RequestContext, timeout: float) -> None:
        return None


class NoCosts:
    """:class:`region.ports.ModelCosts`: no model has a known price."""

    def model_cost(self, model: str, provider: str | None) -> None:
        return None
