"""Edge layer glue: the policy of :mod:`litellm_cache_plugin.policy.edge` applied to proxy responses.

- the region's :func:`~litellm_cache_plugin.region.edge_facts.edge_facts` turns an exact-layer
  lookup into what the policy needs (recorded with the decision of a call, or used directly by the
  fast path);
- :func:`hook_edge_headers` (response-headers hook) and :func:`hit_edge_headers` (fast path) emit the
  same headers for the same entry; on a miss the ETag is computed from the response being sent, with
  the function that hashes stored payloads, so the miss and its later hits agree;
- :class:`ConditionalResponses` answers ``If-None-Match`` with ``304 Not Modified`` when the 200 the
  proxy produced carries a matching ETag. It sits inside LiteLLM's middleware stack, around the fast
  path and the routes, so only a request that passed the proxy's own auth ever gets a 304. RFC 9110
  asks for 412 on a failed precondition of an unsafe method; these POSTs are lookups, and a 304 is
  what a shared cache revalidating a stored POST answer (nginx ``proxy_cache_revalidate``) expects.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

import orjson

from litellm_cache_plugin.engine import Lookup
from litellm_cache_plugin.integrations.asgi import (
    ASGIApp,
    Message,
    Receive,
    Scope,
    Send,
    install_in_proxy_app,
)
from litellm_cache_plugin.integrations.host import CacheHost
from litellm_cache_plugin.policy.controls import Outcome
from litellm_cache_plugin.policy.edge import (
    answer_etag,
    edge_headers,
    etag_matches,
    not_modified_headers,
)
from litellm_cache_plugin.policy.storable import complete_response
from litellm_cache_plugin.region import Decision, RequestContext
from litellm_cache_plugin.region.edge_facts import edge_facts, in_use
from litellm_cache_plugin.settings import PluginSettings

log = logging.getLogger("litellm_cache_plugin")

_INSTALLED_ATTR = "_lcp_conditional_installed"


def _model_group(data: Mapping[str, Any]) -> str:
    metadata = data.get("metadata") or data.get("litellm_metadata")
    group = metadata.get("model_group") if isinstance(metadata, Mapping) else None
    return str(group or data.get("model") or "")


def _response_body(response: Any) -> dict[str, Any] | None:
    try:
        if hasattr(response, "model_dump_json"):
            body = orjson.loads(response.model_dump_json())
        elif isinstance(response, Mapping):
            body = dict(response)
        else:
            return None
    except Exception:  # an odd response object only costs its edge headers
        return None
    return body if isinstance(body, dict) else None


def hook_edge_headers(
    settings: PluginSettings, data: Mapping[str, Any], decision: Decision | None, response: Any
) -> dict[str, str]:
    """Edge headers for a response of the normal pipeline (``{}`` when no group uses the edge)."""
    if not in_use(settings):
        return {}
    stream = data.get("stream") is True
    effective = settings.for_model(_model_group(data))
    if decision is None:
        return edge_headers(effective, "BYPASS", None, stream=stream)
    facts = decision.edge
    if facts is not None and facts.etag is None and decision.outcome == "MISS" and not stream:
        body = _response_body(response)
        finish_reasons = settings.layers.exact.cacheable_finish_reasons
        # Only an answer the region will store gets a validator (a cut-off answer is never stored).
        if body is not None and complete_response(body, finish_reasons):
            body.pop("cached", None)
            facts = dataclasses.replace(facts, etag=answer_etag(body))
    return edge_headers(effective, decision.outcome, facts, stream=stream)


def hit_edge_headers(
    host: CacheHost, ctx: RequestContext, lookup: Lookup | None, *, stream: bool
) -> dict[str, str]:
    """Edge headers for a hit served by the fast path (``lookup`` None: an embedding batch)."""
    settings = host.settings
    if not in_use(settings):
        return {}
    outcome: Outcome = lookup.outcome if lookup is not None else "HIT"
    facts = edge_facts(settings, host.engine.clock(), ctx, lookup) if lookup is not None else None
    return edge_headers(settings.for_model(ctx.request.model_group), outcome, facts, stream=stream)


class ConditionalResponses:
    """ASGI wrapper: a 200 whose ETag matches the request's ``If-None-Match`` becomes a bodiless 304."""

    def __init__(self, app: ASGIApp, plugin: CacheHost) -> None:
        self.app = app
        self.plugin = plugin

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if_none_match = _if_none_match(scope) if scope.get("type") == "http" else None
        if if_none_match is None:
            await self.app(scope, receive, send)
            return
        replaced = False

        async def send_conditionally(message: Message) -> None:
            nonlocal replaced
            if message["type"] == "http.response.start" and message.get("status") == 200:
                headers = list(message.get("headers") or [])
                etag = _header(headers, b"etag")
                if etag is not None and etag_matches(if_none_match, etag):
                    replaced = True
                    group = _header(headers, b"x-litellm-model-group") or "-"
                    self.plugin.engine.stats.bump("edge", group, "not_modified")
                    start = {"type": "http.response.start", "status": 304}
                    await send({**start, "headers": not_modified_headers(headers)})
                    return
            if replaced and message["type"] == "http.response.body":
                if not message.get("more_body", False):
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
            await send(message)

        await self.app(scope, receive, send_conditionally)


def _if_none_match(scope: Scope) -> str | None:
    for name, value in scope.get("headers") or ():
        if name.lower() == b"if-none-match":
            return str(value.decode("latin-1"))
    return None


def _header(headers: list[tuple[bytes, bytes]], wanted: bytes) -> str | None:
    for name, value in headers:
        if name.lower() == wanted:
            return value.decode("latin-1")
    return None


def install_conditional_responses(plugin: CacheHost) -> None:
    """Put :class:`ConditionalResponses` just inside the proxy's ExceptionMiddleware (around the fast
    path when that is installed first). No-op outside a proxy, without the edge layer, or twice."""
    if not in_use(plugin.settings) or not plugin.proxy_mode:
        return
    install_in_proxy_app(
        _INSTALLED_ATTR, "edge layer", lambda app, _inside: ConditionalResponses(app, plugin)
    )


__all__ = [
    "ConditionalResponses",
    "hit_edge_headers",
    "hook_edge_headers",
    "in_use",
    "install_conditional_responses",
]
