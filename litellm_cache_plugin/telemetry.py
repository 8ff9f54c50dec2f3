"""OpenTelemetry metrics and spans for cache decisions: a typed observer the engine calls.

Uses whatever providers the application configured (``metrics.get_meter_provider()`` /
``trace.get_tracer_provider()``); without an SDK these are the API's no-op proxies and a call costs
a few dictionary look-ups.

Instruments (meter ``litellm_cache_plugin``; names are a stable interface, change them only with a
migration note):

=============================  ==========  =========  ============================================
name                           kind        unit       attributes
=============================  ==========  =========  ============================================
``llm_cache.requests``         counter     {request}  layer, result, reason, model, operation,
                                                      provider
``llm_cache.lookup.duration``  histogram   ms         layer, result, model
``llm_cache.latency_saved``    histogram   ms         layer, model (served results only)
``llm_cache.cost_saved``       counter     USD        layer, model (served results only)
``llm_cache.tokens_saved``     counter     {token}    layer, model, ``gen_ai.token.type`` input/output
``llm_cache.gpu_time_saved``   counter     s          layer, model (served results only)
``llm_cache.stores``           counter     {entry}    layer, model
``llm_cache.stored_bytes``     counter     By         layer, model
``llm_cache.backend.errors``   counter     {error}    backend (URL scheme only), op, reason
``llm_cache.fail_open``        counter     {request}  layer, model, reason
``llm_cache.refreshes``        counter     {refresh}  model, outcome (started/ok/failed)
``llm_cache.coalesced``        counter     {request}  model
``llm_cache.invalidations``    counter     {call}     ``llm_cache.invalidation.kind``
``llm_cache.entries``          obs. gauge  {entry}    backend, coverage (callback from the caller)
``llm_cache.bytes``            obs. gauge  By         backend, coverage (callback from the caller)
``llm_cache.evictions``        obs. count  {entry}    backend, coverage (cumulative, as the backend
                                                      reports it)
``llm_cache.expirations``      obs. count  {entry}    backend, coverage (cumulative, as the backend
                                                      reports it)
=============================  ==========  =========  ============================================

``llm_cache.coverage`` says what a backend figure counts, when the backend says it: ``cache`` (only
this cache's keys), ``database`` (the whole Redis database, other applications' keys included) or
``server`` (the whole server: Redis INFO, memcached ``stats``).

Attribute keys: ``llm_cache.layer``, ``llm_cache.result``, ``llm_cache.reason``, ``gen_ai.request.model``
(the model *group*), ``gen_ai.operation.name``, ``gen_ai.provider.name``; spans may also carry
``llm_cache.key.fingerprint`` (first 16 hex chars of sha256 of the cache key, see :func:`key_fingerprint`)
and ``gen_ai.usage.*`` token counts. The GenAI conventions have no response-cache vocabulary, hence
``llm_cache.*`` for the rest.

Spans (one per cache decision, child of the current span): ``llm_cache.lookup``, ``llm_cache.store``,
``llm_cache.refresh``, ``llm_cache.invalidate``.

Privacy: every attribute goes through an allow-list (:data:`SPAN_ATTRIBUTES`, :data:`METRIC_ATTRIBUTES`);
unknown keys (prompt text, tenant ids, user ids...) are dropped, not renamed. The key fingerprint is kept
off metric labels (unbounded cardinality) and must look like a fingerprint, so a raw key cannot slip in.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, NamedTuple

from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation
from opentelemetry.trace import (
    INVALID_SPAN,
    NoOpTracerProvider,
    ProxyTracerProvider,
    Span,
    SpanKind,
    TracerProvider,
)
from opentelemetry.util.types import AttributeValue

# The attribute keys, span names and key fingerprint are defined (once) in the telemetry-free
# ``observe`` module the core uses, and the pure saving figures in ``savings``; re-exported here
# for existing callers (``from litellm_cache_plugin.telemetry import LAYER``).
from litellm_cache_plugin.observe import AGE as AGE
from litellm_cache_plugin.observe import BACKEND as BACKEND
from litellm_cache_plugin.observe import COST_SAVED as COST_SAVED
from litellm_cache_plugin.observe import COVERAGE as COVERAGE
from litellm_cache_plugin.observe import ENTRY_BYTES as ENTRY_BYTES
from litellm_cache_plugin.observe import GPU_TIME_SAVED as GPU_TIME_SAVED
from litellm_cache_plugin.observe import INPUT_TOKENS as INPUT_TOKENS
from litellm_cache_plugin.observe import INVALIDATION_KIND as INVALIDATION_KIND
from litellm_cache_plugin.observe import KEY_FINGERPRINT as KEY_FINGERPRINT
from litellm_cache_plugin.observe import LATENCY_SAVED as LATENCY_SAVED
from litellm_cache_plugin.observe import LAYER as LAYER
from litellm_cache_plugin.observe import MODEL as MODEL
from litellm_cache_plugin.observe import OP as OP
from litellm_cache_plugin.observe import OPERATION as OPERATION
from litellm_cache_plugin.observe import OUTCOME as OUTCOME
from litellm_cache_plugin.observe import OUTPUT_TOKENS as OUTPUT_TOKENS
from litellm_cache_plugin.observe import PROVIDER as PROVIDER
from litellm_cache_plugin.observe import REASON as REASON
from litellm_cache_plugin.observe import RESULT as RESULT
from litellm_cache_plugin.observe import TOKEN_TYPE as TOKEN_TYPE
from litellm_cache_plugin.observe import SpanName as SpanName
from litellm_cache_plugin.observe import key_fingerprint as key_fingerprint
from litellm_cache_plugin.savings import cost_saved as cost_saved
from litellm_cache_plugin.savings import gpu_seconds_from_ollama as gpu_seconds_from_ollama
from litellm_cache_plugin.savings import gpu_seconds_from_ollama_evals as gpu_seconds_from_ollama_evals
from litellm_cache_plugin.savings import latency_saved as latency_saved

log = logging.getLogger("litellm_cache_plugin")

INSTRUMENTATION_NAME = "litellm_cache_plugin"

# Low-cardinality keys only: each distinct label set is a time series in the backend.
METRIC_ATTRIBUTES: frozenset[str] = frozenset(
    {
        LAYER,
        RESULT,
        REASON,
        BACKEND,
        OP,
        OUTCOME,
        INVALIDATION_KIND,
        COVERAGE,
        MODEL,
        OPERATION,
        PROVIDER,
        TOKEN_TYPE,
    }
)
SPAN_ATTRIBUTES: frozenset[str] = METRIC_ATTRIBUTES | {
    KEY_FINGERPRINT,
    AGE,
    ENTRY_BYTES,
    INPUT_TOKENS,
    OUTPUT_TOKENS,
    LATENCY_SAVED,
    COST_SAVED,
    GPU_TIME_SAVED,
}

SPAN_NAMES: frozenset[str] = frozenset(
    {"llm_cache.lookup", "llm_cache.store", "llm_cache.refresh", "llm_cache.invalidate"}
)

# Results that served a cached answer: only these save upstream latency, tokens, money or GPU time.
# A coalesced request waited for an identical in-flight request and was answered with its result.
SERVED_RESULTS: frozenset[str] = frozenset({"hit", "stale", "coalesced"})

_FINGERPRINT = re.compile(r"[0-9a-f]{16}")
# Long strings are not labels we emit (layer, reason, model group...): a long one is likely content.
_MAX_STRING = 128
# LLM calls run from milliseconds to minutes: the SDK's default buckets stop at 10 s.
_MS_BUCKETS = (
    1.0,
    5.0,
    10.0,
    25.0,
    50.0,
    100.0,
    250.0,
    500.0,
    1000.0,
    2500.0,
    5000.0,
    10000.0,
    30000.0,
    60000.0,
)
# Seconds between checks whether an application has set a global OpenTelemetry provider.
_GLOBAL_RECHECK = 1.0
# Attribute dicts are few and reused: cache them rather than rebuild and re-check per call.
_ATTR_CACHE_LIMIT = 4096


class Tokens(NamedTuple):
    """Token counts of the upstream call a hit replaced."""

    input: int
    output: int


class StoreSize(NamedTuple):
    """What the caller's size callback returns; None for a figure the backend does not report.
    ``coverage``: per figure name, what it counts (``StoreStats.coverage``), sent as the
    ``llm_cache.coverage`` label."""

    entries: int | None
    bytes: int | None
    evictions: int | None = None
    expirations: int | None = None
    coverage: Mapping[str, str] | None = None


def _backend_label(backend: str) -> str:
    # A backend URL may carry a password or host names: keep the scheme only ("redis", "memory").
    return backend.split("://", 1)[0] if "://" in backend else backend


def sanitize(
    attributes: Mapping[str, Any] | None, allowed: frozenset[str] = SPAN_ATTRIBUTES
) -> dict[str, AttributeValue]:
    """The allow-listed subset of ``attributes`` with plain scalar values; everything else is dropped."""
    clean: dict[str, AttributeValue] = {}
    if not attributes:
        return clean
    for key, value in attributes.items():
        if key not in allowed or value is None:
            continue
        if isinstance(value, str):
            if len(value) > _MAX_STRING:
                continue
            if key == KEY_FINGERPRINT and not _FINGERPRINT.fullmatch(value):
                continue
            if key == BACKEND:
                value = _backend_label(value)
            clean[key] = value
        elif isinstance(value, bool | int) or (isinstance(value, float) and math.isfinite(value)):
            clean[key] = value
    return clean


# -- spans ----------------------------------------------------------------------------------------


class CacheSpan:
    """The span of one cache decision; attributes set through it pass the allow-list."""

    __slots__ = ("span",)

    def __init__(self, span: Span) -> None:
        self.span = span

    def set(self, key: str, value: Any) -> None:
        self.set_attributes({key: value})

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        if self.span.is_recording():  # nothing to sanitize for a no-op span
            self.span.set_attributes(sanitize(attributes))


# A span that records nothing: what callers hold when telemetry is off.
NO_SPAN = CacheSpan(INVALID_SPAN)


# -- the observer ---------------------------------------------------------------------------------


class CacheTelemetry:
    """Records cache events as OpenTelemetry metrics and spans. Never raises into the request path."""

    def __init__(
        self,
        meter_provider: MeterProvider | None = None,
        tracer_provider: TracerProvider | None = None,
    ) -> None:
        chosen_meter_provider = meter_provider or metrics.get_meter_provider()
        meter = chosen_meter_provider.get_meter(INSTRUMENTATION_NAME)
        # Until an application sets a global meter provider, the API's proxy provider is returned and
        # its instruments drop every measurement: skip the work of taking them (identity check).
        self._unset_global_meter = (
            chosen_meter_provider if type(chosen_meter_provider).__name__ == "_ProxyMeterProvider" else None
        )
        tracer_provider = tracer_provider or trace.get_tracer_provider()
        self._tracer = tracer_provider.get_tracer(INSTRUMENTATION_NAME)
        # An explicit no-op provider can never start recording: skip the context switch of a span.
        # (The global proxy provider may get an SDK later, so it always goes through the API.)
        self._tracing_off = isinstance(tracer_provider, NoOpTracerProvider)
        # The API's global proxy records nothing until an application sets a real provider; checking
        # for that per span is cheaper than starting a non-recording span (~8 us on the request path).
        self._follows_global = isinstance(tracer_provider, ProxyTracerProvider)
        # get_*_provider() reads os.environ while nothing is set (~2.5 us each): ask at most every
        # _GLOBAL_RECHECK seconds. A provider, once set, stays set, so a "set" answer is final.
        self._globals_checked_at = -math.inf
        self._meter_unset = self._unset_global_meter is not None
        self._tracer_unset = self._follows_global
        self._requests = meter.create_counter("llm_cache.requests", "{request}", "Cache lookups by result")
        self._lookup_duration = meter.create_histogram(
            "llm_cache.lookup.duration",
            "ms",
            "Time the cache took to answer a lookup",
            explicit_bucket_boundaries_advisory=_MS_BUCKETS,
        )
        self._latency_saved = meter.create_histogram(
            "llm_cache.latency_saved",
            "ms",
            "Upstream latency avoided by a served cache entry",
            explicit_bucket_boundaries_advisory=_MS_BUCKETS,
        )
        self._cost_saved = meter.create_counter("llm_cache.cost_saved", "USD", "Upstream cost avoided")
        self._tokens_saved = meter.create_counter("llm_cache.tokens_saved", "{token}", "Tokens not generated")
        self._gpu_saved = meter.create_counter("llm_cache.gpu_time_saved", "s", "Model compute time avoided")
        self._stores = meter.create_counter("llm_cache.stores", "{entry}", "Entries written")
        self._stored_bytes = meter.create_counter("llm_cache.stored_bytes", "By", "Bytes written")
        self._backend_errors = meter.create_counter("llm_cache.backend.errors", "{error}", "Backend failures")
        self._fail_open = meter.create_counter(
            "llm_cache.fail_open", "{request}", "Requests sent upstream because the cache failed"
        )
        self._refreshes = meter.create_counter("llm_cache.refreshes", "{refresh}", "Background refreshes")
        self._coalesced = meter.create_counter(
            "llm_cache.coalesced", "{request}", "Requests that waited on an identical in-flight request"
        )
        self._invalidations = meter.create_counter("llm_cache.invalidations", "{call}", "Invalidations")
        self._size_callbacks: list[tuple[str, Callable[[], StoreSize | None]]] = []
        meter.create_observable_gauge(
            "llm_cache.entries", [self._observe_entries], "{entry}", "Entries held by the backend"
        )
        meter.create_observable_gauge(
            "llm_cache.bytes", [self._observe_bytes], "By", "Bytes held by the backend"
        )
        meter.create_observable_counter(
            "llm_cache.evictions", [self._observe_evictions], "{entry}", "Entries evicted by the backend"
        )
        meter.create_observable_counter(
            "llm_cache.expirations", [self._observe_expirations], "{entry}", "Entries expired by the backend"
        )
        self._attr_cache: dict[tuple[object, ...], dict[str, AttributeValue]] = {}

    # -- attributes ------------------------------------------------------------------------------

    def _labels(self, *pairs: tuple[str, object]) -> dict[str, AttributeValue]:
        """Sanitized metric labels, memoized: the same few label sets recur on every request."""
        cached = self._attr_cache.get(pairs)
        if cached is None:
            cached = sanitize(dict(pairs), METRIC_ATTRIBUTES)
            if len(self._attr_cache) >= _ATTR_CACHE_LIMIT:
                self._attr_cache.clear()  # bounded: model groups come from config, but be safe
            self._attr_cache[pairs] = cached
        return cached

    # -- events ----------------------------------------------------------------------------------

    def record_lookup(
        self,
        layer: str,
        model_group: str,
        result: str,
        reason: str | None = None,
        *,
        latency_ms: float | None = None,
        latency_saved_ms: float | None = None,
        tokens_saved: Tokens | tuple[int, int] | None = None,
        cost_saved_usd: float | None = None,
        gpu_seconds_saved: float | None = None,
        operation: str | None = None,
        provider: str | None = None,
        count: int = 1,
    ) -> None:
        """One lookup decision (``count`` identical ones, e.g. embedding items, without savings).
        Savings are counted only for served results (hit, stale, coalesced)."""
        if self._meter_unset and self._globals_unset()[0]:
            return
        result = result.lower()
        try:
            self._requests.add(
                count,
                self._labels(
                    (LAYER, layer),
                    (MODEL, model_group),
                    (RESULT, result),
                    (REASON, reason),
                    (OPERATION, operation),
                    (PROVIDER, provider),
                ),
            )
            if latency_ms is not None and latency_ms >= 0:
                self._lookup_duration.record(
                    latency_ms, self._labels((LAYER, layer), (MODEL, model_group), (RESULT, result))
                )
            if result not in SERVED_RESULTS:
                return
            labels = self._labels((LAYER, layer), (MODEL, model_group))
            if latency_saved_ms is not None and latency_saved_ms >= 0:
                self._latency_saved.record(latency_saved_ms, labels)
            if cost_saved_usd is not None and cost_saved_usd >= 0:
                self._cost_saved.add(cost_saved_usd, labels)
            if gpu_seconds_saved is not None and gpu_seconds_saved >= 0:
                self._gpu_saved.add(gpu_seconds_saved, labels)
            if tokens_saved is not None:
                for kind, count in (("input", tokens_saved[0]), ("output", tokens_saved[1])):
                    if count > 0:
                        self._tokens_saved.add(
                            count, self._labels((LAYER, layer), (MODEL, model_group), (TOKEN_TYPE, kind))
                        )
        except Exception:  # telemetry must never fail a request
            log.debug("telemetry: record_lookup failed", exc_info=True)

    def record_store(self, layer: str, model_group: str, size_bytes: int, count: int = 1) -> None:
        try:
            labels = self._labels((LAYER, layer), (MODEL, model_group))
            self._stores.add(count, labels)
            if size_bytes > 0:
                self._stored_bytes.add(size_bytes, labels)
        except Exception:
            log.debug("telemetry: record_store failed", exc_info=True)

    def record_backend_error(self, backend: str, op: str, reason: str | None = None) -> None:
        try:
            self._backend_errors.add(1, self._labels((BACKEND, backend), (OP, op), (REASON, reason)))
        except Exception:
            log.debug("telemetry: record_backend_error failed", exc_info=True)

    def record_fail_open(self, layer: str, model_group: str, reason: str) -> None:
        try:
            self._fail_open.add(1, self._labels((LAYER, layer), (MODEL, model_group), (REASON, reason)))
        except Exception:
            log.debug("telemetry: record_fail_open failed", exc_info=True)

    def record_refresh(self, model_group: str, outcome: str) -> None:
        try:
            self._refreshes.add(1, self._labels((MODEL, model_group), (OUTCOME, outcome)))
        except Exception:
            log.debug("telemetry: record_refresh failed", exc_info=True)

    def record_coalesced(self, model_group: str, n: int) -> None:
        if n <= 0:
            return
        try:
            self._coalesced.add(
                n,
                self._labels(
                    (MODEL, model_group),
                ),
            )
        except Exception:
            log.debug("telemetry: record_coalesced failed", exc_info=True)

    def record_invalidation(self, kind: str) -> None:
        try:
            self._invalidations.add(
                1,
                self._labels(
                    (INVALIDATION_KIND, kind),
                ),
            )
        except Exception:
            log.debug("telemetry: record_invalidation failed", exc_info=True)

    # -- gauges ----------------------------------------------------------------------------------

    def observe_store_size(self, callback: Callable[[], StoreSize | None], *, backend: str) -> None:
        """Report the backend's size on each metric collection. The callback runs synchronously in the
        exporter's thread: return a cached figure (``engine.backend_stats()`` is async), never do I/O."""
        self._size_callbacks.append((_backend_label(backend), callback))

    def _observe_size(self, figure: str) -> list[Observation]:
        """One observation of ``figure`` (a StoreSize field) per backend that reports it, labelled
        with the backend and, when the backend says it, what the figure covers."""
        observations = []
        for backend, callback in self._size_callbacks:
            try:
                size = callback()
            except Exception:  # a failing callback must not break the export of other metrics
                log.debug("telemetry: size callback failed", exc_info=True)
                continue
            value = getattr(size, figure) if size is not None else None
            if value is None:
                continue
            coverage = (size.coverage or {}).get(figure) if size is not None else None
            if coverage is None:
                labels = self._labels((BACKEND, backend))
            else:
                labels = self._labels((BACKEND, backend), (COVERAGE, coverage))
            observations.append(Observation(value, labels))
        return observations

    def _observe_entries(self, options: CallbackOptions) -> Iterable[Observation]:
        return self._observe_size("entries")

    def _observe_bytes(self, options: CallbackOptions) -> Iterable[Observation]:
        return self._observe_size("bytes")

    def _observe_evictions(self, options: CallbackOptions) -> Iterable[Observation]:
        return self._observe_size("evictions")

    def _observe_expirations(self, options: CallbackOptions) -> Iterable[Observation]:
        return self._observe_size("expirations")

    # -- spans -----------------------------------------------------------------------------------

    def tracing(self) -> bool:
        """Would a span started now be recorded? (False: skip building its attributes.)"""
        if self._tracing_off:
            return False
        return not (self._tracer_unset and self._globals_unset()[1])

    def _globals_unset(self) -> tuple[bool, bool]:
        """(meter, tracer): is the global provider we follow still the API's do-nothing proxy?"""
        now = time.monotonic()
        if now - self._globals_checked_at >= _GLOBAL_RECHECK:
            self._globals_checked_at = now
            if self._meter_unset:
                self._meter_unset = metrics.get_meter_provider() is self._unset_global_meter
            if self._tracer_unset:
                self._tracer_unset = isinstance(trace.get_tracer_provider(), ProxyTracerProvider)
        return self._meter_unset, self._tracer_unset

    @contextlib.contextmanager
    def span(
        self,
        name: SpanName,
        attributes: Mapping[str, Any] | None = None,
        *,
        parent: Span | None = None,
        start_time: int | None = None,
    ) -> Iterator[CacheSpan]:
        """A span for one cache decision, child of ``parent`` (LiteLLM's request span, when its
        OpenTelemetry integration is on) or else of the current span. Exceptions are recorded on it and
        re-raised (the caller decides whether to fail open). ``start_time`` (ns since the epoch): for a
        decision already taken, e.g. a fast-path hit reported after its response was sent."""
        if name not in SPAN_NAMES:
            raise ValueError(f"unknown cache span name: {name!r}")
        if not self.tracing():
            yield NO_SPAN
            return
        context = trace.set_span_in_context(parent) if parent is not None else None
        with self._tracer.start_as_current_span(
            name,
            context=context,
            kind=SpanKind.INTERNAL,
            start_time=start_time,
            attributes=sanitize(attributes) if attributes else None,
        ) as span:
            yield CacheSpan(span)
