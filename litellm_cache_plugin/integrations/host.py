"""What the LiteLLM adapters (carrier, fast path, edge, routes, prefix) need from the plugin that
hosts them: a Protocol, so that none of them imports the plugin class (no import circles)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from litellm_cache_plugin.engine import CacheEngine
from litellm_cache_plugin.region import CacheRegion, RequestContext
from litellm_cache_plugin.settings import PluginSettings
from litellm_cache_plugin.telemetry_setup import TelemetryRuntime
from litellm_cache_plugin.versions import OllamaVersions


class CacheHost(Protocol):
    settings: PluginSettings
    proxy_mode: bool
    region: CacheRegion
    versions: OllamaVersions
    telemetry_runtime: TelemetryRuntime | None

    @property
    def engine(self) -> CacheEngine: ...

    def context(self, kwargs: Mapping[str, Any]) -> RequestContext | None: ...

    def model_version(
        self, kwargs: Mapping[str, Any], provider: str | None, configured: str | None
    ) -> str: ...

    async def async_pre_call_hook(
        self, user_api_key_dict: Any, cache: Any, data: dict[str, Any], call_type: Any
    ) -> dict[str, Any]: ...

    async def async_pre_call_deployment_hook(
        self, kwargs: dict[str, Any], call_type: Any
    ) -> dict[str, Any]: ...
