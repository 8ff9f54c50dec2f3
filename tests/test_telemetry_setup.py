"""Telemetry built from settings: off means no object at all; Prometheus text and OTLP/HTTP export work
over real HTTP (a receiver on loopback)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from litellm_cache_plugin.settings import SettingsError, TelemetrySettings, settings_from_mapping
from litellm_cache_plugin.telemetry import Tokens
from litellm_cache_plugin.telemetry_setup import _otlp_url, build_telemetry


def test_disabled_builds_nothing() -> None:
    assert build_telemetry(TelemetrySettings(enabled=False), backend="memory://") is None


def test_settings_are_validated() -> None:
    with pytest.raises(SettingsError, match=r"telemetry\.otlp\.endpoint"):
        settings_from_mapping({"telemetry": {"otlp": {"endpoint": "collector:4318"}}}, environ={})
    with pytest.raises(SettingsError, match=r"models\.m\.prices\.input_cost_per_token"):
        settings_from_mapping({"models": {"m": {"prices": {"input_cost_per_token": -1}}}}, environ={})


def test_prometheus_text_has_the_per_layer_series() -> None:
    runtime = build_telemetry(
        TelemetrySettings.model_validate({"prometheus": {"enabled": True}}), backend="redis://u:secret@h"
    )
    assert runtime is not None
    try:
        runtime.telemetry.record_lookup(
            "exact", "llama3.2", "hit", "fresh", gpu_seconds_saved=1.5, tokens_saved=Tokens(10, 20)
        )
        runtime.telemetry.record_lookup("semantic", "llama3.2", "miss", "no_match")
        text, content_type = runtime.prometheus_text()
    finally:
        runtime.shutdown()
    body = text.decode()
    assert content_type.startswith("text/plain")
    assert "llm_cache_requests_total{" in body
    assert 'llm_cache_layer="exact"' in body and 'llm_cache_layer="semantic"' in body
    assert "llm_cache_gpu_time_saved_seconds_total" in body
    assert "secret" not in body


def test_prometheus_text_can_name_the_worker_on_every_sample() -> None:
    runtime = build_telemetry(
        TelemetrySettings.model_validate({"prometheus": {"enabled": True}}), backend="memory://"
    )
    assert runtime is not None
    try:
        runtime.telemetry.record_lookup("exact", "llama3.2", "hit", "fresh")
        plain = runtime.prometheus_text()[0].decode()
        labelled = runtime.prometheus_text({"worker_pid": "4242"})[0].decode()
        again = runtime.prometheus_text()[0].decode()
    finally:
        runtime.shutdown()
    samples = [line for line in labelled.splitlines() if line and not line.startswith("#")]
    assert samples and all('worker_pid="4242"' in line for line in samples)
    assert "worker_pid" not in plain and "worker_pid" not in again  # the registry itself is unchanged
    assert len(samples) == len([line for line in plain.splitlines() if line and not line.startswith("#")])


def test_the_resource_names_this_process() -> None:
    import os

    from litellm_cache_plugin.telemetry_setup import SERVICE_NAME, resource_attributes

    attributes = resource_attributes()
    assert attributes["service.name"] == SERVICE_NAME
    assert attributes["service.instance.id"].endswith(f":{os.getpid()}")


class _Receiver(BaseHTTPRequestHandler):
    received: dict[str, list[bytes]] = {}

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.received.setdefault(self.path, []).append(self.rfile.read(length))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[str]:
    _Receiver.received = {}
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_otlp_http_export_reaches_a_collector(collector: str) -> None:
    settings = TelemetrySettings.model_validate({"otlp": {"endpoint": collector, "export_interval": 60}})
    runtime = build_telemetry(settings, backend="memory://")
    assert runtime is not None
    runtime.telemetry.record_lookup("exact", "llama3.2", "hit", "fresh", latency_saved_ms=250.0)
    with runtime.telemetry.span("llm_cache.lookup", {"llm_cache.layer": "exact", "prompt": "secret text"}):
        pass
    runtime.shutdown()  # flushes both exporters
    metrics_posts = _Receiver.received.get("/v1/metrics", [])
    assert metrics_posts, _Receiver.received.keys()
    names = set()
    for raw in metrics_posts:
        request = ExportMetricsServiceRequest.FromString(raw)
        for resource in request.resource_metrics:
            for scope in resource.scope_metrics:
                names.update(metric.name for metric in scope.metrics)
    assert {"llm_cache.requests", "llm_cache.latency_saved"} <= names
    if "/v1/traces" in _Receiver.received:  # only when no tracer provider was set globally before
        spans = [
            span
            for raw in _Receiver.received["/v1/traces"]
            for resource in ExportTraceServiceRequest.FromString(raw).resource_spans
            for scope in resource.scope_spans
            for span in scope.spans
        ]
        assert [span.name for span in spans] == ["llm_cache.lookup"]
        assert all(attribute.key != "prompt" for attribute in spans[0].attributes)


def test_otlp_url_appends_the_signal_path() -> None:
    assert _otlp_url("http://c:4318", "metrics") == "http://c:4318/v1/metrics"
    assert _otlp_url("http://c:4318/", "traces") == "http://c:4318/v1/traces"
    assert _otlp_url("http://c:4318/v1/traces", "traces") == "http://c:4318/v1/traces"


def test_grafana_dashboard_queries_only_series_we_export() -> None:
    """Every metric and label the example dashboard queries exists in our Prometheus output."""
    import json
    import re
    from pathlib import Path

    from litellm_cache_plugin.telemetry import StoreSize

    runtime = build_telemetry(
        TelemetrySettings.model_validate({"prometheus": {"enabled": True}}), backend="redis://"
    )
    assert runtime is not None
    telemetry = runtime.telemetry
    try:
        telemetry.record_lookup(
            "exact", "m", "hit", "fresh", latency_ms=1, latency_saved_ms=3, cost_saved_usd=0.1,
            gpu_seconds_saved=1, tokens_saved=Tokens(1, 2), operation="chat", provider="ollama_chat",
        )  # fmt: skip
        telemetry.record_store("exact", "m", 100)
        telemetry.record_backend_error("redis", "get", "timeout")
        telemetry.record_fail_open("exact", "m", "backend_error")
        telemetry.record_refresh("m", "ok")
        telemetry.record_coalesced("m", 2)
        telemetry.record_invalidation("tag")
        runtime.backend_size = StoreSize(1, 2, 3, 4)
        exported = runtime.prometheus_text()[0].decode()
    finally:
        runtime.shutdown()
    dashboard = json.loads(Path("examples/grafana/llm-cache-dashboard.json").read_text())
    expressions = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert len(expressions) >= 18
    for expression in expressions:
        for name in re.findall(r"\b((?:llm_cache|gen_ai)_[A-Za-z_]+)", expression):
            is_metric = re.search(rf"^{name}[{{ ]", exported, re.M) is not None
            assert is_metric or f"{name}=" in exported, f"{name} is neither a metric nor a label we export"


PICKED_UP_LATER = """
import litellm_cache_plugin.telemetry as t
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider

t._GLOBAL_RECHECK = 0.0
telemetry = t.CacheTelemetry()  # nothing configured yet: nothing is taken, no span is started
telemetry.record_lookup("exact", "m", "hit")
assert not telemetry.tracing()
reader = InMemoryMetricReader()
metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
trace.set_tracer_provider(TracerProvider())
telemetry.record_lookup("exact", "m", "hit")
assert telemetry.tracing()
points = [
    p.value
    for rm in reader.get_metrics_data().resource_metrics
    for sm in rm.scope_metrics
    for m in sm.metrics
    if m.name == "llm_cache.requests"
    for p in m.data.data_points
]
assert points == [1], points
print("ok")
"""


def test_a_provider_set_after_the_plugin_started_is_used() -> None:
    """The application (or LiteLLM's otel callback) may set the global providers after the plugin was
    built: from then on measurements and spans are taken (in a fresh interpreter: globals are set once)."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", PICKED_UP_LATER], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
