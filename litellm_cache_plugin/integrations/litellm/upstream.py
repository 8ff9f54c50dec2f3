"""The region's ports implemented with LiteLLM: re-running a call upstream, LiteLLM's price list,
and embedding through a model group (``embedder: "litellm:<group>"``)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import litellm

from litellm_cache_plugin.integrations import compat
from litellm_cache_plugin.integrations.litellm.context import (
    IDENTITY_FIELD,
    JUDGE_FIELD,
    REFRESH_FIELD,
    metadata_of,
)
from litellm_cache_plugin.policy.keys import OUTPUT_PARAMS
from litellm_cache_plugin.region import RequestContext

_CONNECTION_PARAMS = frozenset(
    {
        "model", "api_base", "api_key", "api_version", "base_url", "custom_llm_provider", "organization",
        "extra_headers", "timeout", "drop_params", "model_info", "messages", "prompt",
    }
)  # fmt: skip


def refresh_call(source: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments that re-run a request upstream, skip the lookup and store the answer."""
    call = {
        k: v for k, v in source.items() if (k in _CONNECTION_PARAMS or k in OUTPUT_PARAMS) and v is not None
    }
    kept = (IDENTITY_FIELD, "model_group", "model_info", "cache_tags")
    metadata = {k: v for k, v in metadata_of(source).items() if k in kept}
    metadata[REFRESH_FIELD] = True
    call.update(metadata=metadata, cache={"no-cache": True}, caching=True, stream=False)
    return call


class LiteLLMUpstream:
    """:class:`region.ports.Upstream`: a refresh is a LiteLLM call that skips the lookup; its answer
    comes back through the carrier's normal write."""

    async def refresh(self, ctx: RequestContext, timeout: float) -> None:
        function = litellm.acompletion if ctx.request.kind == "chat" else litellm.atext_completion
        await asyncio.wait_for(function(**refresh_call(ctx.source)), timeout=timeout)


def judge_call(model_group: str, messages: list[dict[str, str]], timeout: float) -> dict[str, Any]:
    """Keyword arguments of a call to the judge model: deterministic, short, and outside the cache
    (``caching=False`` skips LiteLLM's lookup, ``no-store`` its write, and the metadata flag makes
    the plugin's own context of it uncacheable and uncounted: a judge call is never verified)."""
    return {
        "model": model_group,
        "messages": messages,
        "temperature": 0,
        "max_tokens": 8,
        "stream": False,
        "timeout": timeout,
        "caching": False,
        "cache": {"no-cache": True, "no-store": True},
        "metadata": {JUDGE_FIELD: True},
    }


class LiteLLMJudge:
    """:class:`region.ports.Judge`: asks a model group through the proxy's router (the Router given to
    ``attach`` in SDK mode; plain ``litellm.acompletion`` with the name as a model otherwise)."""

    def __init__(self, router: Any = None) -> None:
        self.router = router

    async def ask(self, model_group: str, messages: list[dict[str, str]], timeout: float) -> str:
        router = getattr(compat.loaded_proxy_server(), "llm_router", None) or self.router
        call = router.acompletion if router is not None else litellm.acompletion
        response = await call(**judge_call(model_group, messages, timeout))
        choices = getattr(response, "choices", None) or []
        message = getattr(choices[0], "message", None) if choices else None
        content = getattr(message, "content", None)
        return content if isinstance(content, str) else ""


class LiteLLMCosts:
    """:class:`region.ports.ModelCosts` from LiteLLM's cost map."""

    def model_cost(self, model: str, provider: str | None) -> Mapping[str, Any] | None:
        bare = model.split("/", 1)[-1]
        for name in (model, f"{provider}/{bare}", bare):
            candidate = litellm.model_cost.get(name)
            if isinstance(candidate, Mapping) and "input_cost_per_token" in candidate:
                return candidate
        return None


def litellm_embed(embedder: str) -> Any:
    """For ``embedder: "litellm:<group>"``: embed through that model group (the proxy's router when
    running in the proxy, plain litellm otherwise)."""
    if not embedder.startswith("litellm:"):
        return None
    group = embedder.split(":", 1)[1]

    async def embed(texts: Any) -> list[list[float]]:
        router = getattr(compat.loaded_proxy_server(), "llm_router", None)
        call = router.aembedding if router is not None else litellm.aembedding
        response = await call(model=group, input=list(texts))
        return [list(item["embedding"]) for item in response.data]

    return embed
