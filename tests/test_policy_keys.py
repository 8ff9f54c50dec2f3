"""Key building and normalization: pure, property-tested."""

from __future__ import annotations

import json
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from litellm_cache_plugin.policy.keys import (
    CacheRequest,
    Identity,
    Tenant,
    embedding_key,
    exact_key,
    output_params,
    tenant_for,
)
from litellm_cache_plugin.policy.normalize import canonical_messages, fold_text

TEAM_A = Tenant("team", "team-a")
TEAM_B = Tenant("team", "team-b")


def chat(
    messages: object, provider: str = "ollama_chat", version: str = "0", **params: object
) -> CacheRequest:
    return CacheRequest(
        kind="chat", model_group="llama3.2", provider=provider, model_version=version, params=params,
        messages=messages,
    )  # fmt: skip


def key(request: CacheRequest, tenant: Tenant = TEAM_A) -> str:
    return exact_key("lcp", request, tenant)


# -- folding -------------------------------------------------------------------------------------


def test_whitespace_variants_fold_to_one_text() -> None:
    variants = [
        "What is the capital of France?",
        "  What is the capital of France?\n",
        "What  is the\tcapital of France?   ",
        "What is the capital of France?\r\n",
    ]
    assert len({fold_text(v) for v in variants}) == 1


def test_indentation_is_kept() -> None:
    assert fold_text("def f():\n    return 1") != fold_text("def f():\nreturn 1")
    assert fold_text("- a\n  - b") != fold_text("- a\n- b")


def test_fenced_code_is_untouched() -> None:
    a = "Fix this:\n```\nx  =  1\n```"
    b = "Fix this:\n```\nx = 1\n```"
    assert fold_text(a) != fold_text(b)
    # ...while prose around it is folded
    assert fold_text("Fix   this:\n```\nx  =  1\n```") == fold_text(a)


def test_blank_lines_collapse_to_one() -> None:
    assert fold_text("a\n\n\n\nb") == "a\n\nb"
    assert fold_text("a\n\nb") != fold_text("a\nb")


def test_nfc_but_not_nfkc() -> None:
    assert fold_text("caf\u00e9") == fold_text("cafe\u0301")
    assert fold_text("\u2460") != fold_text("1")


def test_case_and_punctuation_are_not_folded() -> None:
    assert fold_text("Paris") != fold_text("paris")
    assert fold_text("Is it?") != fold_text("Is it.")


def test_single_text_part_equals_plain_string() -> None:
    plain = [{"role": "user", "content": "hi"}]
    parts = [{"role": "user", "content": [{"type": "text", "text": " hi "}]}]
    assert canonical_messages(plain) == canonical_messages(parts)
    two = [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]
    assert canonical_messages(two) != canonical_messages([{"role": "user", "content": "ab"}])


def test_tool_call_argument_order_does_not_matter() -> None:
    def msg(arguments: str) -> list[dict[str, object]]:
        return [
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "1", "type": "function", "function": {"name": "f", "arguments": arguments}}
                ],
            }
        ]

    assert canonical_messages(msg('{"a": 1, "b": 2}')) == canonical_messages(msg('{"b":2,"a":1}'))


# -- keys ----------------------------------------------------------------------------------------


def test_defaults_are_folded_and_metadata_is_ignored() -> None:
    base = chat([{"role": "user", "content": "hi"}], temperature=0)
    same = chat(
        [{"role": "user", "content": "hi", "name": None}],
        temperature=0.0, top_p=0.9, n=1, presence_penalty=0, stream=True, user="u-123",
        metadata={"trace": "x"}, request_timeout=30, litellm_call_id="abc", cache_key="forged",
    )  # fmt: skip
    assert key(base) == key(same)


def test_provider_default_folding_is_per_provider() -> None:
    ollama = output_params({"top_p": 0.9}, "ollama_chat")
    openai = output_params({"top_p": 0.9}, "openai")
    assert ollama == {}
    assert openai == {"top_p": 0.9}


def test_stop_string_equals_single_item_list() -> None:
    msgs = [{"role": "user", "content": "x"}]
    assert key(chat(msgs, temperature=0, stop="END")) == key(chat(msgs, temperature=0, stop=["END"]))


def test_tenant_model_and_version_are_in_the_key() -> None:
    msgs = [{"role": "user", "content": "x"}]
    assert key(chat(msgs, temperature=0), TEAM_A) != key(chat(msgs, temperature=0), TEAM_B)
    assert key(chat(msgs, temperature=0, version="sha256:1")) != key(
        chat(msgs, temperature=0, version="sha256:2")
    )
    other_model = CacheRequest(
        kind="chat", model_group="qwen", provider="ollama_chat", model_version="0", params={"temperature": 0},
        messages=msgs,
    )  # fmt: skip
    assert key(other_model) != key(chat(msgs, temperature=0))


def test_embedding_items_are_exact() -> None:
    def ek(item: object, tenant: Tenant = TEAM_A) -> str:
        return embedding_key(
            "lcp",
            model_group="emb",
            model_version="0",
            item=item,
            params={},
            provider="ollama",
            tenant=tenant,
        )

    assert ek("a b") != ek("a  b")
    assert ek("a") == ek("a")
    assert ek("a", TEAM_A) != ek("a", TEAM_B)


def test_tenant_comes_from_identity_and_never_broadens() -> None:
    with_team = Identity(api_key_hash="k1", team_id="t1", user_id="u1")
    no_team = Identity(api_key_hash="k2", user_id="u2")
    assert tenant_for(with_team, "team") == Tenant("team", "t1")
    assert tenant_for(no_team, "team") == Tenant("key", "k2")
    assert tenant_for(with_team, "user") == Tenant("user", "u1")
    assert tenant_for(with_team, "key") == Tenant("key", "k1")
    assert tenant_for(with_team, "global") == Tenant("global", "*")
    assert tenant_for(Identity(), "team") == Tenant("anonymous", "-")


# -- properties ----------------------------------------------------------------------------------

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-1000, 1000), st.text(max_size=8))
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)
words = st.lists(st.text(alphabet="abcdefghij?!.,0123", min_size=1, max_size=6), min_size=1, max_size=8)


def reorder(value: object, rng: random.Random) -> object:
    if isinstance(value, dict):
        items = list(value.items())
        rng.shuffle(items)
        return {k: reorder(v, rng) for k, v in items}
    if isinstance(value, list):
        return [reorder(v, rng) for v in value]
    return value


@settings(max_examples=200, deadline=None)
@given(
    tokens=words,
    tool_schema=st.dictionaries(st.text(min_size=1, max_size=5), json_values, max_size=4),
    seed=st.integers(0, 2**16),
)
def test_equivalent_requests_share_one_key(
    tokens: list[str], tool_schema: dict[str, object], seed: int
) -> None:
    rng = random.Random(seed)
    text = " ".join(tokens)
    spaced = "  " + "  ".join(tokens) + " \n"
    tools = [{"type": "function", "function": {"name": "f", "parameters": tool_schema}}]
    a = chat([{"role": "user", "content": text}], temperature=0, tools=tools, max_tokens=50)
    b = chat(
        [{"role": "user", "content": spaced}],
        **reorder({"max_tokens": 50.0, "tools": tools, "temperature": 0.0, "metadata": {"x": seed}}, rng),  # type: ignore[arg-type]
    )
    assert key(a) == key(b)


output_param_values = st.fixed_dictionaries(
    {},
    optional={
        "temperature": st.sampled_from([0, 0.2, 0.5, 1.0, 1.5]),
        "max_tokens": st.integers(1, 5000),
        "seed": st.integers(0, 10**6),
        "stop": st.lists(st.text(min_size=1, max_size=4), min_size=1, max_size=3),
        "top_k": st.integers(2, 39),
        "response_format": st.sampled_from([{"type": "json_object"}, {"type": "text"}]),
        "tool_choice": st.sampled_from(["auto", "none", "required"]),
    },
)


@settings(max_examples=300, deadline=None)
@given(p=output_param_values, q=output_param_values)
def test_different_output_parameters_never_collide(p: dict[str, object], q: dict[str, object]) -> None:
    msgs = [{"role": "user", "content": "same prompt"}]
    same = json.dumps(p, sort_keys=True) == json.dumps(q, sort_keys=True)
    assert (key(chat(msgs, **p)) == key(chat(msgs, **q))) == same


@settings(max_examples=200, deadline=None)
@given(
    team_a=st.text(min_size=1, max_size=12),
    team_b=st.text(min_size=1, max_size=12),
    prompt=st.text(max_size=30),
)
def test_distinct_tenants_never_share_a_key(team_a: str, team_b: str, prompt: str) -> None:
    msgs = [{"role": "user", "content": prompt}]
    a = key(chat(msgs, temperature=0), Tenant("team", team_a))
    b = key(chat(msgs, temperature=0), Tenant("team", team_b))
    assert (a == b) == (team_a == team_b)
