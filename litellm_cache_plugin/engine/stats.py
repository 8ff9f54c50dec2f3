"""The engine's per-worker counters (:class:`EngineStats`) and what the stats show."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from litellm_cache_plugin.savings import Savings

__all__ = ["SAVING_FIELDS", "SERVED", "UNRATED_LAYERS", "EngineStats"]

# Results that served a cached answer (see telemetry.SERVED_RESULTS).
SERVED = ("hit", "stale", "coalesced")
# Stats rows that count events of a path or of the admin API, not lookups of a cache layer: they get
# no hit ratio. The glue may name its own (``CacheEngine(unrated_layers=...)``); the default keeps the
# rows the proxy glue has always written ("fast_path").
UNRATED_LAYERS: frozenset[str] = frozenset({"admin", "fast_path"})
# Saving totals kept per (layer, model group), in the order the stats show them.
SAVING_FIELDS = (
    "latency_saved_ms",
    "input_tokens_saved",
    "output_tokens_saved",
    "cost_saved_usd",
    "gpu_seconds_saved",
)


@dataclass
class EngineStats:
    """In-process counters (per worker). Keys: (layer, model_group, outcome-or-event).

    Lookup results (hit, stale, coalesced, miss, bypass) are counted once per request and layer by
    :meth:`CacheEngine.account`, which feeds OpenTelemetry the same numbers."""

    counts: Counter[tuple[str, str, str]]
    saved: dict[tuple[str, str], dict[str, float]] = field(default_factory=dict)
    # Rows without a hit ratio (see UNRATED_LAYERS).
    unrated_layers: frozenset[str] = UNRATED_LAYERS

    def bump(self, layer: str, model_group: str, what: str, amount: int = 1) -> None:
        self.counts[(layer, model_group, what)] += amount

    def get(self, layer: str, model_group: str, what: str) -> int:
        return self.counts.get((layer, model_group, what), 0)

    def add_savings(self, layer: str, model_group: str, savings: Savings) -> None:
        totals = self.saved.setdefault((layer, model_group), dict.fromkeys(SAVING_FIELDS, 0.0))
        for name, value in zip(
            SAVING_FIELDS,
            (
                savings.latency_ms,
                savings.input_tokens,
                savings.output_tokens,
                savings.cost_usd,
                savings.gpu_seconds,
            ),
            strict=True,
        ):
            if value is not None:
                totals[name] += value

    def snapshot(self) -> dict[str, dict[str, dict[str, float]]]:
        out: dict[str, dict[str, dict[str, float]]] = {}
        for (layer, model, what), count in sorted(self.counts.items()):
            out.setdefault(layer, {}).setdefault(model, {})[what] = count
        for (layer, model), totals in sorted(self.saved.items()):
            row = out.setdefault(layer, {}).setdefault(model, {})
            for name, value in totals.items():
                row[name] = round(value, 9 if name == "cost_saved_usd" else 3)
        for layer_name, models in out.items():
            if layer_name in self.unrated_layers:
                continue
            for row in models.values():
                served = sum(row.get(result, 0) for result in SERVED)
                looked = served + row.get("miss", 0) + row.get("refused", 0)  # a refusal is not served
                row["hit_ratio"] = round(served / looked, 4) if looked else 0.0
        return out
