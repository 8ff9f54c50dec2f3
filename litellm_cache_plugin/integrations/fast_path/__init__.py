"""Fast hit path: serve fresh exact hits ahead of LiteLLM's request pipeline (proxy only).

- ``wire.py``: which requests may be looked at, hits rendered as the proxy sends them (pure);
- ``groups.py``: deployment facts of a model group, the SDK call the router would make;
- ``pipeline.py``: what of LiteLLM's pipeline a hit must respect (rate limiters, hook rewrites);
- ``verdicts.py``: when a remembered auth verdict or request setup may be reused (pure);
- ``reuse.py``: the verdicts and setups ``fast_path.auth_reuse_seconds`` remembers in a worker;
- ``observers.py``: which of LiteLLM's success callbacks would see a hit (pure);
- ``hit_log.py``: hits logged as LiteLLM cache hits, off the request path (when anything would see them);
- ``app.py``: the ASGI callable and its per-request attempt (see its docstring for the whole story).
"""

from litellm_cache_plugin.integrations.fast_path.app import FastPathApp, install_fast_path
from litellm_cache_plugin.integrations.fast_path.groups import Deployment, GroupInfo, group_info, sdk_kwargs
from litellm_cache_plugin.integrations.fast_path.hit_log import (
    _LOGGING_HIT,
    _MODEL_COST_INFO,
    _install_model_cost_memo,
)
from litellm_cache_plugin.integrations.fast_path.wire import (
    CALL_TYPES,
    ROUTES,
    SSE_DONE,
    chat_stream_events,
    check_body,
    client_payload,
    credential_fingerprint,
    declared_length,
    embedding_body,
    embedding_inputs,
    header_bypasses,
    header_map,
    hit_headers,
    include_stream_usage,
    is_json_content,
    prefixed_receive,
    read_body,
    route_kind,
    split_for_replay,
    sse,
    text_stream_events,
)
from litellm_cache_plugin.policy.keys import RequestKind

__all__ = [
    "CALL_TYPES",
    "ROUTES",
    "SSE_DONE",
    "_LOGGING_HIT",
    "_MODEL_COST_INFO",
    "Deployment",
    "FastPathApp",
    "GroupInfo",
    "RequestKind",
    "_install_model_cost_memo",
    "chat_stream_events",
    "check_body",
    "client_payload",
    "credential_fingerprint",
    "declared_length",
    "embedding_body",
    "embedding_inputs",
    "group_info",
    "header_bypasses",
    "header_map",
    "hit_headers",
    "include_stream_usage",
    "install_fast_path",
    "is_json_content",
    "prefixed_receive",
    "read_body",
    "route_kind",
    "sdk_kwargs",
    "split_for_replay",
    "sse",
    "text_stream_events",
]
