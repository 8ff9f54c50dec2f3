"""What the guard compares of one prompt: :class:`PromptFeatures`, extracted once per prompt by
:func:`features` (linear in the prompt's length)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from litellm_cache_plugin.semantic.guard.forms import american_spelling, word_stem
from litellm_cache_plugin.semantic.guard.lexicon import (
    ACRONYM_SKIP,
    AMBIGUOUS_TIME,
    ARTICLE_NUMBERS,
    ARTICLE_WORDS,
    AXIS_OF,
    CARDINALS,
    DETERMINERS,
    FORMAT_WORDS,
    HOW_CLASS,
    LANGUAGE_WORDS,
    NEGATIONS,
    NOT_ENTITIES,
    NOT_STANDALONE_UNITS,
    NUMBER_WORDS,
    OBJECT_MARKERS,
    PERIOD_MARKERS,
    PERIOD_WORDS,
    PERSON,
    QUESTION_CLASS,
    ROLE_WORDS,
    SCOPE_PREPOSITIONS,
    STANDALONE_UNIT_MIN_LEN,
    STOPWORDS,
    SYNONYM_OF,
    TIME_UNITS,
    TIME_WORDS,
    UNITS,
)
from litellm_cache_plugin.semantic.guard.patterns import (
    ACRONYM,
    CLOCK,
    CODEISH,
    CURRENCY,
    DOTTED_ACRONYM,
    LIST_FORMAT,
    NEXT_WORD,
    NUMBER,
    NUMBER_UNIT,
    OPERATOR,
    QUOTED,
    SCRIPTS,
    SENTENCE_GAP,
    THOUSANDS,
    TOKEN,
    WORD_SPLIT,
    normalize,
)

__all__ = ["PromptFeatures", "features"]


@dataclass(frozen=True, slots=True)
class PromptFeatures:
    """What the guard compares; build with :func:`features` (once per prompt, then cache it)."""

    numbers: tuple[str, ...]
    times: frozenset[str]
    units: frozenset[str]
    entities: tuple[str, ...]
    quoted: frozenset[str]
    code: frozenset[str]
    negations: int
    axes: frozenset[tuple[int, int]]
    formats: frozenset[str]
    persons: frozenset[str]
    words: frozenset[str]
    # Content words (synonyms folded, stemmed) in order, and the surface word of each (for typos).
    content: tuple[str, ...]
    surface: tuple[str, ...]
    positions: tuple[int, ...]  # index of each content word among all words
    # Every word part in order, lower case (for the order rule).
    sequence: tuple[str, ...] = ()
    # The content words sorted (a reordering changes nothing), and the direction words' sides.
    bag: tuple[str, ...] = ()
    sides: tuple[tuple[str, frozenset[str], tuple[str, ...]], ...] = ()
    # Per content word: does it open a phrase after a restricting preposition ("in children")?
    after_preposition: tuple[bool, ...] = ()
    # Content words in an object position (after an article, a possessive or a preposition, or the
    # last one): what the question is about.
    objects: frozenset[str] = frozenset()
    # Arithmetic operators in order of appearance (signs of an equation).
    operators: tuple[str, ...] = ()
    # Acronyms the prompt spells out ("united states of america" -> us, usa, ...), for entity matching.
    initials: frozenset[str] = frozenset()
    # Has an article or a word that means "one" ("a cup" asks what "1 cup" asks).
    article: bool = False
    # Time units named without a period marker ("how many weeks"): compared only when both have some.
    time_units: frozenset[str] = frozenset()
    # The language the prompt is written in (a guess from function words and script), "en" by default.
    language: str = "en"
    # What a sentence-initial question word asks for: time (when, how soon), place (where), person
    # (who), reason (why, how come), quantity (how much/many/long...), manner (how do/can/to...);
    # "" for what/which/none.
    question: str = ""


def _ordinal(match: re.Match[str]) -> bool:
    """Is a number followed by "st" an ordinal ("the 1st", "21st") rather than stones ("11st")?"""
    suffix, digits = match.group(1).lower(), match.group(0)[: match.start(1) - match.start(0)]
    if suffix != "st" or not digits.isdigit():
        return False
    return digits.endswith("1") and not digits.endswith("11")


def features(text: str) -> PromptFeatures:
    """Extract the slots of one prompt (see the module docstring). Linear in the prompt's length."""
    text = normalize(text)
    quoted = frozenset(
        next(group for group in match.groups() if group is not None) for match in QUOTED.finditer(text)
    )
    numbers: list[str] = []
    units: set[str] = set()
    times: set[str] = set()
    clock_spans: list[tuple[int, int]] = []
    for match in CLOCK.finditer(text):
        times.add(f"{int(match.group(1))}:{match.group(2) or '00'}{match.group(3).lower()}")
        clock_spans.append(match.span())
    thousands: set[int] = set()  # where "300k" means 300,000
    for match in NUMBER.finditer(text):
        if not any(start <= match.start() < end for start, end in clock_spans):
            value = _number_value(match.group(1), match.group(2))
            if THOUSANDS.match(text, match.end()) and not match.group(3):
                thousands.add(match.start())
                value = _scaled(value, 1000)
            numbers.append(value)
    for match in NUMBER_UNIT.finditer(text):
        unit = UNITS.get(match.group(1).lower())
        if unit is not None and match.start() not in thousands and not _ordinal(match):
            units.add(unit)
    for symbol in CURRENCY.findall(text):
        units.add(UNITS[symbol])
    operators = _operators(text)

    entities: list[str] = []
    code: set[str] = set()
    words: set[str] = set()
    content: list[str] = []
    surface: list[str] = []
    negations = 0
    formats: set[str] = {"list"} if LIST_FORMAT.search(text) else set()
    persons: set[str] = set()
    axes: set[tuple[int, int]] = set()
    positions: list[int] = []
    cardinals: list[tuple[int, str]] = []  # (index in sequence, word) of cardinal number words
    objects: set[str] = set()
    time_units: set[str] = set()
    question = ""
    after_preposition: list[bool] = []
    preposition_open = False
    sequence: list[str] = []  # every word part, lower case, for the direction roles
    previous_end = 0
    previous_word = ""
    for index, match in enumerate(TOKEN.finditer(text)):
        at_start = index == 0 or bool(SENTENCE_GAP.search(text, previous_end, match.start()))
        previous_end = match.end()
        raw = match.group(0).rstrip(".:/")
        if not raw:
            continue
        lower = raw.lower()
        bare = lower[:-2] if lower.endswith("'s") else lower.rstrip("'")
        if DOTTED_ACRONYM.match(raw):  # U.S. = US, not code
            bare = lower.replace(".", "")
            if raw[0].isupper():
                entities.append(bare)
            words.add(bare)
            sequence.append(bare)
            continue
        parts = [part for part in WORD_SPLIT.split(bare) if part]
        words.add(bare)
        words.update(parts)
        if "-" in bare:
            words.add(bare.replace("-", ""))  # wi-fi = wifi, e-mail = email
        if CODEISH.search(raw) and not raw.replace("-", "").replace("'", "").isalpha():
            if not NUMBER.fullmatch(raw):
                code.add(raw)
            sequence.append(bare)
            continue
        if bare in FORMAT_WORDS:
            formats.add(FORMAT_WORDS[bare])
        if bare in PERSON:
            persons.add(PERSON[bare])
        if at_start and bare in QUESTION_CLASS and not question:
            question = QUESTION_CLASS[bare]
            if bare == "how":
                following = NEXT_WORD.match(text, match.end())
                question = HOW_CLASS.get(following.group(1).lower() if following else "", "manner")
        is_entity = (
            raw[0].isupper()
            and bare not in NOT_ENTITIES
            and (not at_start or bool(ACRONYM.match(raw)) or any(c.isupper() for c in raw[1:]))
        )
        for part in parts:
            sequence.append(part)
            # Slot words are compared slot by slot; as content words they would count twice.
            slot = False
            if part in NEGATIONS:
                negations += 1
            if part in NUMBER_WORDS:
                slot = True
                if part in CARDINALS:
                    cardinals.append((len(sequence) - 1, part))  # "twenty-five" is one number
                elif part not in ARTICLE_NUMBERS:  # "one banana" asks what "a banana" asks
                    numbers.append(_number_word_value(part))
            time = _time_word(part)
            if time is not None and (part not in AMBIGUOUS_TIME or raw[0].isupper()):
                times.add(time)
                slot = True
                is_entity = False  # compared as a time, with plural folding
            unit = UNITS.get(part)
            standalone = len(part) >= STANDALONE_UNIT_MIN_LEN and part not in NOT_STANDALONE_UNITS
            if unit is not None and standalone:
                slot = True
                # "How many hours" asks what "how long" asks; "per hour", "hourly" set a unit.
                if unit not in TIME_UNITS or part in PERIOD_WORDS or previous_word in PERIOD_MARKERS:
                    units.add(unit)
                else:
                    time_units.add(unit)
            if bare in FORMAT_WORDS or part in FORMAT_WORDS:
                slot = True
            axis = AXIS_OF.get(part) or AXIS_OF.get(word_stem(part))
            if axis is not None:
                axes.add(axis)
            canonical = SYNONYM_OF.get(part, part)
            stem = word_stem(american_spelling(canonical))
            canonical = SYNONYM_OF.get(stem, stem)
            if not slot and part not in STOPWORDS and canonical not in STOPWORDS and not part[0].isdigit():
                if content and content[-1] == canonical and positions[-1] == len(sequence) - 2:
                    pass  # "weather forecast" folds to "weather weather": one word, said twice
                else:
                    content.append(canonical)
                    surface.append(part)
                    positions.append(len(sequence) - 1)
                    after_preposition.append(preposition_open)
                    if len(sequence) >= 2 and sequence[-2] in OBJECT_MARKERS:
                        objects.add(canonical)
            if part in SCOPE_PREPOSITIONS:
                preposition_open = True
            elif part in DETERMINERS:
                preposition_open = preposition_open or previous_word == "to"
            else:
                preposition_open = False
            previous_word = part
        if bare in AXIS_OF:
            axes.add(AXIS_OF[bare])  # hyphenated poles: full-time / part-time
        if is_entity:
            entities.append(bare)
    numbers.extend(_cardinal_values(cardinals, sequence))
    return PromptFeatures(
        numbers=tuple(sorted(numbers)),
        times=frozenset(times),
        units=frozenset(units),
        entities=tuple(entities),
        quoted=quoted,
        code=frozenset(code),
        negations=negations,
        axes=frozenset(axes),
        formats=frozenset(formats),
        persons=frozenset(persons),
        words=frozenset(words),
        content=tuple(content),
        surface=tuple(surface),
        positions=tuple(positions),
        sequence=tuple(sequence),
        bag=tuple(sorted(content)),
        objects=frozenset(objects | set(content[-1:])),
        time_units=frozenset(time_units),
        question=question,
        language=_language(text, sequence),
        sides=_role_sides(sequence),
        after_preposition=tuple(after_preposition),
        operators=operators,
        initials=_initials(sequence),
        article=bool(words & ARTICLE_WORDS),
    )


def _number_value(raw: str, frac: str | None) -> str:
    value = raw.replace(",", "")
    if frac and frac.strip("0"):
        return f"{int(value)}.{frac.rstrip('0')}"
    return str(int(value))


def _scaled(value: str, factor: int) -> str:
    scaled = float(value) * factor
    return str(int(scaled)) if scaled.is_integer() else repr(scaled)


def _cardinal_values(cardinals: Sequence[tuple[int, str]], sequence: Sequence[str]) -> list[str]:
    """Runs of adjacent cardinal words (``and`` may join them) as one value each: twenty-five = 25,
    two hundred and fifty = 250, three thousand = 3000. A lone "one" is an article (left out)."""
    runs: list[list[str]] = []
    last = -2
    for index, word in cardinals:
        joined = index == last + 1 or (index == last + 2 and sequence[last + 1] == "and")
        if runs and joined:
            runs[-1].append(word)
        else:
            runs.append([word])
        last = index
    values: list[str] = []
    for run in runs:
        if run == ["one"]:
            continue
        total = current = 0.0
        for word in run:
            value = float(NUMBER_WORDS[word])
            if value == 100:
                current = max(current, 1.0) * 100
            elif value >= 1000:
                total += max(current, 1.0) * value
                current = 0.0
            else:
                current += value
        result = total + current
        values.append(str(int(result)) if result.is_integer() else repr(result))
    return values


def _number_word_value(word: str) -> str:
    value = NUMBER_WORDS[word]
    return str(int(value)) if float(value).is_integer() else repr(value)


def _time_word(word: str) -> str | None:
    if word in TIME_WORDS:
        return word
    if word.endswith("s") and word[:-1] in TIME_WORDS:
        return word[:-1]  # "on Sundays" asks about Sunday
    return None


def _language(text: str, sequence: Sequence[str]) -> str:
    """A guess of the prompt's language: a non-Latin script, else the language whose function words
    it uses most (at least two, and more than English ones); "en" otherwise."""
    if not text.isascii():
        letters = sum(c.isalpha() for c in text)
        for name, script in SCRIPTS:
            if letters and len(script.findall(text)) >= 0.3 * letters:
                return name
    words = set(sequence)
    counts = {name: len(words & marks) for name, marks in LANGUAGE_WORDS.items()}
    best = max((name for name in counts if name != "en"), key=lambda name: counts[name])
    return best if counts[best] >= 2 and counts[best] > counts["en"] else "en"


def _operators(text: str) -> tuple[str, ...]:
    """Arithmetic operators next to numbers or one-letter variables, in order. A ``-`` or ``/`` counts
    only with a digit on one side or spaces on both ("x - y", "3/4"; not "km/h" or "T-shirt")."""
    found: list[str] = []
    for match in OPERATOR.finditer(text):
        op = match.group(1)
        if op in "-/":
            start, end = match.start(1), match.end(1)
            before = text[start - 1] if start > 0 else ""
            after = text[end] if end < len(text) else ""
            spaced = before == " " and after == " "
            if not (spaced or before.isdigit() or after.isdigit()):
                continue
        found.append(op)
    return tuple(found)


def _initials(sequence: Sequence[str]) -> frozenset[str]:
    """The acronyms runs of 2 to 5 words spell ("united states of america": us, usa...); "of", "the",
    "and", "for" inside a run are skipped."""
    out: set[str] = set()
    for i, word in enumerate(sequence):
        if word in ACRONYM_SKIP or not word[:1].isalpha():
            continue
        letters = word[0]
        for follower in sequence[i + 1 : i + 8]:
            if follower in ACRONYM_SKIP:
                continue
            if not follower[:1].isalpha():
                break
            letters += follower[0]
            out.add(letters)
            if len(letters) == 5:
                break
    return frozenset(out)


def _role_sides(seq: Sequence[str]) -> tuple[tuple[str, frozenset[str], tuple[str, ...]], ...]:
    """Per direction word (from/to/into/than/instead of): (role, the words up to 5 before it, the
    first two words after it), stopwords and digits left out."""
    sides: list[tuple[str, frozenset[str], tuple[str, ...]]] = []
    for i, word in enumerate(seq):
        role = ROLE_WORDS.get(word)
        if role is None:
            continue
        before = frozenset(w for w in seq[max(0, i - 5) : i] if w not in STOPWORDS and not w.isdigit())
        after = tuple(w for w in seq[i + 1 : i + 5] if w not in STOPWORDS and not w.isdigit())[:2]
        if after:
            sides.append((role, before, after))
    return tuple(sides)
