"""Verification by answer agreement: the pure comparison of a paraphrase's fresh answer with the cached
one (``policy.verify.answers_agree``, ``normalize_answer``), with examples and Hypothesis properties,
and the settings of the verify modes (``judge_model`` only where a judge is asked)."""

from __future__ import annotations

import os
import unicodedata
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from litellm_cache_plugin.policy.verify import answers_agree, normalize_answer
from litellm_cache_plugin.settings import SemanticVerify, SettingsError, settings_from_mapping


def chat(content: str | None, tool_calls: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls is not None:
        message["tool_calls"] = tool_calls
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "llama3.2",
        "choices": [{"index": 0, "finish_reason": "stop", "message": message}],
    }


def text(*texts: str) -> dict[str, Any]:
    return {
        "object": "text_completion",
        "choices": [
            {"index": i, "text": t, "logprobs": None, "finish_reason": "stop"} for i, t in enumerate(texts)
        ],
    }


def call(name: str, arguments: str, call_id: str = "call_1") -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


# --- examples ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Paris is 392 km from Lyon.", "Paris is 392 km from Lyon."),
        ("Paris is 392 km from Lyon.", "paris is 392 KM from lyon"),  # case, trailing punctuation
        ("Paris is 392 km\nfrom   Lyon.", " Paris is 392 km from Lyon ! "),  # whitespace runs
        ("\uff30\uff41\uff52\uff49\uff53\uff1a \uff13\uff19\uff12 km", "Paris: 392 km"),  # NFKC: full-width
        ("Straße", "STRASSE"),  # case-folding
        ("Yes…", "yes."),
    ],
)
def test_answers_that_agree(a: str, b: str) -> None:
    assert answers_agree(chat(a), chat(b))
    assert answers_agree(chat(b), chat(a))
    assert answers_agree(text(a), text(b))


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Paris is 392 km from Lyon.", "Paris is 393 km from Lyon."),  # one digit
        ("It costs 3.5 dollars.", "It costs 35 dollars."),  # an inner point is not trailing
        ("It costs 3,5 dollars.", "It costs 3.5 dollars."),
        ("The answer is 10².", "The answer is 102."),  # NFKC would fold the superscript
        ("½ cup", "1\u20442 cup"),  # a fraction mark is kept, not folded away into 1 FRACTION SLASH 2
        ("x₂", "x2"),
        ("It is 50%", "It is 50"),  # % is not sentence-ending punctuation
        ("use C#", "use C"),
        ("-5", "5"),
        ("Yes", "No"),
        ("It is safe.", "It is not safe."),
        ("242 miles", "392 km"),
        ("Paris is far from Lyon", "Lyon is far from Paris"),  # word order
    ],
)
def test_answers_that_do_not_agree(a: str, b: str) -> None:
    assert not answers_agree(chat(a), chat(b))
    assert not answers_agree(chat(b), chat(a))


@pytest.mark.parametrize("empty", ["", "   ", "\n\t", ".", " ... ", "!?", "。"])
def test_empty_answers_never_agree(empty: str) -> None:
    assert not answers_agree(chat(empty), chat(empty))
    assert not answers_agree(text(empty), text(empty))
    assert not answers_agree(chat(None), chat(None))


def test_tool_calls_must_agree_too() -> None:
    weather = call("get_weather", '{"city": "Paris", "unit": "C"}')
    # ids differ on every generation; key order and spacing of the JSON arguments do not matter
    same = call("get_weather", '{ "unit":"C",  "city":"Paris" }', call_id="call_9")
    assert answers_agree(chat(None, [weather]), chat(None, [same]))
    assert answers_agree(chat("", [weather]), chat(None, [same]))
    assert answers_agree(chat("Let me check.", [weather]), chat("let me check", [same]))
    # ... but the function, every argument value and the calls' order do
    assert not answers_agree(chat(None, [weather]), chat(None, [call("get_time", '{"city": "Paris"}')]))
    lyon = call("get_weather", '{"city": "Lyon", "unit": "C"}')
    assert not answers_agree(chat(None, [weather]), chat(None, [lyon]))
    assert not answers_agree(chat(None, [weather, lyon]), chat(None, [lyon, weather]))
    assert not answers_agree(chat(None, [weather]), chat(None, [weather, lyon]))
    assert not answers_agree(chat(None, [weather]), chat(None, []))  # a call against nothing
    assert not answers_agree(chat("Let me check.", [weather]), chat("Let me check."))
    assert not answers_agree(chat("Let me check.", [weather]), chat("I checked.", [same]))
    # JSON values, not their text: 1, 1.0 and true are three different arguments
    one, one_float, true = (call("f", f'{{"n": {v}}}') for v in ("1", "1.0", "true"))
    assert not answers_agree(chat(None, [one]), chat(None, [one_float]))
    assert not answers_agree(chat(None, [one]), chat(None, [true]))
    # arguments that are not JSON are compared as normalized text
    assert answers_agree(chat(None, [call("f", "Paris ")]), chat(None, [call("f", "paris")]))
    assert not answers_agree(chat(None, [call("f", "Paris")]), chat(None, [call("f", "Lyon")]))
    # the legacy function_call counts as a call
    legacy = chat(None)
    legacy["choices"][0]["message"]["function_call"] = {"name": "f", "arguments": "{}"}
    assert answers_agree(legacy, legacy)
    assert not answers_agree(legacy, chat(None, [call("g", "{}")]))


def test_only_comparable_bodies_agree() -> None:
    assert not answers_agree(chat("a"), None)
    assert not answers_agree({"choices": []}, {"choices": []})
    assert not answers_agree({"data": [{"embedding": [0.1]}]}, {"data": [{"embedding": [0.1]}]})
    assert not answers_agree(text("a", "b"), text("a"))  # n=2 against n=1
    assert answers_agree(text("a", "b"), text("A", "B."))
    assert not answers_agree(text("a", "b"), text("a", "c"))  # every choice must agree
    parts = chat(None)
    parts["choices"][0]["message"]["content"] = [{"type": "text", "text": "a"}]
    assert not answers_agree(parts, parts)  # content parts are not compared
    broken = chat(None, [{"id": "x", "type": "function", "function": {"arguments": "{}"}}])
    assert not answers_agree(broken, broken)  # a call without a name cannot be read
    huge = chat(None, [{"type": "function", "function": {"name": "f", "arguments": {"n": 2**70}}}])
    assert not answers_agree(huge, huge)


# --- properties -------------------------------------------------------------------------------------

answers = st.text(max_size=60)
leading = st.text(alphabet=st.sampled_from(list(" \t\n\r\u00a0\u2003")), max_size=8)
trailing = st.text(alphabet=st.sampled_from(list(" \t\n\r\u00a0\u2003.!?,;:…。")), max_size=8)


@given(answers)
def test_normalization_is_idempotent(value: str) -> None:
    once = normalize_answer(value)
    assert normalize_answer(once) == once


@given(answers)
def test_normal_form_has_no_surrounding_noise(value: str) -> None:
    normal = normalize_answer(value)
    assert normal == normal.strip()
    assert "  " not in normal
    assert not normal.endswith(tuple(".,;:!?…"))


@given(answers, leading, trailing)
def test_surrounding_whitespace_and_final_punctuation_never_matter(
    value: str, before: str, after: str
) -> None:
    decorated = before + value + after
    if normalize_answer(value):
        assert answers_agree(chat(value), chat(decorated))
    else:
        assert not answers_agree(chat(value), chat(decorated))


@given(answers)
def test_empty_never_agrees_and_everything_else_agrees_with_itself(value: str) -> None:
    agrees = answers_agree(chat(value), chat(value))
    assert agrees == bool(normalize_answer(value))


@given(answers, answers, st.integers(0, 9), st.integers(1, 9))
def test_answers_that_differ_in_one_digit_never_agree(head: str, tail: str, digit: int, shift: int) -> None:
    other = (digit + shift) % 10
    a = f"{head} {digit} {tail}"
    b = f"{head} {other} {tail}"
    assert not answers_agree(chat(a), chat(b))
    assert not answers_agree(text(a), text(b))


@given(answers, st.sampled_from([c for c in map(chr, range(0x2070, 0x20A0)) if c.isdigit()]))
def test_a_folded_number_mark_never_agrees_with_its_plain_digit(head: str, mark: str) -> None:
    plain = unicodedata.normalize("NFKC", mark)
    assert not answers_agree(chat(f"{head} 10{mark}"), chat(f"{head} 10{plain}"))


@given(answers, answers)
def test_agreement_is_symmetric(a: str, b: str) -> None:
    assert answers_agree(chat(a), chat(b)) == answers_agree(chat(b), chat(a))


# --- settings ---------------------------------------------------------------------------------------


def verify_settings(**verify: Any) -> SemanticVerify:
    section = {"layers": {"semantic": {"enabled": True, "verify": verify}}}
    return settings_from_mapping(section, environ={}).layers.semantic.verify


def test_agreement_needs_no_judge_model() -> None:
    assert verify_settings(mode="agreement").judge_model is None
    assert verify_settings(mode="agreement", judge_model="judge").mode == "agreement"
    assert verify_settings(mode="both", judge_model="judge").judge_model == "judge"
    assert verify_settings(mode="judge", judge_model="judge").mode == "judge"  # unchanged
    assert verify_settings().mode == "off"


@pytest.mark.parametrize("mode", ["judge", "both"])
def test_judge_and_both_need_a_judge_model(mode: str) -> None:
    with pytest.raises(SettingsError) as raised:
        verify_settings(mode=mode)
    assert str(raised.value) == (
        "cache_plugin.layers.semantic.verify: judge_model: a model group is required when mode is "
        f"'{mode}' (mode 'agreement' verifies without a judge)"
    )


def test_an_unknown_mode_names_the_allowed_ones() -> None:
    with pytest.raises(SettingsError) as raised:
        verify_settings(mode="agree")
    assert str(raised.value) == (
        "cache_plugin.layers.semantic.verify.mode: must be one of 'off', 'judge', 'agreement' or 'both' "
        "(got 'agree')"
    )


def test_the_mode_can_come_from_the_environment() -> None:
    settings = settings_from_mapping(
        {"layers": {"semantic": {"enabled": True}}},
        environ={"LITELLM_CACHE_PLUGIN__LAYERS__SEMANTIC__VERIFY__MODE": "agreement"},
    )
    assert settings.layers.semantic.verify.mode == "agreement"
    with pytest.raises(SettingsError, match="judge_model"):
        settings_from_mapping(
            {"layers": {"semantic": {"enabled": True}}},
            environ={"LITELLM_CACHE_PLUGIN__LAYERS__SEMANTIC__VERIFY__MODE": "both"},
        )
