"""Explainable refusals: the guard returns its rule and the tokens it compared, as data; the layer's
``resolve`` returns a match, a refusal with its reason, or a plain miss. ``lookup`` is unchanged."""

from __future__ import annotations

import pytest

from litellm_cache_plugin.semantic.guard import (
    RULES,
    Refusal,
    all_refusals,
    check,
    explain,
    explain_refusal,
    features,
)


@pytest.mark.parametrize(
    ("cached", "asked", "rule", "cached_tokens", "asked_tokens"),
    [
        ("Give me 3 tips", "Give me 5 tips", "number", ("3",), ("5",)),
        ("How far is Paris from Lyon?", "How far is Paris from Lille?", "entity", ("lyon",), ("lille",)),
        ("List the planets as JSON.", "List the planets as YAML.", "format", ("json",), ("yaml",)),
        ("Can I book for Friday?", "Can I book for Sunday?", "time", ("friday",), ("sunday",)),
        (
            "Is the deposit refundable?",
            "Is the deposit non-refundable?",
            "negation",
            ("refundable",),
            ("non-refundable",),
        ),
        ("How do I enable dark mode?", "How do I disable dark mode?", "antonym", ("enable",), ("disable",)),
        (
            "What does my travel insurance cover?",
            "What does my car insurance cover?",
            "swap",
            ("travel",),
            ("car",),
        ),
    ],
)
def test_refusal_names_the_rule_and_the_tokens(
    cached: str, asked: str, rule: str, cached_tokens: tuple[str, ...], asked_tokens: tuple[str, ...]
) -> None:
    refusal = explain_refusal(cached, asked)
    assert refusal == Refusal(rule, cached_tokens, asked_tokens)
    assert refusal.rule == explain(cached, asked) and refusal.rule in RULES
    assert all(token in refusal.detail for token in cached_tokens + asked_tokens)


def test_a_paraphrase_has_no_refusal_and_all_refusals_lists_every_rule() -> None:
    assert explain_refusal("What's the capital of France?", "What is the capital of France?") is None
    a, b = features("Give me 3 tips for Paris"), features("Give me 5 tips for Lyon")
    rules = [r.rule for r in all_refusals(a, b)]
    assert rules[:2] == ["number", "entity"] and check(a, b) == all_refusals(a, b)[0]


np = pytest.importorskip("numpy", reason="the [semantic] extra is not installed")

from litellm_cache_plugin.semantic import SemanticLookup, SemanticRefusal  # noqa: E402
from litellm_cache_plugin.store.memory import MemoryStore  # noqa: E402
from tests.test_semantic_index import make  # noqa: E402


async def test_resolve_returns_match_refusal_or_miss() -> None:
    index = make(MemoryStore())
    await index.add("s", "How far is Paris from Lyon?", "t:x:1", ttl=60)

    hit = await index.resolve("s", "What's the distance between Paris and Lyon?")
    assert hit.outcome == "hit" and hit.match is not None and hit.match.entry_key == "t:x:1"
    assert hit.reason is None and hit.refusals == ()

    refused = await index.resolve("s", "How far is Paris from Lille?")
    assert refused.outcome == "refused" and refused.match is None and refused.reason == "entity"
    (why,) = refused.refusals
    assert isinstance(why, SemanticRefusal)
    assert (why.rule, why.entry_key, why.prompt, why.scope) == (
        "entity",
        "t:x:1",
        "How far is Paris from Lyon?",
        "s",
    )
    assert "lille" in why.detail and why.similarity > index.settings.threshold

    miss = await index.resolve("s", "Tell me a joke")
    assert miss == SemanticLookup("miss") and miss.reason is None
    assert (await index.resolve("s", "x" * 5000)).outcome == "too_long"

    # The old contract: lookup is resolve(...).match; the stats keep counting misses and guard rules.
    assert await index.lookup("s", "How far is Paris from Lille?") is None
    assert index.stats["guard_entity"] == 2 and index.stats["refused"] == 2
    assert index.stats["hit"] == 1 and index.stats["miss"] == 3


async def test_resolve_fails_open_with_an_error_outcome() -> None:
    from tests.test_semantic_index import TABLE, TableEmbedder

    embedder = TableEmbedder(TABLE)
    index = make(MemoryStore(), embedder)
    embedder.fail = True
    result = await index.resolve("s", "How far is Paris from Lyon?")
    assert result.outcome == "error" and result.match is None
