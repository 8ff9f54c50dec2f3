"""Test helpers shipped with the package, for backend authors (needs pytest and pytest-asyncio)."""

from litellm_cache_plugin.testing.conformance import AdvanceTime, StoreConformance

__all__ = ["AdvanceTime", "StoreConformance"]
