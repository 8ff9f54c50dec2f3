"""The KV-prefix layer's pure parts: canonical system prompts, affinity hashing, reuse measurement."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from litellm_cache_plugin.policy.keys import CacheRequest, Tenant, exact_key
from litellm_cache_plugin.prefix import (
    CanonicalPrompts,
    EvalRate,
    FailureMemory,
    InflightTracker,
    TokenRatio,
    affinity_key,
    canonical_table,
    canonicalize_messages,
    choose_deployment,
    load_cap,
    ollama_reuse,
    openai_reuse,
    rendezvous_order,
)
from litellm_cache_plugin.settings import SettingsError, settings_from_mapping

SUPPORT = "You are the ACME support assistant.\nAnswer briefly.\n\nNever guess order numbers."


def system(text: str, user: str = "hello") -> list[dict[str, Any]]:
    return [{"role": "system", "content": text}, {"role": "user", "content": user}]


# --------------------------------------------------------------------------- canonical prompts


def test_whitespace_variant_becomes_the_configured_bytes() -> None:
    prompts = CanonicalPrompts([SUPPORT])
    variant = (
        " You are the ACME  support assistant.  \r\nAnswer briefly.\r\n\r\n\r\n\r\nNever guess order numbers."
    )
    rewritten = canonicalize_messages(system(variant), prompts)
    assert rewritten is not None
    assert rewritten[0]["content"] == SUPPORT
    assert rewritten[1] == {"role": "user", "content": "hello"}


def test_meaningful_differences_are_never_replaced() -> None:
    prompts = CanonicalPrompts([SUPPORT], stable_rendering=False)
    for other in (SUPPORT.upper(), SUPPORT.replace("Never", "Always"), SUPPORT + "!", "  " + SUPPORT[4:]):
        assert canonicalize_messages(system(other), prompts) is None


def test_stable_rendering_of_unconfigured_prompts() -> None:
    messages = system("Be terse.   \r\nUse  SI units.\n\n\n\n  - keep indentation  ")
    assert canonicalize_messages(messages, CanonicalPrompts(stable_rendering=False)) is None
    rewritten = canonicalize_messages(messages, CanonicalPrompts())
    assert rewritten is not None
    assert rewritten[0]["content"] == "Be terse.\nUse SI units.\n\n  - keep indentation"


def test_only_leading_system_messages_are_touched_and_input_is_not_mutated() -> None:
    messages: list[dict[str, Any]] = [
        {"role": "developer", "content": "Rules:  one  "},
        {"role": "system", "content": [{"type": "text", "text": SUPPORT + "   "}]},
        {"role": "user", "content": "q  with   spaces  "},
        {"role": "system", "content": "late   system  "},
    ]
    snapshot = [dict(m) for m in messages]
    rewritten = canonicalize_messages(messages, CanonicalPrompts([SUPPORT]))
    assert messages == snapshot
    assert rewritten is not None
    assert rewritten[0]["content"] == "Rules: one"
    assert rewritten[1]["content"] == SUPPORT  # a single text part becomes the canonical string
    assert rewritten[2] is messages[2] and rewritten[3] is messages[3]


def test_multi_part_content_is_left_alone() -> None:
    parts = [{"type": "text", "text": "a  "}, {"type": "text", "text": "b"}]
    assert canonicalize_messages([{"role": "system", "content": parts}], CanonicalPrompts()) is None


def test_ambiguous_or_empty_configuration_is_refused() -> None:
    with pytest.raises(ValueError, match="same prompt"):
        canonical_table(["Be brief.", "Be  brief. "])
    with pytest.raises(ValueError, match="empty"):
        canonical_table(["  \n "])
    assert canonical_table(["Be brief.", "Be brief."]) == {"Be brief.": "Be brief."}


def test_settings_validate_the_prefix_layer() -> None:
    parsed = settings_from_mapping(
        {"layers": {"prefix": {"enabled": True, "canonical_system_prompts": [SUPPORT]}}}, environ={}
    )
    assert parsed.layers.prefix.canonical_system_prompts == (SUPPORT,)
    assert parsed.layers.prefix.affinity.load_factor == 1.25
    with pytest.raises(SettingsError, match=r"^cache_plugin\.layers\.prefix\.canonical_system_prompts: "):
        settings_from_mapping({"layers": {"prefix": {"canonical_system_prompts": ["a", " a"]}}}, environ={})
    with pytest.raises(SettingsError, match=r"cache_plugin\.layers\.prefix\.affinity\.load_factor"):
        settings_from_mapping({"layers": {"prefix": {"affinity": {"load_factor": 0.9}}}}, environ={})
    with pytest.raises(SettingsError, match="unknown setting"):
        settings_from_mapping({"layers": {"prefix": {"affinity": {"ring_size": 3}}}}, environ={})


_GAPS = st.sampled_from(
    [
        (" ", [" ", "  ", "\t", " \t "]),  # between words on a line
        ("\n", ["\n", "\r\n", "  \n", "\t\r\n"]),  # a line break (trailing whitespace dropped)
        ("\n\n", ["\n\n", "\n\n\n\n", "\r\n \r\n"]),  # a paragraph (blank lines collapse)
    ]
)
_WORDS = st.lists(st.text("abcdefgh.,:-", min_size=1, max_size=6), min_size=1, max_size=12)


@st.composite
def whitespace_variants(draw: st.DrawFn) -> tuple[str, str]:
    """(text, the same text with different whitespace: what fold_text treats as equal)."""
    words = draw(_WORDS)
    canonical = variant = words[0]
    for word in words[1:]:
        gap, spellings = draw(_GAPS)
        canonical += gap + word
        variant += draw(st.sampled_from(spellings)) + word
    lead, trail = draw(st.sampled_from(["", " ", "\n", "\r\n  "])), draw(st.sampled_from(["", " \n", "\t"]))
    return canonical, lead + variant + trail


@given(whitespace_variants(), st.booleans())
@settings(max_examples=200, deadline=None)
def test_variants_render_identically_and_keep_keys(pair: tuple[str, str], stable: bool) -> None:
    canonical, variant = pair
    prompts = CanonicalPrompts([canonical], stable_rendering=stable)
    rendered = canonicalize_messages(system(variant), prompts) or system(variant)
    assert rendered[0]["content"] == canonical
    # idempotent, and neither the affinity key nor the exact-layer key changes
    assert canonicalize_messages(rendered, prompts) is None
    assert affinity_key(rendered) == affinity_key(system(variant)) == affinity_key(system(canonical))
    tenant = Tenant("team", "t")

    def key(messages: list[dict[str, Any]]) -> str:
        request = CacheRequest("chat", "g", "ollama_chat", "v", {"temperature": 0}, messages, None)
        return exact_key("lcp", request, tenant)

    assert key(rendered) == key(system(variant))


def test_affinity_key_identifies_the_prefix() -> None:
    assert affinity_key(system(SUPPORT, "a")) == affinity_key(system(SUPPORT, "b"))
    assert affinity_key(system(SUPPORT)) != affinity_key(system(SUPPORT + " Extra."))
    # no system prompt: the first message keeps a conversation's turns together
    turn1 = [{"role": "user", "content": "plan a trip"}]
    turn2 = [*turn1, {"role": "assistant", "content": "ok"}, {"role": "user", "content": "to Rome"}]
    assert affinity_key(turn1) == affinity_key(turn2)
    # prefix_chars: prompts sharing their beginning share a key
    assert affinity_key(system(SUPPORT + " A"), 20) == affinity_key(system(SUPPORT + " B"), 20)
    assert affinity_key([]) is None and affinity_key("text") is None


# --------------------------------------------------------------------------- affinity hashing

_IDS = st.lists(st.text("abcdef0123456789-", min_size=1, max_size=8), min_size=1, max_size=8, unique=True)
_KEYS = st.text(min_size=1, max_size=20)


@given(_KEYS, _IDS)
def test_same_prefix_same_deployment(key: str, ids: list[str]) -> None:
    first = choose_deployment(key, ids, {}, 1.25)
    assert first == rendezvous_order(key, ids)[0]
    assert choose_deployment(key, list(reversed(ids)), {}, 1.25) == first


@given(
    _IDS,
    st.lists(st.tuples(st.booleans(), _KEYS), min_size=1, max_size=200),
    st.floats(1.0, 3.0),
    st.integers(1, 4),
)
@settings(max_examples=200, deadline=None)
def test_bounded_load_is_never_exceeded(
    ids: list[str], operations: list[tuple[bool, str]], factor: float, floor: int
) -> None:
    loads = dict.fromkeys(ids, 0)
    running: list[str] = []
    for start, key in operations:
        if start or not running:
            chosen = choose_deployment(key, ids, loads, factor, floor=floor)
            loads[chosen] += 1
            running.append(chosen)
            total = sum(loads.values())  # including the new request
            assert loads[chosen] <= max(floor, math.ceil(factor * total / len(ids)))
        else:
            loads[running.pop(len(key) % len(running))] -= 1


@given(
    st.lists(_KEYS, min_size=1, max_size=50, unique=True), _IDS.filter(lambda ids: len(ids) >= 2), st.data()
)
def test_removing_a_deployment_moves_only_its_keys(
    keys: list[str], ids: list[str], data: st.DataObject
) -> None:
    removed = data.draw(st.sampled_from(ids))
    rest = [d for d in ids if d != removed]
    for key in keys:
        before = choose_deployment(key, ids, {}, 1.25)
        after = choose_deployment(key, rest, {}, 1.25)
        if before != removed:
            assert after == before
        else:
            assert after == rendezvous_order(key, ids)[1]  # the prefix's second choice


def test_hot_prefix_overflows_to_its_second_choice() -> None:
    ids = ["a", "b", "c"]
    order = rendezvous_order("hot", ids)
    loads: dict[str, int] = {}
    picks = []
    for _ in range(9):
        chosen = choose_deployment("hot", ids, loads, 1.25, floor=1)
        loads[chosen] = loads.get(chosen, 0) + 1
        picks.append(chosen)
    assert picks[0] == order[0] and order[1] in picks
    assert max(loads.values()) <= math.ceil(1.25 * 9 / 3)
    # with a floor of 4 the home takes the first four requests whatever the others do
    assert [choose_deployment("hot", ids, {order[0]: n}, 1.25, floor=4) for n in range(4)] == [order[0]] * 4


def test_avoided_deployments_are_used_only_as_a_last_resort() -> None:
    ids = ["a", "b", "c"]
    home = rendezvous_order("k", ids)[0]
    assert choose_deployment("k", ids, {}, 1.25, avoid={home}) == rendezvous_order("k", ids)[1]
    assert choose_deployment("k", ids, {}, 1.25, avoid=set(ids)) == home
    with pytest.raises(ValueError):
        choose_deployment("k", [], {}, 1.25)
    with pytest.raises(ValueError):
        load_cap(1, 0, 1.25)


def test_inflight_tracker() -> None:
    now = [0.0]
    tracker = InflightTracker(max_age=10, clock=lambda: now[0])
    tracker.start("r1", "a")
    tracker.start("r2", "a")
    assert tracker.loads() == {"a": 2}
    assert tracker.start("r1", "b") == "a"  # a retry replaces its previous attempt
    assert tracker.loads() == {"a": 1, "b": 1}
    assert tracker.finish("r1", "a") is None  # a late report about the failed attempt ends nothing
    assert tracker.finish("r1", "b") == "b"
    assert tracker.finish("r1") is None
    now[0] = 11.0  # r2 never reported: it stops counting
    assert tracker.loads() == {} and len(tracker) == 0


def test_failure_memory() -> None:
    now = [0.0]
    memory = FailureMemory(cooldown=5, clock=lambda: now[0])
    memory.mark("a")
    memory.mark("b")
    memory.clear("b")
    assert memory.suspects() == {"a"}
    now[0] = 5.0
    assert memory.suspects() == set()
    FailureMemory(cooldown=0).mark("x")


# --------------------------------------------------------------------------- reuse measurement


def test_openai_style_cached_tokens() -> None:
    usage = {"prompt_tokens": 1200, "completion_tokens": 5, "prompt_tokens_details": {"cached_tokens": 1024}}
    reuse = openai_reuse(usage, tokens_per_second=2048)
    assert reuse is not None and reuse.hit and reuse.source == "cached_tokens"
    assert (reuse.prompt_tokens, reuse.reused_tokens, reuse.eval_seconds_saved_estimate) == (1200, 1024, 0.5)
    as_object = SimpleNamespace(prompt_tokens=10, prompt_tokens_details=SimpleNamespace(cached_tokens=0))
    cold = openai_reuse(as_object)
    assert cold is not None and not cold.hit and cold.eval_seconds_saved_estimate is None
    assert openai_reuse({"prompt_tokens": 10}) is None  # not reported: not a zero
    assert openai_reuse({"prompt_tokens": 10, "prompt_tokens_details": None}) is None


def test_ollama_reuse_and_calibration() -> None:
    reuse = ollama_reuse(20, 180, tokens_per_second=1000)
    assert reuse is not None
    assert (reuse.prompt_tokens, reuse.reused_tokens) == (180, 160)
    assert reuse.share == pytest.approx(160 / 180)
    assert reuse.eval_seconds_saved_estimate == pytest.approx(0.16)
    assert ollama_reuse(200, 180) is not None and ollama_reuse(200, 180).reused_tokens == 0  # type: ignore[union-attr]

    ratio = TokenRatio()
    assert ratio.prompt_tokens(100, 10) == 100  # nothing learnt yet: the estimate as is
    ratio.observe(200, 160)  # a cold prompt: the server counts 0.8 tokens per estimated token
    ratio.observe(200, 20)  # a warm one does not lower the ratio
    assert ratio.prompt_tokens(200, 20) == 160
    assert ratio.prompt_tokens(10, 50) == 50  # never less than what was evaluated

    rate = EvalRate()
    rate.observe(1, 0.5)  # too small a batch to say anything about throughput
    assert rate.tokens_per_second is None
    rate.observe(100, 0.05)
    assert rate.tokens_per_second == pytest.approx(2000)
