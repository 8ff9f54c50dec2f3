"""The ``swap`` rule's comparison: the same sentence with a run of content words replaced, added as a
modifier, or added/dropped as a restricting phrase (see the package docstring)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from difflib import SequenceMatcher

from litellm_cache_plugin.semantic.guard.forms import is_acronym, is_variant
from litellm_cache_plugin.semantic.guard.lexicon import ACRONYM_SKIP
from litellm_cache_plugin.semantic.guard.prompt import PromptFeatures

__all__ = ["SWAP_MIN_FRAME", "Block", "swapped"]

# How much of the wording two prompts share (difflib ratio over all their words) for the swap rule
# to apply. A near-miss keeps the sentence and changes a slot ("...to my PC?" / "...to my Mac?":
# 0.8-0.95); a paraphrase rewords it ("How do I rename a local git branch?" / "How can I change the
# name of a local branch in git?": 0.25-0.6). Measured on the tuning sets (benchmarks/semantic).
SWAP_MIN_FRAME = 0.6


# (surface words removed, surface words added, opens a restricting phrase)
Block = tuple[tuple[str, ...], tuple[str, ...], bool]


def swapped(a: PromptFeatures, b: PromptFeatures) -> list[Block] | None:
    """The same sentence with one short run of content words replaced, added or removed: the changed
    runs, or ``None``."""
    if a.bag == b.bag:
        return None  # reordered, not changed
    if _frame_below(a, b, SWAP_MIN_FRAME):
        # Worded otherwise as a whole: the embedding judged the rewording, and a changed verb there
        # is far more often a synonym than a swapped slot. What the question is about must still be
        # the same: an object word of each prompt missing from the other is another question
        # ("tips for remote work" / "share tips on better sleep").
        only_a, only_b = _missing_objects(a, b), _missing_objects(b, a)
        return [(only_a, only_b, False)] if only_a and only_b else None
    blocks, shared = _changed_blocks(a, b)
    if not blocks:
        return None
    sizes = [(len(removed), len(added)) for removed, added, _ in blocks]
    changed = sum(removed + added for removed, added in sizes)
    enough = min(2, len(a.content), len(b.content))  # all of a short prompt is enough
    if shared >= enough and any(restricting and max(len(r), len(d)) <= 3 for r, d, restricting in blocks):
        return blocks  # a phrase that narrows the question ("in children") was added or dropped
    # Rewordings change many words in several places; they are left to the similarity threshold and
    # the slot checks.
    if len(blocks) == 1 and ((shared >= 2 and max(sizes[0]) <= 3) or (shared >= 1 and max(sizes[0]) <= 2)):
        return blocks
    return blocks if shared >= 2 and changed <= max(2, shared // 2) else None


def _missing_objects(a: PromptFeatures, b: PromptFeatures) -> tuple[str, ...]:
    """Object words of ``a`` that ``b`` does not have in any form."""
    return tuple(
        sorted(w for w in a.objects if w not in b.bag and not any(is_variant(w, other) for other in b.bag))
    )


def _frame_below(a: PromptFeatures, b: PromptFeatures, bound: float) -> bool:
    """Is the share of words the two prompts have in common (difflib ratio) below ``bound``? The
    cheap upper bounds answer most pairs."""
    matcher = SequenceMatcher(None, a.sequence, b.sequence, autojunk=False)
    return matcher.real_quick_ratio() < bound or matcher.quick_ratio() < bound or matcher.ratio() < bound


def _changed_blocks(a: PromptFeatures, b: PromptFeatures) -> tuple[list[Block], int]:
    """The changed runs of content words as (surface words removed, surface words added), and how
    many content words are shared. Typos count as the same word."""
    matcher = SequenceMatcher(None, a.content, b.content, autojunk=False)
    blocks: list[Block] = []
    shared = 0
    opcodes = matcher.get_opcodes()
    # Words both prompts have beyond the aligned ones: moved, not changed.
    moved_a: Counter[str] = Counter()
    unaligned = {a.content[i] for tag, i1, i2, _, _ in opcodes if tag != "equal" for i in range(i1, i2)}
    if unaligned & set(b.bag):
        aligned: Counter[str] = Counter()
        for tag, i1, i2, _, _ in opcodes:
            if tag == "equal":
                aligned.update(a.content[i1:i2])
        moved_a = (Counter(a.bag) & Counter(b.bag)) - aligned
    moved_b = Counter(moved_a)
    for tag, i1, i2, j1, j2 in opcodes:
        if tag == "equal":
            shared += i2 - i1
            continue
        removed = list(range(i1, i2))
        added = list(range(j1, j2))
        # A word said elsewhere in the other prompt moved, it did not change ("when can Europe next
        # see..." / "... visible in Europe").
        kept = _unmoved(removed, a.content, moved_a)
        shared += len(removed) - len(kept)
        removed, added = kept, _unmoved(added, b.content, moved_b)
        for i in list(removed):
            j = next((j for j in added if is_variant(a.surface[i], b.surface[j])), None)
            if j is None:
                j = next((j for j in added if is_variant(a.content[i], b.content[j])), None)
            if j is not None:
                removed.remove(i)
                added.remove(j)
                shared += 1
        words_removed = tuple(a.surface[i] for i in removed)
        words_added = tuple(b.surface[j] for j in added)
        if _same_phrase(words_removed, words_added, a, b):
            shared += len(removed) or len(added)
            continue
        if removed and added:
            blocks.append((words_removed, words_added, False))
        elif removed and (any(_restricts(a, i) for i in removed) or _modifies(a, removed[-1])):
            blocks.append((words_removed, (), any(_restricts(a, i) for i in removed)))
        elif added and (any(_restricts(b, j) for j in added) or _modifies(b, added[-1])):
            blocks.append(((), words_added, any(_restricts(b, j) for j in added)))
    return blocks, shared


def _spelled(words: Sequence[str]) -> str:
    return "".join(w[0] for w in words if w and w not in ACRONYM_SKIP)


def _same_phrase(removed: Sequence[str], added: Sequence[str], a: PromptFeatures, b: PromptFeatures) -> bool:
    """The same thing written otherwise: "wi fi" / "wifi", "uk" / "united kingdom", or an acronym the
    other prompt has outside its content words ("the US" / "the united states")."""
    if removed and added and "".join(removed) == "".join(added):
        return True
    for one, other in ((removed, added), (added, removed)):
        if len(one) == 1 and len(other) >= 2 and is_acronym(one[0]) and _spelled(other) == one[0]:
            return True
    if not removed and len(added) >= 2 and _spelled(added) in a.entities:
        return True
    return not added and len(removed) >= 2 and _spelled(removed) in b.entities


def _unmoved(indices: list[int], words: Sequence[str], moved: Counter[str]) -> list[int]:
    """``indices`` without the words that only moved (each moved occurrence is used once)."""
    kept: list[int] = []
    for i in indices:
        if moved[words[i]] > 0:
            moved[words[i]] -= 1
        else:
            kept.append(i)
    return kept


def _restricts(prompt: PromptFeatures, index: int) -> bool:
    """Does content word ``index`` open a phrase after a restricting preposition ("... in children",
    "... at high altitude", "... without the header")? Such an added phrase narrows the question."""
    return index < len(prompt.after_preposition) and prompt.after_preposition[index]


def _modifies(prompt: PromptFeatures, index: int) -> bool:
    """Is content word ``index`` right before another content word (a modifier: "extended warranty",
    "online tax return")? Added words elsewhere ("which city is...", "...to read") rarely narrow the
    question; added modifiers do, so only they count as a change."""
    return index + 1 < len(prompt.positions) and prompt.positions[index + 1] == prompt.positions[index] + 1
