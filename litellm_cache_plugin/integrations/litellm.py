"""All LiteLLM glue lives here: hooks, the cache carrier, admin routes.

How a request flows through the proxy:

1. ``async_pre_call_hook`` (after the proxy authenticated the caller): drops any client-sent
   ``cache_key``, maps the ``Cache-Control`` request header to LiteLLM's ``cache`` controls, applies
   ``force_zero``, and stamps the authenticated identity into the request metadata, signed with a
   per-process secret so that nothing a client sends can pose as an identity.
2. LiteLLM's SDK wrapper consults ``litellm.cache``, which is our :class:`CarrierCache`: it computes
   our tenant-scoped key (ignoring any ``cache_key``), asks the engine, and returns a stored response on
   a hit. LiteLLM then short-circuits the provider call and, for ``stream=True``, replays the stored
   response as SSE chunks. Embedding batches are looked up per item; only missing items go upstream.
3. On a miss LiteLLM calls the provider and hands the complete response (streams only once finished)
   back to the carrier, which stores it if it is complete and cacheable.
4. ``async_post_call_response_headers_hook`` adds ``x-cache``/``x-cache-layer``/``Age`` from the
   decision recorded for that call id, and with the edge layer ``Cache-Control``/``ETag``/``Vary``
   (``integrations/edge.py``, which also answers ``If-None-Match`` with 304).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import hmac
import json
import logging
import os
import secrets
import sys
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncGenerator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import litellm
import orjson
from litellm.caching.caching import Cache
from litellm.integrations.custom_logger import CustomLogger

from litellm_cache_plugin.crypto import CipherConfigError, PayloadCipher
from litellm_cache_plugin.engine import CacheEngine, Lookup, Prefetched, SingleFlightSettings
from litellm_cache_plugin.envelope import Entry
from litellm_cache_plugin.integrations.edge import (
    edge_facts,
    hook_edge_headers,
    install_conditional_responses,
)
from litellm_cache_plugin.integrations.prefix import PrefixRouting
from litellm_cache_plugin.payloads import (
    answer_encoding,
    canonical_response,
    encode_vector,
    requested_encoding,
    response_for_reader,
    stored_vector,
)
from litellm_cache_plugin.policy.controls import (
    Outcome,
    RequestControls,
    effective_ttl,
    merge_controls,
    parse_cache_control,
    parse_litellm_cache_field,
    response_headers,
)
from litellm_cache_plugin.policy.edge import EdgeFacts
from litellm_cache_plugin.policy.eligibility import judge
from litellm_cache_plugin.policy.freshness import backend_ttl
from litellm_cache_plugin.policy.keys import (
    OUTPUT_PARAMS,
    CacheRequest,
    Identity,
    RequestKind,
    Tenant,
    embedding_key,
    exact_key,
    tenant_for,
)
from litellm_cache_plugin.policy.tags import TagError, parse_tags
from litellm_cache_plugin.savings import (
    Savings,
    embedding_item_facts,
    savings_of,
    upstream_facts,
)
from litellm_cache_plugin.settings import EffectiveSettings, PluginSettings, SettingsError, load_settings
from litellm_cache_plugin.store import GuardedStore, open_store
from litellm_cache_plugin.telemetry import (
    COST_SAVED,
    GPU_TIME_SAVED,
    INPUT_TOKENS,
    KEY_FINGERPRINT,
    LATENCY_SAVED,
    LAYER,
    MODEL,
    NO_SPAN,
    OPERATION,
    OUTCOME,
    OUTPUT_TOKENS,
    PROVIDER,
    REASON,
    RESULT,
    CacheSpan,
    key_fingerprint,
)
from litellm_cache_plugin.telemetry_setup import TelemetryUnavailable, build_telemetry
from litellm_cache_plugin.versions import OLLAMA_PROVIDERS, OllamaVersions

log = logging.getLogger("litellm_cache_plugin")

IDENTITY_FIELD = "lcp_identity"
# Metadata flag of the plugin's own stale-while-revalidate calls (not counted as client lookups).
REFRESH_FIELD = "lcp_refresh"
_BYPASS_KEY_PREFIX = "lcp-bypass:"
_CACHED_CALL_TYPES = ["acompletion", "atext_completion", "aembedding"]


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    layer: str | None = None
    age: int | None = None
    reason: str = ""
    items: tuple[int, int] | None = None  # embeddings: (cached items, total items)
    similarity: float | None = None  # semantic hits
    edge: EdgeFacts | None = None  # exact-layer answers that the edge layer may label


@dataclass(frozen=True)
class RequestContext:
    """What the carrier knows about one SDK-level call."""

    request: CacheRequest
    tenant: Tenant
    cacheable: bool
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
    # The SDK-level kwargs the context was built from (used to re-run the request for a refresh).
    source: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    # The exact-layer key once computed (``CachePlugin.key_for``): a request asks for it several times.
    exact_key_memo: list[str] = field(default_factory=list, compare=False, repr=False)


class IdentitySigner:
    """Signs identities stamped by the pre-call hook; the carrier accepts only what it signed.

    The secret is random per process: the hook and the carrier run in the same worker, and a client
    can never produce a valid signature, so a forged ``metadata.lcp_identity`` is simply ignored.
    """

    def __init__(self, secret: bytes | None = None) -> None:
        self._secret = secret or secrets.token_bytes(32)
        # Tokens already verified (a request's token is checked several times: pre-call, lookup,
        # write); only exact strings this secret signed are in here, so a hit is as good as a check.
        self._verified: dict[str, Identity] = {}

    def sign(self, identity: Identity) -> str:
        body = json.dumps(
            [identity.api_key_hash, identity.team_id, identity.user_id, identity.org_id],
            separators=(",", ":"),
        )
        mac = hmac.new(self._secret, body.encode(), hashlib.sha256).hexdigest()
        return f"{body}|{mac}"

    def verify(self, token: object) -> Identity | None:
        if not isinstance(token, str) or "|" not in token:
            return None
        known = self._verified.get(token)
        if known is not None:
            return known
        body, _, mac = token.rpartition("|")
        expected = hmac.new(self._secret, body.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(mac, expected):
            return None
        try:
            key, team, user, org = json.loads(body)
        except (ValueError, TypeError):
            return None
        identity = Identity(api_key_hash=key, team_id=team, user_id=user, org_id=org)
        if len(self._verified) >= 10_000:
            self._verified.clear()  # bounded; callers are few and come back
        self._verified[token] = identity
        return identity


def _metadata(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    for name in ("metadata", "litellm_metadata"):
        value = kwargs.get(name)
        if isinstance(value, dict):
            return value
    return {}


def _provider(kwargs: Mapping[str, Any]) -> str | None:
    provider = kwargs.get("custom_llm_provider")
    if isinstance(provider, str) and provider:
        return provider
    model = kwargs.get("model")
    if isinstance(model, str) and "/" in model:
        return model.split("/", 1)[0]
    return None


def _request_kind(kwargs: Mapping[str, Any]) -> RequestKind | None:
    if "messages" in kwargs:
        return "chat"
    if "input" in kwargs:
        return "embedding"
    if "prompt" in kwargs:
        return "text"
    return None


class CachePlugin(CustomLogger):
    """The plugin: one instance per process, shared by the proxy hooks and the carrier cache.

    Proxy: listed as ``litellm_settings: callbacks: ["litellm_cache_plugin.proxy_plugin"]``.
    SDK/Router: see :func:`litellm_cache_plugin.attach`.
    """

    def __init__(self, settings: PluginSettings, *, proxy_mode: bool = False) -> None:
        super().__init__()
        self.settings = settings
        self.proxy_mode = proxy_mode
        self.signer = IdentitySigner()
        self._effective: tuple[PluginSettings, dict[str, EffectiveSettings]] = (settings, {})
        try:
            store = open_store(settings.backend, timeout=None)
        except ValueError as error:
            raise SettingsError(f"cache_plugin.backend: {error}") from None
        self.raw_store = store
        try:
            cipher = PayloadCipher(settings.encryption.keys) if settings.encryption.keys else None
        except CipherConfigError as error:
            raise SettingsError(f"cache_plugin.{error}") from None
        try:
            self.telemetry_runtime = build_telemetry(settings.telemetry, backend=settings.backend)
        except TelemetryUnavailable as error:
            raise SettingsError(f"cache_plugin.telemetry: {error}") from None
        telemetry = self.telemetry_runtime.telemetry if self.telemetry_runtime is not None else None
        guarded = GuardedStore(store, timeout=settings.backend_timeout_ms / 1000.0)
        if telemetry is not None:
            scheme = settings.backend.split("://", 1)[0]
            guarded.on_error = lambda op, kind: telemetry.record_backend_error(scheme, op, kind)
        self.engine = CacheEngine(
            guarded,
            namespace=settings.namespace,
            single_flight=SingleFlightSettings(timeout=settings.single_flight.timeout),
            cipher=cipher,
            telemetry=telemetry,
            compress_min_bytes=settings.compress_min_bytes,
            max_payload_bytes=settings.max_entry_bytes,
        )
        self._model_costs: dict[tuple[str, str | None], Mapping[str, Any] | None] = {}
        self.versions = OllamaVersions(
            refresh_interval=settings.versions.refresh_interval, fetch_timeout=settings.versions.fetch_timeout
        )
        self._decisions: OrderedDict[str, Decision] = OrderedDict()
        self._counters: OrderedDict[str, Mapping[str, int] | None] = OrderedDict()
        # call id -> key of the single flight this request leads (released when it ends without a write)
        self._leading: OrderedDict[str, str] = OrderedDict()
        # key -> (when, read) of reads that found no entry, made moments ago for a request that is on
        # its way to lookup_response (the fast path's probe, before it handed the request on).
        self._recent_misses: OrderedDict[str, tuple[float, Prefetched]] = OrderedDict()
        self.embedding_items = EmbeddingItems(self)
        self.carrier = CarrierCache(self)
        self.semantic = self._build_semantic(settings)
        self._semantic_started: asyncio.Task[None] | None = None
        # exact key -> (semantic scope, text) of a miss, so its stored answer becomes findable by meaning
        self._semantic_pending: OrderedDict[str, tuple[str, str]] = OrderedDict()
        # --- prefix layer (KV-cache reuse): its own CustomLogger, see integrations/prefix.py ---
        self.prefix: PrefixRouting | None = None
        if PrefixRouting.wanted(settings):
            self.prefix = PrefixRouting(settings, owner=self, proxy_mode=proxy_mode)

    def _build_semantic(self, settings: PluginSettings) -> Any:
        wanted = [settings.layers.semantic] + [
            m.layers.semantic for m in settings.models.values() if m.layers is not None and not m.pii
        ]
        enabled = [layer for layer in wanted if layer.enabled]
        if not enabled:
            return None
        try:
            from litellm_cache_plugin.semantic import SemanticIndex, SemanticUnavailable, build_embedder
        except ImportError as error:
            raise SettingsError(
                f"cache_plugin.layers.semantic.enabled needs the [semantic] extra: {error}"
            ) from None
        layer = enabled[0]
        try:
            embedder = build_embedder(layer, litellm_embed=_litellm_embed(layer.embedder))
            return SemanticIndex(
                self.engine.store, namespace=self.settings.namespace, embedder=embedder, settings=layer
            )
        except SemanticUnavailable as error:
            raise SettingsError(f"cache_plugin.layers.semantic: {error}") from None

    async def _semantic_ready(self) -> None:
        if self._semantic_started is None:
            self._semantic_started = asyncio.ensure_future(self.semantic.start())
        await asyncio.shield(self._semantic_started)

    async def _semantic_lookup(
        self, ctx: RequestContext, key: str, started: float, notes: dict[str, Any] | None
    ) -> Lookup | None:
        """A paraphrase of a cached prompt in the same scope: the exact entry it points to, re-checked
        (tenant, counters, version, freshness) by the engine before it is served."""
        from litellm_cache_plugin.semantic import semantic_scope

        scoped = semantic_scope(ctx.request, ctx.tenant)
        if scoped is None:
            return None
        self._semantic_pending[key] = scoped
        while len(self._semantic_pending) > 20_000:
            self._semantic_pending.popitem(last=False)
        try:
            await self._semantic_ready()
            match = await self.semantic.lookup(scoped[0], scoped[1])
        except Exception:
            log.exception("semantic lookup failed open")
            self._account(ctx, "semantic", Lookup("MISS", "error"), started)
            return None
        if match is None:
            self._account(ctx, "semantic", Lookup("MISS", "no_match"), started)
            return None
        found = await self._exact(ctx, match.entry_key, record=False)
        if found.entry is None:
            self.semantic.forget(scoped[0], match.entry_key)
            self._account(ctx, "semantic", Lookup("MISS", found.reason), started)
            return None
        attributes = self._account(ctx, "semantic", found, started)
        if notes is not None:
            notes.update(attributes)
            notes[LAYER] = "semantic"
        self.record(
            ctx.call_id,
            Decision(
                found.outcome,
                "semantic",
                found.age,
                f"similarity={match.similarity:.3f}",
                None,
                match.similarity,
            ),
        )
        return found

    async def _semantic_add(self, key: str, ttl: float) -> None:
        scoped = self._semantic_pending.pop(key, None)
        if scoped is None or self.semantic is None:
            return
        try:
            await self.semantic.add(scoped[0], scoped[1], key, ttl=ttl)
        except Exception:
            log.exception("semantic add failed (ignored)")

    # -- installation ------------------------------------------------------------------------------

    def install(self) -> None:
        """Make LiteLLM consult this plugin's cache (replaces any ``litellm.cache``)."""
        if litellm.cache is not None and litellm.cache is not self.carrier:
            log.warning("litellm_cache_plugin replaces the previously configured litellm.cache")
        litellm.cache = self.carrier
        if self not in litellm.callbacks:
            litellm.callbacks.append(self)
        # --- prefix layer: canonical system prompts, affinity routing, measured reuse ---
        if self.prefix is not None and self.prefix not in litellm.callbacks:
            litellm.callbacks.append(self.prefix)

    # -- decisions (per call id, read by the header hook) ------------------------------------------

    def record(self, call_id: str | None, decision: Decision) -> None:
        if not call_id:
            return
        self._decisions[call_id] = decision
        while len(self._decisions) > 20_000:
            self._decisions.popitem(last=False)

    def decision_for(self, call_id: str | None, *, pop: bool = True) -> Decision | None:
        if not call_id:
            return None
        if pop:
            return self._decisions.pop(call_id, None)
        return self._decisions.get(call_id)

    def remember_miss(self, read: Prefetched) -> None:
        """Offer a read that found nothing to the next lookup of its key, for half a second, so the
        request that made it does not read again. Only absence is kept: nothing can be served from an
        older read, and its counters, recorded by the write, can only make that entry die sooner."""
        if read.raw is not None:
            return
        self._recent_misses[read.key] = (time.monotonic(), read)
        self._recent_misses.move_to_end(read.key)
        while len(self._recent_misses) > 10_000:
            self._recent_misses.popitem(last=False)

    def _recent_miss(self, key: str) -> Prefetched | None:
        found = self._recent_misses.pop(key, None) if self._recent_misses else None
        if found is None or time.monotonic() - found[0] > 0.5:
            return None
        return found[1]

    def _remember_counters(self, key: str, counters: Mapping[str, int] | None) -> None:
        """Counters read when a request started; its write records them (an invalidation during the
        upstream call then kills the answer it produces)."""
        self._counters[key] = counters
        while len(self._counters) > 20_000:
            self._counters.popitem(last=False)

    # -- request context -------------------------------------------------------------------------

    def identity_from(self, kwargs: Mapping[str, Any]) -> Identity | None:
        metadata = _metadata(kwargs)
        token = metadata.get(IDENTITY_FIELD)
        if token is not None:
            return self.signer.verify(token)
        if self.proxy_mode:
            # Behind the proxy every cacheable call passes our pre-call hook; a call without a stamp
            # cannot be attributed safely, so it is not cached at all.
            return None
        # SDK/Router mode: the application is the authenticator and says who the caller is.
        return Identity(
            api_key_hash=_str_or_none(metadata.get("user_api_key_hash")),
            team_id=_str_or_none(metadata.get("user_api_key_team_id")),
            user_id=_str_or_none(metadata.get("user_api_key_user_id")),
            org_id=_str_or_none(metadata.get("user_api_key_org_id")),
        )

    def context(self, kwargs: Mapping[str, Any]) -> RequestContext | None:
        kind = _request_kind(kwargs)
        if kind is None:
            return None
        metadata = _metadata(kwargs)
        model_group = str(metadata.get("model_group") or kwargs.get("model") or "")
        effective = self.effective(model_group)
        provider = _provider(kwargs)
        request = CacheRequest(
            kind=kind,
            model_group=model_group,
            provider=provider,
            model_version=self.model_version(kwargs, provider, effective.version),
            params={k: v for k, v in kwargs.items() if k not in ("messages", "prompt", "input")},
            messages=kwargs.get("messages"),
            prompt=kwargs.get("prompt"),
        )
        controls = parse_litellm_cache_field(kwargs.get("cache"))
        identity = self.identity_from(kwargs)
        call_id = kwargs.get("litellm_call_id")
        stream = kwargs.get("stream") is True
        layers = effective.layers
        layer_on = layers.embedding.enabled if kind == "embedding" else layers.exact.enabled
        try:
            tags = parse_tags(None, metadata.get("cache_tags"))
        except TagError:
            tags = ()
            identity = None if self.proxy_mode else identity
            layer_on = False
        if identity is None:
            verdict_ok, reason = False, "unauthenticated"
            tenant = Tenant("anonymous", "-")
        else:
            tenant = tenant_for(identity, effective.scope)
            verdict = judge(effective.eligibility, kind, provider, request.params)
            verdict_ok, reason = verdict.cacheable, verdict.reason
            if not layer_on:
                verdict_ok, reason = False, "layer_disabled"
        return RequestContext(
            request=request,
            tenant=tenant,
            cacheable=verdict_ok,
            reason=reason,
            controls=controls,
            ttl=effective_ttl(effective.ttl, controls.ttl),
            stale_for=effective.stale_while_revalidate,
            call_id=call_id if isinstance(call_id, str) else None,
            stream=stream,
            tags=tags,
            encrypt=effective.encrypt,
            max_entry_bytes=effective.max_entry_bytes,
            semantic=effective.layers.semantic.enabled and kind != "embedding",
            source=kwargs,
        )

    def model_version(self, kwargs: Mapping[str, Any], provider: str | None, configured: str | None) -> str:
        """Configured version (``models.<group>.version``, then the deployment's ``model_info.version``),
        else for Ollama deployments the served model's digest, else "0"."""
        if configured:
            return configured
        metadata = _metadata(kwargs)
        model_info = kwargs.get("model_info") or metadata.get("model_info") or {}
        if isinstance(model_info, Mapping) and model_info.get("version"):
            return str(model_info["version"])
        api_base, model = kwargs.get("api_base"), kwargs.get("model")
        if (
            self.settings.versions.ollama_digest
            and provider in OLLAMA_PROVIDERS
            and isinstance(api_base, str)
            and isinstance(model, str)
        ):
            return self.versions.current(api_base, model) or "unknown"
        return "0"

    def effective(self, model_group: str | None) -> EffectiveSettings:
        """``settings.for_model``, memoized per model group (settings are frozen; a replaced settings
        object starts a new memo)."""
        settings, memo = self._effective
        if settings is not self.settings:
            settings, memo = self.settings, {}
            self._effective = (settings, memo)
        name = model_group or ""
        found = memo.get(name)
        if found is None:
            if len(memo) >= 1024:
                memo.clear()  # SDK callers may name any model: stay bounded
            found = memo[name] = settings.for_model(model_group)
        return found

    def key_for(self, ctx: RequestContext, item: Any = None) -> str:
        request = ctx.request
        if request.kind != "embedding":
            if ctx.exact_key_memo:
                return ctx.exact_key_memo[0]
            key = exact_key(self.settings.namespace, request, ctx.tenant)
            ctx.exact_key_memo.append(key)
            return key
        return embedding_key(
            self.settings.namespace,
            model_group=request.model_group,
            model_version=request.model_version,
            item=item,
            params=request.params,
            provider=request.provider,
            tenant=ctx.tenant,
        )

    async def lookup_response(self, ctx: RequestContext) -> Lookup:
        """Look a chat/text request up in the exact layer and record the decision for its call id.

        Shared by the carrier (hook path) and any path that serves hits itself. One
        ``llm_cache.lookup`` span per request (child of LiteLLM's request span when there is one).
        """
        started = time.perf_counter()
        telemetry = self.engine.telemetry
        if telemetry is not None:
            self._start_sampler()
        if telemetry is None or not telemetry.tracing():
            return await self._lookup_response(ctx, started, None)
        group = ctx.request.model_group
        opening = {LAYER: "exact", MODEL: group, OPERATION: ctx.request.kind, PROVIDER: ctx.request.provider}
        with telemetry.span("llm_cache.lookup", opening, parent=_parent_span(ctx.source)) as span:
            notes: dict[str, Any] = {}
            lookup = await self._lookup_response(ctx, started, notes)
            span.set_attributes({**notes, RESULT: lookup.outcome.lower(), REASON: lookup.reason})
            return lookup

    async def _lookup_response(
        self, ctx: RequestContext, started: float, notes: dict[str, Any] | None
    ) -> Lookup:
        """The decision, counted once per layer consulted (``notes``: attributes for the span, None
        when no span records them)."""
        group = ctx.request.model_group
        if not ctx.cacheable:
            if _metadata(ctx.source).get(REFRESH_FIELD) is not True:
                self.engine.account("exact", group, "bypass", ctx.reason, operation=ctx.request.kind)
            self.record(ctx.call_id, Decision("BYPASS", reason=ctx.reason))
            return Lookup("BYPASS", ctx.reason)
        key = self.key_for(ctx)
        if notes is not None:
            notes[KEY_FINGERPRINT] = key_fingerprint(key)
        lookup = await self._exact(ctx, key, prefetched=self._recent_miss(key))
        self._remember_counters(key, lookup.counters)
        if lookup.outcome == "MISS" and ctx.semantic and self.semantic is not None:
            semantic_hit = await self._semantic_lookup(ctx, key, started, notes)
            if semantic_hit is not None:
                self._account(ctx, "exact", lookup, started)
                return semantic_hit
        result: str | None = None
        if (
            lookup.outcome == "MISS"
            and lookup.reason != "backend_error"
            and not ctx.controls.no_store  # its answer is never stored: nobody may wait for it
            and self.settings.single_flight.enabled
        ):
            role = await self.engine.claim(
                key, poll=lambda: self._peek(ctx, key), call_id=ctx.call_id, model_group=group
            )
            if role.leader and ctx.call_id:
                self._leading[ctx.call_id] = key
                while len(self._leading) > 20_000:
                    self._leading.popitem(last=False)
            if not role.leader and role.entry is not None:
                age = max(0, int(self.engine.clock() - role.entry.created_at))
                lookup = Lookup("HIT", "coalesced", entry=role.entry, age=age, counters=lookup.counters)
                result = "coalesced"
        attributes = self._account(ctx, "exact", lookup, started, result=result)
        if notes is not None:
            notes.update(attributes)
        edge = edge_facts(self, ctx, lookup)
        if lookup.entry is None:
            self.record(ctx.call_id, Decision(lookup.outcome, reason=lookup.reason, edge=edge))
        else:
            self.record(ctx.call_id, Decision(lookup.outcome, "exact", lookup.age, lookup.reason, edge=edge))
        if lookup.outcome == "STALE":
            self.engine.spawn(self._refresh(ctx, key))
        return lookup

    def _account(
        self, ctx: RequestContext, layer: str, lookup: Lookup, started: float, *, result: str | None = None
    ) -> dict[str, Any]:
        """Count this request's final result in ``layer`` (stats and telemetry, same numbers); returns
        the savings as span attributes."""
        elapsed_ms = (time.perf_counter() - started) * 1000
        savings = self.savings(ctx, lookup.entry, elapsed_ms) if lookup.entry is not None else None
        if _metadata(ctx.source).get(REFRESH_FIELD) is True:
            return {}  # our own stale-while-revalidate call, not a client's request: counted as a refresh
        self.engine.account(
            layer,
            ctx.request.model_group,
            result or lookup.outcome.lower(),
            lookup.reason,
            savings=savings,
            lookup_ms=elapsed_ms,
            operation=ctx.request.kind,
            provider=ctx.request.provider,
        )
        return _saving_attributes(savings)

    def savings(self, ctx: RequestContext, entry: Entry, hit_ms: float | None) -> Savings:
        """What serving ``entry`` to this request saved (see :mod:`litellm_cache_plugin.savings`)."""
        model = ctx.source.get("model")
        return savings_of(
            entry.extra,
            entry.upstream_ms,
            hit_ms,
            self.effective(ctx.request.model_group).prices,
            self._model_cost(model, ctx.request.provider) if isinstance(model, str) else None,
        )

    def _model_cost(self, model: str, provider: str | None) -> Mapping[str, Any] | None:
        """LiteLLM's cost-map entry of a deployment model (memoized: the map is large)."""
        slot = (model, provider)
        if slot not in self._model_costs:
            found = None
            bare = model.split("/", 1)[-1]
            for name in (model, f"{provider}/{bare}", bare):
                candidate = litellm.model_cost.get(name)
                if isinstance(candidate, Mapping) and "input_cost_per_token" in candidate:
                    found = candidate
                    break
            if len(self._model_costs) > 4096:
                self._model_costs.clear()
            self._model_costs[slot] = found
        return self._model_costs[slot]

    @contextlib.contextmanager
    def store_span(self, ctx: RequestContext, key: str) -> Iterator[CacheSpan]:
        """The ``llm_cache.store`` span of one write (a no-op object when telemetry is off)."""
        telemetry = self.engine.telemetry
        if telemetry is None:
            yield NO_SPAN
            return
        attributes = {
            LAYER: "embedding" if ctx.request.kind == "embedding" else "exact",
            MODEL: ctx.request.model_group,
            OPERATION: ctx.request.kind,
            KEY_FINGERPRINT: key_fingerprint(key),
        }
        with telemetry.span("llm_cache.store", attributes, parent=_parent_span(ctx.source)) as span:
            yield span

    def account_served(self, ctx: RequestContext, entries: list[Entry], started: float) -> None:
        """Count hits served outside ``lookup_response`` (the fast path), with their span.
        ``started``: when the request arrived (``time.time()``)."""
        hit_ms = max(0.0, (time.time() - started) * 1000)
        group, kind, provider = ctx.request.model_group, ctx.request.kind, ctx.request.provider
        notes: dict[str, Any] = {}
        if kind == "embedding":
            of = self.embedding_savings(ctx)
            for entry in entries:
                self.engine.account(
                    "embedding", group, "hit", "fresh", savings=of(entry), lookup_ms=hit_ms,
                    operation=kind, provider=provider,
                )  # fmt: skip
        elif entries:
            savings = self.savings(ctx, entries[0], hit_ms)
            self.engine.account(
                "exact", group, "hit", "fresh", savings=savings, lookup_ms=hit_ms,
                operation=kind, provider=provider,
            )  # fmt: skip
            notes = _saving_attributes(savings)
        telemetry = self.engine.telemetry
        if telemetry is not None:
            layer = "embedding" if kind == "embedding" else "exact"
            attributes = {LAYER: layer, MODEL: group, OPERATION: kind, RESULT: "hit", REASON: "fast_path"}
            if layer == "exact":
                attributes[KEY_FINGERPRINT] = key_fingerprint(self.key_for(ctx))
            with telemetry.span("llm_cache.lookup", {**attributes, **notes}, start_time=int(started * 1e9)):
                pass

    def embedding_savings(self, ctx: RequestContext) -> Callable[[Entry], Savings]:
        """Savings of one cached embedding item: its prompt tokens, priced like a call."""
        model = ctx.source.get("model")
        prices = self.effective(ctx.request.model_group).prices
        model_cost = self._model_cost(model, ctx.request.provider) if isinstance(model, str) else None

        def of(entry: Entry) -> Savings:
            try:
                tokens = orjson.loads(entry.payload).get("prompt_tokens")
            except (orjson.JSONDecodeError, AttributeError):
                tokens = None
            return savings_of(embedding_item_facts(tokens), None, None, prices, model_cost)

        return of

    def _start_sampler(self) -> None:
        runtime = self.telemetry_runtime
        if runtime is not None and runtime._sampler is None:
            runtime.ensure_sampler(self.engine.backend_stats)

    async def peek_response(self, ctx: RequestContext, prefetched: Prefetched | None = None) -> Lookup:
        """The exact-layer entry for ``ctx`` with no coordination (no single-flight claim, no stale
        refresh, no semantic search, no decision recorded): for paths that may hand the request on.
        ``prefetched``: an earlier read of this request's entry (see ``CacheEngine.read``)."""
        if not ctx.cacheable:
            return Lookup("BYPASS", ctx.reason)
        return await self._exact(ctx, self.key_for(ctx), prefetched=prefetched)

    async def _exact(
        self,
        ctx: RequestContext,
        key: str,
        *,
        record: bool = True,
        prefetched: Prefetched | None = None,
    ) -> Lookup:
        """The exact-layer entry at ``key``, checked against this request's tenant, version, tags
        and controls (``record=False``: without counting it in the statistics)."""
        return await self.engine.lookup(
            key,
            tenant=ctx.tenant,
            model_group=ctx.request.model_group,
            model_version=ctx.request.model_version,
            controls=ctx.controls,
            tags=ctx.tags,
            record=record,
            prefetched=prefetched,
        )

    async def _peek(self, ctx: RequestContext, key: str) -> Any:
        found = await self._exact(ctx, key, record=False)
        return found.entry if found.outcome == "HIT" else None

    async def _refresh(self, ctx: RequestContext, key: str) -> None:
        """Stale-while-revalidate: re-run the request once (across replicas: a lock in the backend)
        and let the normal write path replace the entry. A failed refresh keeps the stale entry and
        holds the lock until it expires, so a failing upstream is retried at most once per lock TTL."""
        model_group = ctx.request.model_group
        lock_ttl = max(5.0, min(self.settings.single_flight.timeout, ctx.stale_for or 5.0))
        owner = await self.engine.try_refresh_lock(key, lock_ttl)
        if owner is None:
            return
        telemetry = self.engine.telemetry
        self.engine.stats.bump("exact", model_group, "refresh_started")
        if telemetry is not None:
            telemetry.record_refresh(model_group, "started")
        call = refresh_call(ctx.source)
        function = litellm.acompletion if ctx.request.kind == "chat" else litellm.atext_completion
        span_context = (
            telemetry.span(
                "llm_cache.refresh",
                {MODEL: model_group, KEY_FINGERPRINT: key_fingerprint(key)},
                parent=_parent_span(ctx.source),
            )
            if telemetry is not None
            else contextlib.nullcontext(NO_SPAN)
        )
        with span_context as span:
            try:
                await asyncio.wait_for(function(**call), timeout=self.settings.single_flight.timeout)
            except Exception as error:
                self.engine.stats.bump("exact", model_group, "refresh_failed")
                if telemetry is not None:
                    telemetry.record_refresh(model_group, "failed")
                span.set(OUTCOME, "failed")
                log.warning(
                    "stale-while-revalidate refresh failed for %s (stale entry kept): %s", model_group, error
                )
                return
            span.set(OUTCOME, "ok")
        self.engine.stats.bump("exact", model_group, "refresh_ok")
        if telemetry is not None:
            telemetry.record_refresh(model_group, "ok")
        await self.engine.release_refresh_lock(key, owner)

    # -- proxy hooks (each defined on this class: the proxy skips inherited hooks) -----------------

    async def async_pre_call_hook(
        self, user_api_key_dict: Any, cache: Any, data: dict[str, Any], call_type: Any
    ) -> dict[str, Any]:
        # A client must never pick the cache entry: LiteLLM's own cache honours a body `cache_key`.
        data.pop("cache_key", None)
        metadata = data.get("metadata")
        if not isinstance(metadata, dict):
            metadata = {}
            data["metadata"] = metadata
        identity = Identity(
            api_key_hash=_str_or_none(getattr(user_api_key_dict, "api_key", None))
            or _str_or_none(getattr(user_api_key_dict, "token", None)),
            team_id=_str_or_none(getattr(user_api_key_dict, "team_id", None)),
            user_id=_str_or_none(getattr(user_api_key_dict, "user_id", None)),
            org_id=_str_or_none(getattr(user_api_key_dict, "org_id", None)),
        )
        metadata[IDENTITY_FIELD] = self.signer.sign(identity)
        headers = _request_headers(data)
        try:
            tags = parse_tags(headers.get("x-cache-tags"), metadata.get("cache_tags"))
        except TagError as error:
            return f"litellm_cache_plugin: {error}"  # type: ignore[return-value]
        if tags:
            metadata["cache_tags"] = list(tags)
        else:
            metadata.pop("cache_tags", None)
        header_controls = parse_cache_control(headers.get("cache-control"))
        if header_controls != RequestControls():
            merged = merge_controls(header_controls, parse_litellm_cache_field(data.get("cache")))
            controls: dict[str, Any] = dict(data["cache"]) if isinstance(data.get("cache"), dict) else {}
            if merged.no_cache:
                controls["no-cache"] = True
            if merged.no_store:
                controls["no-store"] = True
            if merged.max_age is not None:
                controls["s-maxage"] = merged.max_age
            data["cache"] = controls
        model_group = data.get("model")
        if isinstance(model_group, str) and self.settings.for_model(model_group).eligibility == "force_zero":
            data["temperature"] = 0
        return data

    async def async_pre_call_deployment_hook(self, kwargs: dict[str, Any], call_type: Any) -> dict[str, Any]:
        kwargs.pop("cache_key", None)
        provider, api_base, model = _provider(kwargs), kwargs.get("api_base"), kwargs.get("model")
        if (
            self.settings.versions.ollama_digest
            and provider in OLLAMA_PROVIDERS
            and isinstance(api_base, str)
            and isinstance(model, str)
        ):
            await self.versions.ensure(api_base, model)
        if not self.proxy_mode:
            model_group = _metadata(kwargs).get("model_group") or kwargs.get("model")
            if (
                isinstance(model_group, str)
                and self.settings.for_model(model_group).eligibility == "force_zero"
            ):
                kwargs["temperature"] = 0
        return kwargs

    async def async_post_call_response_headers_hook(
        self,
        data: dict[str, Any],
        user_api_key_dict: Any,
        response: Any,
        request_headers: dict[str, str] | None = None,
        litellm_call_info: dict[str, Any] | None = None,
    ) -> dict[str, str] | None:
        # Not popped: the proxy may call this hook more than once per request; the map is bounded.
        decision = self.decision_for(data.get("litellm_call_id"), pop=False)
        if decision is None:
            return {"x-cache": "BYPASS", **hook_edge_headers(self, data, None, response)}
        headers = response_headers(decision.outcome, decision.layer, decision.age)
        if decision.similarity is not None:
            headers["x-cache-similarity"] = f"{decision.similarity:.4f}"
        if decision.items is not None:
            headers["x-cache-items"] = f"{decision.items[0]}/{decision.items[1]}"
        headers.update(hook_edge_headers(self, data, decision, response))
        return headers

    def release_flight(self, call_id: object) -> None:
        """The request leading a single flight ended without a stored answer: wake its waiters now
        (they go upstream themselves) instead of letting them wait for the timeout."""
        if isinstance(call_id, str):
            key = self._leading.pop(call_id, None)
            if key is not None:
                self.engine.finish(key, None)

    async def async_log_failure_event(
        self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        if isinstance(kwargs, Mapping):
            self.release_flight(kwargs.get("litellm_call_id"))

    async def async_post_call_failure_hook(
        self,
        request_data: dict[str, Any],
        original_exception: Exception,
        user_api_key_dict: Any,
        traceback_str: str | None = None,
    ) -> Any:
        self.release_flight(request_data.get("litellm_call_id"))
        return None

    async def async_post_call_streaming_iterator_hook(
        self, user_api_key_dict: Any, response: Any, request_data: dict[str, Any]
    ) -> AsyncGenerator[Any, None]:
        # A stream that is cut off or abandoned by its client stores nothing: release its waiters.
        finished = False
        as_text = _text_completion_request(request_data)
        try:
            async for chunk in response:
                choices = getattr(chunk, "choices", None) or []
                if any(getattr(choice, "finish_reason", None) for choice in choices):
                    finished = True
                yield _as_text_chunk(chunk, request_data) if as_text else chunk
        finally:
            if not finished:
                self.release_flight(request_data.get("litellm_call_id"))


def _text_completion_request(request_data: Mapping[str, Any]) -> bool:
    return "prompt" in request_data and "messages" not in request_data


def _as_text_chunk(chunk: Any, request_data: Mapping[str, Any]) -> Any:
    """A chat chunk of a streamed ``/v1/completions`` answer as the text chunk a miss sends.

    LiteLLM replays a cached text completion through its chat replay and returns the chat chunks
    as they are (its ``atext_completion`` hands a cache hit back before its text stream wrapper),
    so the client would see ``choices[].delta`` and no ``text``. Chunks already in the text shape
    (every miss) pass unchanged."""
    if getattr(chunk, "object", None) != "chat.completion.chunk":
        return chunk
    from litellm import TextCompletionResponse
    from litellm.utils import TextCompletionStreamWrapper

    if not getattr(chunk, "choices", None):  # the usage chunk of ``stream_options.include_usage``
        return TextCompletionResponse(
            id=chunk.id, object="text_completion", created=chunk.created, model=chunk.model,
            choices=[], usage=getattr(chunk, "usage", None),
        )  # fmt: skip
    options = request_data.get("stream_options")
    converter = TextCompletionStreamWrapper(
        completion_stream=None,
        model=chunk.model,
        stream_options=options if isinstance(options, dict) else None,
    )
    text_chunk = converter.convert_to_text_completion_object(chunk)
    for choice in text_chunk.choices:
        if choice.text is None:
            choice.text = ""  # the OpenAI shape: ``text`` is always a string
    return text_chunk


def _parent_span(kwargs: Mapping[str, Any]) -> Any:
    """LiteLLM's span for this request (set when its OpenTelemetry integration is on), if any."""
    metadata = _metadata(kwargs)
    for source in (kwargs, metadata):
        span = source.get("litellm_parent_otel_span")
        if span is not None and hasattr(span, "get_span_context"):
            return span
    return None


def _saving_attributes(savings: Savings | None) -> dict[str, Any]:
    if savings is None:
        return {}
    return {
        LATENCY_SAVED: savings.latency_ms,
        COST_SAVED: savings.cost_usd,
        GPU_TIME_SAVED: savings.gpu_seconds,
        INPUT_TOKENS: savings.input_tokens,
        OUTPUT_TOKENS: savings.output_tokens,
    }


def _str_or_none(value: object) -> str | None:
    if value is None:
        return None
    text = str(value)
    return text or None


def _request_headers(data: Mapping[str, Any]) -> dict[str, str]:
    request = data.get("proxy_server_request")
    headers = request.get("headers") if isinstance(request, Mapping) else None
    if not isinstance(headers, Mapping):
        return {}
    return {str(k).lower(): str(v) for k, v in headers.items()}


class CarrierCache(Cache):
    """``litellm.cache`` replacement that carries hits and misses into our engine.

    LiteLLM keeps the short-circuit, stream replay and per-item embedding logic; we own keys,
    eligibility, tenants, storage and freshness. Sync calls (``litellm.completion``) are not cached.
    """

    def __init__(self, plugin: CachePlugin) -> None:
        super().__init__(type="local", supported_call_types=list(_CACHED_CALL_TYPES), max_messages=None)  # type: ignore[arg-type]
        self.plugin = plugin

    # Keys -----------------------------------------------------------------------------------------

    def get_cache_key(self, **kwargs: Any) -> str:
        ctx = self.plugin.context(kwargs)
        if ctx is None or not ctx.cacheable:
            if ctx is not None and ctx.request.kind == "embedding":
                # Chat bypasses are counted by lookup_response; embedding items never get that far.
                self.plugin.engine.account("embedding", ctx.request.model_group, "bypass", ctx.reason)
            return _BYPASS_KEY_PREFIX + uuid.uuid4().hex
        if ctx.request.kind == "embedding":
            key = self.plugin.key_for(ctx, kwargs.get("input"))
            return self.plugin.embedding_items.expect(key, ctx)
        return self.plugin.key_for(ctx)

    def should_use_cache(self, **kwargs: Any) -> bool:
        return True

    # Sync API: not cached (the request path is async).
    def get_cache(self, dynamic_cache_object: Any = None, **kwargs: Any) -> None:
        return None

    def add_cache(self, result: Any, **kwargs: Any) -> None:
        return None

    # Lookups ----------------------------------------------------------------------------------------

    async def async_get_cache(self, dynamic_cache_object: Any = None, **kwargs: Any) -> Any:
        try:
            if "messages" not in kwargs and "prompt" not in kwargs and "input" not in kwargs:
                return await self._get_embedding_item(kwargs.get("cache_key"))
            return await self._get_response(kwargs)
        except Exception:  # the cache never fails a request
            log.exception("cache lookup failed open")
            return None

    async def _get_response(self, kwargs: dict[str, Any]) -> Any:
        plugin = self.plugin
        ctx = plugin.context(kwargs)
        if ctx is None:
            return None
        lookup = await plugin.lookup_response(ctx)
        if lookup.entry is None:
            return None
        response = response_for_reader(
            ctx.request.kind, orjson.loads(lookup.entry.payload), stream=ctx.stream
        )
        if plugin.settings.body_marker and not ctx.stream and isinstance(response, dict):
            response["cached"] = True
        return response

    async def _get_embedding_item(self, cache_key: object) -> Any:
        # LiteLLM looks embedding items up one by one with only the key we computed in get_cache_key.
        if not isinstance(cache_key, str) or cache_key.startswith(_BYPASS_KEY_PREFIX):
            return None
        return await self.plugin.embedding_items.get(cache_key)

    # Writes ------------------------------------------------------------------------------------------

    async def async_add_cache(self, result: Any, dynamic_cache_object: Any = None, **kwargs: Any) -> None:
        try:
            await self._add_response(result, kwargs)
        except Exception:
            log.exception("cache write failed (ignored)")

    async def _add_response(self, result: Any, kwargs: dict[str, Any]) -> None:
        plugin = self.plugin
        ctx = plugin.context(kwargs)
        if ctx is None or not ctx.cacheable:
            return
        if ctx.controls.no_store:
            return  # never leads a single flight (see _lookup_response): nobody waits for this answer
        key = plugin.key_for(ctx)
        if isinstance(result, str):
            payload = result.encode()
        elif hasattr(result, "model_dump_json"):  # text completions arrive as objects, not JSON
            payload = result.model_dump_json().encode()
        else:
            payload = orjson.dumps(result, default=str)
        body = canonical_response(ctx.request.kind, orjson.loads(payload))
        if not _complete_response(body, plugin.settings.layers.exact.cacheable_finish_reasons):
            plugin.engine.stats.bump("exact", ctx.request.model_group, "not_stored_incomplete")
            plugin.engine.finish(key, None)
            return
        facts: dict[str, Any] = {}
        if isinstance(body, dict):
            body.pop("cached", None)
            hidden = body.pop("_hidden_params", None)
            upstream_ms = _upstream_ms(hidden) or _api_call_ms(kwargs)
            payload = orjson.dumps(body)
            if plugin.engine.telemetry is not None or plugin.proxy_mode:
                facts = upstream_facts(body, _original_response(kwargs), ctx.request.provider)
        else:
            upstream_ms = None
        with plugin.store_span(ctx, key) as span:
            entry = await plugin.engine.store_entry(
                key,
                payload,
                tenant=ctx.tenant,
                model_group=ctx.request.model_group,
                model_version=ctx.request.model_version,
                ttl=ctx.ttl,
                stale_for=ctx.stale_for,
                upstream_ms=upstream_ms,
                counters=plugin._counters.pop(key, None),
                tags=ctx.tags,
                max_bytes=ctx.max_entry_bytes,
                encrypt=ctx.encrypt,
                extra=facts,
            )
            span.set(OUTCOME, "stored" if entry is not None else "skipped")
        plugin.engine.finish(key, entry)
        if ctx.call_id:
            plugin._leading.pop(ctx.call_id, None)
        if entry is not None and ctx.semantic:
            await plugin._semantic_add(key, backend_ttl(ctx.ttl, ctx.stale_for))

    async def async_add_cache_pipeline(
        self, result: Any, dynamic_cache_object: Any = None, **kwargs: Any
    ) -> None:
        try:
            await self.plugin.embedding_items.store(result, kwargs)
        except Exception:
            log.exception("embedding cache write failed (ignored)")

    async def ping(self) -> bool:
        return await self.plugin.raw_store.ping()

    async def disconnect(self) -> None:
        await self.plugin.raw_store.close()


class EmbeddingItems:
    """Per-item embedding lookups and writes.

    LiteLLM asks for each input item separately (``get_cache_key`` then ``async_get_cache`` with only
    the key). ``expect`` hands LiteLLM a lookup token (the storage key, plus ``#base64`` when the hit
    must be answered base64-encoded) and remembers which request context it belongs to; lookups
    issued in the same event-loop turn are batched into one ``get_many``.
    """

    def __init__(self, plugin: CachePlugin) -> None:
        self.plugin = plugin
        self._expected: OrderedDict[str, RequestContext] = OrderedDict()
        self._pending: dict[str, list[tuple[asyncio.Future[Any], RequestContext]]] = {}
        self._flush_scheduled = False

    def expect(self, key: str, ctx: RequestContext) -> str:
        requested = requested_encoding(ctx.request.params.get("encoding_format")) or "float"
        encoding = answer_encoding(requested, ctx.request.provider)
        token = key if encoding == "float" else f"{key}#{encoding}"
        self._expected[token] = ctx
        self._expected.move_to_end(token)
        while len(self._expected) > 50_000:
            self._expected.popitem(last=False)
        return token

    async def get(self, token: str) -> Any:
        ctx = self._expected.get(token)
        if ctx is None:
            return None  # not a key we computed for this process: never trusted
        key, _, encoding = token.partition("#")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.setdefault(key, []).append((future, ctx))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(lambda: self.plugin.engine._spawn(self._flush()))
        entry = await future
        self._tally(ctx, entry is not None)
        if isinstance(entry, dict) and encoding == "base64":
            entry = {**entry, "embedding": encode_vector(entry.get("embedding"), "base64")}
        return entry

    def _tally(self, ctx: RequestContext, hit: bool) -> None:
        previous = self.plugin.decision_for(ctx.call_id, pop=False)
        hits, total = previous.items if previous and previous.items else (0, 0)
        hits, total = hits + int(hit), total + 1
        outcome: Outcome = "HIT" if hits == total else "MISS"
        self.plugin.record(
            ctx.call_id,
            Decision(outcome, "embedding" if outcome == "HIT" else None, 0, "items", (hits, total)),
        )

    async def _flush(self) -> None:
        self._flush_scheduled = False
        pending, self._pending = self._pending, {}
        groups: dict[tuple[str, str, str, RequestControls, tuple[str, ...]], list[str]] = {}
        contexts: dict[str, RequestContext] = {}
        for key, waiters in pending.items():
            ctx = waiters[0][1]  # same key: same tenant, model, version and item
            contexts[key] = ctx
            group = (
                ctx.tenant.fingerprint,
                ctx.request.model_group,
                ctx.request.model_version,
                ctx.controls,
                ctx.tags,
            )
            groups.setdefault(group, []).append(key)
        for keys in groups.values():
            ctx = contexts[keys[0]]
            try:
                entries, _ = await self.plugin.engine.lookup_many(
                    keys,
                    tenant=ctx.tenant,
                    model_group=ctx.request.model_group,
                    model_version=ctx.request.model_version,
                    controls=ctx.controls,
                    tags=ctx.tags,
                    savings_for=self.plugin.embedding_savings(ctx),
                )
            except Exception:
                log.exception("embedding lookup failed open")
                entries = [None] * len(keys)
            for key, entry in zip(keys, entries, strict=True):
                value = orjson.loads(entry.payload) if entry is not None else None
                for future, _ in pending[key]:
                    if not future.done():
                        future.set_result(value)

    async def store(self, result: Any, kwargs: dict[str, Any]) -> None:
        plugin = self.plugin
        ctx = plugin.context(kwargs)
        if ctx is None or not ctx.cacheable or ctx.controls.no_store:
            return
        inputs = kwargs.get("input")
        items = inputs if isinstance(inputs, list) else [inputs]
        data = getattr(result, "data", None)
        if not isinstance(data, list) or len(data) != len(items):
            return  # a response that does not line up with its inputs is never stored
        carrier = plugin.carrier
        writes: list[tuple[str, bytes]] = []
        for index, item in enumerate(items):
            cached = carrier._convert_to_cached_embedding(
                data[index],
                getattr(result, "model", None),
                prompt_tokens=carrier._get_per_item_prompt_tokens(result=result, idx_in_result_data=index),
                prompt_tokens_details=carrier._get_per_item_prompt_tokens_details(
                    result=result, idx_in_result_data=index
                ),
            )
            vector = stored_vector(cached.get("embedding"))
            if vector is None:
                return
            # stored once as floats, encoded per request when served
            writes.append((plugin.key_for(ctx, item), orjson.dumps({**cached, "embedding": vector})))
        await plugin.engine.store_many(
            writes,
            tenant=ctx.tenant,
            model_group=ctx.request.model_group,
            model_version=ctx.request.model_version,
            ttl=ctx.ttl,
            tags=ctx.tags,
            encrypt=ctx.encrypt,
        )


def _litellm_embed(embedder: str) -> Any:
    """For ``embedder: "litellm:<group>"``: embed through that model group (the proxy's router when
    running in the proxy, plain litellm otherwise)."""
    if not embedder.startswith("litellm:"):
        return None
    group = embedder.split(":", 1)[1]

    async def embed(texts: Any) -> list[list[float]]:
        proxy_server = sys.modules.get("litellm.proxy.proxy_server")
        router = getattr(proxy_server, "llm_router", None)
        call = router.aembedding if router is not None else litellm.aembedding
        response = await call(model=group, input=list(texts))
        return [list(item["embedding"]) for item in response.data]

    return embed


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
    metadata = {k: v for k, v in _metadata(source).items() if k in kept}
    metadata[REFRESH_FIELD] = True
    call.update(metadata=metadata, cache={"no-cache": True}, caching=True, stream=False)
    return call


def _complete_response(body: Any, finish_reasons: tuple[str, ...]) -> bool:
    """Only complete, successful answers are stored: every choice finished for a normal reason and
    carries output."""
    if not isinstance(body, dict):
        return False
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices:
        return False
    for choice in choices:
        if not isinstance(choice, dict) or choice.get("finish_reason") not in finish_reasons:
            return False
        message = choice.get("message")
        has_text = isinstance(choice.get("text"), str) and choice["text"] != ""
        has_message = isinstance(message, dict) and bool(message.get("content") or message.get("tool_calls"))
        if not (has_text or has_message):
            return False
    return True


def _original_response(kwargs: Mapping[str, Any]) -> Any:
    """The provider's raw response as LiteLLM logged it (Ollama's carries its durations)."""
    logging_obj = kwargs.get("litellm_logging_obj")
    details = getattr(logging_obj, "model_call_details", None)
    return details.get("original_response") if isinstance(details, dict) else None


def _api_call_ms(kwargs: Mapping[str, Any]) -> float | None:
    """Milliseconds since LiteLLM handed this call to the provider: the write is started the moment
    the response is back (LiteLLM sets ``_response_ms`` only after it has queued the write)."""
    logging_obj = kwargs.get("litellm_logging_obj")
    details = getattr(logging_obj, "model_call_details", None)
    started = details.get("api_call_start_time") if isinstance(details, dict) else None
    if not isinstance(started, datetime.datetime):
        return None
    elapsed = (datetime.datetime.now() - started).total_seconds() * 1000  # naive local, like LiteLLM
    return elapsed if elapsed >= 0 else None


def _upstream_ms(hidden: Any) -> float | None:
    if isinstance(hidden, dict):
        value = hidden.get("_response_ms")
        if isinstance(value, (int, float)):
            return float(value)
    return None


_plugin: CachePlugin | None = None


def _proxy_config_path() -> str | None:
    proxy_server = sys.modules.get("litellm.proxy.proxy_server")
    path = getattr(proxy_server, "user_config_file_path", None) if proxy_server else None
    return path or os.environ.get("CONFIG_FILE_PATH")


def create_proxy_plugin() -> CachePlugin:
    """Build the proxy instance from the ``cache_plugin:`` section of the proxy's own config file.

    A bad setting stops the proxy with one line naming the key.
    """
    global _plugin
    if _plugin is not None:
        return _plugin
    config_path = _proxy_config_path()
    try:
        settings = load_settings(config_path)
        plugin = CachePlugin(settings, proxy_mode=True)
    except SettingsError as error:
        message = f"litellm_cache_plugin: invalid configuration: {error}"
        print(message, file=sys.stderr, flush=True)
        # Exit here rather than raise: uvicorn would bury the line under a 300-line traceback.
        os._exit(2)
    plugin.install()
    from litellm_cache_plugin.integrations import proxy_routes

    proxy_routes.register(plugin)
    if settings.fast_path.enabled:
        from litellm_cache_plugin.integrations.fast_path import install_fast_path

        install_fast_path(plugin)
    # After the fast path: the 304 wrapper then sits around it (edge layer only).
    install_conditional_responses(plugin)
    _plugin = plugin
    log.info("litellm_cache_plugin ready: backend=%s scope=%s", _redact(settings.backend), settings.scope)
    return plugin


def _redact(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.split("@", 1)[1]
    return scheme + sep + rest


def now() -> float:
    return time.time()
