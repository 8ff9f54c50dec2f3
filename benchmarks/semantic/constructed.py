"""The constructed set: intents with hand-written paraphrase templates, filled with slot values.

The intents are data (``data/constructed.json``); :func:`constructed_pairs` turns them into labelled
pairs deterministically. Traps swap one slot value (city, number, language, day...) or change the
meaning with the same slots (``variants``: negation, antonym, output format...); a share of the asked
prompts is lowercased, as people type. This is the set the guard was first written against, so it is
a *tuning* set: :func:`fold_of` splits it by intent for cross-validation.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from pathlib import Path

from litellm_cache_plugin.semantic.calibrate import Pair

__all__ = [
    "DATA",
    "FOLDS",
    "INTENTS",
    "TUNING_FOLDS",
    "Intent",
    "constructed_pairs",
    "fold_of",
    "load_intents",
]

DATA = Path(__file__).with_name("data") / "constructed.json"
FOLDS = 5
# Folds a person may look at pair by pair while changing the guard; the others are only scored.
TUNING_FOLDS = frozenset({0, 1, 2})


@dataclass(frozen=True)
class Intent:
    """One question with its paraphrases (``templates[0]`` is the cached wording)."""

    name: str
    templates: tuple[str, ...]
    slots: dict[str, tuple[str, ...]]
    # Same slots, another question: (category, template).
    variants: tuple[tuple[str, str], ...] = field(default=())


def load_intents(path: Path = DATA) -> tuple[Intent, ...]:
    raw = json.loads(path.read_text(encoding="utf-8"))
    return tuple(
        Intent(
            name=item["name"],
            templates=tuple(item["templates"]),
            slots={slot: tuple(values) for slot, values in item["slots"].items()},
            variants=tuple((v["category"], v["template"]) for v in item.get("variants", ())),
        )
        for item in raw["intents"]
    )


INTENTS: tuple[Intent, ...] = load_intents()

_FILLS = 3


def _hash(name: str) -> bytes:
    return hashlib.sha256(name.encode("utf-8")).digest()


def fold_of(intent: str, folds: int = FOLDS) -> int:
    """The cross-validation fold of an intent: intents ordered by a hash of their name (never by their
    content), then dealt round robin, so folds differ in size by one at most."""
    order = sorted((i.name for i in INTENTS), key=_hash)
    if intent not in order:
        raise KeyError(intent)
    return order.index(intent) % folds


def _near_repeat(text: str, rng: random.Random) -> str:
    """A near-identical retype: lower case and no final punctuation, a greeting, or a sign-off."""
    choice = rng.randrange(3)
    if choice == 0:
        return text.lower().rstrip("?.!")
    if choice == 1:
        return "Hi, " + text[0].lower() + text[1:]
    return text + " Thanks!"


def constructed_pairs(seed: int = 7) -> list[tuple[str, Pair]]:
    """``(intent name, pair)`` for every generated pair; the same seed gives the same list."""
    rng = random.Random(seed)
    out: list[tuple[str, Pair]] = []
    for intent in INTENTS:
        for fill in range(_FILLS):
            values = {
                slot: options[(fill * 2 + i) % len(options)]
                for i, (slot, options) in enumerate(intent.slots.items())
            }
            cached = intent.templates[0].format(**values)
            out.append((intent.name, Pair(cached, _near_repeat(cached, rng), True, "near_repeat")))
            for template in intent.templates[1:]:
                asked = template.format(**values)
                if rng.random() < 0.25:
                    asked = asked.lower()
                out.append((intent.name, Pair(cached, asked, True, "paraphrase")))
            for slot, options in intent.slots.items():
                other = rng.choice([v for v in options if v != values[slot]])
                asked = rng.choice(intent.templates).format(**{**values, slot: other})
                if rng.random() < 0.3:
                    asked = asked.lower()
                out.append((intent.name, Pair(cached, asked, False, f"swap_{slot}")))
            for category, template in intent.variants:
                out.append((intent.name, Pair(cached, template.format(**values), False, category)))
    return out
