"""The rules, in the order they are checked (:data:`RULES`), and the checks built on them
(:func:`check`, :func:`all_refusals`, :func:`near_miss`). A rule compares the features of two
prompts and returns a :class:`Refusal` or ``None``."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from litellm_cache_plugin.semantic.guard.forms import is_acronym
from litellm_cache_plugin.semantic.guard.lexicon import (
    ANTONYM_AXES,
    COMPATIBLE_QUESTIONS,
    IMPLICIT_TIMES,
    NEG_INITIALS,
    NEG_PREFIXES,
)
from litellm_cache_plugin.semantic.guard.prompt import PromptFeatures, features
from litellm_cache_plugin.semantic.guard.swap import swapped

__all__ = [
    "RULES",
    "Refusal",
    "all_refusals",
    "check",
    "explain",
    "explain_refusal",
    "near_miss",
]


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why the guard refuses a pair: the ``rule`` that fired and the tokens it compared.

    ``cached`` / ``asked``: the tokens of each prompt that differ (normalized: lower case, numbers
    as values, units and formats by their canonical name). ``rule`` is one of :data:`RULES` and is
    safe as a metric label; the tokens are prompt text: keep them out of labels and spans.
    """

    rule: str
    cached: tuple[str, ...] = ()
    asked: tuple[str, ...] = ()

    @property
    def detail(self) -> str:
        """``"cached 'lyon' / asked 'lille'"``: what differs, for logs and tools."""

        def side(tokens: tuple[str, ...]) -> str:
            return ", ".join(repr(t) for t in tokens) if tokens else "-"

        return f"cached {side(self.cached)} / asked {side(self.asked)}"


def _diff(
    a: frozenset[str] | tuple[str, ...], b: frozenset[str] | tuple[str, ...]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """What only ``a`` has and what only ``b`` has (multisets for tuples), sorted."""
    ca, cb = Counter(a), Counter(b)
    return tuple(sorted((ca - cb).elements())), tuple(sorted((cb - ca).elements()))


def _rule_number(a: PromptFeatures, b: PromptFeatures) -> Refusal | None:
    if a.numbers != b.numbers:
        only_a, only_b = _diff(a.numbers, b.numbers)
        # "1 cup" asks what "a cup" / "one cup" asks: a lone 1 against an article is no difference.
        ones_only = not (set(only_a) | set(only_b)) - {"1"} and not (only_a and only_b)
        if not (ones_only and (b.article if only_a else a.article)):
            return Refusal("number", only_a, only_b)
    if a.operators != b.operators:
        return Refusal("number", a.operators, b.operators)
    return None


def _rule_time(a: PromptFeatures, b: PromptFeatures) -> Refusal | None:
    if a.times == b.times:
        return None
    only_a, only_b = _diff(a.times, b.times)
    if not (only_a and only_b) and set(only_a + only_b) <= IMPLICIT_TIMES:
        return None  # "today" said on one side only: the present is what both ask about
    return Refusal("time", only_a, only_b)


def _rule_unit(a: PromptFeatures, b: PromptFeatures) -> Refusal | None:
    if a.units != b.units:
        return Refusal("unit", *_diff(a.units, b.units))
    # "How many hours" asks what "how long" asks, but not what "how many days" asks.
    if a.time_units and b.time_units and a.time_units != b.time_units:
        return Refusal("unit", *_diff(a.time_units, b.time_units))
    return None


def _rule_quoted(a: PromptFeatures, b: PromptFeatures) -> Refusal | None:
    return Refusal("quoted", *_diff(a.quoted, b.quoted)) if a.quoted != b.quoted else None


def _rule_code(a: PromptFeatures, b: PromptFeatures) -> Refusal | None:
    return Refusal("code", *_diff(a.code, b.code)) if a.code != b.code else None


def _rule_question(a: PromptFeatures, b: PromptFeatures) -> Refusal | None:
    """Both open with a question word and ask for different things: "How much stamp duty do buyers
    pay?" / "When do buyers pay stamp duty?". "What"/"which" ask for anything: never compared."""
    pair = frozenset({a.question, b.question})
    if a.question and b.question and len(pair) == 2 and pair not in COMPATIBLE_QUESTIONS:
        return Refusal("question", (a.question,), (b.question,))
    return None


def _rule_language(a: PromptFeatures, b: PromptFeatures) -> Refusal | None:
    return Refusal("language", (a.language,), (b.language,)) if a.language != b.language else None


def _rule_format(a: PromptFeatures, b: PromptFeatures) -> Refusal | None:
    return Refusal("format", *_diff(a.formats, b.formats)) if a.formats != b.formats else None


def _rule_entity(a: PromptFeatures, b: PromptFeatures) -> Refusal | None:
    only_a, only_b = _missing_entities(a, b), _missing_entities(b, a)
    return Refusal("entity", only_a, only_b) if only_a or only_b else None


def _rule_negation(a: PromptFeatures, b: PromptFeatures) -> Refusal | None:
    if a.negations != b.negations:
        return Refusal("negation", (f"{a.negations} negations",), (f"{b.negations} negations",))
    twin = _prefix_negated(a, b)
    if twin is not None:
        return Refusal("negation", (twin[0],), (twin[1],))
    twin = _prefix_negated(b, a)
    if twin is not None:
        return Refusal("negation", (twin[1],), (twin[0],))
    return None


def _rule_antonym(a: PromptFeatures, b: PromptFeatures) -> Refusal | None:
    found = _axes_differ(a, b)
    if found is None:
        return None
    axis, poles_a, poles_b = found
    poles = ANTONYM_AXES[axis]
    return Refusal(
        "antonym",
        tuple(poles[p].split()[0] for p in sorted(poles_a)),
        tuple(poles[p].split()[0] for p in sorted(poles_b)),
    )


def _rule_person(a: PromptFeatures, b: PromptFeatures) -> Refusal | None:
    # Only "me" vs "someone else"; "you" is too often the business being asked ("are you open?").
    persons_a, persons_b = a.persons - {"2"}, b.persons - {"2"}
    if persons_a and persons_b and persons_a != persons_b:
        names = {"1": "first person", "3": "third person"}
        return Refusal(
            "person", tuple(names[p] for p in sorted(persons_a)), tuple(names[p] for p in sorted(persons_b))
        )
    return None


def _rule_order(a: PromptFeatures, b: PromptFeatures) -> Refusal | None:
    found = _order_differs(a, b)
    if found is None:
        return None
    role, word_a, word_b = found
    return Refusal("order", (f"{role} {word_a}",), (f"{role} {word_b}",))


def _rule_swap(a: PromptFeatures, b: PromptFeatures) -> Refusal | None:
    blocks = swapped(a, b)
    if blocks is None:
        return None
    return Refusal(
        "swap",
        tuple(" ".join(removed) for removed, _, _ in blocks if removed),
        tuple(" ".join(added) for _, added, _ in blocks if added),
    )


_Rule = Callable[[PromptFeatures, PromptFeatures], "Refusal | None"]

# In the order they are checked; the first that fires is the reason.
_RULES: tuple[tuple[str, _Rule], ...] = (
    ("number", _rule_number),
    ("time", _rule_time),
    ("unit", _rule_unit),
    ("quoted", _rule_quoted),
    ("code", _rule_code),
    ("language", _rule_language),
    ("format", _rule_format),
    ("entity", _rule_entity),
    ("negation", _rule_negation),
    ("antonym", _rule_antonym),
    ("person", _rule_person),
    ("order", _rule_order),
    ("question", _rule_question),
    ("swap", _rule_swap),
)
RULES: tuple[str, ...] = tuple(name for name, _ in _RULES)


def check(a: PromptFeatures, b: PromptFeatures, *, swap_rule: bool = True) -> Refusal | None:
    """The first rule on which ``a`` (cached) and ``b`` (asked) differ, with its tokens, or ``None``."""
    for name, rule in _RULES:
        if name == "swap" and not swap_rule:
            continue
        refusal = rule(a, b)
        if refusal is not None:
            return refusal
    return None


def all_refusals(a: PromptFeatures, b: PromptFeatures, *, swap_rule: bool = True) -> tuple[Refusal, ...]:
    """Every rule that fires on the pair, in rule order (for benchmarks: what each rule protects)."""
    found = (rule(a, b) for name, rule in _RULES if swap_rule or name != "swap")
    return tuple(refusal for refusal in found if refusal is not None)


def near_miss(a: PromptFeatures, b: PromptFeatures, *, swap_rule: bool = True) -> str | None:
    """The first slot on which ``a`` and ``b`` differ (the rule of :func:`check`), or ``None``."""
    refusal = check(a, b, swap_rule=swap_rule)
    return None if refusal is None else refusal.rule


def explain(a: str, b: str) -> str | None:
    """Convenience for tools and tests: :func:`near_miss` on two raw prompts."""
    return near_miss(features(a), features(b))


def explain_refusal(a: str, b: str) -> Refusal | None:
    """:func:`check` on two raw prompts: the rule and the differing tokens, or ``None``."""
    return check(features(a), features(b))


def _missing_entities(a: PromptFeatures, b: PromptFeatures) -> tuple[str, ...]:
    """Entities of ``a`` that do not appear as a word in ``b``, whatever its case there. An acronym
    matches the words it stands for (US / United States), hyphens do not count (Wi-Fi / wifi)."""
    if all(e in b.words for e in a.entities):
        return ()
    b_acronyms = [x for x in b.entities if is_acronym(x) and x in a.initials]
    missing: list[str] = []
    for e in a.entities:
        if e in b.words or e.replace("-", "") in b.words:
            continue
        if is_acronym(e) and e in b.initials:
            continue  # US ... "the united states"
        if any(e[0] in x for x in b_acronyms):
            continue  # United States ... US
        missing.append(e)
    return tuple(dict.fromkeys(missing))


def _prefix_negated(a: PromptFeatures, b: PromptFeatures) -> tuple[str, str] | None:
    """A word of ``b`` is a word of ``a`` with a negating prefix: safe/unsafe, members/non-members.
    Returns (the word of ``a``, the prefixed word of ``b``)."""
    found: list[tuple[str, str]] = []
    for word in b.words - a.words:
        if len(word) < 6 or word[0] not in NEG_INITIALS:
            continue
        for prefix in NEG_PREFIXES:
            if word.startswith(prefix) and len(word) - len(prefix) >= 4 and word[len(prefix) :] in a.words:
                found.append((word[len(prefix) :], word))
    return min(found) if found else None


def _axes_differ(a: PromptFeatures, b: PromptFeatures) -> tuple[int, frozenset[int], frozenset[int]] | None:
    """The first axis both prompts use with different poles: (axis, poles of ``a``, poles of ``b``)."""
    if a.axes == b.axes or not a.axes or not b.axes:
        return None
    axes_a = {axis for axis, _ in a.axes}
    axes_b = {axis for axis, _ in b.axes}
    for axis in sorted(axes_a & axes_b):
        poles_a = frozenset(pole for ax, pole in a.axes if ax == axis)
        poles_b = frozenset(pole for ax, pole in b.axes if ax == axis)
        if poles_a != poles_b:
            return axis, poles_a, poles_b
    return None


def _order_differs(a: PromptFeatures, b: PromptFeatures) -> tuple[str, str, str] | None:
    """The same words on the other sides of a direction word: from savings to current / from current
    to savings, km to miles / miles to km, X instead of Y / Y instead of X. Returns (role, what
    follows it in ``a``, in ``b``). "How far is X from Y" / "the distance from X to Y" is no swap."""
    for role, before_a, after_a in a.sides:
        for role_b, before_b, after_b in b.sides:
            if role_b != role or after_a == after_b:
                continue
            only_a, only_b = set(after_a) - set(after_b), set(after_b) - set(after_a)
            if only_a and only_b and only_a <= before_b and only_b <= before_a:
                return role, " ".join(after_a), " ".join(after_b)
    return None
