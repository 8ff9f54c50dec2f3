"""One request as the region sees it, and what the region decided about it (data only)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from litellm_cache_plugin.policy.controls import Outcome, RequestControls
from litellm_cache_plugin.policy.edge import EdgeFacts
from litellm_cache_plugin.policy.keys import CacheRequest, Tenant


@dataclass(frozen=True)
class Decision:
    """What a call was answered with, for its response headers."""

    outcome: Outcome
    layer: str | None = None
    age: int | None = None
    reason: str = ""
    items: tuple[int, int] | None = None  # embeddings: (cached items, total items)
    similarity: float | None = None  # semantic hits
    edge: EdgeFacts | None = None  # exact-layer answers that the edge layer may label


@dataclass(frozen=True)
class RequestContext:
    """Everything the region needs to know about one call, built by an adapter (the LiteLLM glue)."""

    request: CacheRequest
    tenant: Tenant
    cacheable: bool  # the eligibility verdict (policy.eligibility.judge), decided once
    reason: str
    controls: RequestControls
    ttl: float
    stale_for: float
    call_id: str | None
    stream: bool
    tags: tuple[str, ...] = ()
    encrypt: bool = False
    max_entry_bytes: int = 4 * 1024 * 1024
    semantic: bool = False
    deterministic: bool = False  # the verdict's: the answer is reproducible (edge layer)
    refresh: bool = False  # the region's own stale-while-revalidate call, not a client's request
    judge: bool = False  # the region's own verification call to a judge model: never cached nor counted
    parent_span: Any = field(default=None, compare=False, repr=False)  # the caller's tracing span
    # The adapter's call arguments (the upstream port re-runs a request from them for a refresh).
    source: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    # The exact-layer key once computed (``CacheRegion.key_for``): a request asks for it several times.
    exact_key_memo: list[str] = field(default_factory=list, compare=False, repr=False)


@dataclass(frozen=True)
class NearMatch:
    """A cached prompt close enough to a request's (threshold and guard passed) that verified mode
    must verify before any request may be answered with its entry."""

    scope: str  # the semantic scope both prompts are in
    prompt: str  # the request's prompt (folded, as embedded)
    canonical_key: str  # the exact key of the cached entry
    canonical_prompt: str
    similarity: float
    # The request's earlier turns when its conversation is scoped by meaning: shown to the judge, and
    # indexed with the prompt if the judge finds it a question of its own, so a later paraphrase of
    # the whole conversation still finds it.
    context: tuple[tuple[str, str], ...] = ()
    # The cached conversation's earlier turns: the judge compares whole conversations, since two
    # conversations ending in the same words ("cancel it") may ask different things.
    canonical_context: tuple[tuple[str, str], ...] = ()
