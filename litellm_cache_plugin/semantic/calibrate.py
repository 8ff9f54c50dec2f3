"""Pick the threshold (and guard setting) for a wrong-answer budget, from labelled prompt pairs.

Input: JSONL, one pair a line: ``{"a": cached prompt, "b": new prompt, "same": true|false}`` (``same``:
one answer is right for both). For each threshold on a grid, with and without the near-miss guard,
a pair is *served* when ``cosine(a, b) >= threshold`` and (guard on) the guard finds no difference.

- hit rate = served / same pairs; wrong rate = served / different pairs;
- both with Wilson 95% intervals (small labelled sets give wide intervals: read them).

The recommendation is the setting with the highest hit rate whose wrong rate is at most ``--target``
(``--strict``: whose Wilson *upper* bound is). Usage::

    python -m litellm_cache_plugin.semantic.calibrate pairs.jsonl --target 0.01 [--strict] [--json]

It runs the built-in embedder (needs the ``[semantic]`` extra).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from litellm_cache_plugin.semantic.guard import PromptFeatures, features, near_miss

__all__ = ["Outcome", "Pair", "load_pairs", "main", "pair_similarities", "recommend", "sweep", "wilson"]

DEFAULT_GRID = tuple(round(0.60 + 0.01 * i, 2) for i in range(39))  # 0.60 .. 0.98


def wilson(successes: int, trials: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval (95% by default) of a binomial proportion; (0, 1) for no trials."""
    if trials <= 0:
        return 0.0, 1.0
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    low = 0.0 if successes == 0 else max(0.0, centre - half)  # exact bounds at the edges, no 1e-19
    high = 1.0 if successes == trials else min(1.0, centre + half)
    return low, high


@dataclass(frozen=True)
class Pair:
    a: str
    b: str
    same: bool
    category: str = ""


def load_pairs(path: str | Path) -> list[Pair]:
    pairs: list[Pair] = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                pairs.append(
                    Pair(str(row["a"]), str(row["b"]), bool(row["same"]), str(row.get("category", "")))
                )
            except (ValueError, KeyError, TypeError) as error:
                raise ValueError(f"{path}:{number}: expected {{'a', 'b', 'same'}}: {error}") from None
    return pairs


@dataclass(frozen=True)
class Outcome:
    """Served counts of one setting on one labelled set."""

    threshold: float
    guard: bool
    hits: int
    same: int
    wrong: int
    different: int

    @property
    def hit_rate(self) -> float:
        return self.hits / self.same if self.same else 0.0

    @property
    def wrong_rate(self) -> float:
        return self.wrong / self.different if self.different else 0.0

    @property
    def hit_interval(self) -> tuple[float, float]:
        return wilson(self.hits, self.same)

    @property
    def wrong_interval(self) -> tuple[float, float]:
        return wilson(self.wrong, self.different)


def pair_similarities(pairs: Sequence[Pair], embed: Any) -> list[float]:
    """Cosine of each pair with ``embed(texts) -> unit vectors`` (rows), texts embedded once."""
    import numpy as np

    texts = sorted({p.a for p in pairs} | {p.b for p in pairs})
    vectors = np.asarray(embed(texts), dtype=np.float32)
    row = {text: i for i, text in enumerate(texts)}
    return [float(vectors[row[p.a]] @ vectors[row[p.b]]) for p in pairs]


def guard_verdicts(pairs: Sequence[Pair]) -> list[str | None]:
    """The guard's reason to refuse each pair (``None``: it would serve), features computed once."""
    cache: dict[str, PromptFeatures] = {}

    def feats(text: str) -> PromptFeatures:
        found = cache.get(text)
        if found is None:
            found = cache[text] = features(text)
        return found

    return [near_miss(feats(p.a), feats(p.b)) for p in pairs]


def served(similarity: float, verdict: str | None, threshold: float, guard: bool) -> bool:
    """The decision of the layer for one cached prompt (the same rule ``SemanticIndex.lookup`` applies)."""
    return similarity >= threshold and (not guard or verdict is None)


def sweep(
    pairs: Sequence[Pair],
    similarities: Sequence[float],
    verdicts: Sequence[str | None],
    grid: Iterable[float] = DEFAULT_GRID,
    guards: Iterable[bool] = (True, False),
) -> list[Outcome]:
    same = sum(p.same for p in pairs)
    different = len(pairs) - same
    outcomes: list[Outcome] = []
    for guard in guards:
        for threshold in grid:
            hits = wrong = 0
            for pair, similarity, verdict in zip(pairs, similarities, verdicts, strict=True):
                if served(similarity, verdict, threshold, guard):
                    if pair.same:
                        hits += 1
                    else:
                        wrong += 1
            outcomes.append(Outcome(threshold, guard, hits, same, wrong, different))
    return outcomes


def recommend(outcomes: Iterable[Outcome], target: float, *, strict: bool = False) -> Outcome | None:
    """The most hits with the wrong rate (``strict``: its Wilson upper bound) at most ``target``;
    ties go to the higher threshold."""
    fitting = [o for o in outcomes if (o.wrong_interval[1] if strict else o.wrong_rate) <= target]
    if not fitting:
        return None
    return max(fitting, key=lambda o: (o.hits, o.guard, o.threshold))


def _pct(value: float) -> str:
    return f"{100 * value:5.1f}%"


def format_outcome(outcome: Outcome) -> str:
    hl, hh = outcome.hit_interval
    wl, wh = outcome.wrong_interval
    return (
        f"threshold {outcome.threshold:.2f} guard {'on ' if outcome.guard else 'off'}  "
        f"served {_pct(outcome.hit_rate)} [{_pct(hl)}, {_pct(hh)}] of {outcome.same}  "
        f"wrong {_pct(outcome.wrong_rate)} [{_pct(wl)}, {_pct(wh)}] of {outcome.different}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m litellm_cache_plugin.semantic.calibrate", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("pairs", help="JSONL file of {a, b, same} pairs")
    parser.add_argument("--target", type=float, default=0.01, help="largest wrong-answer rate (default 0.01)")
    parser.add_argument("--strict", action="store_true", help="hold the Wilson upper bound to the target")
    parser.add_argument("--json", action="store_true", help="print the whole sweep as JSON")
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime threads")
    args = parser.parse_args(argv)
    if not 0 <= args.target <= 1:
        parser.error("--target must be between 0 and 1")
    try:
        pairs = load_pairs(args.pairs)
    except (OSError, ValueError) as error:
        print(f"calibrate: {error}", file=sys.stderr)
        return 2
    if not pairs:
        print("calibrate: no pairs", file=sys.stderr)
        return 2

    from litellm_cache_plugin.semantic.embedder import OnnxMiniLMEmbedder, SemanticUnavailable

    embedder = OnnxMiniLMEmbedder(threads=args.threads)
    try:
        similarities = pair_similarities(pairs, lambda texts: _batched(embedder, texts))
    except SemanticUnavailable as error:
        print(f"calibrate: {error}", file=sys.stderr)
        return 2
    outcomes = sweep(pairs, similarities, guard_verdicts(pairs))
    best = recommend(outcomes, args.target, strict=args.strict)
    if args.json:
        print(json.dumps({"pairs": len(pairs), "target": args.target, "strict": args.strict,
                          "recommended": asdict(best) if best else None,
                          "sweep": [asdict(o) for o in outcomes]}))  # fmt: skip
        return 0 if best else 1
    same = sum(p.same for p in pairs)
    bound = " (Wilson upper bound)" if args.strict else ""
    print(
        f"{len(pairs)} pairs ({same} same, {len(pairs) - same} different), "
        f"wrong rate <= {args.target:.2%}{bound}"
    )
    for outcome in outcomes:
        if outcome.guard and round(outcome.threshold * 100) % 5 == 0:
            print("  " + format_outcome(outcome))
    if best is None:
        print("no setting meets the target: keep the semantic layer off, or label more pairs")
        return 1
    print("recommended:  " + format_outcome(best))
    print("cache_plugin:\n  layers:\n    semantic:")
    print(
        f"      enabled: true\n      threshold: {best.threshold:.2f}\n      guard: {str(best.guard).lower()}"
    )
    return 0


def _batched(embedder: Any, texts: Sequence[str], batch: int = 64) -> Any:
    import numpy as np

    parts = [embedder.embed_sync(list(texts[i : i + batch])) for i in range(0, len(texts), batch)]
    return np.concatenate(parts) if parts else np.zeros((0, 384), dtype=np.float32)


if __name__ == "__main__":
    sys.exit(main())
