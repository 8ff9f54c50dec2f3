"""Facts about an exact-layer answer that the edge layer labels (``policy.edge`` decides the headers)."""

from __future__ import annotations

from litellm_cache_plugin.engine import Lookup
from litellm_cache_plugin.policy.edge import EdgeFacts, edge_in_use, payload_etag
from litellm_cache_plugin.region.context import RequestContext
from litellm_cache_plugin.settings import PluginSettings

_memo: dict[int, tuple[PluginSettings, bool]] = {}


def in_use(settings: PluginSettings) -> bool:
    """:func:`edge_in_use` for these settings, computed once per settings object."""
    found = _memo.get(id(settings))
    if found is None or found[0] is not settings:
        found = (settings, edge_in_use(settings))
        if len(_memo) > 64:
            _memo.clear()
        _memo[id(settings)] = found
    return found[1]


def edge_facts(settings: PluginSettings, now: float, ctx: RequestContext, lookup: Lookup) -> EdgeFacts | None:
    """Facts about the exact-layer answer of ``ctx``: a fresh entry found, or a miss whose answer the
    request is about to store (its ETag is filled in when the answer is known). None otherwise."""
    if not in_use(settings):
        return None
    effective = settings.for_model(ctx.request.model_group)
    if not effective.layers.edge.enabled or effective.pii or ctx.request.kind == "embedding":
        return None  # private whatever the facts: not worth hashing the answer
    scope = ctx.tenant.scope
    if lookup.outcome == "HIT" and lookup.entry is not None:
        entry = lookup.entry
        fresh_left = entry.fresh_for - (now - entry.created_at)
        return EdgeFacts(scope, ctx.deterministic, fresh_left, payload_etag(entry.payload))
    if lookup.outcome == "MISS" and lookup.reason != "backend_error" and ctx.cacheable:
        return EdgeFacts(scope, ctx.deterministic, ctx.ttl)
    return None
