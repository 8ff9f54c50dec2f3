"""LiteLLM's request pipeline, emulated for a hit: which callbacks are rate limiters, and what a hook
may not change."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson


def is_rate_limiter(callback: object) -> bool:
    module = type(callback).__module__
    return module.startswith("litellm.") and ("rate_limit" in module or "parallel_request_limiter" in module)


def _request_shape(data: Mapping[str, Any]) -> bytes:
    """What the answer depends on, serialized: a hook that edits it in place is seen too."""
    fields = [data.get(name) for name in ("model", "messages", "prompt", "input")]
    return orjson.dumps(fields, default=str)


def _replace(data: dict[str, Any], response: Mapping[str, Any]) -> dict[str, Any]:
    data.clear()
    data.update(response)
    return data


def _limiters() -> list[Any]:
    from litellm.proxy.utils import ProxyLogging

    return [c for c in ProxyLogging.callback_capabilities().resolved_callbacks if is_rate_limiter(c)]
