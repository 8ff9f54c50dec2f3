"""Build the plugin's :class:`CacheTelemetry` from the ``telemetry:`` settings.

Which OpenTelemetry providers are used (decided here, documented in the README):

* ``telemetry.enabled: false`` — no telemetry object at all; the request path checks one ``None``.
* Metrics: the global provider when the application configured one (LiteLLM's OpenTelemetry callback,
  ``opentelemetry-instrument``...); the readers that ``otlp.endpoint`` / ``prometheus.enabled`` ask for
  are then added to it (so the Prometheus endpoint shows the process's other OpenTelemetry metrics
  too). When none is configured and a reader is asked for, the plugin builds its own SDK
  ``MeterProvider`` with those readers; with neither, the global no-op provider records nothing.
* Traces: the global provider whenever the application has set one (LiteLLM's OpenTelemetry callback
  does), so cache spans become children of LiteLLM's request spans. Only when none is set and
  ``otlp.endpoint`` is given does the plugin build its own ``TracerProvider`` with a batch OTLP
  exporter. Exports run on the SDK's own threads: the request path never waits for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import os
import socket
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import metrics, trace

from litellm_cache_plugin.settings import TelemetrySettings
from litellm_cache_plugin.store.base import StoreStats
from litellm_cache_plugin.telemetry import CacheTelemetry, StoreSize

log = logging.getLogger("litellm_cache_plugin")

SERVICE_NAME = "litellm-cache-plugin"


class TelemetryUnavailable(RuntimeError):
    """A setting needs an OpenTelemetry package that is not installed (the ``[telemetry]`` extra)."""


def _configured(provider: object) -> bool:
    """Has the application installed a real provider (not the API's default proxy or a no-op)?"""
    name = type(provider).__name__
    return name not in {
        "_ProxyMeterProvider",
        "NoOpMeterProvider",
        "ProxyTracerProvider",
        "NoOpTracerProvider",
    }


@dataclass
class TelemetryRuntime:
    """The telemetry object plus what the plugin built for it (readers, registry, providers)."""

    telemetry: CacheTelemetry
    settings: TelemetrySettings
    prometheus_registry: Any = None
    own_providers: list[Any] = field(default_factory=list)
    backend_size: StoreSize | None = None
    _sampler: asyncio.Task[None] | None = None

    def prometheus_text(self, labels: Mapping[str, str] | None = None) -> tuple[bytes, str]:
        """The current metrics in the Prometheus text format, and its content type. ``labels`` are
        added to every sample (the proxy adds ``worker_pid`` when it runs several workers)."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        if self.prometheus_registry is None:
            raise RuntimeError("prometheus export is not enabled")
        source = _Labelled(self.prometheus_registry, dict(labels)) if labels else self.prometheus_registry
        return generate_latest(source), CONTENT_TYPE_LATEST

    def ensure_sampler(self, sample: Callable[[], Any]) -> None:
        """Sample backend size/eviction figures in the background (the gauges' callbacks run in the
        exporter's thread and must not do I/O). Started on the first request, when a loop runs."""
        if self._sampler is not None:
            return
        try:
            self._sampler = asyncio.ensure_future(self._sample_forever(sample))
        except RuntimeError:  # no running loop yet
            self._sampler = None

    async def _sample_forever(self, sample: Callable[[], Any]) -> None:
        while True:
            try:
                stats: StoreStats | None = await sample()
                if stats is not None:
                    self.backend_size = StoreSize(
                        stats.entries, stats.bytes, stats.evictions, stats.expirations, stats.coverage
                    )
            except Exception:  # sampling is best effort
                log.debug("telemetry: backend sampling failed", exc_info=True)
            await asyncio.sleep(self.settings.backend_sample_interval)

    def shutdown(self) -> None:
        if self._sampler is not None:
            self._sampler.cancel()
        for provider in self.own_providers:
            with contextlib.suppress(Exception):
                provider.shutdown()


class _Labelled:
    """A registry's metric families with extra labels on every sample (for ``generate_latest``)."""

    def __init__(self, registry: Any, labels: dict[str, str]) -> None:
        self.registry = registry
        self.labels = labels

    def collect(self) -> Iterator[Any]:
        for family in self.registry.collect():
            labelled = copy.copy(family)  # a collector may hand out the same family object again
            labelled.samples = [s._replace(labels={**s.labels, **self.labels}) for s in family.samples]
            yield labelled


def resource_attributes() -> dict[str, str]:
    """The resource of the providers the plugin builds: one ``service.instance.id`` per process, so
    that a collector keeps the series of several proxy workers (or replicas) apart."""
    return {"service.name": SERVICE_NAME, "service.instance.id": f"{socket.gethostname()}:{os.getpid()}"}


def build_telemetry(settings: TelemetrySettings, *, backend: str) -> TelemetryRuntime | None:
    """The telemetry for these settings, or None when it is switched off."""
    if not settings.enabled:
        return None
    own: list[Any] = []
    registry = None
    meter_provider = None
    readers: list[Any] = []
    try:
        if settings.prometheus.enabled:
            from opentelemetry.exporter.prometheus import PrometheusMetricReader
            from prometheus_client import CollectorRegistry

            # Our own registry: the proxy's own Prometheus callback (if any) keeps its /metrics.
            registry = CollectorRegistry(auto_describe=True)
            readers.append(PrometheusMetricReader(registry=registry))
        if settings.otlp.endpoint:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
            from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

            exporter = OTLPMetricExporter(
                endpoint=_otlp_url(settings.otlp.endpoint, "metrics"), headers=dict(settings.otlp.headers)
            )
            readers.append(
                PeriodicExportingMetricReader(
                    exporter, export_interval_millis=settings.otlp.export_interval * 1000
                )
            )
        configured = metrics.get_meter_provider()
        if readers and _configured(configured) and hasattr(configured, "add_metric_reader"):
            for reader in readers:
                configured.add_metric_reader(reader)
        elif readers:
            from opentelemetry.sdk.metrics import MeterProvider
            from opentelemetry.sdk.resources import Resource

            meter_provider = MeterProvider(
                metric_readers=readers, resource=Resource.create(resource_attributes())
            )
            own.append(meter_provider)
        tracer_provider = None
        if settings.otlp.endpoint and not _configured(trace.get_tracer_provider()):
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor

            tracer_provider = TracerProvider(resource=Resource.create(resource_attributes()))
            tracer_provider.add_span_processor(
                BatchSpanProcessor(
                    OTLPSpanExporter(
                        endpoint=_otlp_url(settings.otlp.endpoint, "traces"),
                        headers=dict(settings.otlp.headers),
                    )
                )
            )
            own.append(tracer_provider)
    except ImportError as error:
        raise TelemetryUnavailable(
            f"needs the [telemetry] extra (pip install 'litellm-cache-plugin[telemetry]'): {error}"
        ) from None
    telemetry = CacheTelemetry(
        meter_provider=meter_provider or metrics.get_meter_provider(),
        tracer_provider=tracer_provider or trace.get_tracer_provider(),
    )
    runtime = TelemetryRuntime(telemetry, settings, registry, own)
    telemetry.observe_store_size(lambda: runtime.backend_size, backend=backend)
    if settings.prometheus.enabled and settings.prometheus.port is not None:
        from prometheus_client import start_http_server

        assert registry is not None  # built above whenever prometheus is enabled
        start_http_server(settings.prometheus.port, addr="127.0.0.1", registry=registry)
    return runtime


def _otlp_url(endpoint: str, signal: str) -> str:
    """OTLP/HTTP signal URL from a collector base URL (``http://collector:4318``); a URL that already
    names the signal path is kept."""
    base = endpoint.rstrip("/")
    return base if base.endswith(f"/v1/{signal}") else f"{base}/v1/{signal}"
