"""What telemetry costs on the request path: the plugin's hit lookup (``lookup_response`` on
``memory://``: key, lookup, decision, accounting, span) with telemetry off, on with the OpenTelemetry
API's no-op providers (the default when nothing is configured), and on with the SDK (metric reader +
batch span processor, as in production). Interleaved rounds, medians, ratios to "off" from one run.

    python -m benchmarks.telemetry_overhead [--rounds 7] [--lookups 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import orjson
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NoOpTracerProvider

from litellm_cache_plugin.integrations.litellm import CachePlugin
from litellm_cache_plugin.settings import settings_from_mapping
from litellm_cache_plugin.telemetry import CacheTelemetry

PAYLOAD = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "model": "llama3.2",
    "choices": [
        {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "x" * 800}}
    ],
    "usage": {"prompt_tokens": 20, "completion_tokens": 200, "total_tokens": 220},
}


def _kwargs() -> dict[str, Any]:
    return {
        "model": "ollama_chat/llama3.2:1b",
        "messages": [{"role": "user", "content": "How long is a piece of string?"}],
        "temperature": 0,
        "metadata": {"model_group": "llama3.2", "user_api_key_team_id": "bench"},
        "litellm_call_id": "bench",
    }


async def _plugin(telemetry: CacheTelemetry | None) -> tuple[CachePlugin, dict[str, Any]]:
    settings = settings_from_mapping(
        {"backend": "memory://", "versions": {"ollama_digest": False}, "telemetry": {"enabled": False}},
        environ={},
    )
    plugin = CachePlugin(settings)
    plugin.engine.telemetry = telemetry
    kwargs = _kwargs()
    ctx = plugin.context(kwargs)
    assert ctx is not None and ctx.cacheable
    stored = await plugin.engine.store_entry(
        plugin.region.key_for(ctx),
        orjson.dumps(PAYLOAD),
        tenant=ctx.tenant,
        model_group="llama3.2",
        model_version=ctx.request.model_version,
        ttl=3600,
        upstream_ms=400.0,
        extra={"tok": [20, 200], "gpu": 0.4},
    )
    assert stored is not None
    return plugin, kwargs


async def _round(plugin: CachePlugin, kwargs: dict[str, Any], lookups: int) -> float:
    """Microseconds per hit lookup."""
    started = time.perf_counter()
    for _ in range(lookups):
        ctx = plugin.context(kwargs)
        assert ctx is not None
        lookup = await plugin.region.lookup_response(ctx)
        assert lookup.outcome == "HIT"
    return (time.perf_counter() - started) / lookups * 1e6


async def main_async(rounds: int, lookups: int) -> None:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(spans, max_queue_size=100_000))
    cases = {
        "off": None,
        "on, nothing configured (default)": CacheTelemetry(),
        "on, no-op providers": CacheTelemetry(NoOpMeterProvider(), NoOpTracerProvider()),
        "on, SDK (reader + batch spans)": CacheTelemetry(
            MeterProvider(metric_readers=[InMemoryMetricReader()]), tracer_provider
        ),
    }
    plugins = {name: await _plugin(telemetry) for name, telemetry in cases.items()}
    for plugin, kwargs in plugins.values():
        await _round(plugin, kwargs, 200)  # warm up
    results: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, (plugin, kwargs) in plugins.items():
            results[name].append(await _round(plugin, kwargs, lookups))
            spans.clear()
    base = statistics.median(results["off"])
    print(f"hit lookup through the plugin (memory://), median of {rounds} rounds x {lookups} lookups")
    for name, values in results.items():
        median = statistics.median(values)
        print(
            f"  telemetry {name:32} {median:7.1f} us/lookup"
            f"  {median / base:5.2f}x off  (+{median - base:.1f} us)"
        )
    tracer_provider.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--lookups", type=int, default=3000)
    args = parser.parse_args()
    asyncio.run(main_async(args.rounds, args.lookups))


if __name__ == "__main__":
    main()
