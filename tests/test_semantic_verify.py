"""Verified semantic matches: the pure rules (alias resolution, lifetime, verdicts, the judge's prompt
and answer), the engine's alias entries, the region driving them with a fake judge (strict: nothing
unverified is served), the bounded background jobs, the judge call that never touches the cache, and
the simulator's judge."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from litellm_cache_plugin.engine import CacheEngine
from litellm_cache_plugin.policy.controls import RequestControls
from litellm_cache_plugin.policy.keys import CacheRequest, Tenant
from litellm_cache_plugin.policy.verify import (
    VERIFY_LOCK_MARGIN_S,
    AliasTarget,
    EntryFacts,
    LockPlan,
    after_verify_lock,
    alias_ttl,
    alias_verdict,
    conversation_transcript,
    decode_alias,
    decode_verdict,
    encode_alias,
    encode_verdict,
    judge_messages,
    judge_prompts,
    parse_judgement,
    verdict_key,
    verify_lock_key,
    verify_lock_ttl,
)
from litellm_cache_plugin.region import CacheRegion, RequestContext
from litellm_cache_plugin.region.verify import Verifier, VerifyJob
from litellm_cache_plugin.settings import SemanticVerify, SettingsError, settings_from_mapping
from litellm_cache_plugin.simulator.config import EquivalencePair, SimJudge
from litellm_cache_plugin.simulator.judge import JudgeBook
from litellm_cache_plugin.store.base import Store, StoreError
from litellm_cache_plugin.store.guarded import CircuitOpenError, GuardedStore
from litellm_cache_plugin.store.memory import MemoryStore
from tests.region_ports import NoCosts, NoUpstream

TEAM = Tenant("team", "t-1")
OTHER = Tenant("team", "t-2")
CANONICAL = "How far is Paris from Lyon?"
PARAPHRASE = "Tell me how far Paris is from Lyon."
TRAP = "Tell me how far Paris is from Lyon in miles."


# --- pure rules -------------------------------------------------------------------------------------


def facts(**changes: Any) -> EntryFacts:
    base: dict[str, Any] = {
        "tenant": "fp",
        "model_version": "v1",
        "tags": ("docs",),
        "counters": {"m": 1, "t": 2},
        "created_at": 100.0,
    }
    return EntryFacts(**{**base, **changes})


def verdict(**overrides: Any) -> str | None:
    arguments: dict[str, Any] = {
        "alias": facts(),
        "target": AliasTarget("lcp:x:canonical", "llama", 100.0, 0.95),
        "canonical": facts(),
        "canonical_reason": "fresh",
        "tenant": "fp",
        "model_group": "llama",
        "model_version": "v1",
    }
    return alias_verdict(**{**arguments, **overrides})


def test_a_live_alias_to_the_same_entry_is_served() -> None:
    assert verdict() is None
    assert verdict(canonical=facts(tags=("docs",), counters={"t": 2, "m": 1})) is None


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"target": None}, "alias_corrupt"),
        ({"tenant": "other"}, "alias_scope"),  # another tenant (defence in depth: the key holds it)
        ({"model_group": "other"}, "alias_scope"),
        ({"model_version": "v2"}, "alias_scope"),
        ({"canonical": None, "canonical_reason": "invalidated"}, "alias_dead"),
        ({"canonical": None, "canonical_reason": "expired"}, "alias_dead"),
        ({"canonical": None, "canonical_reason": "backend_error"}, "backend_error"),
        ({"canonical": facts(tenant="other")}, "alias_scope"),
        ({"canonical": facts(model_version="v2")}, "alias_dead"),
        ({"canonical": facts(created_at=101.0)}, "alias_replaced"),  # a newer answer at the key
        ({"canonical": facts(tags=())}, "alias_replaced"),
        ({"canonical": facts(counters={"m": 1, "t": 3})}, "alias_replaced"),
    ],
)
def test_an_alias_dies_with_its_canonical_entry(overrides: dict[str, Any], reason: str) -> None:
    assert verdict(**overrides) == reason


def test_alias_payload_round_trip_and_garbage() -> None:
    target = AliasTarget("lcp:x:k", "llama", 12.5, 0.91)
    assert decode_alias(encode_alias(target)) == target
    assert decode_alias(encode_alias(AliasTarget("k", "g", 1.0))) == AliasTarget("k", "g", 1.0, None)
    for raw in (b"", b"not json", b"[]", b'{"to": "", "group": "g", "created": 1}', b'{"to": "k"}'):
        assert decode_alias(raw) is None
    assert decode_alias(b'{"to": "k", "group": "g", "created": true}') is None


def test_alias_lifetime_is_what_is_left_of_the_canonical_entry() -> None:
    assert alias_ttl(created_at=100, fresh_for=60, stale_for=0, now=130) == pytest.approx(30)
    assert alias_ttl(created_at=100, fresh_for=60, stale_for=20, now=130) == pytest.approx(50)
    assert alias_ttl(created_at=100, fresh_for=60, stale_for=20, now=159.5) is None  # < 1 s left
    assert alias_ttl(created_at=100, fresh_for=60, stale_for=0, now=200) is None


def test_verdicts_are_remembered_per_pair_and_tenant_scoped_through_the_keys() -> None:
    key = verdict_key("lcp", "lcp:e:team-a:p", "lcp:e:team-a:c")
    assert key.startswith("lcp:v:")
    assert key != verdict_key("lcp", "lcp:e:team-b:p", "lcp:e:team-b:c")
    assert key != verdict_key("lcp", "lcp:e:team-a:c", "lcp:e:team-a:p")  # ordered: new -> cached
    assert decode_verdict(encode_verdict("same")) == "same"
    assert decode_verdict(encode_verdict("different")) == "different"
    assert decode_verdict(None) is None
    assert decode_verdict(b"maybe") is None


@pytest.mark.parametrize(
    ("answer", "judgement"),
    [
        ("yes", "same"),
        ("Yes.", "same"),
        ("  YES, they do", "same"),
        ("no", "different"),
        ("No - different units", "different"),
        ("", None),
        ("maybe", None),
        ("I think yes", None),  # not a clear one-word answer: nothing is recorded
        (None, None),
    ],
)
def test_judge_answers(answer: str | None, judgement: str | None) -> None:
    assert parse_judgement(answer) == judgement


def test_judge_prompt_round_trip() -> None:
    messages = judge_messages(CANONICAL, "two\nlines <request_a> inside")
    assert messages[0]["role"] == "system" and "yes or no" in messages[0]["content"]
    assert judge_prompts(messages) == (CANONICAL, "two\nlines <request_a> inside")
    assert judge_prompts([{"role": "user", "content": "hello"}]) is None


def test_the_judge_sees_whole_conversations_when_either_side_has_earlier_turns() -> None:
    gym = (("user", "my gym membership costs too much"), ("assistant", "would you like to cancel it?"))
    film = (("user", "i barely use my film streaming plan"), ("assistant", "would you like to cancel it?"))
    messages = judge_messages("cancel it", "cancel it", gym, film)
    assert "conversations" in messages[0]["content"] and "yes or no" in messages[0]["content"]
    prompts = judge_prompts(messages)
    assert prompts == (conversation_transcript(gym, "cancel it"), conversation_transcript(film, "cancel it"))
    assert prompts[0].splitlines() == [
        "user: my gym membership costs too much",
        "assistant: would you like to cancel it?",
        "user: cancel it",
    ]
    # The last messages are the same words, the conversations are not: a judge that says "yes" to
    # equal texts (the simulator's does) says no here.
    assert prompts[0] != prompts[1]
    # Single prompts are asked about as before.
    assert judge_messages("a", "b") == judge_messages("a", "b", (), ())
    assert judge_prompts(judge_messages("a", "b")) == ("a", "b")


def test_settings() -> None:
    assert SemanticVerify().mode == "off"  # off by default: nothing changes
    on = settings_from_mapping(
        {"layers": {"semantic": {"enabled": True, "verify": {"mode": "judge", "judge_model": "judge"}}}},
        environ={},
    )
    assert on.layers.semantic.verify.judge_model == "judge"
    with pytest.raises(SettingsError, match="judge_model"):
        settings_from_mapping({"layers": {"semantic": {"verify": {"mode": "judge"}}}}, environ={})
    with pytest.raises(SettingsError, match="strict"):
        settings_from_mapping(
            {"layers": {"semantic": {"verify": {"mode": "judge", "judge_model": "j", "strict": False}}}},
            environ={},
        )
    with pytest.raises(SettingsError, match="unknown setting"):
        settings_from_mapping({"layers": {"semantic": {"verify": {"judge": "j"}}}}, environ={})


# --- the region with a fake judge --------------------------------------------------------------------


class FakeJudge:
    """Answers from a table of pairs; counts its calls."""

    def __init__(self, same: set[frozenset[str]], *, fail: bool = False, delay: float = 0.0) -> None:
        self.same = same
        self.fail = fail
        self.delay = delay
        self.calls = 0

    async def ask(self, model_group: str, messages: list[dict[str, str]], timeout: float) -> str:
        self.calls += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail:
            raise RuntimeError("judge down")
        prompts = judge_prompts(messages)
        assert prompts is not None and model_group == "judge"
        return "yes" if frozenset(prompts) in self.same else "no"


_WORD = re.compile(r"[a-z]+")


async def bag_of_words(texts: Sequence[str]) -> list[list[float]]:
    """A deterministic toy embedding: paraphrases sharing words are close."""
    out = []
    for text in texts:
        vector = [0.0] * 64
        for word in _WORD.findall(text.lower()):
            vector[int(hashlib.sha256(word.encode()).hexdigest(), 16) % 64] += 1.0
        out.append(vector)
    return out


class Harness:
    def __init__(
        self,
        judge: FakeJudge | None,
        *,
        verify: dict[str, Any] | None = None,
        conversations: str = "exact",
        answers: dict[str, str] | None = None,
        store: Store | None = None,
    ) -> None:
        from litellm_cache_plugin.semantic import CallableEmbedder, SemanticIndex

        semantic = {
            "enabled": True,
            "guard": False,
            "threshold": 0.6,
            "conversations": conversations,
            "verify": {"mode": "judge", "judge_model": "judge", **(verify or {})},
        }
        self.settings = settings_from_mapping({"layers": {"semantic": semantic}}, environ={})
        self.store: Store = store if store is not None else MemoryStore()
        self.engine = CacheEngine(self.store, namespace="lcp")
        index = SemanticIndex(
            self.store,
            namespace="lcp",
            embedder=CallableEmbedder("toy", bag_of_words),
            settings=self.settings.layers.semantic,
        )
        self.judge = judge
        self.index = index
        self.region = CacheRegion(
            self.engine, self.settings, upstream=NoUpstream(), costs=NoCosts(), semantic=index, judge=judge
        )
        self.calls = 0
        self.version = "v1"
        # What the model answers to a prompt (default: an answer naming the prompt and the tenant).
        self.answers = answers or {}

    def request(self, prompt: str, history: Sequence[dict[str, str]] = ()) -> CacheRequest:
        return CacheRequest(
            kind="chat",
            model_group="llama",
            provider="ollama_chat",
            model_version=self.version,
            params={"temperature": 0},
            messages=[*history, {"role": "user", "content": prompt}],
        )

    def ctx(
        self,
        prompt: str,
        tenant: Tenant = TEAM,
        tags: tuple[str, ...] = (),
        history: Sequence[dict[str, str]] = (),
    ) -> RequestContext:
        self.calls += 1
        request = self.request(prompt, history)
        return RequestContext(
            request=request,
            tenant=tenant,
            cacheable=True,
            reason="deterministic",
            controls=RequestControls(),
            ttl=600,
            stale_for=0,
            call_id=f"call-{self.calls}",
            stream=False,
            tags=tags,
            semantic=True,
        )

    async def ask(
        self,
        prompt: str,
        tenant: Tenant = TEAM,
        tags: tuple[str, ...] = (),
        history: Sequence[dict[str, str]] = (),
    ) -> tuple[str, str]:
        """(x-cache outcome with layer, answer) of one request; a miss stores an answer of its own."""
        ctx = self.ctx(prompt, tenant, tags, history)
        lookup = await self.region.lookup_response(ctx)
        decision = self.region.decision_for(ctx.call_id)
        if lookup.entry is not None:
            assert decision is not None
            message = lookup.entry.payload_json()["choices"][0]["message"]
            return f"{decision.outcome}:{decision.layer}", message["content"]
        answer = self.answers.get(prompt, f"answer to {prompt} for {tenant.ident}")
        body = {
            "id": "x",
            "object": "chat.completion",
            "created": 1,
            "model": "llama",
            "choices": [
                {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": answer}}
            ],
        }
        await self.region.store_response(ctx, body, upstream_ms=10.0)
        return "MISS", answer

    async def settle(self) -> None:
        for _ in range(200):
            if not self.region.verifier.pending:
                return
            await asyncio.sleep(0.01)
        raise AssertionError("verification did not finish")

    def stat(self, what: str) -> int:
        return self.engine.stats.get("semantic", "llama", what)


@pytest.fixture(autouse=True)
def _needs_semantic_extra() -> None:
    pytest.importorskip("numpy", reason="the [semantic] extra is not installed")


async def test_strict_a_near_match_is_answered_upstream_then_served_as_a_verified_alias() -> None:
    judge = FakeJudge({frozenset((CANONICAL, PARAPHRASE))})
    h = Harness(judge)
    assert (await h.ask(CANONICAL))[0] == "MISS"
    first = await h.ask(PARAPHRASE)
    assert first[0] == "MISS"  # a near match is never served unverified
    assert h.stat("miss") == 2 and h.stat("hit") == 0  # counted as a semantic miss ("unverified")
    await h.settle()
    assert judge.calls == 1 and h.stat("verified") == 1 and h.stat("judged") == 1
    outcome = await h.region.lookup_response(h.ctx(PARAPHRASE))
    assert outcome.outcome == "HIT" and outcome.reason == "alias"
    served = await h.ask(PARAPHRASE)
    assert served == ("HIT:semantic-verified", f"answer to {CANONICAL} for t-1")
    assert judge.calls == 1  # no judge call on a hit
    assert h.stat("hit") == 2  # served by the semantic layer (verified), counted there
    # Another tenant never uses it.
    assert (await h.ask(PARAPHRASE, OTHER))[0] == "MISS"


async def test_a_rejected_pair_is_remembered_and_never_served() -> None:
    judge = FakeJudge(set())
    h = Harness(judge)
    await h.ask(CANONICAL)
    assert (await h.ask(TRAP, tags=("own",)))[0] == "MISS"
    await h.settle()
    assert h.stat("rejected") == 1 and judge.calls == 1
    # Its own entry dropped: the near match is found again, never served, and not judged again.
    await h.engine.invalidate_tag("own")
    outcome, answer = await h.ask(TRAP)
    assert outcome == "MISS" and CANONICAL not in answer
    await h.settle()
    assert judge.calls == 1
    assert (await h.ask(TRAP))[0] == "HIT:exact"


async def test_a_rejected_conversation_is_indexed_with_its_earlier_turns() -> None:
    # conversations: by_meaning with verified mode: a paraphrase the judge rejects is a question of
    # its own, made findable by meaning in its conversation (its earlier turns go into the index with
    # it; without them no conversation could ever match it).
    from litellm_cache_plugin.semantic import semantic_prompt

    judge = FakeJudge(set())
    h = Harness(judge, conversations="by_meaning")
    history = [
        {"role": "user", "content": "I am planning a trip in France."},
        {"role": "assistant", "content": "Sounds good."},
    ]
    await h.ask(CANONICAL, history=history)
    assert (await h.ask(TRAP, history=history))[0] == "MISS"
    await h.settle()
    assert h.stat("rejected") == 1 and judge.calls == 1
    prompt = semantic_prompt(h.request(TRAP, history), TEAM, conversations="by_meaning")
    assert prompt is not None and prompt.context
    resolved = await h.index.resolve(prompt.scope, prompt.text, context=prompt.context)
    assert resolved.match is not None and resolved.match.prompt == prompt.text
    assert resolved.match.entry_key == h.region.key_for(h.ctx(TRAP, history=history))


async def test_a_conversation_pair_is_judged_as_two_conversations() -> None:
    # conversations: by_meaning with verified mode: the judge is asked about the conversations, each
    # with its earlier turns, not about their last messages alone; its "yes" on that makes the alias.
    history = [
        {"role": "user", "content": "I am planning a trip in France."},
        {"role": "assistant", "content": "Sounds good."},
    ]
    turns = tuple((m["role"], m["content"]) for m in history)
    canonical = conversation_transcript(turns, CANONICAL)
    paraphrase = conversation_transcript(turns, PARAPHRASE)
    judge = FakeJudge({frozenset((canonical, paraphrase))})
    h = Harness(judge, conversations="by_meaning")
    await h.ask(CANONICAL, history=history)
    assert (await h.ask(PARAPHRASE, history=history))[0] == "MISS"
    await h.settle()
    assert judge.calls == 1 and h.stat("verified") == 1
    served = await h.ask(PARAPHRASE, history=history)
    assert served == ("HIT:semantic-verified", f"answer to {CANONICAL} for t-1")


@pytest.mark.parametrize("how", ["tag", "model", "tenant", "version", "replaced"])
async def test_an_alias_dies_with_its_canonical_entry_in_the_region(how: str) -> None:
    judge = FakeJudge({frozenset((CANONICAL, PARAPHRASE))})
    h = Harness(judge)
    await h.ask(CANONICAL, tags=("docs",))
    await h.ask(PARAPHRASE)
    await h.settle()
    assert (await h.ask(PARAPHRASE))[0] == "HIT:semantic-verified"
    if how == "tag":
        await h.engine.invalidate_tag("docs")
    elif how == "model":
        await h.engine.invalidate_model("llama")
    elif how == "tenant":
        await h.engine.invalidate_tenant(TEAM.fingerprint)
    elif how == "version":
        h.version = "v2"
    else:  # the canonical key now holds a newer answer (no-cache refresh)
        ctx = h.ctx(CANONICAL, tags=("docs",))
        body = {
            "id": "y",
            "object": "chat.completion",
            "created": 2,
            "model": "llama",
            "choices": [
                {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "new"}}
            ],
        }
        await asyncio.sleep(0.01)
        await h.region.store_response(ctx, body, upstream_ms=1.0)
    outcome, answer = await h.ask(PARAPHRASE)
    assert outcome == "MISS", how
    assert CANONICAL not in answer


async def test_a_failing_judge_records_nothing_and_never_fails_a_request() -> None:
    judge = FakeJudge({frozenset((CANONICAL, PARAPHRASE))}, fail=True)
    h = Harness(judge)
    await h.ask(CANONICAL)
    assert (await h.ask(PARAPHRASE))[0] == "MISS"
    await h.settle()
    assert h.stat("judge_failed") == 1 and h.stat("verified") == 0
    key = h.region.key_for(h.ctx(PARAPHRASE))
    canonical_key = h.region.key_for(h.ctx(CANONICAL))
    assert await h.store.get(verdict_key("lcp", key, canonical_key)) is None
    assert (await h.ask(PARAPHRASE))[0] == "HIT:exact"  # its own answer, not the near match's


async def test_a_slow_judge_times_out() -> None:
    judge = FakeJudge({frozenset((CANONICAL, PARAPHRASE))}, delay=5)
    h = Harness(judge, verify={"timeout": 0.05})
    await h.ask(CANONICAL)
    await h.ask(PARAPHRASE)
    await h.settle()
    assert h.stat("judge_failed") == 1 and h.stat("verified") == 0


async def test_verifications_are_bounded_and_deduplicated() -> None:
    judge = FakeJudge(set(), delay=0.2)
    h = Harness(judge, verify={"max_pending": 1, "max_concurrent": 1})
    await h.ask(CANONICAL)
    await h.ask(PARAPHRASE)
    assert h.region.verifier.pending == 1
    await h.ask("Please tell me how far Paris is from Lyon.")  # another pair: over the bound
    assert h.stat("verify_dropped") == 1
    await h.settle()
    assert judge.calls == 1


async def test_verify_off_serves_near_matches_as_before() -> None:
    judge = FakeJudge(set())
    h = Harness(judge, verify={"mode": "off", "judge_model": None})
    await h.ask(CANONICAL)
    outcome, answer = await h.ask(PARAPHRASE)
    assert outcome == "HIT:semantic" and CANONICAL in answer
    assert judge.calls == 0


# --- verification by answer agreement (modes agreement and both) -----------------------------------

DISTANCE = "Paris is 392 km from Lyon."


def agreeing() -> dict[str, str]:
    """The model answers the canonical prompt and its paraphrase alike (case and final punctuation
    aside), and the trap otherwise."""
    return {
        CANONICAL: DISTANCE,
        PARAPHRASE: "paris is 392 km from Lyon",
        TRAP: "Paris is 244 miles from Lyon.",
    }


async def test_agreeing_answers_make_an_alias_without_a_judge() -> None:
    h = Harness(None, verify={"mode": "agreement", "judge_model": None}, answers=agreeing())
    assert (await h.ask(CANONICAL, tags=("docs",)))[0] == "MISS"
    assert (await h.ask(PARAPHRASE)) == ("MISS", "paris is 392 km from Lyon")  # never served unverified
    await h.settle()
    assert h.stat("agreed") == 1 and h.stat("verified") == 1
    assert h.stat("judged") == 0 and h.stat("disagreed") == 0
    # Nothing remembered for the pair: the alias is the record.
    key, canonical_key = h.region.key_for(h.ctx(PARAPHRASE)), h.region.key_for(h.ctx(CANONICAL))
    assert await h.store.get(verdict_key("lcp", key, canonical_key)) is None
    assert await h.ask(PARAPHRASE) == ("HIT:semantic-verified", DISTANCE)
    assert (await h.ask(PARAPHRASE, OTHER))[0] == "MISS"  # another tenant never uses it
    # The alias dies with its canonical entry.
    await h.engine.invalidate_tag("docs")
    assert await h.ask(PARAPHRASE) == ("MISS", "paris is 392 km from Lyon")


async def test_differing_answers_record_nothing_and_are_never_served() -> None:
    judge = FakeJudge({frozenset((CANONICAL, TRAP))})  # present, but never asked in agreement mode
    h = Harness(judge, verify={"mode": "agreement"}, answers=agreeing())
    await h.ask(CANONICAL)
    assert (await h.ask(TRAP, tags=("own",))) == ("MISS", "Paris is 244 miles from Lyon.")
    await h.settle()
    assert h.stat("disagreed") == 1 and h.stat("verified") == 0 and h.stat("rejected") == 0
    assert judge.calls == 0
    key, canonical_key = h.region.key_for(h.ctx(TRAP)), h.region.key_for(h.ctx(CANONICAL))
    assert await h.store.get(verdict_key("lcp", key, canonical_key)) is None
    assert await h.ask(TRAP) == ("HIT:exact", "Paris is 244 miles from Lyon.")  # its own answer
    # Its own entry dropped: found near again, answered upstream again, compared again; never served.
    await h.engine.invalidate_tag("own")
    assert (await h.ask(TRAP)) == ("MISS", "Paris is 244 miles from Lyon.")
    await h.settle()
    assert h.stat("disagreed") == 2 and h.stat("verified") == 0 and judge.calls == 0


async def test_empty_answers_never_agree_in_the_region() -> None:
    answers = {CANONICAL: "...", PARAPHRASE: "..."}
    h = Harness(None, verify={"mode": "agreement"}, answers=answers)
    await h.ask(CANONICAL)
    await h.ask(PARAPHRASE)
    await h.settle()
    assert h.stat("disagreed") == 1 and h.stat("verified") == 0
    assert (await h.ask(PARAPHRASE))[0] == "HIT:exact"


async def test_a_remembered_judge_verdict_decides_before_agreement() -> None:
    # A pair a judge rejected earlier (judge or both mode) stays rejected, however alike the answers.
    h = Harness(None, verify={"mode": "agreement"}, answers=agreeing())
    await h.ask(CANONICAL)
    key, canonical_key = h.region.key_for(h.ctx(PARAPHRASE)), h.region.key_for(h.ctx(CANONICAL))
    await h.store.set(verdict_key("lcp", key, canonical_key), encode_verdict("different"), 60)
    await h.ask(PARAPHRASE)
    await h.settle()
    assert h.stat("rejected") == 1 and h.stat("agreed") == 0 and h.stat("verified") == 0
    assert (await h.ask(PARAPHRASE))[0] == "HIT:exact"


async def test_both_agreement_first_then_the_judge() -> None:
    other = "Please tell me how far Paris is from Lyon."
    judge = FakeJudge({frozenset((CANONICAL, other))})
    answers = {**agreeing(), other: "About 392 kilometres."}
    h = Harness(judge, verify={"mode": "both"}, answers=answers)
    await h.ask(CANONICAL)
    # Answers agree: an alias, no judge call.
    await h.ask(PARAPHRASE)
    await h.settle()
    assert h.stat("agreed") == 1 and h.stat("verified") == 1 and judge.calls == 0
    assert await h.ask(PARAPHRASE) == ("HIT:semantic-verified", DISTANCE)
    # Answers differ, the judge says same: an alias, the verdict remembered.
    await h.ask(other)
    await h.settle()
    assert h.stat("disagreed") == 1 and judge.calls == 1 and h.stat("judged") == 1
    assert h.stat("verified") == 2
    assert await h.ask(other) == ("HIT:semantic-verified", DISTANCE)
    # Answers differ, the judge says different: rejected, never served.
    await h.ask(TRAP)
    await h.settle()
    assert h.stat("disagreed") == 2 and judge.calls == 2 and h.stat("rejected") == 1
    assert await h.ask(TRAP) == ("HIT:exact", "Paris is 244 miles from Lyon.")
    assert judge.calls == 2


async def test_both_without_a_judge_port_still_verifies_by_agreement() -> None:
    h = Harness(None, verify={"mode": "both"}, answers=agreeing())
    await h.ask(CANONICAL)
    await h.ask(PARAPHRASE)
    await h.ask(TRAP)
    await h.settle()
    assert h.stat("verified") == 1 and h.stat("disagreed") == 1 and h.stat("judge_failed") == 1
    assert h.stat("verify_dropped") == 0
    assert (await h.ask(TRAP))[0] == "HIT:exact"


async def test_judge_mode_without_a_judge_port_drops_as_before() -> None:
    h = Harness(None, answers=agreeing())
    await h.ask(CANONICAL)
    await h.ask(PARAPHRASE)
    await h.settle()
    assert h.stat("verify_dropped") == 1 and h.stat("agreed") == 0 and h.stat("verified") == 0


# --- one verification per pair across replicas (the verification lock) ----------------------------


def test_the_verification_lock_is_per_pair_and_scoped_like_the_verdict() -> None:
    key = verify_lock_key("lcp", "lcp:e:team-a:p", "lcp:e:team-a:c")
    assert key.startswith("lcp:vlock:")
    assert key.removeprefix("lcp:vlock:") == verdict_key("lcp", "lcp:e:team-a:p", "lcp:e:team-a:c")[6:]
    assert key != verify_lock_key("lcp", "lcp:e:team-b:p", "lcp:e:team-b:c")  # tenant (in the keys)
    assert key != verify_lock_key("lcp", "lcp:e:team-a:c", "lcp:e:team-a:p")
    assert key != verify_lock_key("other", "lcp:e:team-a:p", "lcp:e:team-a:c")


def test_the_verification_lock_outlives_the_judge_timeout() -> None:
    assert verify_lock_ttl(30) == 30 + VERIFY_LOCK_MARGIN_S
    assert verify_lock_ttl(0.05) == pytest.approx(0.05 + VERIFY_LOCK_MARGIN_S)
    for odd in (0.0, -1.0, float("nan"), float("inf")):
        assert verify_lock_ttl(odd) == VERIFY_LOCK_MARGIN_S  # always a finite, positive TTL
    assert VERIFY_LOCK_MARGIN_S > 0


def test_what_a_job_does_after_trying_the_lock() -> None:
    assert after_verify_lock("acquired") == LockPlan(verify=True, release=True, count=None)
    # Another replica verifies the pair now: no second judge call nor comparison.
    assert after_verify_lock("held") == LockPlan(verify=False, release=False, count="verify_deduplicated")
    # The store cannot coordinate: fail open, verify without a lock (nothing to release).
    assert after_verify_lock("store_failed") == LockPlan(verify=True, release=False, count="verify_unlocked")


async def _noop_index(scope: str, prompt: str, key: str, ttl: float, context: Any) -> None:
    return None


async def _settle(verifier: Verifier) -> None:
    for _ in range(300):
        if not verifier.pending:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("verification did not finish")


def _pair_keys(h: Harness) -> tuple[str, str]:
    return h.region.key_for(h.ctx(PARAPHRASE)), h.region.key_for(h.ctx(CANONICAL))


async def test_two_replicas_meeting_one_pair_ask_the_judge_once(monkeypatch: pytest.MonkeyPatch) -> None:
    judge = FakeJudge({frozenset((CANONICAL, PARAPHRASE))}, delay=0.3)
    a = Harness(judge)
    jobs: list[VerifyJob] = []
    submit = a.region.verifier.submit

    def spy(job: VerifyJob) -> bool:
        jobs.append(job)
        return submit(job)

    monkeypatch.setattr(a.region.verifier, "submit", spy)
    await a.ask(CANONICAL)
    assert (await a.ask(PARAPHRASE))[0] == "MISS"
    assert len(jobs) == 1
    for _ in range(300):  # replica A's job is in its judge call
        if judge.calls:
            break
        await asyncio.sleep(0.01)
    assert judge.calls == 1
    # Replica B (its own engine, counters and verifier on the shared store) meets the same pair now.
    b_engine = CacheEngine(a.store, namespace="lcp")
    b = Verifier(b_engine, judge, a.settings.layers.semantic.verify, _noop_index)
    assert b.submit(jobs[0])
    await _settle(b)
    assert b_engine.stats.get("semantic", "llama", "verify_deduplicated") == 1
    assert b_engine.stats.get("semantic", "llama", "judged") == 0
    await a.settle()
    assert judge.calls == 1 and a.stat("judged") == 1 and a.stat("verified") == 1
    assert a.stat("verify_deduplicated") == 0
    assert await a.ask(PARAPHRASE) == ("HIT:semantic-verified", f"answer to {CANONICAL} for t-1")
    # B meeting the pair again after A's verdict: the remembered verdict decides, no judge call.
    assert b.submit(jobs[0])
    await _settle(b)
    assert judge.calls == 1
    assert b_engine.stats.get("semantic", "llama", "verified") == 1
    assert b_engine.stats.get("semantic", "llama", "verify_deduplicated") == 1
    assert await a.ask(PARAPHRASE) == ("HIT:semantic-verified", f"answer to {CANONICAL} for t-1")


@pytest.mark.parametrize("mode", ["judge", "agreement", "both"])
async def test_a_pair_whose_lock_another_replica_holds_is_neither_judged_nor_compared(mode: str) -> None:
    judge = FakeJudge({frozenset((CANONICAL, PARAPHRASE))})
    h = Harness(judge, verify={"mode": mode}, answers=agreeing())
    await h.ask(CANONICAL)
    lock = verify_lock_key("lcp", *_pair_keys(h))
    assert await h.store.acquire_lock(lock, "another-replica:job", 30)
    assert (await h.ask(PARAPHRASE))[0] == "MISS"
    await h.settle()
    assert judge.calls == 0
    assert h.stat("verify_deduplicated") == 1
    for counter in ("verified", "agreed", "disagreed", "judged", "judge_failed", "verify_unlocked"):
        assert h.stat(counter) == 0, counter
    assert (await h.ask(PARAPHRASE))[0] == "HIT:exact"  # its own answer: nothing unverified served
    assert await h.store.release_lock(lock, "another-replica:job")  # the other job's lock, untouched


class LockFailingStore(MemoryStore):
    """A shared store whose locks cannot be taken (``error``, e.g. the circuit is open); everything
    else works."""

    def __init__(self, error: StoreError) -> None:
        super().__init__()
        self.error = error
        self.tried: list[str] = []

    async def acquire_lock(self, key: str, owner: str, ttl: float) -> bool:
        self.tried.append(key)
        raise self.error

    async def release_lock(self, key: str, owner: str) -> bool:
        raise self.error


@pytest.mark.parametrize("error", [StoreError("backend down"), CircuitOpenError("circuit open")])
async def test_a_store_that_cannot_lock_fails_open_and_the_judge_is_called_once(error: StoreError) -> None:
    judge = FakeJudge({frozenset((CANONICAL, PARAPHRASE))})
    store = LockFailingStore(error)
    h = Harness(judge, store=store)
    await h.ask(CANONICAL)
    assert (await h.ask(PARAPHRASE))[0] == "MISS"
    await h.settle()
    assert [key for key in store.tried if ":vlock:" in key] == [verify_lock_key("lcp", *_pair_keys(h))]
    assert judge.calls == 1
    assert h.stat("verify_unlocked") == 1 and h.stat("verified") == 1 and h.stat("judged") == 1
    assert h.stat("verify_deduplicated") == 0 and h.stat("judge_failed") == 0
    assert await h.ask(PARAPHRASE) == ("HIT:semantic-verified", f"answer to {CANONICAL} for t-1")


class HangingLockStore(MemoryStore):
    async def acquire_lock(self, key: str, owner: str, ttl: float) -> bool:
        await asyncio.sleep(3600)
        return True


async def test_a_hanging_lock_call_ends_at_the_backend_deadline_and_verifies_anyway() -> None:
    judge = FakeJudge({frozenset((CANONICAL, PARAPHRASE))})
    h = Harness(judge, store=GuardedStore(HangingLockStore(), timeout=0.05))
    await h.ask(CANONICAL)
    await h.ask(PARAPHRASE)
    await h.settle()
    assert judge.calls == 1 and h.stat("verify_unlocked") == 1 and h.stat("verified") == 1


class LockSpyStore(MemoryStore):
    """Records the verification locks taken and released (the single flight's are left out)."""

    def __init__(self, *, release_fails: bool = False) -> None:
        super().__init__()
        self.release_fails = release_fails
        self.acquired: list[tuple[str, str, float, bool]] = []
        self.released: list[tuple[str, str, bool]] = []

    async def acquire_lock(self, key: str, owner: str, ttl: float) -> bool:
        taken = await super().acquire_lock(key, owner, ttl)
        if ":vlock:" in key:
            self.acquired.append((key, owner, ttl, taken))
        return taken

    async def release_lock(self, key: str, owner: str) -> bool:
        if self.release_fails and ":vlock:" in key:
            raise StoreError("release failed")
        released = await super().release_lock(key, owner)
        if ":vlock:" in key:
            self.released.append((key, owner, released))
        return released


@pytest.mark.parametrize(
    ("judge_options", "verify", "outcome"),
    [
        ({}, {}, "verified"),
        ({"same": set()}, {}, "rejected"),
        ({"fail": True}, {}, "judge_failed"),
        ({"delay": 5}, {"timeout": 0.05}, "judge_failed"),  # timed out
    ],
)
async def test_the_lock_is_released_when_the_job_ends(
    judge_options: dict[str, Any], verify: dict[str, Any], outcome: str
) -> None:
    judge = FakeJudge(judge_options.pop("same", {frozenset((CANONICAL, PARAPHRASE))}), **judge_options)
    store = LockSpyStore()
    h = Harness(judge, verify=verify, store=store)
    await h.ask(CANONICAL)
    await h.ask(PARAPHRASE)
    await h.settle()
    assert h.stat(outcome) == 1 and judge.calls == 1
    lock = verify_lock_key("lcp", *_pair_keys(h))
    timeout = float(verify.get("timeout", 30))
    assert [(key, taken) for key, _, _, taken in store.acquired] == [(lock, True)]
    assert store.acquired[0][2] == pytest.approx(timeout + VERIFY_LOCK_MARGIN_S)
    assert store.released == [(lock, store.acquired[0][1], True)]  # by its owner
    assert await store.acquire_lock(lock, "probe", 1)  # free for the next job


async def test_a_lock_that_cannot_be_released_expires_and_changes_nothing() -> None:
    judge = FakeJudge({frozenset((CANONICAL, PARAPHRASE))})
    store = LockSpyStore(release_fails=True)
    h = Harness(judge, store=store)
    await h.ask(CANONICAL)
    await h.ask(PARAPHRASE)
    await h.settle()
    assert h.stat("verified") == 1 and h.stat("judge_failed") == 0
    assert await h.ask(PARAPHRASE) == ("HIT:semantic-verified", f"answer to {CANONICAL} for t-1")


async def test_a_verdict_another_replica_stored_is_used_without_a_judge_call() -> None:
    judge = FakeJudge(set())  # would say "no": the stored "yes" decides
    store = LockSpyStore()
    h = Harness(judge, store=store)
    await h.ask(CANONICAL)
    await h.store.set(verdict_key("lcp", *_pair_keys(h)), encode_verdict("same"), 60)
    await h.ask(PARAPHRASE)
    await h.settle()
    assert judge.calls == 0 and h.stat("judged") == 0 and h.stat("verified") == 1
    assert len(store.acquired) == 1 and len(store.released) == 1  # read under the lock, released
    assert await h.ask(PARAPHRASE) == ("HIT:semantic-verified", f"answer to {CANONICAL} for t-1")


# --- no recursion: the judge call never touches the cache ------------------------------------------


def test_the_judge_call_is_outside_the_cache() -> None:
    from litellm_cache_plugin.integrations.litellm.context import JUDGE_FIELD
    from litellm_cache_plugin.integrations.litellm.upstream import judge_call

    call = judge_call("judge", judge_messages("a", "b"), 3.0)
    assert call["caching"] is False
    assert call["cache"] == {"no-cache": True, "no-store": True}
    assert call["metadata"] == {JUDGE_FIELD: True}
    assert call["model"] == "judge" and call["temperature"] == 0 and call["stream"] is False


async def test_a_judge_call_reaching_the_carrier_is_neither_looked_up_nor_counted() -> None:
    from litellm_cache_plugin.integrations.litellm import CachePlugin
    from litellm_cache_plugin.integrations.litellm.upstream import judge_call

    settings = settings_from_mapping(
        {
            "telemetry": {"enabled": False},
            "layers": {"semantic": {"verify": {"mode": "judge", "judge_model": "j"}}},
        },
        environ={},
    )
    for proxy_mode in (True, False):
        plugin = CachePlugin(settings, proxy_mode=proxy_mode)
        kwargs = {
            **judge_call("judge", judge_messages(CANONICAL, PARAPHRASE), 3.0),
            "model": "ollama_chat/judge:1b",
            "litellm_call_id": "judge-1",
        }
        kwargs["metadata"] = {**kwargs["metadata"], "model_group": "judge"}
        ctx = plugin.context(kwargs)
        assert ctx is not None and not ctx.cacheable and ctx.judge and ctx.reason == "judge_call"
        assert await plugin.carrier.async_get_cache(**kwargs) is None
        assert plugin.carrier.get_cache_key(**kwargs).startswith("lcp-bypass:")
        await plugin.carrier.async_add_cache('{"choices": []}', **kwargs)
        assert plugin.engine.stats.snapshot() == {}  # not counted, nothing stored
        assert plugin.region.verifier.pending == 0


# --- the simulator's judge -------------------------------------------------------------------------


def test_simulator_judge_answers_from_labelled_pairs(tmp_path: Path) -> None:
    path = tmp_path / "pairs.jsonl"
    path.write_text(
        EquivalencePair(a=CANONICAL, b=PARAPHRASE, label="same").model_dump_json()
        + "\n"
        + EquivalencePair(a=CANONICAL, b=TRAP, label="different").model_dump_json()
        + "\n",
        encoding="utf-8",
    )
    book = JudgeBook(
        SimJudge(
            equivalence_file=str(path),
            pairs=[EquivalencePair(a=PARAPHRASE, b="Paris to Lyon: how far?", label="same")],
        )
    )
    assert book.is_judge("judge:1b") and not book.is_judge("llama3.2:1b")
    assert book.answer(judge_messages(CANONICAL, PARAPHRASE)) == "yes"
    assert book.answer(judge_messages("  tell ME how far paris is from lyon. ", CANONICAL)) == "yes"
    assert book.answer(judge_messages(CANONICAL, TRAP)) == "no"
    assert book.answer(judge_messages(CANONICAL, "unlabelled")) == "no"  # unknown: the configured answer
    assert book.answer([{"role": "user", "content": "not a judge question"}]) == "no"
    # Intents: "same" pairs, transitively, answered as the intent's first prompt.
    assert book.intent("Paris to Lyon: how far?") == CANONICAL
    assert book.intent(TRAP) is None  # in no "same" pair: answered as itself
    assert book.intent("unlabelled") is None
    assert JudgeBook(SimJudge(pairs=[], unknown="yes")).verdict("a", "b") == "yes"


def test_simulator_judge_and_intent_answers_over_http() -> None:
    import httpx

    from litellm_cache_plugin.simulator import SimulatorConfig, SimulatorThread
    from litellm_cache_plugin.simulator.config import SimModel

    config = SimulatorConfig(
        latency_ms=0,
        models=[SimModel(name="llama3.2:1b"), SimModel(name="judge:1b")],
        judge=SimJudge(
            pairs=[
                EquivalencePair(a=CANONICAL, b=PARAPHRASE, label="same"),
                EquivalencePair(a=CANONICAL, b=TRAP, label="different"),
            ],
            intent_answers=True,
        ),
    )

    def chat(sim: SimulatorThread, model: str, messages: list[dict[str, str]]) -> str:
        body = {"model": model, "messages": messages, "stream": False, "options": {"temperature": 0}}
        response = httpx.post(f"{sim.url}/api/chat", json=body, timeout=10)
        response.raise_for_status()
        return str(response.json()["message"]["content"])

    with SimulatorThread(config) as sim:
        assert chat(sim, "judge:1b", judge_messages(CANONICAL, PARAPHRASE)) == "yes"
        assert chat(sim, "judge:1b", judge_messages(CANONICAL, TRAP)) == "no"
        same = chat(sim, "llama3.2:1b", [{"role": "user", "content": PARAPHRASE}])
        assert same == chat(sim, "llama3.2:1b", [{"role": "user", "content": CANONICAL}])
        assert chat(sim, "llama3.2:1b", [{"role": "user", "content": TRAP}]) != same
        stats = httpx.get(f"{sim.url}/_sim/stats", timeout=10).json()
        assert stats["requests"]["judge"] == 2 and stats["requests"]["chat"] == 5
        assert stats["requests_by_model"] == {"llama3.2:1b": 3, "judge:1b": 2}
