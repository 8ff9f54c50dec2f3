"""The semantic benchmark's scoring (benchmarks/semantic/evaluate.py) on a tiny set with made-up
vectors: served/wrong counts per kind, refusal reasons, unrelated and cross-intent lookups, and the
index agreeing with the pairwise rule the sweeps use."""

from __future__ import annotations

from typing import Any

import pytest

np = pytest.importorskip("numpy", reason="the [semantic] extra is not installed")

from benchmarks.semantic.datasets import Item, LabelledSet  # noqa: E402
from benchmarks.semantic.evaluate import (  # noqa: E402
    Setting,
    ceiling_rows,
    check_consistency,
    cross_validate,
    evaluate_set,
    rule_costs,
)

DIMS = 8


def _unit(v: Any) -> Any:
    v = np.asarray(v, dtype=np.float32)
    return v / np.linalg.norm(v)


def _near(base: Any, cosine: float, axis: int) -> Any:
    other = np.zeros(DIMS, dtype=np.float32)
    other[axis] = 1.0
    other = _unit(other - (other @ base) * base)
    return _unit(cosine * base + np.sqrt(1 - cosine**2) * other)


def _data() -> tuple[LabelledSet, dict[str, Any]]:
    paris = _unit(np.eye(DIMS, dtype=np.float32)[0])
    rice = _unit(np.eye(DIMS, dtype=np.float32)[1])
    vectors = {
        "How far is Paris from Lyon?": paris,
        "What's the distance between Paris and Lyon?": _near(paris, 0.95, 2),
        "How far is Paris from Lille?": _near(paris, 0.97, 3),  # a trap the guard refuses (entity)
        "Tell me about Paris": _near(paris, 0.50, 4),  # a paraphrase below the threshold
        "How much water for a cup of rice?": rice,
        "How much water for 3 cups of rice?": _near(rice, 0.96, 5),  # number trap
        "Tell me a joke": _unit(np.eye(DIMS, dtype=np.float32)[6]),
    }
    far, rice_q = "How far is Paris from Lyon?", "How much water for a cup of rice?"
    items = [
        Item("distance", far, "What's the distance between Paris and Lyon?", True, "paraphrase", "p", 0),
        Item("distance", far, "Tell me about Paris", True, "paraphrase", "p", 0),
        Item("distance", far, "How far is Paris from Lille?", False, "entity", "e", 0),
        Item("rice", rice_q, "How much water for 3 cups of rice?", False, "number", "n", 1),
    ]
    return LabelledSet("tiny", "test", "", items, unrelated=["Tell me a joke"]), vectors


async def test_evaluate_set_counts_per_kind_and_reasons() -> None:
    data, vectors = _data()
    layer = await evaluate_set(data, vectors, Setting("layer", 0.9, True))
    assert (layer["served"]["k"], layer["served"]["n"]) == (1, 2)
    assert (layer["traps_wrong"]["k"], layer["traps_wrong"]["n"]) == (0, 2)
    assert layer["traps_refused_by_rule"] == {"entity": 1, "number": 1}
    assert layer["unrelated_wrong"]["k"] == 0 and layer["cross_intent_wrong"]["n"] == 4
    plain = await evaluate_set(data, vectors, Setting("plain", 0.9, False))
    assert plain["traps_wrong"]["k"] == 2 and plain["kinds"]["number"]["k"] == 1
    for setting, scored in ((Setting("l", 0.9, True), layer), (Setting("p", 0.9, False), plain)):
        assert check_consistency(data, vectors, setting, scored["decisions"]) == 0


def test_rule_costs_and_cross_validation() -> None:
    data, vectors = _data()
    costs = rule_costs(data, vectors, 0.9)
    assert costs["entity"]["traps_first"] == 1 and costs["number"]["traps_only"] == 1
    cv = cross_validate(data.items, vectors, folds=(0, 1))
    assert [f["fold"] for f in cv["folds"]] == [0, 1] and cv["served"]["n"] == 2


def test_ceiling_is_the_best_threshold_in_hindsight_with_and_without_the_guard() -> None:
    data, vectors = _data()
    ceiling = ceiling_rows(data, vectors)
    # Without the guard a trap (0.96, 0.97) sits above the paraphrase (0.95): no threshold serves it
    # without serving a trap, and serving both paraphrases (one at 0.50) serves both traps.
    plain = ceiling["plain"]
    assert plain["best_at_target"]["served"]["k"] == 0
    assert plain["best_at_target"]["wrong"]["k"] == 0
    assert plain["at_60"]["served"]["k"] == 2 and plain["at_60"]["wrong"]["k"] == 2
    # The guard refuses both traps: the paraphrase at 0.95 is served with no trap.
    guard = ceiling["guard"]
    assert guard["best_at_target"]["served"]["k"] >= 1 and guard["best_at_target"]["wrong"]["k"] == 0
    assert guard["at_60"] is None or guard["at_60"]["wrong"]["k"] == 0
