"""The near-miss guard: traps refused, paraphrases and retypes let through, and fast. Pure."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from litellm_cache_plugin.semantic.guard import explain, features, near_miss

TRAPS = [
    ("How far is Paris from Lyon?", "How far is Paris from Lille?", "entity"),
    ("how far is paris from lyon", "how far is paris from lille", "swap"),
    ("Give me three tips for public speaking.", "Give me five tips for public speaking.", "number"),
    ("Give me 3 tips", "Give me 5 tips", "number"),
    ("What's 15% of 200?", "What's 50% of 200?", "number"),
    ("How much is 2,700 kWh a year?", "How much is 4,500 kWh a year?", "number"),
    ("Can I book for Friday?", "Can I book for Sunday?", "time"),
    ("Can I book for 3pm?", "Can I book for 4pm?", "time"),
    ("How far is it in miles?", "How far is it in kilometres?", "unit"),
    ("Cost per month?", "Cost per year?", "unit"),
    ("Is ibuprofen safe with alcohol?", "Is ibuprofen unsafe with alcohol?", "negation"),
    ("Cancel my subscription", "Don't cancel my subscription", "negation"),
    ("Is the deposit refundable?", "Is the deposit non-refundable?", "negation"),
    ("List the planets as JSON.", "List the planets as YAML.", "format"),
    ("Summarize this as a table.", "Summarize this.", "format"),
    ("Write it in Python.", "Write it in Rust.", "format"),
    ("What is the population of Lyon?", "What is the population of Lille?", "entity"),
    ("Is the clinic open on Sunday?", "Is the clinic closed on Sunday?", "antonym"),
    ("How do I enable dark mode?", "How do I disable dark mode?", "antonym"),
    ("How do I turn on notifications?", "How do I turn off notifications?", "antonym"),
    ("How do I sort in ascending order?", "How do I sort in descending order?", "antonym"),
    (
        "Transfer £50 from my savings to my current account",
        "Transfer £50 from my current account to my savings",
        "order",
    ),
    ("Convert 5 km to miles", "Convert 5 miles to km", "order"),
    ("What does my travel insurance cover?", "What does my car insurance cover?", "swap"),
    ("What's covered under the warranty?", "What's covered under the extended warranty?", "swap"),
    ("Does the pad thai contain peanuts?", "Does the green curry contain peanuts?", "swap"),
    ("Rename 'draft' to final", "Rename 'final' to final", "quoted"),
    ("Why does parse_args fail?", "Why does parse_known_args fail?", "code"),
    ("Can I get the flu jab?", "Can my son get the flu jab? He is 4", "number"),
    ("How much notice does a landlord give?", "How much notice does a tenant give?", "antonym"),
]

SERVE = [
    ("How far is Paris from Lyon?", "how far is paris from lyon"),
    ("How do I change the currency on my invoices?", "Hi team, how do I change the currency on my invoices?"),
    ("How do I bleed a radiator?", "Sorry, silly question, but how do I bleed a radiator? Thanks!"),
    (
        "What is the difference between a virus and bacteria?",
        "What is the diffrence between a virus and bacteria?",
    ),
    ("I can't log in to my bank", "I cannot log in to my bank"),
    ("What's the capital of France?", "What is the capital of France?"),
    ("How do I cancel my Netflix subscription?", "How can I cancel my Netflix subscription?"),
    ("Explain gravity to a five-year-old.", "Can you explain gravity to a 5-year-old?"),
    ("What time does the gym open on Monday?", "When does the gym open on Mondays?"),
    ("How many calories are in a banana?", "How many calories in one banana?"),
    ("What is the weather in Paris tomorrow?", "What's tomorrow's forecast for Paris?"),
    ("Book a table for three people on Tuesday.", "Reserve a table for three people on Tuesday."),
    ("Is it safe to eat raw eggs?", "Is eating raw eggs safe?"),
    ("Do I need a visa to visit France from Peru?", "Is a visa needed to visit France from Peru?"),
]


@pytest.mark.parametrize(("cached", "asked", "reason"), TRAPS)
def test_traps_are_refused_for_the_right_reason(cached: str, asked: str, reason: str) -> None:
    assert explain(cached, asked) == reason
    assert explain(asked, cached) is not None  # refusal does not depend on which side was cached


@pytest.mark.parametrize(("cached", "asked"), SERVE)
def test_paraphrases_and_retypes_pass(cached: str, asked: str) -> None:
    assert explain(cached, asked) is None
    assert explain(asked, cached) is None


def test_swap_rule_can_be_switched_off() -> None:
    a, b = features("how far is paris from lyon"), features("how far is paris from lille")
    assert near_miss(a, b) == "swap"
    assert near_miss(a, b, swap_rule=False) is None


sentences = st.sampled_from(
    [
        "Give me {} tips for saving money.",
        "How much is {} euros in dollars?",
        "Book a table for {} people.",
        "What was the weather like in {}?",
        "Is {} a leap year?",
    ]
)


@given(template=sentences, x=st.integers(0, 10**7), y=st.integers(0, 10**7))
def test_a_changed_number_is_always_refused(template: str, x: int, y: int) -> None:
    verdict = explain(template.format(x), template.format(y))
    if x == y:
        assert verdict is None
    else:
        assert verdict == "number"


@given(text=st.text(max_size=200))
def test_any_text_is_its_own_match_and_never_crashes(text: str) -> None:
    assert near_miss(features(text), features(text)) is None


@given(a=st.text(max_size=120), b=st.text(max_size=120))
def test_verdict_is_total(a: str, b: str) -> None:
    verdict = explain(a, b)
    assert verdict is None or isinstance(verdict, str)


def test_features_are_per_prompt_and_compared_per_pair() -> None:
    """The guard's split that keeps it cheap: a prompt's features are computed once and compared with
    any number of candidates (what each costs: benchmarks/micro_budgets.py, < 0.2 ms per pair, < 1 ms
    per prompt)."""
    asked = features(TRAPS[0][1])
    verdicts = [near_miss(features(a), asked) for a, _, _ in TRAPS[:5]]
    assert verdicts == [near_miss(features(a), features(TRAPS[0][1])) for a, _, _ in TRAPS[:5]]
    assert features(TRAPS[0][1]) == asked  # a pure function of the prompt


def test_an_ordinal_is_not_a_weight() -> None:
    # "the 1st" / "the 21st" are days; "11st" and "3 st" are stones.
    assert features("rent goes out on the 1st").units == frozenset()
    assert features("the 21st of May").units == frozenset()
    assert features("I weigh 11st").units == {"stone"}
    assert features("I lost 3 st").units == {"stone"}
