"""semantic_scope: which requests may share a semantic match, and what text is embedded. Pure."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from litellm_cache_plugin.policy.keys import CacheRequest, Tenant
from litellm_cache_plugin.semantic import semantic_scope

TEAM = Tenant("team", "t1")


def chat(*messages: dict[str, Any], model: str = "llama", version: str = "1", **params: Any) -> CacheRequest:
    return CacheRequest(
        kind="chat",
        model_group=model,
        provider="ollama",
        model_version=version,
        params={"temperature": 0, **params},
        messages=list(messages),
    )


def user(text: Any) -> dict[str, Any]:
    return {"role": "user", "content": text}


SYSTEM = {"role": "system", "content": "You are terse."}


def scope_of(request: CacheRequest, tenant: Tenant = TEAM) -> str:
    scoped = semantic_scope(request, tenant)
    assert scoped is not None
    return scoped[0]


def test_scope_ignores_the_last_user_turn_and_returns_it_folded() -> None:
    a = semantic_scope(chat(SYSTEM, user("How far is Paris  from Lyon? ")), TEAM)
    b = semantic_scope(chat(SYSTEM, user("What's the distance between Paris and Lyon?")), TEAM)
    assert a is not None and b is not None
    assert a[0] == b[0]
    assert a[1] == "How far is Paris from Lyon?"  # folded like the exact key folds text


def test_everything_but_the_last_turn_separates_scopes() -> None:
    base = scope_of(chat(SYSTEM, user("hi")))
    assert scope_of(chat(SYSTEM, user("hi")), Tenant("team", "t2")) != base
    assert scope_of(chat(SYSTEM, user("hi"), model="other")) != base
    assert scope_of(chat(SYSTEM, user("hi"), version="2")) != base
    assert scope_of(chat({"role": "system", "content": "You are verbose."}, user("hi"))) != base
    assert scope_of(chat(SYSTEM, user("hi"), temperature=0.5)) != base
    assert scope_of(chat(SYSTEM, user("hi"), max_tokens=10)) != base
    earlier = chat(SYSTEM, user("Tell me about Netflix"), {"role": "assistant", "content": "..."}, user("hi"))
    assert scope_of(earlier) != base
    named = chat(SYSTEM, {"role": "user", "content": "hi", "name": "bob"})
    assert scope_of(named) != base


def test_params_that_do_not_change_the_output_do_not_split_scopes() -> None:
    base = scope_of(chat(SYSTEM, user("hi")))
    assert scope_of(chat(SYSTEM, user("hi"), user_id="u9", metadata={"x": 1}, stream=True)) == base


def test_text_parts_are_joined_and_other_parts_are_not_eligible() -> None:
    parts = chat(user([{"type": "text", "text": "How far"}, {"type": "text", "text": "is Lyon?"}]))
    scoped = semantic_scope(parts, TEAM)
    assert scoped is not None and scoped[1] == "How far\nis Lyon?"
    image = chat(
        user([{"type": "text", "text": "what is this"}, {"type": "image_url", "image_url": {"url": "x"}}])
    )
    assert semantic_scope(image, TEAM) is None


def test_not_eligible_requests() -> None:
    assert semantic_scope(chat(SYSTEM), TEAM) is None  # last turn is not a user turn
    assert semantic_scope(chat(user("hi"), {"role": "assistant", "content": "hello"}), TEAM) is None
    assert semantic_scope(chat(user("   ")), TEAM) is None
    assert semantic_scope(chat(), TEAM) is None
    embedding = CacheRequest("embedding", "e", "openai", "1", {}, prompt="x")
    assert semantic_scope(embedding, TEAM) is None


def test_text_completion_prompt_is_eligible() -> None:
    a = semantic_scope(CacheRequest("text", "m", "ollama", "1", {}, prompt="Say hi"), TEAM)
    b = semantic_scope(CacheRequest("text", "m", "ollama", "1", {}, prompt="Say hello"), TEAM)
    assert a is not None and b is not None and a[0] == b[0] and a[1] == "Say hi"
    chat_scope = scope_of(chat(user("Say hi"), model="m", temperature=None))
    assert chat_scope != a[0]


texts = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40).filter(
    lambda t: t.strip()
)


@given(prefix=st.lists(texts, max_size=3), last_a=texts, last_b=texts, tenant=st.sampled_from(["a", "b"]))
def test_scope_depends_only_on_the_prefix(prefix: list[str], last_a: str, last_b: str, tenant: str) -> None:
    history: list[dict[str, Any]] = []
    for i, text in enumerate(prefix):
        history.append({"role": "user" if i % 2 == 0 else "assistant", "content": text})
    owner = Tenant("team", tenant)
    a = semantic_scope(chat(*history, user(last_a)), owner)
    b = semantic_scope(chat(*history, user(last_b)), owner)
    assert a is not None and b is not None
    assert a[0] == b[0]
    other = semantic_scope(chat(*history, user(last_a)), Tenant("team", tenant + "x"))
    assert other is not None and other[0] != a[0]
    longer = semantic_scope(
        chat(*history, user(last_b), {"role": "assistant", "content": "ok"}, user(last_a)), owner
    )
    assert longer is not None and longer[0] != a[0]


def test_package_imports_without_the_extra_and_fails_with_a_hint_when_used() -> None:
    import subprocess
    import sys

    code = """
import sys
sys.modules["numpy"] = None  # as if the [semantic] extra were not installed
import litellm_cache_plugin.semantic as semantic
from litellm_cache_plugin.store.memory import MemoryStore
try:
    semantic.SemanticIndex(MemoryStore(), namespace="n", embedder=semantic.OnnxMiniLMEmbedder())
except semantic.SemanticUnavailable as error:
    print(error)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "pip install 'litellm-cache-plugin[semantic]'" in result.stdout
