"""The cache region: the whole request pipeline, free of LiteLLM and of any telemetry library.

Lookup (exact, then semantic, then single flight; a stale entry is served while one refresh runs),
store, accounting. Adapters hand in a :class:`RequestContext` and report what happened upstream;
everything else is decided here (with the pure rules of :mod:`litellm_cache_plugin.policy`) and done
through the engine. What the region needs from the framework comes in through
:mod:`litellm_cache_plugin.region.ports`; what it reports goes to an
:class:`litellm_cache_plugin.observe.Observer`.

Single flight is owned here end to end: :meth:`CacheRegion.lookup_response` claims, and the outcome
of the leader's upstream call comes back through :meth:`store_response` (stored or not) or
:meth:`release_flight` (failed, cut off), which wake the waiters.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from litellm_cache_plugin.engine import CacheEngine, Lookup, Prefetched
from litellm_cache_plugin.envelope import Entry
from litellm_cache_plugin.observe import (
    KEY_FINGERPRINT,
    LAYER,
    MODEL,
    NO_SPAN,
    OPERATION,
    OUTCOME,
    PROVIDER,
    REASON,
    RESULT,
    Observer,
    SpanHandle,
    key_fingerprint,
)
from litellm_cache_plugin.payloads import canonical_response
from litellm_cache_plugin.policy.freshness import backend_ttl
from litellm_cache_plugin.policy.keys import embedding_key, exact_key
from litellm_cache_plugin.policy.lookup import Bypass, Miss, Serve, assert_never, plan_after_exact
from litellm_cache_plugin.policy.storable import complete_response
from litellm_cache_plugin.policy.verify import EntryFacts, alias_verdict, decode_alias
from litellm_cache_plugin.region.accounting import Accounting
from litellm_cache_plugin.region.calls import CallTable
from litellm_cache_plugin.region.context import Decision, NearMatch, RequestContext
from litellm_cache_plugin.region.edge_facts import edge_facts
from litellm_cache_plugin.region.ports import Judge, ModelCosts, Upstream
from litellm_cache_plugin.region.verify import Verifier, VerifyJob
from litellm_cache_plugin.settings import EffectiveSettings, PluginSettings

log = logging.getLogger("litellm_cache_plugin")

RECENT_MISS_S = 0.5


class CacheRegion:
    """One per process: the pipeline every adapter (hooks, carrier, fast path, routes) goes through."""

    def __init__(
        self,
        engine: CacheEngine,
        settings: PluginSettings,
        *,
        upstream: Upstream,
        costs: ModelCosts,
        semantic: Any = None,
        start_sampler: Callable[[], None] | None = None,
        judge: Judge | None = None,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.upstream = upstream
        self.costs = costs
        self.semantic = semantic
        self.calls = CallTable()
        self.accounting = Accounting(engine, self.effective, costs, self.key_for)
        self._start_sampler = start_sampler
        self._semantic_started: asyncio.Task[None] | None = None
        self._effective: tuple[PluginSettings, dict[str, EffectiveSettings]] = (settings, {})
        # key -> (when, read) of reads that found no entry, made moments ago for a request that is on
        # its way to lookup_response (the fast path's probe, before it handed the request on).
        self._recent_misses: OrderedDict[str, tuple[float, Prefetched]] = OrderedDict()
        # Verified semantic matches (layers.semantic.verify): background judge calls, bounded.
        self.verifier = Verifier(engine, judge, settings.layers.semantic.verify, self._add_to_index)

    @property
    def observer(self) -> Observer | None:
        return self.engine.telemetry

    # -- settings and keys -----------------------------------------------------------------------------

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

    # -- per-call decisions (read by the header hook) ----------------------------------------------

    def record(self, call_id: str | None, decision: Decision) -> None:
        self.calls.record(call_id, decision)

    def decision_for(self, call_id: str | None) -> Decision | None:
        return self.calls.decision(call_id)

    async def read_ahead(self, ctx: RequestContext, key: str) -> Prefetched:
        """Read ``ctx``'s entry (at ``key``) for a path that may hand the request on to the hook
        path, whose lookup then reuses a read that found nothing (:meth:`remember_miss`). When such a
        miss would lead a single flight, the read also takes its fill lock in the same round trip;
        the caller gives it back with :meth:`drop_read_ahead` once the request is over (a no-op when
        the lookup's claim took it over). Raises :class:`StoreError`."""
        plan = plan_after_exact(
            "MISS",
            "absent",
            semantic=False,
            single_flight=self.settings.single_flight.enabled,
            no_store=ctx.controls.no_store,
        )
        lock = isinstance(plan, Miss) and plan.coalesce and ctx.request.kind != "embedding"
        read = await self.engine.read(
            key, tenant=ctx.tenant, model_group=ctx.request.model_group, tags=ctx.tags, lock=lock
        )
        self.remember_miss(read)
        return read

    def drop_read_ahead(self, read: Prefetched | None) -> None:
        if read is not None:
            self.engine.drop_read_lock(read)

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
        if found is None or time.monotonic() - found[0] > RECENT_MISS_S:
            return None
        return found[1]

    # -- lookup ----------------------------------------------------------------------------------------

    async def lookup_response(self, ctx: RequestContext) -> Lookup:
        """Look a chat/text request up (exact, semantic, single flight) and record the decision for
        its call id. One ``llm_cache.lookup`` span per request (child of the caller's span)."""
        started = time.perf_counter()
        observer = self.observer
        if observer is not None and self._start_sampler is not None:
            self._start_sampler()
        if observer is None or not observer.tracing():
            return await self._lookup_response(ctx, started, None)
        group = ctx.request.model_group
        opening = {LAYER: "exact", MODEL: group, OPERATION: ctx.request.kind, PROVIDER: ctx.request.provider}
        with observer.span("llm_cache.lookup", opening, parent=ctx.parent_span) as span:
            notes: dict[str, Any] = {}
            lookup = await self._lookup_response(ctx, started, notes)
            span.set_attributes({**notes, RESULT: lookup.outcome.lower(), REASON: lookup.reason})
            return lookup

    async def _lookup_response(
        self, ctx: RequestContext, started: float, notes: dict[str, Any] | None
    ) -> Lookup:
        """The driver: the exact layer's answer, then what :func:`plan_after_exact` says to do with it.
        Counted once per layer consulted (``notes``: attributes for the span, None without one)."""
        group = ctx.request.model_group
        if not ctx.cacheable:
            if not ctx.refresh and not ctx.judge:
                self.engine.account("exact", group, "bypass", ctx.reason, operation=ctx.request.kind)
            self.record(ctx.call_id, Decision("BYPASS", reason=ctx.reason))
            return Lookup("BYPASS", ctx.reason)
        key = self.key_for(ctx)
        if notes is not None:
            notes[KEY_FINGERPRINT] = key_fingerprint(key)
        lookup = await self.exact(ctx, key, prefetched=self._recent_miss(key))
        if lookup.alias is not None:
            lookup = await self._follow_alias(ctx, lookup)
            if lookup.entry is not None:
                self.accounting.account(ctx, "exact", Lookup("MISS", "alias"), started)
                attributes = self.accounting.account(ctx, "semantic", lookup, started, result="hit")
                if notes is not None:
                    notes.update(attributes)
                    notes[LAYER] = "semantic"
                return lookup
        state = self.calls.state(ctx.call_id)
        state.counters = lookup.counters
        result: str | None = None
        plan = plan_after_exact(
            lookup.outcome,
            lookup.reason,
            semantic=ctx.semantic and self.semantic is not None,
            single_flight=self.settings.single_flight.enabled,
            no_store=ctx.controls.no_store,
        )
        match plan:
            case Serve(stale=stale):
                if stale:
                    assert lookup.entry is not None  # a stale hit serves its entry
                    self.engine.spawn(self._refresh(ctx, key, lookup.entry.created_at))
            case Bypass():
                pass
            case Miss(semantic=semantic, coalesce=coalesce):
                if semantic:
                    semantic_hit = await self._semantic_lookup(ctx, key, started, notes)
                    if semantic_hit is not None:
                        self.accounting.account(ctx, "exact", lookup, started)
                        return semantic_hit
                if coalesce:
                    role = await self.engine.claim(
                        key,
                        poll=lambda: self._peek(ctx, key),
                        call_id=ctx.call_id,
                        model_group=group,
                        absent=lookup.reason == "absent",
                    )
                    if role.leader:
                        state.leading = key
                    elif role.entry is not None:
                        age = max(0, int(self.engine.clock() - role.entry.created_at))
                        lookup = Lookup(
                            "HIT", "coalesced", entry=role.entry, age=age, counters=lookup.counters
                        )
                        result = "coalesced"
            case _:
                assert_never(plan)
        attributes = self.accounting.account(ctx, "exact", lookup, started, result=result)
        if notes is not None:
            notes.update(attributes)
        edge = edge_facts(self.settings, self.engine.clock(), ctx, lookup)
        if lookup.entry is None:
            self.record(ctx.call_id, Decision(lookup.outcome, reason=lookup.reason, edge=edge))
        else:
            self.record(ctx.call_id, Decision(lookup.outcome, "exact", lookup.age, lookup.reason, edge=edge))
        return lookup

    async def peek_response(self, ctx: RequestContext, prefetched: Prefetched | None = None) -> Lookup:
        """The exact-layer entry for ``ctx`` with no coordination (no single-flight claim, no stale
        refresh, no semantic search, no decision recorded): for paths that may hand the request on.
        ``prefetched``: an earlier read of this request's entry (see ``CacheEngine.read``)."""
        if not ctx.cacheable:
            return Lookup("BYPASS", ctx.reason)
        return await self.exact(ctx, self.key_for(ctx), prefetched=prefetched)

    async def exact(
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
        found = await self.exact(ctx, key, record=False)
        return found.entry if found.outcome == "HIT" else None

    # -- verified semantic matches (aliases) ------------------------------------------------------------

    def _verifying(self, ctx: RequestContext) -> bool:
        """Verified mode is on for this request's model group (and the semantic layer can serve it)."""
        return (
            ctx.semantic
            and self.semantic is not None
            and self.effective(ctx.request.model_group).layers.semantic.verify.mode != "off"
        )

    async def _follow_alias(self, ctx: RequestContext, lookup: Lookup) -> Lookup:
        """The canonical entry an alias at this request's exact key points to, served as a HIT when
        :func:`alias_verdict` allows it (reason ``alias``), else a MISS with the verdict's reason and
        the counters of the exact read (the request's own answer then replaces the alias)."""
        alias = lookup.alias
        assert alias is not None
        if not self._verifying(ctx):
            return Lookup("MISS", "alias_off", counters=lookup.counters)
        target = decode_alias(alias.payload)
        canonical = None
        if target is not None and target.model_group == ctx.request.model_group:
            canonical = await self.exact(ctx, target.canonical_key, record=False)
        entry = canonical.entry if canonical is not None and canonical.outcome == "HIT" else None
        verdict = alias_verdict(
            alias=_facts(alias),
            target=target,
            canonical=_facts(entry) if entry is not None else None,
            canonical_reason=canonical.reason if canonical is not None else "absent",
            tenant=ctx.tenant.fingerprint,
            model_group=ctx.request.model_group,
            model_version=ctx.request.model_version,
        )
        if verdict is not None or canonical is None or entry is None:
            return Lookup("MISS", verdict or "alias_dead", counters=lookup.counters)
        similarity = target.similarity if target is not None else None
        self.record(
            ctx.call_id,
            Decision("HIT", "semantic-verified", canonical.age, "alias", None, similarity),
        )
        return Lookup("HIT", "alias", entry=entry, age=canonical.age, counters=lookup.counters)

    async def _add_to_index(
        self, scope: str, text: str, key: str, ttl: float, context: tuple[tuple[str, str], ...] = ()
    ) -> None:
        """Make a stored answer findable by meaning (``context``: a conversation's earlier turns);
        fails open."""
        if self.semantic is None:
            return
        try:
            await self.semantic.add(scope, text, key, ttl=ttl, context=context)
        except Exception:
            log.exception("semantic add failed (ignored)")

    # -- semantic layer --------------------------------------------------------------------------------

    async def _semantic_ready(self) -> None:
        if self._semantic_started is None:
            self._semantic_started = asyncio.ensure_future(self.semantic.start())
        await asyncio.shield(self._semantic_started)

    async def _semantic_lookup(
        self, ctx: RequestContext, key: str, started: float, notes: dict[str, Any] | None
    ) -> Lookup | None:
        """A paraphrase of a cached prompt in the same scope: the exact entry it points to, re-checked
        (tenant, counters, version, freshness) by the engine before it is served."""
        from litellm_cache_plugin.semantic import semantic_prompt

        prompt = semantic_prompt(
            ctx.request,
            ctx.tenant,
            conversations=self.effective(ctx.request.model_group).layers.semantic.conversations,
        )
        if prompt is None:
            return None
        scoped = (prompt.scope, prompt.text)
        state = self.calls.state(ctx.call_id)
        state.semantic, state.semantic_context = scoped, prompt.context
        try:
            await self._semantic_ready()
            resolved = await self.semantic.resolve(prompt.scope, prompt.text, context=prompt.context)
        except Exception:
            log.exception("semantic lookup failed open")
            self.accounting.account(ctx, "semantic", Lookup("MISS", "error"), started)
            return None
        match = resolved.match
        if match is None:
            if resolved.outcome == "refused":
                # A candidate above the threshold that the guard refused: counted with the rule that
                # refused the best one (a bounded set of names; the differing words stay out of labels).
                self.accounting.account(
                    ctx, "semantic", Lookup("MISS", resolved.reason or "guard"), started, result="refused"
                )
            else:
                reason = "error" if resolved.outcome == "error" else "no_match"
                self.accounting.account(ctx, "semantic", Lookup("MISS", reason), started)
            return None
        found = await self.exact(ctx, match.entry_key, record=False)
        if found.entry is None:
            self.semantic.forget(scoped[0], match.entry_key)
            self.accounting.account(ctx, "semantic", Lookup("MISS", found.reason), started)
            return None
        if self._verifying(ctx):
            # Verified mode: a near match is never served unverified. This request goes upstream; the
            # pair is verified once its own answer is stored (store_response).
            self.calls.state(ctx.call_id).verify = NearMatch(
                scoped[0],
                scoped[1],
                match.entry_key,
                match.prompt,
                match.similarity,
                prompt.context,
                match.context,
            )
            self.accounting.account(ctx, "semantic", Lookup("MISS", "unverified"), started)
            return None
        attributes = self.accounting.account(ctx, "semantic", found, started)
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

    async def _semantic_add(self, ctx: RequestContext, key: str, ttl: float, answer: bytes) -> None:
        """Make the stored answer findable by meaning, or, when it answered an unverified near match,
        hand the pair (and ``answer``, the stored plaintext payload) to the verifier instead."""
        state = self.calls.get(ctx.call_id)
        if state is None or state.semantic is None or self.semantic is None:
            return
        scoped, state.semantic = state.semantic, None
        context, state.semantic_context = state.semantic_context, ()
        near, state.verify = state.verify, None
        if near is not None and self._verifying(ctx):
            # Made findable by meaning only if the judge says it is a question of its own.
            settings = self.effective(ctx.request.model_group).layers.semantic.verify
            self.verifier.submit(
                VerifyJob(
                    paraphrase_key=key,
                    near=near,
                    tenant=ctx.tenant,
                    model_group=ctx.request.model_group,
                    model_version=ctx.request.model_version,
                    tags=ctx.tags,
                    index_ttl=ttl,
                    settings=settings,
                    answer=answer if settings.mode in ("agreement", "both") else None,
                )
            )
            return
        await self._add_to_index(scoped[0], scoped[1], key, ttl, context)

    # -- store -----------------------------------------------------------------------------------------

    async def store_response(
        self,
        ctx: RequestContext,
        body: Any,
        *,
        upstream_ms: float | None,
        facts: Callable[[dict[str, Any]], Mapping[str, Any]] | None = None,
    ) -> Entry | None:
        """Store the upstream answer of ``ctx`` if it may be stored, and end the single flight it led
        (its waiters get the entry, or go upstream themselves). ``facts``: what was measured about the
        upstream call, computed from the stored body (only when somebody reads it)."""
        if not ctx.cacheable or ctx.controls.no_store:
            return None  # a no-store call never leads a single flight: nobody waits for its answer
        key = self.key_for(ctx)
        body = canonical_response(ctx.request.kind, body)
        state = self.calls.get(ctx.call_id)
        counters = state.counters if state is not None else None
        if state is not None:
            state.counters = None
            state.leading = None
        if not complete_response(body, self.settings.layers.exact.cacheable_finish_reasons):
            self.engine.stats.bump("exact", ctx.request.model_group, "not_stored_incomplete")
            self.engine.finish(key, None)
            return None
        body.pop("cached", None)
        body.pop("_hidden_params", None)
        extra = dict(facts(body)) if facts is not None else {}
        with self.accounting.store_span(ctx, key) as span:
            entry = await self.engine.store_entry(
                key,
                orjson.dumps(body),
                tenant=ctx.tenant,
                model_group=ctx.request.model_group,
                model_version=ctx.request.model_version,
                ttl=ctx.ttl,
                stale_for=ctx.stale_for,
                upstream_ms=upstream_ms,
                counters=counters,
                tags=ctx.tags,
                max_bytes=ctx.max_entry_bytes,
                encrypt=ctx.encrypt,
                extra=extra,
            )
            span.set(OUTCOME, "stored" if entry is not None else "skipped")
        self.engine.finish(key, entry)
        if entry is not None and ctx.semantic:
            await self._semantic_add(ctx, key, backend_ttl(ctx.ttl, ctx.stale_for), entry.payload)
        return entry

    def awaited(self, call_id: object) -> bool:
        """Do requests of this process wait for the answer of ``call_id`` (it leads their flight)?"""
        state = self.calls.get(call_id) if isinstance(call_id, str) else None
        return (
            state is not None and state.leading is not None and self.engine.flights.waiting(state.leading) > 0
        )

    def release_flight(self, call_id: object) -> None:
        """The call leading a single flight ended without a stored answer (failed, cut off): wake its
        waiters now (they go upstream themselves) instead of letting them wait for the timeout."""
        if isinstance(call_id, str):
            key = self.calls.stop_leading(call_id)
            if key is not None:
                self.engine.finish(key, None)

    async def store_embedding_items(self, ctx: RequestContext, items: list[tuple[Any, bytes]]) -> None:
        """Store the upstream vectors of an embeddings call, one entry per input item."""
        if not ctx.cacheable or ctx.controls.no_store:
            return
        await self.engine.store_many(
            [(self.key_for(ctx, item), payload) for item, payload in items],
            tenant=ctx.tenant,
            model_group=ctx.request.model_group,
            model_version=ctx.request.model_version,
            ttl=ctx.ttl,
            tags=ctx.tags,
            encrypt=ctx.encrypt,
        )

    # -- stale-while-revalidate ------------------------------------------------------------------------

    async def _refresh(self, ctx: RequestContext, key: str, generation: float) -> None:
        """Stale-while-revalidate: re-run the request once per stale entry (``generation``: its
        ``created_at``; across replicas: a lock in the backend, held until it expires) and let the
        normal write path replace the entry. A failed refresh keeps the stale entry, so a failing
        upstream is retried at most once per lock TTL."""
        model_group = ctx.request.model_group
        lock_ttl = max(5.0, min(self.settings.single_flight.timeout, ctx.stale_for or 5.0))
        if await self.engine.flights.try_refresh_lock(key, lock_ttl, generation) is None:
            return
        observer = self.observer
        self.engine.stats.bump("exact", model_group, "refresh_started")
        if observer is not None:
            observer.record_refresh(model_group, "started")
        span_context: contextlib.AbstractContextManager[SpanHandle] = (
            observer.span(
                "llm_cache.refresh",
                {MODEL: model_group, KEY_FINGERPRINT: key_fingerprint(key)},
                parent=ctx.parent_span,
            )
            if observer is not None
            else contextlib.nullcontext(NO_SPAN)
        )
        with span_context as span:
            try:
                await self.upstream.refresh(ctx, self.settings.single_flight.timeout)
            except Exception as error:
                self.engine.stats.bump("exact", model_group, "refresh_failed")
                if observer is not None:
                    observer.record_refresh(model_group, "failed")
                span.set(OUTCOME, "failed")
                log.warning(
                    "stale-while-revalidate refresh failed for %s (stale entry kept): %s", model_group, error
                )
                return
            span.set(OUTCOME, "ok")
        self.engine.stats.bump("exact", model_group, "refresh_ok")
        if observer is not None:
            observer.record_refresh(model_group, "ok")


def _facts(entry: Entry) -> EntryFacts:
    return EntryFacts(entry.tenant, entry.model_version, tuple(entry.tags), entry.counters, entry.created_at)
