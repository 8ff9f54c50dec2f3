"""What the region needs from the framework around it: small typed ports the adapters implement.

The region never imports LiteLLM; the LiteLLM glue implements these (``integrations/litellm``).
Telemetry comes in through :class:`litellm_cache_plugin.observe.Observer`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from litellm_cache_plugin.region.context import RequestContext


class Upstream(Protocol):
    """Re-runs a call upstream for a stale-while-revalidate refresh; the answer reaches the region's
    normal write path (raises when the upstream call fails)."""

    async def refresh(self, ctx: RequestContext, timeout: float) -> None: ...


class ModelCosts(Protocol):
    """The framework's price list for a deployment model (None: unknown)."""

    def model_cost(self, model: str, provider: str | None) -> Mapping[str, Any] | None: ...


class Judge(Protocol):
    """Asks a judge model (a model group of the same proxy or Router) one question, off the request
    path, for verified semantic matches; returns the answer's text (raises when the call fails).

    The call must bypass the cache entirely: it is neither looked up nor stored, and therefore never
    verified itself."""

    async def ask(self, model_group: str, messages: list[dict[str, str]], timeout: float) -> str: ...
