"""Source of a module loaded *inside* a test proxy: it installs the OpenTelemetry SDK's in-memory span
exporter and metric reader as the global providers (the "application configured OpenTelemetry" case)
and serves what they collected at ``GET /_test/otel``. Listed before the plugin in ``callbacks``."""

OTEL_PROBE_MODULE = """
from litellm.integrations.custom_logger import CustomLogger
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

READER = InMemoryMetricReader()
metrics.set_meter_provider(MeterProvider(metric_readers=[READER]))
SPANS = InMemorySpanExporter()
_tracer_provider = TracerProvider()
_tracer_provider.add_span_processor(SimpleSpanProcessor(SPANS))
trace.set_tracer_provider(_tracer_provider)


def _value(value):
    return list(value) if isinstance(value, tuple) else value


def dump():
    points = []
    data = READER.get_metrics_data()
    for resource_metrics in data.resource_metrics if data else []:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                for point in metric.data.data_points:
                    labels = {k: _value(v) for k, v in point.attributes.items()}
                    row = {"name": metric.name, "attributes": labels}
                    if hasattr(point, "bucket_counts"):
                        row.update(sum=point.sum, count=point.count, min=point.min, max=point.max)
                    else:
                        row["value"] = point.value
                    points.append(row)
    spans = []
    for span in SPANS.get_finished_spans():
        spans.append(
            {
                "name": span.name,
                "attributes": {k: _value(v) for k, v in (span.attributes or {}).items()},
                "trace_id": format(span.context.trace_id, "032x"),
                "span_id": format(span.context.span_id, "016x"),
                "parent_id": format(span.parent.span_id, "016x") if span.parent else None,
            }
        )
    return {"metrics": points, "spans": spans}


async def otel_dump():
    return dump()


from litellm.proxy.proxy_server import app  # noqa: E402

app.add_api_route("/_test/otel", otel_dump, methods=["GET"])
app.router.routes.insert(0, app.router.routes.pop())


class Probe(CustomLogger):
    pass


probe = Probe()
"""
