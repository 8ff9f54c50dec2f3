"""LiteLLM's request pipeline, emulated for a hit: which callbacks are rate limiters, and what a hook
may not change."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from litellm_cache_plugin.integrations import compat


def is_rate_limiter(callback: object) -> bool:
    # Per class, not per call: asked for every callback of every hit (and of every hit's logging).
    kind = type(callback)
    known = _LIMITER_CLASSES.get(kind)
    if known is None:
        module = kind.__module__
        known = compat.is_litellm_module(module) and (
            "rate_limit" in module or "parallel_request_limiter" in module
        )
        _LIMITER_CLASSES[kind] = known
    return known


_LIMITER_CLASSES: dict[type, bool] = {}  # classes are few (the registered callbacks')


def _request_shape(data: Mapping[str, Any]) -> bytes:
    """What the answer depends on, serialized: a hook that edits it in place is seen too."""
    fields = [data.get(name) for name in ("model", "messages", "prompt", "input")]
    return orjson.dumps(fields, default=str)


def _replace(data: dict[str, Any], response: Mapping[str, Any]) -> dict[str, Any]:
    data.clear()
    data.update(response)
    return data


def _limiters() -> list[Any]:
    capabilities = compat.fast_path_internals().ProxyLogging.callback_capabilities()
    return [c for c in capabilities.resolved_callbacks if is_rate_limiter(c)]
