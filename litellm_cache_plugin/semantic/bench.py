"""Quality and latency benchmark of the semantic layer (offline, about a minute on 2 cores).

    python -m litellm_cache_plugin.semantic.bench [--quick] [--json] [--sizes 1000,10000,100000]

Two labelled sets of prompt pairs (``a`` cached, ``b`` asked; served = the layer would answer ``b``
with ``a``'s answer):

1. **fow-cache** question pairs (PyPI package ``fow-cache`` 0.1.0, 600 pairs: near repeats and
   paraphrases that should be served; negation, entity swap, number/date and scope traps that must
   not). Data (c) 2026 Mabon ap Gwyn, licensed CC BY 4.0
   (https://creativecommons.org/licenses/by/4.0/); used unmodified, read from the installed package.
   Its README notes the labels were written by language models and are provisional.
2. **constructed** here by a deterministic generator (:func:`constructed_pairs`): intents with
   hand-written paraphrase templates, filled with slot values; traps swap one slot value (city,
   number, language, day...) or change the meaning with the same slots (negation, antonym, output
   format); a share of the asked prompts is lowercased, as people type.

Unrelated prompts: for each intent of the constructed set, every asked prompt of that intent is
looked up in one scope holding the cached prompts of all *other* intents, through the real
:class:`~litellm_cache_plugin.semantic.layer.SemanticIndex` (any hit is wrong).

Compared: the layer with its default settings (threshold + guard) and a plain cosine threshold at
0.80/0.90/0.95 without guard. Rates come with Wilson 95% intervals.

Latency: one scope filled with 1k/10k/100k synthetic unit vectors, lookups of real prompts (the
query embedding is computed, never cached), p50/p99 of the whole ``lookup`` call.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from litellm_cache_plugin.semantic.calibrate import (
    Outcome,
    Pair,
    guard_verdicts,
    pair_similarities,
    served,
    sweep,
    wilson,
)

FOW_CITATION = (
    "fow-cache 0.1.0 question pairs, (c) 2026 Mabon ap Gwyn, CC BY 4.0 "
    "(https://creativecommons.org/licenses/by/4.0/), unmodified"
)
BASELINES = (0.80, 0.90, 0.95)

# --- the constructed set --------------------------------------------------------------------------


@dataclass(frozen=True)
class Intent:
    """One question with its paraphrases (``templates[0]`` is the cached wording)."""

    name: str
    templates: tuple[str, ...]
    slots: dict[str, tuple[str, ...]]
    # Same slots, another question: (category, template).
    variants: tuple[tuple[str, str], ...] = field(default=())


_CITIES = ("Paris", "Lyon", "Lille", "Berlin", "Munich", "Madrid", "Seville", "Rome", "Milan", "Boston")
_COUNTRIES = ("France", "Germany", "Spain", "Italy", "Portugal", "Canada", "Japan", "Kenya", "Peru")
_LANGS = ("French", "German", "Spanish", "Italian", "Japanese", "Dutch")
_CODE = ("Python", "JavaScript", "Rust", "Go", "Java", "Ruby")
_BOOKS = ("Pride and Prejudice", "Moby Dick", "Dracula", "Frankenstein", "Jane Eyre", "Middlemarch")
_PEOPLE = ("Marie Curie", "Isaac Newton", "Ada Lovelace", "Charles Darwin", "Nikola Tesla", "Alan Turing")
_APPS = ("Slack", "Chrome", "Outlook", "Spotify", "WhatsApp", "Notion")
_SERVICES = ("Netflix", "Spotify", "Disney+", "Audible", "Dropbox")
_FOODS = ("banana", "apple", "avocado", "boiled egg", "bagel", "croissant")
_DAYS = ("Monday", "Tuesday", "Friday", "Saturday", "Sunday")
_NUMBERS = ("three", "five", "seven", "ten")
_DRUGS = ("ibuprofen", "paracetamol", "aspirin", "amoxicillin", "cetirizine")
_TOPICS = ("public speaking", "remote work", "saving money", "learning to cook", "better sleep")
_CONCEPTS = ("photosynthesis", "inflation", "gravity", "blockchain", "vaccines")
_GENRES = ("science fiction", "crime", "fantasy", "horror", "romance")

INTENTS: tuple[Intent, ...] = (
    Intent(
        "distance",
        (
            "How far is {a} from {b}?",
            "What's the distance between {a} and {b}?",
            "How far apart are {a} and {b}?",
            "What is the distance from {a} to {b}?",
        ),
        {"a": _CITIES[:5], "b": _CITIES[5:]},
    ),
    Intent(
        "capital",
        (
            "What is the capital of {c}?",
            "Which city is the capital of {c}?",
            "What's the capital city of {c}?",
            "Tell me the capital of {c}.",
        ),
        {"c": _COUNTRIES},
    ),
    Intent(
        "translate",
        (
            "How do you say 'good morning' in {lang}?",
            "What is 'good morning' in {lang}?",
            "How would I say 'good morning' in {lang}?",
            "Translate 'good morning' into {lang}.",
        ),
        {"lang": _LANGS},
        (("format", "How do you write 'good morning' in {lang} in the phonetic alphabet?"),),
    ),
    Intent(
        "tips",
        (
            "Give me {n} tips for {topic}.",
            "What are {n} good tips for {topic}?",
            "Can you share {n} tips on {topic}?",
            "I need {n} tips for {topic}.",
        ),
        {"n": _NUMBERS, "topic": _TOPICS},
        (("format", "Give me {n} tips for {topic} as a table."),),
    ),
    Intent(
        "convert",
        (
            "Convert {n} kilometres to miles.",
            "How many miles is {n} kilometres?",
            "What is {n} km in miles?",
            "{n} kilometres in miles?",
        ),
        {"n": ("5", "10", "21", "42", "100")},
        (("order", "Convert {n} miles to kilometres."),),
    ),
    Intent(
        "weather",
        (
            "What's the weather forecast for {city} on {day}?",
            "What will the weather be like in {city} on {day}?",
            "What's the forecast in {city} for {day}?",
            "How will the weather be in {city} on {day}?",
        ),
        {"city": _CITIES, "day": _DAYS},
    ),
    Intent(
        "reverse",
        (
            "How do I reverse a string in {code}?",
            "What's the way to reverse a string in {code}?",
            "How can I reverse a string using {code}?",
            "Reversing a string in {code}: how do I do it?",
        ),
        {"code": _CODE},
        (
            ("swap_object", "How do I reverse a list in {code}?"),
            ("format", "How do I reverse a string in {code}? Answer in JSON."),
        ),
    ),
    Intent(
        "population",
        (
            "What is the population of {city}?",
            "How many people live in {city}?",
            "What's the population of {city} today?",
            "How many inhabitants does {city} have?",
        ),
        {"city": _CITIES},
    ),
    Intent(
        "author",
        (
            "Who wrote {book}?",
            "Who is the author of {book}?",
            "Who's the author of {book}?",
            "{book} was written by whom?",
        ),
        {"book": _BOOKS},
    ),
    Intent(
        "born",
        (
            "When was {person} born?",
            "What is the birth date of {person}?",
            "What's the date of birth of {person}?",
            "On what date was {person} born?",
        ),
        {"person": _PEOPLE},
        (("antonym", "When did {person} die?"),),
    ),
    Intent(
        "calories",
        (
            "How many calories are in a {food}?",
            "How many calories does a {food} have?",
            "What's the calorie count of a {food}?",
            "How many calories in one {food}?",
        ),
        {"food": _FOODS},
        (("number", "How many calories are in three {food}s?"),),
    ),
    Intent(
        "cancel",
        (
            "How do I cancel my {svc} subscription?",
            "How can I cancel my {svc} subscription?",
            "What's the way to cancel a {svc} subscription?",
            "I want to cancel my {svc} subscription. How do I do that?",
        ),
        {"svc": _SERVICES},
        (
            ("antonym", "How do I pause my {svc} subscription?"),
            ("negation", "Why can't I cancel my {svc} subscription?"),
        ),
    ),
    Intent(
        "darkmode",
        (
            "How do I enable dark mode in {app}?",
            "How can I enable dark mode in {app}?",
            "How do I switch on dark mode in {app}?",
            "What's the way to enable dark mode in {app}?",
        ),
        {"app": _APPS},
        (("antonym", "How do I disable dark mode in {app}?"),),
    ),
    Intent(
        "sideeffects",
        (
            "What are the side effects of {drug}?",
            "What side effects does {drug} have?",
            "What are common side effects of {drug}?",
            "Which side effects can {drug} cause?",
        ),
        {"drug": _DRUGS},
        (
            ("scope", "What are the side effects of {drug} in children?"),
            ("antonym", "What are the benefits of {drug}?"),
        ),
    ),
    Intent(
        "eli5",
        (
            "Explain {concept} to a five-year-old.",
            "Explain {concept} like I'm five.",
            "Explain {concept} so a five year old would understand.",
            "Can you explain {concept} to a 5-year-old?",
        ),
        {"concept": _CONCEPTS},
        (("scope", "Explain {concept} to a university student."),),
    ),
    Intent(
        "sort",
        (
            "How do I sort a list in descending order in {code}?",
            "How can I sort a list in descending order in {code}?",
            "How do I sort a {code} list in descending order?",
            "Sorting a list in descending order in {code}: how?",
        ),
        {"code": _CODE},
        (("antonym", "How do I sort a list in ascending order in {code}?"),),
    ),
    Intent(
        "table",
        (
            "Book a table for {n} people on {day}.",
            "Reserve a table for {n} people on {day}.",
            "I'd like to book a table for {n} on {day}.",
            "Can I book a table for {n} people on {day}?",
        ),
        {"n": _NUMBERS, "day": _DAYS},
    ),
    Intent(
        "difference",
        (
            "What's the difference between {x} and {y}?",
            "How does {x} differ from {y}?",
            "What is the difference between {x} and {y}?",
            "Explain the difference between {x} and {y}.",
        ),
        {
            "x": ("a virus", "weather", "a crocodile", "baking soda"),
            "y": ("bacteria", "climate", "an alligator", "baking powder"),
        },
    ),
    Intent(
        "recommend",
        (
            "Recommend a good {genre} book.",
            "Can you recommend a good {genre} book?",
            "Suggest a good {genre} book to read.",
            "What's a good {genre} book to read?",
        ),
        {"genre": _GENRES},
        (("swap_object", "Recommend a good {genre} film."),),
    ),
    Intent(
        "flight",
        (
            "How long is the flight from {a} to {b}?",
            "How long does it take to fly from {a} to {b}?",
            "What's the flight time from {a} to {b}?",
            "How many hours is the flight from {a} to {b}?",
        ),
        {"a": _CITIES[:5], "b": _CITIES[5:]},
        (("swap_object", "How long is the train from {a} to {b}?"),),
    ),
    Intent(
        "sqrt",
        (
            "What is the square root of {n}?",
            "What's the square root of {n}?",
            "Calculate the square root of {n}.",
            "Square root of {n}?",
        ),
        {"n": ("144", "169", "2", "50", "1000")},
        (("swap_object", "What is the cube root of {n}?"),),
    ),
    Intent(
        "iron",
        (
            "Which foods are high in {nutrient}?",
            "What foods are high in {nutrient}?",
            "Which foods contain a lot of {nutrient}?",
            "What are some foods rich in {nutrient}?",
        ),
        {"nutrient": ("iron", "protein", "fibre", "vitamin C", "calcium")},
        (("antonym", "Which foods are low in {nutrient}?"), ("negation", "Which foods have no {nutrient}?")),
    ),
    Intent(
        "raw",
        (
            "Is it safe to eat raw {item}?",
            "Can I safely eat raw {item}?",
            "Is raw {item} safe to eat?",
            "Is eating raw {item} safe?",
        ),
        {"item": ("eggs", "chicken", "salmon", "flour", "oysters")},
        (("negation", "Why is it not safe to eat raw {item}?"),),
    ),
    Intent(
        "hours",
        (
            "What time does the {place} open on {day}?",
            "When does the {place} open on {day}?",
            "What are the {place}'s opening hours on {day}?",
            "At what time does the {place} open on {day}?",
        ),
        {"place": ("library", "pharmacy", "post office", "museum", "gym"), "day": _DAYS},
        (("antonym", "What time does the {place} close on {day}?"),),
    ),
    Intent(
        "rate",
        (
            "What's the exchange rate from {c1} to {c2}?",
            "What is the {c1} to {c2} exchange rate?",
            "How much is one {c1} in {c2}?",
            "What's the current exchange rate between {c1} and {c2}?",
        ),
        {"c1": ("euro", "dollar", "pound"), "c2": ("yen", "rupee", "peso")},
    ),
    Intent(
        "summary",
        (
            "Summarize the plot of {book} in {n} sentences.",
            "Give me a summary of the plot of {book} in {n} sentences.",
            "Summarise {book}'s plot in {n} sentences.",
            "In {n} sentences, summarize the plot of {book}.",
        ),
        {"book": _BOOKS, "n": _NUMBERS},
        (("format", "Summarize the plot of {book} as a poem."),),
    ),
    Intent(
        "password",
        (
            "How do I reset my {app} password?",
            "How can I reset my {app} password?",
            "I forgot my {app} password, how do I reset it?",
            "What's the way to reset a {app} password?",
        ),
        {"app": _APPS},
        (("antonym", "How do I change my {app} username?"),),
    ),
    Intent(
        "leap",
        (
            "Is {year} a leap year?",
            "Is the year {year} a leap year?",
            "Will {year} be a leap year?",
            "Does {year} count as a leap year?",
        ),
        {"year": ("2024", "2025", "2028", "2100", "2000")},
    ),
    Intent(
        "boil",
        (
            "How long should I boil an egg for a {yolk} yolk?",
            "How long do I boil an egg to get a {yolk} yolk?",
            "For a {yolk} yolk, how long should an egg boil?",
            "How many minutes to boil an egg for a {yolk} yolk?",
        ),
        {"yolk": ("runny", "soft", "firm", "jammy")},
    ),
    Intent(
        "visa",
        (
            "Do I need a visa to visit {c} from {d}?",
            "Do {d} citizens need a visa to visit {c}?",
            "Is a visa required to travel from {d} to {c}?",
            "Do I need a visa for {c} if I'm from {d}?",
        ),
        {"c": _COUNTRIES[:4], "d": _COUNTRIES[4:]},
        (("scope", "Do I need a work visa to work in {c} from {d}?"),),
    ),
)

_FILLS = 3


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


def fow_pairs() -> list[Pair]:
    """The fow-cache question pairs (``a`` cached, ``b`` asked), or [] when the package is missing."""
    try:
        from fow_cache.data import load_questions
    except ImportError:
        return []
    return [Pair(q["a"], q["b"], bool(q["same_answer"]), str(q["category"])) for q in load_questions()]


# --- evaluation ---------------------------------------------------------------------------------


def _rate(successes: int, trials: int) -> dict[str, Any]:
    low, high = wilson(successes, trials)
    return {
        "n": trials,
        "k": successes,
        "rate": successes / trials if trials else 0.0,
        "low": low,
        "high": high,
    }


def _score(
    pairs: Sequence[Pair],
    sims: Sequence[float],
    verdicts: Sequence[str | None],
    threshold: float,
    guard: bool,
) -> dict[str, Any]:
    same = [served(s, v, threshold, guard) for p, s, v in zip(pairs, sims, verdicts, strict=True) if p.same]
    diff = [
        served(s, v, threshold, guard) for p, s, v in zip(pairs, sims, verdicts, strict=True) if not p.same
    ]
    by_category: dict[str, list[bool]] = {}
    for p, s, v in zip(pairs, sims, verdicts, strict=True):
        by_category.setdefault(p.category, []).append(served(s, v, threshold, guard))
    return {
        "served": _rate(sum(same), len(same)),
        "wrong": _rate(sum(diff), len(diff)),
        "categories": {c: _rate(sum(x), len(x)) for c, x in sorted(by_category.items())},
    }


async def _unrelated(
    labelled: Sequence[tuple[str, Pair]], vectors: dict[str, Any], threshold: float, guard: bool
) -> dict[str, Any]:
    """Ask every prompt of one intent in a scope holding the cached prompts of all other intents."""
    from litellm_cache_plugin.semantic.embedder import CallableEmbedder
    from litellm_cache_plugin.semantic.layer import SemanticIndex
    from litellm_cache_plugin.settings import SemanticLayer
    from litellm_cache_plugin.store.memory import MemoryStore

    async def embed(texts: Sequence[str]) -> list[Any]:
        return [vectors[t] for t in texts]

    settings = SemanticLayer(enabled=True, threshold=threshold, guard=guard)
    wrong = total = 0
    intents = sorted({name for name, _ in labelled})
    store = MemoryStore()
    index = SemanticIndex(
        store, namespace="bench", embedder=CallableEmbedder("bench", embed), settings=settings
    )
    for name in intents:
        scope = f"without-{name}"
        for other, pair in labelled:
            if other != name:
                await index.add(
                    scope, pair.a, f"x:{hashlib.sha256(pair.a.encode()).hexdigest()[:16]}", ttl=3600
                )
        for asked in sorted({pair.b for other, pair in labelled if other == name}):
            total += 1
            if await index.lookup(scope, asked) is not None:
                wrong += 1
    await store.close()
    return _rate(wrong, total)


def _embed_all(texts: Sequence[str], threads: int) -> dict[str, Any]:
    from litellm_cache_plugin.semantic.embedder import OnnxMiniLMEmbedder

    embedder = OnnxMiniLMEmbedder(threads=threads)
    unique = sorted(set(texts))
    out: dict[str, Any] = {}
    for start in range(0, len(unique), 64):
        chunk = unique[start : start + 64]
        for text, vector in zip(chunk, embedder.embed_sync(chunk), strict=True):
            out[text] = vector
    return out


async def _latency(sizes: Sequence[int], threads: int, queries: int, seed: int = 3) -> list[dict[str, Any]]:
    import numpy as np

    from litellm_cache_plugin.semantic.embedder import OnnxMiniLMEmbedder
    from litellm_cache_plugin.semantic.index import unit
    from litellm_cache_plugin.semantic.layer import SemanticIndex
    from litellm_cache_plugin.settings import SemanticLayer
    from litellm_cache_plugin.store.memory import MemoryStore

    rng = np.random.default_rng(seed)
    embedder = OnnxMiniLMEmbedder(threads=threads)
    embedder.load()
    pairs = [p for _, p in constructed_pairs()]
    prompts = sorted({p.b for p in pairs} | {p.a for p in pairs})
    results: list[dict[str, Any]] = []
    for size in sizes:
        settings = SemanticLayer(enabled=True, max_entries_per_scope=size, max_entries=size, threshold=0.9)
        store = MemoryStore()
        index = SemanticIndex(store, namespace="lat", embedder=embedder, settings=settings)
        skey = index._skey("bench")
        matrix = rng.standard_normal((size, 384)).astype(np.float32)
        matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
        for row in range(size):
            index._index.add(
                skey, f"k{row}", f"synthetic prompt {row}", matrix[row], expires_at=time.time() + 3600
            )
        # Plant near neighbours of real queries: the sign-bit prefilter must find them.
        asked = prompts[:queries]
        planted = embedder.embed_sync(asked[:50])
        for i, vector in enumerate(planted):
            noisy = unit(vector + rng.standard_normal(384).astype(np.float32) * 0.012)
            index._index.add(skey, f"planted{i}", asked[i], noisy, expires_at=time.time() + 3600)
        timings: list[float] = []
        found = 0
        for i, text in enumerate(asked):
            index._vectors.clear()  # the query embedding is always computed
            start = time.perf_counter()
            match = await index.lookup("bench", text)
            timings.append((time.perf_counter() - start) * 1000)
            if i < 50 and match is not None and match.entry_key == f"planted{i}":
                found += 1
        await store.close()
        results.append(
            {
                "entries": size,
                "lookups": len(timings),
                "p50_ms": float(np.percentile(timings, 50)),
                "p99_ms": float(np.percentile(timings, 99)),
                "planted_found": found,
                "planted": min(50, len(asked)),
            }
        )
    return results


def _fmt(rate: dict[str, Any]) -> str:
    low, high = 100 * rate["low"], 100 * rate["high"]
    return f"{100 * rate['rate']:5.1f}% [{low:4.1f}-{high:5.1f}] ({rate['k']}/{rate['n']})"


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from litellm_cache_plugin.settings import SemanticLayer

    defaults = SemanticLayer()
    labelled = constructed_pairs()
    ours = [pair for _, pair in labelled]
    fow = fow_pairs()
    started = time.perf_counter()
    vectors = _embed_all([t for p in ours + fow for t in (p.a, p.b)], args.threads)
    embed_s = time.perf_counter() - started

    def embed(texts: Sequence[str]) -> Any:
        import numpy as np

        return np.stack([vectors[t] for t in texts])

    settings = [("layer (defaults)", defaults.threshold, defaults.guard)] + [
        (f"cosine >= {t:.2f}", t, False) for t in BASELINES
    ]
    report: dict[str, Any] = {
        "defaults": {"threshold": defaults.threshold, "guard": defaults.guard},
        "fow_citation": FOW_CITATION,
        "embedding_s": embed_s,
        "texts": len(vectors),
        "sets": {},
    }
    for set_name, pairs in (("fow-cache", fow), ("constructed", ours)):
        if not pairs:
            report["sets"][set_name] = None
            continue
        sims = pair_similarities(pairs, embed)
        verdicts = guard_verdicts(pairs)
        rows = {}
        for label, threshold, guard in settings:
            rows[label] = _score(pairs, sims, verdicts, threshold, guard)
            if set_name == "constructed":
                rows[label]["unrelated"] = await _unrelated(labelled, vectors, threshold, guard)
        outcomes: list[Outcome] = sweep(pairs, sims, verdicts)
        report["sets"][set_name] = {
            "pairs": len(pairs),
            "rows": rows,
            "sweep": [
                {"threshold": o.threshold, "guard": o.guard, "served": o.hit_rate, "wrong": o.wrong_rate}
                for o in outcomes
            ],
        }
    started = time.perf_counter()
    features_texts = sorted(vectors)[:500]
    from litellm_cache_plugin.semantic.guard import features, near_miss

    feats = [features(t) for t in features_texts]
    features_us = (time.perf_counter() - started) * 1e6 / len(features_texts)
    started = time.perf_counter()
    for i in range(len(feats) - 1):
        near_miss(feats[i], feats[i + 1])
    guard_us = (time.perf_counter() - started) * 1e6 / max(1, len(feats) - 1)
    report["guard_us"] = {"features_per_prompt": features_us, "compare_per_pair": guard_us}
    report["latency"] = await _latency(args.sizes, args.threads, args.queries)
    return report


def print_report(report: dict[str, Any]) -> None:
    d = report["defaults"]
    print(
        f"Semantic layer benchmark. Defaults: threshold {d['threshold']:.2f}, "
        f"guard {'on' if d['guard'] else 'off'}."
    )
    print(f"Embedded {report['texts']} texts in {report['embedding_s']:.1f} s.")
    print("Rates: served = share of should-serve pairs served; wrong = share of traps served;")
    print("[Wilson 95% interval] (k/n).\n")
    for set_name, data in report["sets"].items():
        if data is None:
            print(f"== {set_name}: not installed (pip install fow-cache)\n")
            continue
        print(f"== {set_name} ({data['pairs']} pairs)")
        if set_name == "fow-cache":
            print(f"   data: {report['fow_citation']}")
        for label, row in data["rows"].items():
            line = f"  {label:18s} served {_fmt(row['served'])}  traps wrong {_fmt(row['wrong'])}"
            if "unrelated" in row:
                line += f"  unrelated wrong {_fmt(row['unrelated'])}"
            print(line)
        ours = next(iter(data["rows"].values()))
        print("  by category (layer defaults, share served):")
        for category, rate in ours["categories"].items():
            print(f"    {category:16s} {_fmt(rate)}")
        print()
    g = report["guard_us"]
    print(
        f"Guard: features {g['features_per_prompt']:.0f} us per prompt (once per entry), "
        f"compare {g['compare_per_pair']:.0f} us per pair."
    )
    print("Lookup latency, one scope, query embedding included (built-in embedder):")
    for row in report["latency"]:
        print(
            f"  {row['entries']:>7d} entries: p50 {row['p50_ms']:5.1f} ms  p99 {row['p99_ms']:5.1f} ms  "
            f"({row['lookups']} lookups; planted neighbours found {row['planted_found']}/{row['planted']})"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m litellm_cache_plugin.semantic.bench", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument(
        "--threads", type=int, default=1, help="onnxruntime threads (default 1, as the layer)"
    )
    parser.add_argument("--sizes", default="1000,10000,100000", help="entries per scope for the latency runs")
    parser.add_argument("--queries", type=int, default=200, help="lookups per latency run")
    parser.add_argument("--quick", action="store_true", help="latency at 1000 entries only, 50 lookups")
    args = parser.parse_args(argv)
    args.sizes = [1000] if args.quick else [int(s) for s in args.sizes.split(",") if s]
    if args.quick:
        args.queries = 50
    report = asyncio.run(run(args))
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print_report(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
