"""CPU budgets of two hot pure functions, checked here rather than by timed unit tests (a loaded CI
machine made those fail while nothing was slower):

* telemetry without an OpenTelemetry SDK: 100 000 ``record_lookup`` calls in under 1 s, with the
  API's no-op providers given explicitly and with the global (proxy) providers;
* the semantic near-miss guard: ``near_miss`` under 0.2 ms per pair and ``features`` under 1 ms per
  prompt (features are computed once per prompt, then compared per pair), on the guard's unit-test
  pairs.

Each budget is the best of ``--repeats`` runs (the least disturbed by other work). Exit status 1 when
a budget is exceeded.

    .venv/bin/python -m benchmarks.micro_budgets [--repeats 5]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.trace import NoOpTracerProvider

from litellm_cache_plugin import telemetry as tm
from litellm_cache_plugin.semantic.guard import features, near_miss
from litellm_cache_plugin.telemetry import CacheTelemetry
from tests.test_semantic_guard import SERVE, TRAPS


def best_of(repeats: int, run: Callable[[], float]) -> float:
    return min(run() for _ in range(repeats))


def telemetry_seconds(explicit_noop: bool) -> float:
    t = CacheTelemetry(NoOpMeterProvider(), NoOpTracerProvider()) if explicit_noop else CacheTelemetry()
    with t.span("llm_cache.lookup", {tm.LAYER: "exact"}) as span:
        span.set(tm.RESULT, "hit")
    start = time.perf_counter()
    for _ in range(100_000):
        t.record_lookup("exact", "llama", "hit", "fresh", latency_ms=0.3, latency_saved_ms=800.0)
    return time.perf_counter() - start


def guard_ms_per_pair() -> float:
    pairs = [(features(a), features(b)) for a, b, _ in TRAPS] + [(features(a), features(b)) for a, b in SERVE]
    rounds = 50
    start = time.perf_counter()
    for _ in range(rounds):
        for a, b in pairs:
            near_miss(a, b)
    return (time.perf_counter() - start) * 1000 / (rounds * len(pairs))


def features_ms_per_prompt() -> float:
    prompts = [a for a, _, _ in TRAPS] * 4
    start = time.perf_counter()
    for prompt in prompts:
        features(prompt)
    return (time.perf_counter() - start) * 1000 / len(prompts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    rows = [
        ("telemetry, explicit no-op providers: 100k record_lookup (s)", 1.0, lambda: telemetry_seconds(True)),
        ("telemetry, global providers: 100k record_lookup (s)", 1.0, lambda: telemetry_seconds(False)),
        ("guard near_miss per pair (ms)", 0.2, guard_ms_per_pair),
        ("guard features per prompt (ms)", 1.0, features_ms_per_prompt),
    ]
    failed = False
    for name, budget, run in rows:
        measured = best_of(args.repeats, run)
        verdict = "ok" if measured < budget else "OVER BUDGET"
        failed |= measured >= budget
        print(f"{name:<62} {measured:9.4f}  budget < {budget:<5} {verdict}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
