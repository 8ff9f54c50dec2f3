"""Counting what the region decided and what it saved: stats and the observer get the same numbers
from one call per request and layer."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import orjson

from litellm_cache_plugin.engine import CacheEngine, Lookup
from litellm_cache_plugin.envelope import Entry
from litellm_cache_plugin.observe import (
    COST_SAVED,
    GPU_TIME_SAVED,
    INPUT_TOKENS,
    KEY_FINGERPRINT,
    LATENCY_SAVED,
    LAYER,
    MODEL,
    NO_SPAN,
    OPERATION,
    OUTPUT_TOKENS,
    REASON,
    RESULT,
    SpanHandle,
    key_fingerprint,
)
from litellm_cache_plugin.region.context import RequestContext
from litellm_cache_plugin.region.ports import ModelCosts
from litellm_cache_plugin.savings import Savings, embedding_item_facts, savings_of
from litellm_cache_plugin.settings import EffectiveSettings


class Accounting:
    def __init__(
        self,
        engine: CacheEngine,
        effective: Callable[[str | None], EffectiveSettings],
        costs: ModelCosts,
        key_for: Callable[[RequestContext], str],
    ) -> None:
        self.engine = engine
        self._effective = effective
        self._costs = costs
        self._key_for = key_for
        self._model_costs: dict[tuple[str, str | None], Mapping[str, Any] | None] = {}

    def account(
        self, ctx: RequestContext, layer: str, lookup: Lookup, started: float, *, result: str | None = None
    ) -> dict[str, Any]:
        """Count this request's final result in ``layer`` (stats and telemetry, same numbers); returns
        the savings as span attributes."""
        elapsed_ms = (time.perf_counter() - started) * 1000
        savings = self.savings(ctx, lookup.entry, elapsed_ms) if lookup.entry is not None else None
        if ctx.refresh:
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
        return saving_attributes(savings)

    def savings(self, ctx: RequestContext, entry: Entry, hit_ms: float | None) -> Savings:
        """What serving ``entry`` to this request saved (see :mod:`litellm_cache_plugin.savings`)."""
        model = ctx.source.get("model")
        return savings_of(
            entry.extra,
            entry.upstream_ms,
            hit_ms,
            self._effective(ctx.request.model_group).prices,
            self._model_cost(model, ctx.request.provider) if isinstance(model, str) else None,
        )

    def _model_cost(self, model: str, provider: str | None) -> Mapping[str, Any] | None:
        """The framework's cost-map entry of a deployment model (memoized: the map is large)."""
        slot = (model, provider)
        if slot not in self._model_costs:
            if len(self._model_costs) > 4096:
                self._model_costs.clear()
            self._model_costs[slot] = self._costs.model_cost(model, provider)
        return self._model_costs[slot]

    @contextlib.contextmanager
    def store_span(self, ctx: RequestContext, key: str) -> Iterator[SpanHandle]:
        """The ``llm_cache.store`` span of one write (a no-op object when telemetry is off)."""
        observer = self.engine.telemetry
        if observer is None:
            yield NO_SPAN
            return
        attributes = {
            LAYER: "embedding" if ctx.request.kind == "embedding" else "exact",
            MODEL: ctx.request.model_group,
            OPERATION: ctx.request.kind,
            KEY_FINGERPRINT: key_fingerprint(key),
        }
        with observer.span("llm_cache.store", attributes, parent=ctx.parent_span) as span:
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
            notes = saving_attributes(savings)
        observer = self.engine.telemetry
        if observer is not None:
            layer = "embedding" if kind == "embedding" else "exact"
            attributes = {LAYER: layer, MODEL: group, OPERATION: kind, RESULT: "hit", REASON: "fast_path"}
            if layer == "exact":
                attributes[KEY_FINGERPRINT] = key_fingerprint(self._key_for(ctx))
            with observer.span("llm_cache.lookup", {**attributes, **notes}, start_time=int(started * 1e9)):
                pass

    def embedding_savings(self, ctx: RequestContext) -> Callable[[Entry], Savings]:
        """Savings of one cached embedding item: its prompt tokens, priced like a call."""
        model = ctx.source.get("model")
        prices = self._effective(ctx.request.model_group).prices
        model_cost = self._model_cost(model, ctx.request.provider) if isinstance(model, str) else None

        def of(entry: Entry) -> Savings:
            try:
                tokens = orjson.loads(entry.payload).get("prompt_tokens")
            except (orjson.JSONDecodeError, AttributeError):
                tokens = None
            return savings_of(embedding_item_facts(tokens), None, None, prices, model_cost)

        return of


def saving_attributes(savings: Savings | None) -> dict[str, Any]:
    if savings is None:
        return {}
    return {
        LATENCY_SAVED: savings.latency_ms,
        COST_SAVED: savings.cost_usd,
        GPU_TIME_SAVED: savings.gpu_seconds,
        INPUT_TOKENS: savings.input_tokens,
        OUTPUT_TOKENS: savings.output_tokens,
    }
