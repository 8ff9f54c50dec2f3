"""CacheTelemetry: instrument values, spans, the attribute allow-list, no-SDK cost, pure helpers."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader, NumberDataPoint
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NoOpTracerProvider

from litellm_cache_plugin import telemetry as tm
from litellm_cache_plugin.telemetry import CacheTelemetry, StoreSize, Tokens

# --- fixtures ---------------------------------------------------------------------------------------


@dataclass
class Sdk:
    telemetry: CacheTelemetry
    reader: InMemoryMetricReader
    exporter: InMemorySpanExporter
    tracer_provider: TracerProvider


def make_sdk() -> Sdk:
    reader = InMemoryMetricReader()
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    telemetry = CacheTelemetry(MeterProvider(metric_readers=[reader]), tracer_provider)
    return Sdk(telemetry, reader, exporter, tracer_provider)


@pytest.fixture
def sdk() -> Iterator[Sdk]:
    made = make_sdk()
    yield made
    made.tracer_provider.shutdown()


Labels = frozenset[tuple[str, Any]]


def collect(reader: InMemoryMetricReader) -> dict[str, dict[Labels, Any]]:
    """name -> {labels: value}; counters give their sum, histograms (count, sum)."""
    out: dict[str, dict[Labels, Any]] = {}
    data = reader.get_metrics_data()
    if data is None:
        return out
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                points = out.setdefault(metric.name, {})
                for point in metric.data.data_points:
                    labels = frozenset((point.attributes or {}).items())
                    if isinstance(point, HistogramDataPoint):
                        points[labels] = (point.count, point.sum)
                    else:
                        assert isinstance(point, NumberDataPoint)
                        points[labels] = point.value
    return out


def labels(**kwargs: Any) -> Labels:
    names = {
        "layer": tm.LAYER,
        "model": tm.MODEL,
        "result": tm.RESULT,
        "reason": tm.REASON,
        "token": tm.TOKEN_TYPE,
        "backend": tm.BACKEND,
        "op": tm.OP,
        "outcome": tm.OUTCOME,
        "kind": tm.INVALIDATION_KIND,
        "operation": tm.OPERATION,
        "provider": tm.PROVIDER,
        "coverage": tm.COVERAGE,
    }
    return frozenset((names[k], v) for k, v in kwargs.items())


# --- metrics: a known sequence gives exact values ---------------------------------------------------


def test_known_sequence_gives_exact_values(sdk: Sdk) -> None:
    t = sdk.telemetry
    t.record_lookup("exact", "llama", "MISS", "absent", latency_ms=1.5)
    t.record_lookup("exact", "llama", "MISS", "absent", latency_ms=2.0)
    t.record_lookup(
        "exact",
        "llama",
        "HIT",
        "fresh",
        latency_ms=0.5,
        latency_saved_ms=900.0,
        tokens_saved=Tokens(100, 40),
        cost_saved_usd=0.002,
        gpu_seconds_saved=1.25,
    )
    t.record_lookup(
        "exact", "llama", "STALE", "stale", latency_ms=0.7, latency_saved_ms=100.0, tokens_saved=(10, 0)
    )
    # Savings passed with a miss are not savings: ignored.
    t.record_lookup("exact", "llama", "MISS", "expired", latency_saved_ms=5000.0, cost_saved_usd=1.0)
    t.record_lookup("semantic", "qwen", "hit", "similar", latency_saved_ms=50.0, gpu_seconds_saved=0.75)
    t.record_store("exact", "llama", 2048)
    t.record_store("exact", "llama", 1000)
    t.record_backend_error("redis://:secret@db.internal:6379/0", "get")
    t.record_backend_error("redis://:secret@db.internal:6379/0", "get")
    t.record_fail_open("exact", "llama", "backend_error")
    t.record_refresh("llama", "started")
    t.record_refresh("llama", "ok")
    t.record_coalesced("llama", 3)
    t.record_coalesced("llama", 0)  # nothing coalesced: nothing recorded
    t.record_invalidation("model")
    t.record_invalidation("tag")
    t.record_invalidation("tag")

    got = collect(sdk.reader)
    assert got["llm_cache.requests"] == {
        labels(layer="exact", model="llama", result="miss", reason="absent"): 2,
        labels(layer="exact", model="llama", result="hit", reason="fresh"): 1,
        labels(layer="exact", model="llama", result="stale", reason="stale"): 1,
        labels(layer="exact", model="llama", result="miss", reason="expired"): 1,
        labels(layer="semantic", model="qwen", result="hit", reason="similar"): 1,
    }
    assert got["llm_cache.lookup.duration"] == {
        labels(layer="exact", model="llama", result="miss"): (2, 3.5),
        labels(layer="exact", model="llama", result="hit"): (1, 0.5),
        labels(layer="exact", model="llama", result="stale"): (1, 0.7),
    }
    assert got["llm_cache.latency_saved"] == {
        labels(layer="exact", model="llama"): (2, 1000.0),
        labels(layer="semantic", model="qwen"): (1, 50.0),
    }
    assert got["llm_cache.cost_saved"] == {labels(layer="exact", model="llama"): pytest.approx(0.002)}
    assert got["llm_cache.gpu_time_saved"] == {
        labels(layer="exact", model="llama"): 1.25,
        labels(layer="semantic", model="qwen"): 0.75,
    }
    assert got["llm_cache.tokens_saved"] == {
        labels(layer="exact", model="llama", token="input"): 110,
        labels(layer="exact", model="llama", token="output"): 40,
    }
    assert got["llm_cache.stores"] == {labels(layer="exact", model="llama"): 2}
    assert got["llm_cache.stored_bytes"] == {labels(layer="exact", model="llama"): 3048}
    # The backend URL (password, host) is reduced to its scheme.
    assert got["llm_cache.backend.errors"] == {labels(backend="redis", op="get"): 2}
    assert got["llm_cache.fail_open"] == {labels(layer="exact", model="llama", reason="backend_error"): 1}
    assert got["llm_cache.refreshes"] == {
        labels(model="llama", outcome="started"): 1,
        labels(model="llama", outcome="ok"): 1,
    }
    assert got["llm_cache.coalesced"] == {labels(model="llama"): 3}
    assert got["llm_cache.invalidations"] == {labels(kind="model"): 1, labels(kind="tag"): 2}


def test_operation_and_provider_are_genai_labels(sdk: Sdk) -> None:
    sdk.telemetry.record_lookup("exact", "llama", "hit", "fresh", operation="chat", provider="ollama")
    got = collect(sdk.reader)["llm_cache.requests"]
    assert got == {
        labels(
            layer="exact", model="llama", result="hit", reason="fresh", operation="chat", provider="ollama"
        ): 1
    }


def test_size_gauges_use_the_callers_callback(sdk: Sdk) -> None:
    sizes = [StoreSize(entries=12, bytes=4096)]
    sdk.telemetry.observe_store_size(lambda: sizes[-1], backend="redis://user:pw@host:6379")

    def broken() -> StoreSize:
        raise RuntimeError("backend stats unavailable")

    sdk.telemetry.observe_store_size(broken, backend="memory://")
    sdk.telemetry.observe_store_size(lambda: StoreSize(entries=None, bytes=None), backend="memcached")
    got = collect(sdk.reader)
    assert got["llm_cache.entries"] == {labels(backend="redis"): 12}
    assert got["llm_cache.bytes"] == {labels(backend="redis"): 4096}
    sizes.append(StoreSize(entries=13, bytes=None))
    got = collect(sdk.reader)
    assert got["llm_cache.entries"] == {labels(backend="redis"): 13}
    assert "llm_cache.bytes" not in got or got["llm_cache.bytes"] == {}


def test_size_gauges_say_what_each_figure_covers(sdk: Sdk) -> None:
    coverage = {"entries": "cache", "bytes": "server", "evictions": "server", "expirations": "server"}
    sdk.telemetry.observe_store_size(lambda: StoreSize(12, 4096, 1, 2, coverage), backend="redis://h:6379")
    got = collect(sdk.reader)
    assert got["llm_cache.entries"] == {labels(backend="redis", coverage="cache"): 12}
    assert got["llm_cache.bytes"] == {labels(backend="redis", coverage="server"): 4096}
    assert got["llm_cache.evictions"] == {labels(backend="redis", coverage="server"): 1}
    assert got["llm_cache.expirations"] == {labels(backend="redis", coverage="server"): 2}


def test_bad_input_never_raises(sdk: Sdk) -> None:
    # A broken caller must not fail a request through telemetry.
    sdk.telemetry.record_lookup("exact", "m", "hit", tokens_saved=("x", None))  # type: ignore[arg-type]
    sdk.telemetry.record_store("exact", "m", None)  # type: ignore[arg-type]
    sdk.telemetry.record_lookup("exact", ["unhashable"], "hit")  # type: ignore[arg-type]


# --- spans -----------------------------------------------------------------------------------------


def test_spans_have_names_attributes_and_parent(sdk: Sdk) -> None:
    tracer = sdk.tracer_provider.get_tracer("test")
    fingerprint = tm.key_fingerprint("lcp:exact:v1:team-a:abcdef")
    with tracer.start_as_current_span("proxy.request") as parent:
        with sdk.telemetry.span(
            "llm_cache.lookup",
            {tm.LAYER: "exact", tm.MODEL: "llama", tm.KEY_FINGERPRINT: fingerprint, "tenant": "team-a"},
        ) as span:
            span.set_attributes({tm.RESULT: "hit", tm.REASON: "fresh", tm.AGE: 12})
            span.set("gen_ai.prompt", "what is my password?")
        with sdk.telemetry.span("llm_cache.store", {tm.LAYER: "exact", tm.ENTRY_BYTES: 2048}):
            pass
    spans: dict[str, ReadableSpan] = {s.name: s for s in sdk.exporter.get_finished_spans()}
    assert set(spans) == {"proxy.request", "llm_cache.lookup", "llm_cache.store"}
    parent_id = parent.get_span_context().span_id
    for name in ("llm_cache.lookup", "llm_cache.store"):
        child_parent, child_context = spans[name].parent, spans[name].context
        assert child_parent is not None and child_parent.span_id == parent_id
        assert child_context is not None
        assert child_context.trace_id == parent.get_span_context().trace_id
    assert dict(spans["llm_cache.lookup"].attributes or {}) == {
        tm.LAYER: "exact",
        tm.MODEL: "llama",
        tm.KEY_FINGERPRINT: fingerprint,
        tm.RESULT: "hit",
        tm.REASON: "fresh",
        tm.AGE: 12,
    }
    assert dict(spans["llm_cache.store"].attributes or {}) == {tm.LAYER: "exact", tm.ENTRY_BYTES: 2048}


def test_span_records_exception_and_reraises(sdk: Sdk) -> None:
    with pytest.raises(RuntimeError), sdk.telemetry.span("llm_cache.refresh", {tm.MODEL: "llama"}):
        raise RuntimeError("upstream down")
    (span,) = sdk.exporter.get_finished_spans()
    assert span.name == "llm_cache.refresh"
    assert not span.status.is_ok
    assert any(event.name == "exception" for event in span.events)


def test_unknown_span_name_is_rejected(sdk: Sdk) -> None:
    with pytest.raises(ValueError), sdk.telemetry.span("llm_cache.whatever"):  # type: ignore[arg-type]
        pass


def test_key_fingerprint_is_16_hex_and_raw_keys_are_dropped(sdk: Sdk) -> None:
    fingerprint = tm.key_fingerprint("some key")
    assert len(fingerprint) == 16 and int(fingerprint, 16) >= 0
    assert tm.sanitize({tm.KEY_FINGERPRINT: "lcp:exact:team-a:prompt text"}) == {}
    assert tm.sanitize({tm.KEY_FINGERPRINT: fingerprint}) == {tm.KEY_FINGERPRINT: fingerprint}
    # Not a metric label: one time series per key would be unbounded.
    assert tm.sanitize({tm.KEY_FINGERPRINT: fingerprint}, tm.METRIC_ATTRIBUTES) == {}


# --- privacy: random attribute dicts ----------------------------------------------------------------

FORBIDDEN_KEYS = [
    "prompt",
    "gen_ai.prompt",
    "gen_ai.input.messages",
    "gen_ai.completion",
    "messages",
    "tenant",
    "tenant_id",
    "llm_cache.tenant",
    "user",
    "user_api_key",
    "team_id",
    "llm_cache.key",
]
SECRET = "SECRET-PROMPT-OR-TENANT"
attribute_values = st.one_of(
    st.text(max_size=200), st.integers(), st.floats(allow_nan=True), st.booleans(), st.none(), st.just(SECRET)
)
attribute_dicts = st.dictionaries(
    st.one_of(
        st.sampled_from(FORBIDDEN_KEYS), st.sampled_from(sorted(tm.SPAN_ATTRIBUTES)), st.text(max_size=30)
    ),
    attribute_values,
    max_size=12,
)


@settings(max_examples=150, deadline=None)
@given(first=attribute_dicts, later=attribute_dicts, forbidden=st.sampled_from(FORBIDDEN_KEYS))
def test_forbidden_attributes_never_leave(
    first: dict[str, Any], later: dict[str, Any], forbidden: str
) -> None:
    sdk = make_sdk()
    first = {**first, forbidden: SECRET}
    with sdk.telemetry.span("llm_cache.lookup", first) as span:
        span.set_attributes(later)
        span.set(forbidden, SECRET)
    sdk.telemetry.record_lookup("exact", "llama", "hit", "fresh", latency_saved_ms=1.0, tokens_saved=(1, 1))
    sdk.telemetry.record_backend_error("redis://user:" + SECRET + "@host", "get")

    for finished in sdk.exporter.get_finished_spans():
        attrs = dict(finished.attributes or {})
        assert set(attrs) <= tm.SPAN_ATTRIBUTES
        assert not set(attrs) & set(FORBIDDEN_KEYS)
        # SECRET may only survive under an allowed key, where the caller chose to put it.
        given_secret = {k for d in (first, later) for k, v in d.items() if v == SECRET}
        allowed_with_secret = given_secret & tm.SPAN_ATTRIBUTES
        assert {k for k, v in attrs.items() if v == SECRET} <= allowed_with_secret
        for value in attrs.values():
            assert isinstance(value, str | bool | int | float)
            assert not isinstance(value, str) or len(value) <= 128
    for points in collect(sdk.reader).values():
        for label_set in points:
            keys = {k for k, _ in label_set}
            assert keys <= tm.METRIC_ATTRIBUTES
            assert all(SECRET not in str(v) for _, v in label_set)
    sdk.tracer_provider.shutdown()


# --- no SDK: works (what it costs: benchmarks/micro_budgets.py, 100k lookups < 1 s) -----------------


@pytest.mark.parametrize("explicit_noop", [True, False])
def test_no_sdk_works(explicit_noop: bool) -> None:
    # False: the global providers, which without an SDK are the API's proxies.
    t = CacheTelemetry(NoOpMeterProvider(), NoOpTracerProvider()) if explicit_noop else CacheTelemetry()
    with t.span("llm_cache.lookup", {tm.LAYER: "exact"}) as span:
        span.set(tm.RESULT, "hit")
    for _ in range(1_000):
        t.record_lookup("exact", "llama", "hit", "fresh", latency_ms=0.3, latency_saved_ms=800.0)


# --- pure helpers -----------------------------------------------------------------------------------


def test_gpu_seconds_from_ollama() -> None:
    response = {
        "model": "llama3",
        "total_duration": 5_000_000_000,
        "load_duration": 1_000_000_000,
        "prompt_eval_duration": 500_000_000,
        "eval_duration": 3_000_000_000,
    }
    assert tm.gpu_seconds_from_ollama(response) == 5.0
    assert tm.gpu_seconds_from_ollama_evals(response) == 3.5
    # Nested in usage (LiteLLM), summed over several responses (an embedding batch).
    assert tm.gpu_seconds_from_ollama([{"usage": {"total_duration": 2_000_000_000}}, response]) == 7.0
    assert tm.gpu_seconds_from_ollama({"model": "x"}) is None
    assert tm.gpu_seconds_from_ollama({"total_duration": -1}) is None
    assert tm.gpu_seconds_from_ollama({"total_duration": True}) is None
    assert tm.gpu_seconds_from_ollama({"total_duration": "5"}) is None
    assert tm.gpu_seconds_from_ollama([]) is None
    assert tm.gpu_seconds_from_ollama_evals({"prompt_eval_duration": 1}) is None  # eval part missing


def test_latency_saved_never_negative() -> None:
    assert tm.latency_saved(900.0, 2.0) == 898.0
    assert tm.latency_saved(1.0, 5.0) == 0.0
    assert tm.latency_saved(None, 5.0) is None
    assert tm.latency_saved(float("nan"), 5.0) is None
    assert tm.latency_saved(100.0, -3.0) == 100.0


@given(st.floats(min_value=0, max_value=1e7), st.floats(min_value=-1e7, max_value=1e7))
def test_latency_saved_property(upstream: float, hit: float) -> None:
    saved = tm.latency_saved(upstream, hit)
    assert saved is not None and 0.0 <= saved <= upstream


def test_cost_saved() -> None:
    prices: dict[str, dict[str, float]] = {
        "gpt-4o": {"input_cost_per_token": 2.5e-6, "output_cost_per_token": 1e-5},
        "local": {"input_cost_per_token": 0, "output_cost_per_token": 0},
        "half": {"input_cost_per_token": 1e-6},
    }
    assert tm.cost_saved("gpt-4o", 1000, 100, prices) == pytest.approx(0.0035)
    assert tm.cost_saved("local", 1000, 100, prices) == 0.0
    assert tm.cost_saved("unknown", 1000, 100, prices) is None
    assert tm.cost_saved("half", 1000, 100, prices) is None
    assert tm.cost_saved("gpt-4o", 1000, 100, None) is None
    assert tm.cost_saved("gpt-4o", None, 100, prices) is None
    assert tm.cost_saved("gpt-4o", -1, 100, prices) is None
