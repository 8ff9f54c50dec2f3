"""The former turn-by-turn conversation rule (``benchmarks/semantic/turn_by_turn.py``), the
"before" row of the conversations benchmark: pure, no embedding, no store."""

from __future__ import annotations

import os
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from benchmarks.semantic.turn_by_turn import TURN_RULES, check_turns, pairs_to_compare
from litellm_cache_plugin.semantic.conversation import TurnRefusal
from litellm_cache_plugin.semantic.guard import features


def always(value: float) -> Any:
    return lambda i: value


def test_equal_turns_pass_without_asking_for_a_similarity() -> None:
    turns = [("user", "I have a Flixora plan"), ("assistant", "It renews on the 14th.")]

    def never(i: int) -> float:
        raise AssertionError("no similarity is needed for equal turns")

    assert check_turns(turns, list(turns), never, threshold=0.9, features=features) is None
    assert pairs_to_compare(turns, turns) == []


def test_shape_similarity_and_guard_refusals() -> None:
    cached = [("user", "I have a Flixora plan"), ("assistant", "It costs £10.99 a month.")]
    assert check_turns(cached, cached[:1], always(1.0), threshold=0.9, features=features) == TurnRefusal(
        "conversation_shape", 1, "2 / 1 turns"
    )
    swapped_roles = [("assistant", cached[0][1]), ("user", cached[1][1])]
    refusal = check_turns(cached, swapped_roles, always(1.0), threshold=0.9, features=features)
    assert refusal is not None and refusal.rule == "conversation_shape" and refusal.turn == 0
    reworded = [("user", "I've got a Flixora plan"), cached[1]]
    low = check_turns(cached, reworded, always(0.85), threshold=0.9, features=features)
    assert low is not None and (low.rule, low.turn) == ("conversation_similarity", 0)
    assert check_turns(cached, reworded, always(0.95), threshold=0.9, features=features) is None
    # By default an earlier assistant turn must be equal: no similarity asked for.
    priced = [cached[0], ("assistant", "It costs £24.99 a month.")]

    def never(i: int) -> float:
        raise AssertionError("an assistant turn that must be equal needs no similarity")

    differs = check_turns(cached, priced, never, threshold=0.9, features=features)
    assert differs == TurnRefusal("conversation_differs", 1, "assistant turn differs")
    assert pairs_to_compare(cached, priced) == []
    assert pairs_to_compare(cached, priced, assistant_threshold=0.8) == [1]
    # With a finite assistant threshold: close by meaning, refused by the guard's number rule.
    number = check_turns(
        cached, priced, always(0.97), threshold=0.9, assistant_threshold=0.8, features=features
    )
    assert number is not None and (number.rule, number.turn) == ("conversation_number", 1)
    unguarded = check_turns(
        cached, priced, always(0.97), threshold=0.9, assistant_threshold=0.8, guard=False, features=features
    )
    assert unguarded is None
    # Assistant turns have their own threshold.
    assert (
        check_turns(cached, [cached[0], ("assistant", "It is £10.99 monthly.")], always(0.75), threshold=0.9,
                    assistant_threshold=0.8, features=features)
        is not None
    )  # fmt: skip


roles = st.sampled_from(["user", "assistant"])
words = st.text(alphabet="abcdefgh ", min_size=1, max_size=12)
turn_lists = st.lists(st.tuples(roles, words), max_size=5)


@given(turns=turn_lists, similarity=st.floats(0, 1))
def test_a_conversation_always_matches_itself(turns: list[tuple[str, str]], similarity: float) -> None:
    assert check_turns(turns, list(turns), always(similarity), threshold=0.99, features=features) is None


@given(cached=turn_lists, asked=turn_lists, similarity=st.floats(-1, 1), guard=st.booleans())
def test_every_refusal_is_a_known_label_and_a_turn_of_both(
    cached: list[tuple[str, str]], asked: list[tuple[str, str]], similarity: float, guard: bool
) -> None:
    refusal = check_turns(cached, asked, always(similarity), threshold=0.9, guard=guard, features=features)
    if len(cached) != len(asked):
        assert refusal is not None and refusal.rule == "conversation_shape"
    if refusal is not None:
        assert refusal.rule in TURN_RULES
        assert 0 <= refusal.turn <= min(len(cached), len(asked))
    else:
        assert len(cached) == len(asked)
        # A pass needs every differing turn at or above its threshold.
        differing = pairs_to_compare(cached, asked)
        assert not differing or similarity >= min(0.9, 0.8)


@given(cached=turn_lists, asked=turn_lists, low=st.floats(0, 1), high=st.floats(0, 1))
def test_a_higher_similarity_never_turns_a_pass_into_a_refusal(
    cached: list[tuple[str, str]], asked: list[tuple[str, str]], low: float, high: float
) -> None:
    low, high = min(low, high), max(low, high)
    if check_turns(cached, asked, always(low), threshold=0.9, features=features) is None:
        assert check_turns(cached, asked, always(high), threshold=0.9, features=features) is None
