"""Forms of one word: a crude stem, British spellings folded to American ones, typos, variants
(differ/difference) and acronym shapes. Pure string functions, used by the features and the rules."""

from __future__ import annotations

import re

__all__ = ["american_spelling", "is_acronym", "is_typo", "is_variant", "word_stem"]


def word_stem(word: str) -> str:
    """A crude stemmer: enough to equate ``refund``/``refunds``/``refunded`` and ``park``/``parking``."""
    for suffix in ("ings", "ing", "ied", "ies", "ed", "es", "s", "ly"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            base = word[: -len(suffix)]
            if suffix in ("ied", "ies"):
                return base + "y"
            if suffix in ("ing", "ed") and len(base) >= 4 and base[-1] == base[-2]:
                return base[:-1]  # stopped -> stop, planning -> plan
            return base
    if word.endswith("e") and len(word) >= 5:
        return word[:-1]  # increase/increased/increasing -> increas
    return word


_SPELLING_ENDINGS = (
    # (British ending, American ending, shortest word it applies to)
    ("ours", "ors", 7), ("oured", "ored", 8), ("ouring", "oring", 9), ("our", "or", 6),  # colour
    ("ourite", "orite", 9), ("ourites", "orites", 10),  # favourite
    ("tres", "ters", 6), ("tre", "ter", 5), ("bres", "bers", 6), ("bre", "ber", 5),  # centre, fibre
    ("yres", "ires", 5), ("yre", "ire", 4),  # tyre
    ("isation", "ization", 9), ("isations", "izations", 10), ("ised", "ized", 7),
    ("ising", "izing", 8), ("ises", "izes", 7), ("ise", "ize", 6),  # organise
    ("ogues", "ogs", 8), ("ogue", "og", 7),  # catalogue
    ("elled", "eled", 7), ("elling", "eling", 8), ("eller", "eler", 7), ("ellers", "elers", 8),
)  # fmt: skip


_SPELLING_END = re.compile(
    "(?:" + "|".join(sorted((e for e, _, _ in _SPELLING_ENDINGS), key=len, reverse=True)) + ")$"
)
_SPELLING_OF = {british: (american, shortest) for british, american, shortest in _SPELLING_ENDINGS}


def american_spelling(word: str) -> str:
    """British spellings folded to American ones (both prompts get the same folding, so a rare wrong
    folding costs nothing)."""
    match = _SPELLING_END.search(word) if len(word) >= 4 else None
    if match is None:
        return word
    american, shortest = _SPELLING_OF[match.group()]
    return word[: match.start()] + american if len(word) >= shortest else word


def is_variant(x: str, y: str) -> bool:
    """A typo, or another form of one word (differ/difference, install/installation)."""
    if is_typo(x, y):
        return True
    shorter = min(len(x), len(y))
    common = 0
    while common < shorter and x[common] == y[common]:
        common += 1
    return common >= 5 and common >= 0.8 * shorter


def _edit_distance_at_most(x: str, y: str, limit: int) -> bool:
    """Damerau-Levenshtein (optimal string alignment) distance of ``x`` and ``y`` is <= ``limit``."""
    if abs(len(x) - len(y)) > limit:
        return False
    previous2: list[int] = []
    previous = list(range(len(y) + 1))
    for i in range(1, len(x) + 1):
        current = [i] + [0] * len(y)
        for j in range(1, len(y) + 1):
            cost = 0 if x[i - 1] == y[j - 1] else 1
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and x[i - 1] == y[j - 2] and x[i - 2] == y[j - 1]:
                current[j] = min(current[j], previous2[j - 2] + 1)
        if min(current) > limit:
            return False
        previous2, previous = previous, current
    return previous[-1] <= limit


def is_typo(x: str, y: str) -> bool:
    """Could ``y`` be ``x`` mistyped? Short words are too easily another word (mild/wild, lock/lick)."""
    shorter, longer = sorted((x, y), key=len)
    if len(shorter) >= 4 and len(longer) == len(shorter) + 1:
        # A doubled letter typed once: aply/apply, acess/access.
        for i in range(1, len(longer)):
            if longer[i] == longer[i - 1] and longer[:i] + longer[i + 1 :] == shorter:
                return True
    if len(shorter) >= 9:
        return _edit_distance_at_most(x, y, 2)
    if len(shorter) >= 6:
        return _edit_distance_at_most(x, y, 1)
    if len(shorter) >= 4 and len(x) == len(y):
        # Only two neighbours swapped (chlid/child).
        diffs = [i for i in range(len(x)) if x[i] != y[i]]
        return len(diffs) == 2 and diffs[1] == diffs[0] + 1 and x[diffs[0]] == y[diffs[1]]
    return False


def is_acronym(word: str) -> bool:
    return 2 <= len(word) <= 5 and word.isalpha()
