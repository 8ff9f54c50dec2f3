"""Multi-turn chats matched by meaning (``layers.semantic.conversations: by_meaning``): pure code.

With the default (``exact``) a conversation can only be served from a cached one whose earlier turns
are all equal (they are part of the semantic scope). With ``by_meaning`` the scope keeps everything
that must still be equal (tenant, model group and version, parameters, system prompts, the number
and roles of the turns and their other fields) and leaves out the *contents* of the earlier user and
assistant turns; those are stored with the cached prompt (its ``context``) and a candidate found by
its last user turn (searched as for a single prompt: threshold and guard) is then re-checked here
turn by turn:

- the two conversations have the same turns in the same order (roles) — else ``conversation_shape``;
- a turn that must be equal (an earlier assistant turn, see below) is — else ``conversation_differs``;
- each pair of turns is equal after folding, or its cosine similarity reaches the turn's threshold
  (``conversation_similarity``) and the near-miss guard lets it through (``conversation_<rule>``,
  e.g. ``conversation_number``: a 150 Mb/s plan in one and a 900 Mb/s plan in the other).

User turns use the layer's threshold (or :data:`USER_TURN_THRESHOLD`). Assistant turns are the
model's earlier answers: they name what "it", "yes please" or "the cheaper one" refer to, so they are
checked too, by :data:`ASSISTANT_THRESHOLD` and the guard; measured (``benchmarks/semantic/
conversations.py``, ``results/semantic/conversations/``), no finite threshold kept the wrong answers
at zero on the tuning part, so an earlier assistant turn must be *equal* (after folding).

Nothing here embeds or reads a store: similarities come in as numbers, prompt features through a
callable, and the answer is data (:class:`TurnRefusal` or ``None``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from litellm_cache_plugin.semantic.guard import PromptFeatures, check

__all__ = [
    "ASSISTANT_THRESHOLD",
    "CONVERSATION_RULES",
    "USER_TURN_THRESHOLD",
    "Turn",
    "TurnRefusal",
    "check_turns",
    "pairs_to_compare",
]

# (role, folded text) of one earlier turn: "user" or "assistant".
Turn = tuple[str, str]

# Cosine an earlier assistant turn must reach against its counterpart (besides the guard); math.inf:
# it must be equal after folding. Chosen on the tuning conversations (fow-cache, billing domain): with
# any finite threshold from 0.70 to 0.88, assistant offers reworded into another action ("cancel it?"
# / "switch you to annual billing?", answered "yes please") were served wrongly (2-3 of 40 traps).
ASSISTANT_THRESHOLD = math.inf
# Cosine an earlier user turn must reach; None: the layer's threshold (layers.semantic.threshold).
USER_TURN_THRESHOLD: float | None = None

SHAPE = "conversation_shape"
SIMILARITY = "conversation_similarity"
DIFFERS = "conversation_differs"


def conversation_rule(guard_rule: str) -> str:
    """The refusal reason of a guard rule firing on an earlier turn (a bounded metric label)."""
    return f"conversation_{guard_rule}"


def _rules() -> tuple[str, ...]:
    from litellm_cache_plugin.semantic.guard import RULES

    return (SHAPE, DIFFERS, SIMILARITY, *(conversation_rule(rule) for rule in RULES))


CONVERSATION_RULES = _rules()


@dataclass(frozen=True)
class TurnRefusal:
    """Why a cached conversation may not answer: ``rule`` (one of :data:`CONVERSATION_RULES`, fit for
    a metric label), the earlier turn it fired on (0-based) and ``detail`` (prompt text: logs only)."""

    rule: str
    turn: int
    detail: str = ""


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
