"""Scoring: every lookup goes through the real ``SemanticIndex`` (index + guard, in process, with a
``MemoryStore``; no proxy, no LiteLLM), with precomputed vectors. Sweeps and cross-validation reuse
the same decision rule on the pairs' cosines (``calibrate.served``), checked against the index.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from benchmarks.semantic.datasets import KINDS, SAME_KINDS, Item, LabelledSet
from litellm_cache_plugin.semantic.calibrate import Outcome, Pair, recommend, served, sweep, wilson
from litellm_cache_plugin.semantic.guard import PromptFeatures, all_refusals, check, features

__all__ = ["Setting", "cross_validate", "evaluate_set", "rate", "rule_costs"]

Vectors = Mapping[str, Any]


@dataclass(frozen=True)
class Setting:
    label: str
    threshold: float
    guard: bool


def rate(k: int, n: int) -> dict[str, Any]:
    low, high = wilson(k, n)
    return {"k": k, "n": n, "rate": k / n if n else 0.0, "low": low, "high": high}


def _key(text: str) -> str:
    return "e:" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:20]


class _Features:
    def __init__(self) -> None:
        self._cache: dict[str, PromptFeatures] = {}

    def __call__(self, text: str) -> PromptFeatures:
        found = self._cache.get(text)
        if found is None:
            found = self._cache[text] = features(text)
        return found


FEATURES = _Features()


def _index(vectors: Vectors, setting: Setting) -> Any:
    from litellm_cache_plugin.semantic.embedder import CallableEmbedder
    from litellm_cache_plugin.semantic.layer import SemanticIndex
    from litellm_cache_plugin.settings import SemanticLayer
    from litellm_cache_plugin.store.memory import MemoryStore

    async def embed(texts: Sequence[str]) -> list[Any]:
        return [vectors[t] for t in texts]

    settings = SemanticLayer(enabled=True, threshold=setting.threshold, guard=setting.guard)
    return SemanticIndex(
        MemoryStore(), namespace="bench", embedder=CallableEmbedder("bench", embed), settings=settings
    )


async def evaluate_set(data: LabelledSet, vectors: Vectors, setting: Setting) -> dict[str, Any]:
    """Served/wrong rates of one setting on one set, per kind, with refusal reasons."""
    index = _index(vectors, setting)
    served_by_kind: dict[str, list[bool]] = {}
    refused_by: Counter[str] = Counter()  # should-serve items refused, by rule (first rule)
    refused_traps_by: Counter[str] = Counter()
    decisions: list[bool] = []
    added: set[str] = set()
    for item in data.items:
        # One scope per cached prompt, holding only it: the decision on this pair alone.
        scope = "pair:" + _key(item.cached)
        if scope not in added:
            added.add(scope)
            await index.add(scope, item.cached, _key(item.cached), ttl=86400)
        result = await index.resolve(scope, item.asked)
        hit = result.match is not None
        decisions.append(hit)
        served_by_kind.setdefault(item.kind, []).append(hit)
        if result.outcome == "refused" and result.reason is not None:
            (refused_by if item.same else refused_traps_by)[result.reason] += 1
    same = [d for d, i in zip(decisions, data.items, strict=True) if i.same]
    traps = [d for d, i in zip(decisions, data.items, strict=True) if not i.same]
    out: dict[str, Any] = {
        "setting": {"label": setting.label, "threshold": setting.threshold, "guard": setting.guard},
        "served": rate(sum(same), len(same)),
        "traps_wrong": rate(sum(traps), len(traps)),
        "kinds": {k: rate(sum(v), len(v)) for k, v in sorted(served_by_kind.items())},
        "should_serve_refused_by_rule": dict(refused_by.most_common()),
        "traps_refused_by_rule": dict(refused_traps_by.most_common()),
        "decisions": decisions,
    }
    if data.unrelated:
        out["unrelated_wrong"] = await _unrelated(data, vectors, setting)
    if data.cross_intent:
        out["cross_intent_wrong"] = await _cross_intent(data, vectors, setting)
    return out


async def _unrelated(data: LabelledSet, vectors: Vectors, setting: Setting) -> dict[str, Any]:
    """Each unrelated prompt in one scope holding every cached prompt of the set: any hit is wrong."""
    index = _index(vectors, setting)
    for cached in sorted({i.cached for i in data.items}):
        await index.add("all", cached, _key(cached), ttl=86400)
    wrong = sum([await index.lookup("all", text) is not None for text in data.unrelated])
    return rate(wrong, len(data.unrelated))


async def _cross_intent(data: LabelledSet, vectors: Vectors, setting: Setting) -> dict[str, Any]:
    """Every asked prompt of an intent, in a scope holding the cached prompts of all other intents."""
    index = _index(vectors, setting)
    cached_of: dict[str, set[str]] = {}
    for item in data.items:
        cached_of.setdefault(item.intent, set()).add(item.cached)
    everything = sorted({c for cs in cached_of.values() for c in cs})
    for cached in everything:
        await index.add("all", cached, _key(cached), ttl=86400)
    wrong = total = 0
    for intent, own in sorted(cached_of.items()):
        for cached in own:
            index.forget("all", _key(cached))
        asked = sorted({i.asked for i in data.items if i.intent == intent} - own)
        for text in asked:
            total += 1
            match = await index.lookup("all", text)
            wrong += match is not None
        for cached in own:
            await index.add("all", cached, _key(cached), ttl=86400)
    return rate(wrong, total)


def pair_arrays(data: LabelledSet, vectors: Vectors) -> tuple[list[Pair], list[float], list[str | None]]:
    import numpy as np

    pairs = [Pair(i.cached, i.asked, i.same, i.kind) for i in data.items]
    sims = [float(np.dot(vectors[p.a], vectors[p.b])) for p in pairs]
    verdicts: list[str | None] = []
    for p in pairs:
        refusal = check(FEATURES(p.a), FEATURES(p.b))
        verdicts.append(None if refusal is None else refusal.rule)
    return pairs, sims, verdicts


def rule_costs(data: LabelledSet, vectors: Vectors, threshold: float) -> dict[str, dict[str, int]]:
    """Per guard rule, among pairs at or above ``threshold``: should-serve pairs it refuses (first
    rule, and fires at all) and traps it refuses (first rule, and the only rule that fires: the traps
    that would be served without it)."""
    _, sims, _ = pair_arrays(data, vectors)
    out: dict[str, dict[str, int]] = {}

    def row(rule: str) -> dict[str, int]:
        return out.setdefault(
            rule, {"same_first": 0, "same_fires": 0, "traps_first": 0, "traps_only": 0, "traps_fires": 0}
        )

    for item, sim in zip(data.items, sims, strict=True):
        if sim < threshold:
            continue
        fired = all_refusals(FEATURES(item.cached), FEATURES(item.asked))
        for i, refusal in enumerate(fired):
            r = row(refusal.rule)
            if item.same:
                r["same_fires"] += 1
                r["same_first"] += i == 0
            else:
                r["traps_fires"] += 1
                r["traps_first"] += i == 0
                r["traps_only"] += len(fired) == 1
    return dict(sorted(out.items(), key=lambda kv: -kv[1]["same_first"]))


def sweep_rows(data: LabelledSet, vectors: Vectors) -> list[dict[str, Any]]:
    pairs, sims, verdicts = pair_arrays(data, vectors)
    grid = [round(0.80 + 0.01 * i, 2) for i in range(18)]
    return [
        {"threshold": o.threshold, "guard": o.guard, "served": o.hit_rate, "wrong": o.wrong_rate}
        for o in sweep(pairs, sims, verdicts, grid=grid)
    ]


def _scored(outcome: Outcome | None) -> dict[str, Any] | None:
    if outcome is None:
        return None
    return {
        "threshold": outcome.threshold,
        "served": rate(outcome.hits, outcome.same),
        "wrong": rate(outcome.wrong, outcome.different),
    }


def ceiling_rows(data: LabelledSet, vectors: Vectors, *, target: float = 0.01) -> dict[str, Any]:
    """What the built-in embedder allows on a set, chosen **in hindsight** on that set (a bound,
    never a setting): per guard on/off, the most paraphrases served at any threshold (0.50-0.99) with
    at most ``target`` of its traps answered wrongly, and how many traps are answered wrongly at the
    highest threshold that serves at least 60% of its paraphrases (issue 16's target). Pairwise only:
    cross-intent and unrelated matches would add wrong answers, never served paraphrases."""
    pairs, sims, verdicts = pair_arrays(data, vectors)
    outcomes = sweep(pairs, sims, verdicts, grid=[round(0.50 + 0.01 * i, 2) for i in range(50)])
    out: dict[str, Any] = {}
    for guard in (False, True):
        mine = [o for o in outcomes if o.guard is guard]
        best = recommend(mine, target)
        reaching = [o for o in mine if o.hit_rate >= 0.60]
        at_60 = max(reaching, key=lambda o: o.threshold) if reaching else None
        out["guard" if guard else "plain"] = {"best_at_target": _scored(best), "at_60": _scored(at_60)}
    return out


def cross_validate(
    items: Sequence[Item], vectors: Vectors, *, target: float = 0.01, folds: Sequence[int] = (0, 1, 2, 3, 4)
) -> dict[str, Any]:
    """Threshold picked on the other folds (guard on, most served with traps wrong <= ``target``),
    scored on the held-out fold; pooled over folds."""
    data = LabelledSet("cv", "tuning", "", list(items), cross_intent=False)
    pairs, sims, verdicts = pair_arrays(data, vectors)
    grid = [round(0.75 + 0.01 * i, 2) for i in range(24)]
    per_fold: list[dict[str, Any]] = []
    served_k = same_n = wrong_k = traps_n = 0
    for fold in folds:
        train = [j for j, i in enumerate(items) if i.fold != fold]
        test = [j for j, i in enumerate(items) if i.fold == fold]
        outcomes = sweep(
            [pairs[j] for j in train], [sims[j] for j in train], [verdicts[j] for j in train], grid, (True,)
        )
        best: Outcome | None = recommend(outcomes, target)
        threshold = best.threshold if best is not None else 1.0
        s = [served(sims[j], verdicts[j], threshold, True) for j in test]
        same = [ok for ok, j in zip(s, test, strict=True) if pairs[j].same]
        wrong = [ok for ok, j in zip(s, test, strict=True) if not pairs[j].same]
        per_fold.append(
            {"fold": fold, "threshold": threshold, "served": rate(sum(same), len(same)),
             "traps_wrong": rate(sum(wrong), len(wrong))}
        )  # fmt: skip
        served_k += sum(same)
        same_n += len(same)
        wrong_k += sum(wrong)
        traps_n += len(wrong)
    return {
        "target": target,
        "folds": per_fold,
        "served": rate(served_k, same_n),
        "traps_wrong": rate(wrong_k, traps_n),
    }


def check_consistency(
    data: LabelledSet, vectors: Vectors, setting: Setting, decisions: Sequence[bool]
) -> int:
    """How many index decisions differ from the pairwise rule (should be 0)."""
    _, sims, verdicts = pair_arrays(data, vectors)
    expected = [served(s, v, setting.threshold, setting.guard) for s, v in zip(sims, verdicts, strict=True)]
    return sum(a != b for a, b in zip(expected, decisions, strict=True))


__all__ += ["KINDS", "SAME_KINDS", "check_consistency", "pair_arrays", "sweep_rows"]
