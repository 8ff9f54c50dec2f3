"""The semantic benchmark's data sets (benchmarks/semantic/): the constructed set is deterministic and
balanced, its folds split by intent, the hand-written held-out set is well formed. Pure."""

from __future__ import annotations

from benchmarks.semantic.constructed import FOLDS, INTENTS, TUNING_FOLDS, constructed_pairs, fold_of
from benchmarks.semantic.datasets import KINDS, handwritten_set, load_sets
from litellm_cache_plugin.semantic.calibrate import guard_verdicts


def test_constructed_set_is_deterministic_and_balanced() -> None:
    first, second = constructed_pairs(), constructed_pairs()
    assert first == second
    pairs = [p for _, p in first]
    same = sum(p.same for p in pairs)
    assert len(pairs) > 400 and same > 250 and len(pairs) - same > 150
    assert {name for name, _ in first} == {intent.name for intent in INTENTS}
    # A trap is never the cached prompt itself.
    assert all(p.a != p.b for p in pairs)


def test_guard_refuses_every_constructed_slot_swap_but_few_paraphrases() -> None:
    pairs = [p for _, p in constructed_pairs()]
    verdicts = guard_verdicts(pairs)
    swaps = [v for p, v in zip(pairs, verdicts, strict=True) if p.category.startswith("swap_")]
    near = [v for p, v in zip(pairs, verdicts, strict=True) if p.category == "near_repeat"]
    assert sum(v is None for v in swaps) <= len(swaps) * 0.1
    assert all(v is None for v in near)


def test_folds_split_by_intent_and_are_balanced() -> None:
    sizes = [sum(fold_of(i.name) == f for i in INTENTS) for f in range(FOLDS)]
    assert max(sizes) - min(sizes) <= 1 and set(range(FOLDS)) > TUNING_FOLDS
    sets = {s.name: s for s in load_sets() if s.name.startswith("constructed")}
    tuning = {i.intent for i in sets["constructed (tuning folds)"].items}
    held = {i.intent for i in sets["constructed (held-out folds)"].items}
    assert tuning and held and not tuning & held


def test_handwritten_set_is_well_formed() -> None:
    data = handwritten_set()
    intents = {i.intent for i in data.items}
    paraphrases = [i for i in data.items if i.same]
    traps = [i for i in data.items if not i.same]
    assert len(intents) >= 100 and len(paraphrases) >= 3 * len(intents) and len(data.unrelated) >= 40
    assert {i.kind for i in traps} == set(KINDS)
    assert all(i.asked != i.cached for i in data.items)
    texts = [i.asked for i in data.items] + data.unrelated
    assert len(texts) == len(set(texts))  # no prompt is labelled twice


def test_independent_conversation_set_is_well_formed_and_balanced() -> None:
    from collections import Counter
    from itertools import pairwise

    from benchmarks.semantic.conversations import SHOULD_HIT, TRAPS, load_independent_pairs

    pairs = load_independent_pairs()
    assert len(pairs) == 144 and len({p.id for p in pairs}) == 144
    assert Counter(p.domain for p in pairs) == dict.fromkeys(
        ("travel", "banking", "health", "itsupport", "housing", "education"), 24
    )
    assert Counter((p.domain, p.subtype) for p in pairs) == {
        (d, s): 4 for d in {p.domain for p in pairs} for s in (*SHOULD_HIT, *TRAPS)
    }
    for pair in pairs:
        assert pair.part == "independent" and pair.same is (pair.subtype in SHOULD_HIT)
        for side in (pair.a, pair.b):
            roles = [m["role"] for m in side]
            assert roles[0] == roles[-1] == "user"
            assert all(a != b for a, b in pairwise(roles))
            assert all(m["content"].strip() for m in side)


def test_independent_single_prompt_set_is_well_formed() -> None:
    from collections import Counter

    from benchmarks.semantic.datasets import independent_set

    data = independent_set()
    assert data.role == "held-out" and len(data.unrelated) == 40
    intents = {item.intent for item in data.items}
    assert len(intents) == 80 and len({i.split("/")[0] for i in intents}) == 10
    kinds = Counter(item.kind for item in data.items if not item.same)
    assert set(kinds) <= set(KINDS) and all(kinds[k] >= 12 for k in KINDS)
    assert all(item.asked != item.cached for item in data.items)
