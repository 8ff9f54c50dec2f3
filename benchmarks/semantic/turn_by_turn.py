"""The former ``layers.semantic.conversations: by_meaning`` rule, turn by turn, kept only as the
"before" row of ``conversations.py``: every earlier turn compared with its counterpart (same number
and roles of turns), user turns by the layer's threshold and the guard, assistant turns equal. The
plugin judges conversations as a whole instead (``litellm_cache_plugin.semantic.conversation``)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from litellm_cache_plugin.semantic.conversation import (
    CONVERSATION_RULES,
    SHAPE,
    SIMILARITY,
    Turn,
    TurnRefusal,
    conversation_rule,
)
from litellm_cache_plugin.semantic.guard import PromptFeatures, check

# Cosine an earlier assistant turn must reach (math.inf: equal after folding).
ASSISTANT_THRESHOLD = math.inf
# An earlier turn that had to be equal and was not (this rule's own label).
DIFFERS = "conversation_differs"
# Every label this rule refuses with.
TURN_RULES = (*CONVERSATION_RULES, DIFFERS)


def _structural(
    cached: Sequence[Turn], asked: Sequence[Turn], threshold: float, assistant_threshold: float
) -> TurnRefusal | None:
    """The refusals that need no similarity: another number or order of roles, or a turn that must
    be equal (an infinite threshold) and is not."""
    if len(cached) != len(asked):
        return TurnRefusal(SHAPE, min(len(cached), len(asked)), f"{len(cached)} / {len(asked)} turns")
    for i, ((role, _), (asked_role, _)) in enumerate(zip(cached, asked, strict=True)):
        if role != asked_role:
            return TurnRefusal(SHAPE, i, f"role {role!r} / {asked_role!r}")
    for i, ((role, text), (_, asked_text)) in enumerate(zip(cached, asked, strict=True)):
        needed = threshold if role == "user" else assistant_threshold
        if text != asked_text and math.isinf(needed):
            return TurnRefusal(DIFFERS, i, f"{role} turn differs")
    return None


def pairs_to_compare(
    cached: Sequence[Turn],
    asked: Sequence[Turn],
    *,
    threshold: float = 0.0,
    assistant_threshold: float = ASSISTANT_THRESHOLD,
) -> list[int]:
    """Indices of the turns whose similarity :func:`check_turns` needs (texts differ), or ``[]``
    when it refuses without any (another shape, or a turn that must be equal differs)."""
    if _structural(cached, asked, threshold, assistant_threshold) is not None:
        return []
    return [i for i, (c, a) in enumerate(zip(cached, asked, strict=True)) if c[1] != a[1]]


def check_turns(
    cached: Sequence[Turn],
    asked: Sequence[Turn],
    similarity: Callable[[int], float],
    *,
    threshold: float,
    assistant_threshold: float = ASSISTANT_THRESHOLD,
    guard: bool = True,
    features: Callable[[str], PromptFeatures],
) -> TurnRefusal | None:
    """``None`` when every earlier turn of ``asked`` matches its counterpart in ``cached``, else a
    refusal: first the ones needing no similarity (``conversation_shape``, then
    ``conversation_differs`` for a turn that must be equal), then in turn order.

    ``similarity(i)`` is the cosine of turn ``i``'s two texts; it is only called for the turns
    :func:`pairs_to_compare` lists. ``threshold`` applies to user turns, ``assistant_threshold`` to
    assistant turns (``math.inf``: equal after folding); ``guard``: also run the near-miss guard on
    each differing pair (the layer's ``guard`` setting)."""
    structural = _structural(cached, asked, threshold, assistant_threshold)
    if structural is not None:
        return structural
    for i, ((role, text), (_, asked_text)) in enumerate(zip(cached, asked, strict=True)):
        if text == asked_text:
            continue
        needed = threshold if role == "user" else assistant_threshold
        score = similarity(i)
        if not score >= needed:
            return TurnRefusal(SIMILARITY, i, f"similarity {score:.3f} < {needed:.2f}")
        if guard:
            refusal = check(features(text), features(asked_text))
            if refusal is not None:
                return TurnRefusal(conversation_rule(refusal.rule), i, refusal.detail)
    return None
