"""Conversations matched by meaning (``layers.semantic.conversations: by_meaning``): the pure
whole-conversation decision (and the former turn-by-turn rule the benchmark still reports), the
scope a conversation gets, the records that carry its earlier turns (in
process, through the store to another replica, and on the shared index), and the region serving a
reworded conversation while refusing a swapped context and another tenant."""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from litellm_cache_plugin.policy.controls import RequestControls
from litellm_cache_plugin.policy.keys import CacheRequest, Tenant
from litellm_cache_plugin.semantic import semantic_prompt, semantic_scope
from litellm_cache_plugin.semantic.conversation import (
    CONVERSATION_RULES,
    Conversation,
    binds_answer,
    classify,
    decide,
    texts_to_embed,
    topic_break,
)
from litellm_cache_plugin.semantic.guard import features
from litellm_cache_plugin.settings import SettingsError, settings_from_mapping
from tests.region_ports import NoCosts, NoUpstream

TEAM = Tenant("team", "t-1")
OTHER = Tenant("team", "t-2")
SYSTEM = {"role": "system", "content": "You are a billing assistant."}


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def bot(text: str) -> dict[str, Any]:
    return {"role": "assistant", "content": text}


def chat(*messages: dict[str, Any], model: str = "llama", version: str = "1", **params: Any) -> CacheRequest:
    return CacheRequest(
        "chat", model, "ollama", version, {"temperature": 0, **params}, messages=list(messages)
    )


roles = st.sampled_from(["user", "assistant"])


# --- the whole-conversation decision (hand-written examples) -----------------------------------


def conv(*messages: dict[str, Any]) -> Conversation:
    return Conversation(tuple((m["role"], m["content"]) for m in messages[:-1]), messages[-1]["content"])


def sims(table: dict[frozenset[str], float] | None = None, default: float = 1.0) -> Any:
    def similarity(a: str, b: str) -> float:
        return (table or {}).get(frozenset({a, b}), default)

    return similarity


def test_classify_the_last_message() -> None:
    for text, need in [
        ("yes please", "reply"),
        ("Cancel it.", "reply"),
        ("the second one", "reply"),
        ("No, nobody has. What should I do then?", "reply"),
        ("I'd like option 2 for the router", "reply"),
        ("and with the TV add-on?", "refers"),
        ("what about the one in Leeds?", "refers"),
        ("How much does it cost per month?", "refers"),
        ("When will my next bill arrive?", "refers"),
        ("What's the sales tax rate?", "refers"),  # names no subject of its own
        ("What's the sales tax rate in Ontario?", "standalone"),
        ("Does Flixora offer a free trial?", "standalone"),
        # "I" asking a how-to question states nothing about the user; idioms point at nothing.
        ("How do I report a scam call claiming to be from Harbour Bank?", "standalone"),
        ("Can I use Tunely on an Apple Watch?", "standalone"),
        ("How many screens can stream at the same time on the Family plan?", "standalone"),
        ("Can I pay Nimbus by card instead of direct debit?", "standalone"),
        ("Can I add my partner to Flixora?", "refers"),  # "my partner": the user's own state
        ("Can I upgrade it to Premium?", "refers"),
    ]:
        assert classify(text, features)[0] == need, text


def test_a_fact_stated_earlier_binds_a_standalone_question() -> None:
    question = "What is the sales tax rate on a Tesla Model 3?"
    canada = conv(user("I live in Canada."), bot("Thanks for letting me know."), user(question))
    france = conv(user("I live in France."), bot("Thanks for letting me know."), user(question))
    nowhere = conv(user("I am shopping for a car."), bot("Happy to help."), user(question))
    for cached, asked in [(canada, france), (canada, nowhere), (nowhere, canada)]:
        refusal = decide(cached, asked, sims(), threshold=0.85, features=features)
        assert refusal is not None and refusal.rule == "conversation_facts", (cached, asked)
    assert decide(canada, canada, sims(), threshold=0.85, features=features) is None
    # Numbers and times stated earlier bind it too.
    two = conv(user("We have 2 kids."), bot("Noted."), user("How much is child benefit in Scotland?"))
    three = conv(user("We have 3 kids."), bot("Noted."), user("How much is child benefit in Scotland?"))
    assert decide(two, three, sims(), threshold=0.85, features=features).rule == "conversation_facts"  # type: ignore[union-attr]
    # A history that states nothing a question could depend on is not compared at all: no similarity.
    towel = conv(
        user("can you recommend a good towel?"),
        bot("A cotton one."),
        user("Is PulseFit open on Christmas Day?"),
    )
    pool = conv(
        user("is the pool busy at lunch?"), bot("Usually."), user("Is PulseFit open on Christmas Day?")
    )

    def never(a: str, b: str) -> float:
        raise AssertionError("a standalone question compares no history")

    assert texts_to_embed(towel, pool, features) == []
    assert decide(towel, pool, never, threshold=0.85, features=features) is None


def test_a_unit_stated_in_one_conversation_need_only_be_mentioned_in_the_other() -> None:
    # "a stone cracked my windscreen" names the unit word without a measure: mentioned, not stated.
    cached = conv(
        user("a stone hit my windscreen on the motorway"),
        bot("Sorry to hear that. Are you on comprehensive cover?"),
        user("yes comprehensive"),
        bot("Good, glass is included."),
        user("the crack is about 15cm long"),
        bot("That's too long to repair, so it'll need replacing."),
        user("so what will I pay?"),
    )
    asked = conv(
        user("I have comprehensive cover and a stone has cracked my windscreen, about 15cm"),
        bot("A 15cm crack is too long to repair, so it'll need replacing."),
        user("What will I pay?"),
    )
    for a, b in [(cached, asked), (asked, cached)]:
        refusal = decide(a, b, sims(), threshold=0.85, features=features)
        assert refusal is None, refusal
    # A measure in another unit is still a fact the other conversation lacks.
    stone = conv(user("I weigh 11 stone."), bot("Noted."), user("How many calories should I eat a day?"))
    kilos = conv(
        user("I weigh 11 kg more than last year."),
        bot("Noted."),
        user("How many calories should I eat a day?"),
    )
    refusal = decide(stone, kilos, sims(), threshold=0.85, features=features)
    assert refusal is not None and refusal.rule == "conversation_facts" and "unit" in refusal.detail


def test_a_question_about_something_neither_history_mentioned_stands_alone() -> None:
    # Names no entity, number or time, but no word of it was said before and it has no definite
    # description: it does not lean on the history, whose questions then bind nothing.
    leeds = conv(
        user("is there a lost property at the Leeds club?"),
        bot("Yes, reception keeps it for 30 days."),
        user("Do gift cards expire?"),
    )
    towel = conv(user("can I hire a towel?"), bot("Yes, for £3 at reception."), user("Do gift cards expire?"))
    for a, b in [(leeds, towel), (towel, leeds)]:
        assert decide(a, b, sims(default=0.0), threshold=0.85, features=features) is None
    # Existential "there" and the "it" of "is it possible to ..." point at nothing said before.
    for question in ["Is there a student discount on gym membership?", "Is it possible to pay in cash?"]:
        assert classify(question, features)[1] != "anaphora", question
        a = conv(user("can I hire a towel?"), bot("Yes, for £3."), user(question))
        b = conv(user("is the sauna mixed?"), bot("Yes."), user(question))
        assert decide(a, b, sims(default=0.0), threshold=0.85, features=features) is None, question
    # ... but an "it" that is the subject still points back.
    for question in ["Is it going to arrive on time?", "Is it ready to collect yet?"]:
        assert classify(question, features) == ("refers", "anaphora"), question
    # Statements that describe the user still bind it.
    canada = conv(user("I live in Canada."), bot("Noted."), user("Do gift cards expire?"))
    france = conv(user("I live in France."), bot("Noted."), user("Do gift cards expire?"))
    refusal = decide(canada, france, sims(), threshold=0.85, features=features)
    assert refusal is not None and refusal.rule == "conversation_facts"
    # A definite description, or a word the history used, still leans on it.
    fifth = conv(
        user("I'm upgrading to Premium."),
        bot("Premium is £18.99 a month."),
        user("my billing date is the 5th right?"),
        bot("Yes, the 5th of each month."),
        user("when will I be charged the difference?"),
    )
    twenty_fifth = conv(
        user("I'm upgrading to Premium."),
        bot("Premium is £18.99 a month."),
        user("my billing date is the 25th right?"),
        bot("Yes, the 25th of each month."),
        user("when will I be charged the difference?"),
    )
    refusal = decide(fifth, twenty_fifth, sims(), threshold=0.85, features=features)
    assert refusal is not None, "the difference: a definite description leans on the history"
    # After the user said what they want done, an elliptical question is about that, whatever its words.
    for question in ["Do you charge an admin fee?", "How much notice do you need in writing?"]:
        cancelling = conv(user("I'd like to cancel my contract"), bot("I can help."), user(question))
        upgrading = conv(user("I'd like to upgrade my contract"), bot("I can help."), user(question))
        refusal = decide(cancelling, upgrading, sims(default=0.5), threshold=0.85, features=features)
        assert refusal is not None, f"{question}: about what the user wants done"
    # One content word is elliptical: a fee for what the user said before.
    cancel = conv(user("I'd like to cancel my contract"), bot("I can help."), user("Is there a fee?"))
    upgrade = conv(user("I'd like to upgrade my contract"), bot("I can help."), user("Is there a fee?"))
    refusal = decide(cancel, upgrade, sims(default=0.5), threshold=0.85, features=features)
    assert refusal is not None, "Is there a fee? leans on what the user wants to do"
    renewing = conv(
        user("my broadband contract renews on 3 May"),
        bot("I can see that."),
        user("What's the cooling-off period for broadband?"),
    )
    other = conv(
        user("my broadband contract renews on 9 June"),
        bot("I can see that."),
        user("What's the cooling-off period for broadband?"),
    )
    refusal = decide(renewing, other, sims(), threshold=0.85, features=features)
    assert refusal is not None and refusal.rule == "conversation_facts"


def test_only_statements_a_standalone_question_may_depend_on_bind_it() -> None:
    question = "Is PulseFit open on Christmas Day?"
    # A question asked and answered earlier does not carry its subject (Leeds) into one that names
    # its own; neither does a number or a time stated about something else.
    leeds = conv(
        user("is there a lost property at the Leeds club?"), bot("Yes, for 30 days."), user(question)
    )
    towel = conv(user("can I hire a towel?"), bot("Yes, for £3."), user(question))
    paid = conv(user("My bill was 47 pounds in August."), bot("Sorry about that."), user(question))
    for cached, asked in [(leeds, towel), (towel, leeds), (paid, towel), (towel, paid)]:
        assert decide(cached, asked, sims(), threshold=0.85, features=features) is None, (cached, asked)
    # A statement about the user binds (where they live, what they are on, what they have) ...
    for profile in ("I live in Manchester.", "I'm on the Off-Peak plan.", "We have 2 kids."):
        bound = conv(user(profile), bot("Thanks."), user(question))
        refusal = decide(bound, towel, sims(), threshold=0.85, features=features)
        assert refusal is not None and refusal.rule == "conversation_facts", profile
    # ... and so does a statement that names something (a place, a title, a product) ...
    roaming = "Does Kestrel charge for roaming?"
    spain = conv(user("I'm flying to Spain tomorrow."), bot("Have a good trip."), user(roaming))
    turkey = conv(user("I'm flying to Turkey tomorrow."), bot("Have a good trip."), user(roaming))
    assert decide(spain, turkey, sims(), threshold=0.85, features=features).rule == "conversation_facts"  # type: ignore[union-attr]
    film = conv(
        user("The Lighthouse Keeper's Daughter vanished from my list."), bot("Sorry."), user(question)
    )
    assert decide(film, towel, sims(), threshold=0.85, features=features).rule == "conversation_facts"  # type: ignore[union-attr]
    # ... and so does a statement sharing a word with the question.
    dyson = "Is there a warranty on Dyson products?"
    v11 = conv(user("I bought a Dyson V11 last month."), bot("Nice."), user(dyson))
    v8 = conv(user("I bought a Dyson V8 in 2015."), bot("Nice."), user(dyson))
    assert decide(v11, v8, sims(), threshold=0.85, features=features).rule == "conversation_facts"  # type: ignore[union-attr]


def test_a_question_announced_as_unrelated_stands_alone() -> None:
    last = "How do I get a PAC code if I want to switch to another network?"
    history = [user("Why is my Orbit bill £47 this month?"), bot("You went over your 10GB allowance.")]
    other = [user("I lost my phone on the train, it's an iPhone 8"), bot("I've barred the SIM.")]
    cached = conv(*history, user("Thanks. Unrelated question."), bot("Go ahead."), user(last))
    asked = conv(*other, user("actually random q"), bot("Sure."), user(last))
    assert decide(cached, asked, sims(default=0.0), threshold=0.85, features=features) is None
    # Announced in the last message itself.
    opened = conv(*other, user("Unrelated, but " + last))
    assert classify(opened.last, features)[0] == "refers"
    # Without the announcement the facts of either history bind the question.
    plain = conv(*other, user("thanks"), bot("Anything else?"), user(last))
    refusal = decide(cached, plain, sims(default=0.0), threshold=0.85, features=features)
    assert refusal is not None and refusal.rule == "conversation_facts"
    # "unrelated" inside a question is no announcement, in the last message or the turn before it.
    inside = conv(*other, user("Is this charge unrelated to my Orbit plan?"), bot("It is."), user(last))
    assert decide(cached, inside, sims(default=0.0), threshold=0.85, features=features) is not None
    assert topic_break(conv(*other, user("Unrelated, but " + last)))
    # A pronoun still points back after an announcement: the history is compared.
    pointing = conv(*other, user("actually random q"), bot("Sure."), user("can I pause it for a month?"))
    pointing_cached = conv(
        *history, user("Unrelated question."), bot("Go ahead."), user("can I pause it for a month?")
    )
    assert decide(pointing_cached, pointing, sims(default=0.0), threshold=0.85, features=features) is not None
    assert not topic_break(conv(*other, user("Is this fee unrelated to the roaming charge I had?")))
    assert not topic_break(inside)
    # A turn that says more than "new topic" is not an announcement; a reply stays a reply.
    long_turn = conv(
        *other, user("unrelated to the phone, my iPhone 8 contract ends in May"), bot("Ok."), user(last)
    )
    assert decide(cached, long_turn, sims(default=0.0), threshold=0.85, features=features) is not None
    reply = conv(
        *history, user("Unrelated question."), bot("Shall I cancel your bolt-on?"), user("yes please")
    )
    other_reply = conv(*other, user("random q"), bot("Shall I order a new SIM?"), user("yes please"))
    refusal = decide(reply, other_reply, sims(), threshold=0.85, features=features)
    assert refusal is not None


def test_marked_asides_are_not_compared() -> None:
    base = [user("I want to cancel my PulseFit membership"), bot("It needs one month's notice.")]
    last = user("ok how do I actually cancel?")
    cached = conv(*base, user("my next payment is on the 1st"), bot("Then one more payment."), last)
    # An aside the user marks and asks is dropped with the rest of its turn, facts and all.
    aside = conv(
        *base,
        user("fair. random q, is the Leeds club getting a new sauna? saw some builders"),
        bot("Yes, next month."),
        user("my next payment is on the 1st"),
        bot("Then one more payment."),
        last,
    )
    assert decide(cached, aside, sims(default=0.0), threshold=0.85, features=features) is None
    # A fact stated after the aside in the same turn is still compared.
    after = conv(
        *base,
        user("random q, is the Leeds club getting a new sauna? I'm on the Off-Peak plan btw."),
        bot("Yes, next month."),
        user("my next payment is on the 1st"),
        bot("Then one more payment."),
        last,
    )
    refusal = decide(cached, after, sims(default=1.0), threshold=0.85, features=features)
    assert refusal is not None and refusal.rule == "conversation_facts"
    # The marker must open or end the sentence: inside it, it means something else.
    inside = conv(
        *base,
        user("my next payment is on the 1st. is the Leeds fee unrelated to the one in Manchester?"),
        bot("Then one more payment."),
        last,
    )
    refusal = decide(cached, inside, sims(default=1.0), threshold=0.85, features=features)
    assert refusal is not None and refusal.rule == "conversation_facts"
    # A marked statement stays: it may say what the conversation is about.
    stated = conv(
        *base,
        user("my next payment is on the 1st"),
        user("the Leeds club is fine btw, it's the Manchester one I'm leaving"),
        bot("Then one more payment."),
        last,
    )
    refusal = decide(cached, stated, sims(default=0.0), threshold=0.85, features=features)
    assert refusal is not None and refusal.rule == "conversation_facts"
    # A run of turns opened by a marked aside and followed by the shared conversation is dropped.
    side_run = [
        user("Sorry, side question. Do you sell padlocks?"),
        bot("Yes, £6."),
        user("And do you have lockers in Leeds?"),
        bot("Yes."),
    ]
    run = conv(*base, *side_run, user("my next payment is on the 1st"), bot("Then one more payment."), last)
    assert decide(cached, run, sims(default=0.0), threshold=0.85, features=features) is None
    # A statement about the user inside the run is still compared.
    profile_run = [*side_run[:2], user("Do you have lockers? I'm on the Off-Peak plan now."), bot("Yes.")]
    stated_in_run = conv(
        *base, *profile_run, user("my next payment is on the 1st"), bot("Then one more payment."), last
    )
    refusal = decide(cached, stated_in_run, sims(default=1.0), threshold=0.85, features=features)
    assert refusal is not None and refusal.rule == "conversation_facts"
    # Not followed by the shared conversation: the run is compared (Leeds is a fact of its own).
    unresumed = conv(*base, *side_run, last)
    assert decide(cached, unresumed, sims(default=0.0), threshold=0.85, features=features) is not None


def test_a_reply_needs_the_same_offer() -> None:
    cancel = conv(
        user("My Flixora plan renews tomorrow"), bot("Shall I cancel it before then?"), user("yes please")
    )
    annual = conv(
        user("My Flixora plan renews tomorrow"),
        bot("Shall I switch you to annual billing?"),
        user("yes please"),
    )
    pair = frozenset({"Shall I cancel it before then?", "Shall I switch you to annual billing?"})
    refusal = decide(cancel, annual, sims({pair: 0.70}), threshold=0.85, features=features)
    assert refusal is not None and refusal.rule == "conversation_reply"
    # The default asks for the same offer: nothing to embed, no similarity asked for.
    assert texts_to_embed(cancel, annual, features) == []
    assert set(texts_to_embed(cancel, annual, features, reply_threshold=0.95)) == set(pair)
    # A reworded offer, however close, is refused by default; a finite threshold would take it.
    reworded = conv(
        user("My Flixora plan renews tomorrow"), bot("Should I cancel it before then?"), user("yes please")
    )
    close = frozenset({"Shall I cancel it before then?", "Should I cancel it before then?"})

    def never(a: str, b: str) -> float:
        raise AssertionError("an infinite reply threshold compares no assistant turns")

    refusal = decide(cancel, reworded, never, threshold=0.85, features=features)
    assert refusal is not None and refusal.rule == "conversation_reply"
    finite = decide(
        cancel, reworded, sims({close: 0.97}), threshold=0.85, reply_threshold=0.95, features=features
    )
    assert finite is None
    # Close by meaning but another number: the guard refuses.
    cheap = conv(
        user("My Flixora plan renews tomorrow"), bot("Shall I move you to the £5 plan?"), user("yes please")
    )
    dear = conv(
        user("My Flixora plan renews tomorrow"), bot("Shall I move you to the £9 plan?"), user("yes please")
    )
    refusal = decide(cheap, dear, sims(default=0.99), threshold=0.85, features=features)
    assert refusal is not None and refusal.rule in ("conversation_assistant_facts", "conversation_number")
    # A choice by position needs the options in the same order.
    one = conv(
        user("change my plan"),
        bot("Option 1 is Fibre 500, option 2 is the TV add-on."),
        user("the second one"),
    )
    two = conv(
        user("change my plan"),
        bot("Option 1 is the TV add-on, option 2 is Fibre 500."),
        user("the second one"),
    )
    refusal = decide(one, two, sims(), threshold=0.85, features=features)
    assert refusal is not None and refusal.rule == "conversation_ordinal"


def test_a_follow_up_compares_the_differing_user_turns() -> None:
    base = [user("I want to upgrade my broadband"), bot("Sure, which speed?")]
    cached = conv(
        *base, user("I'm with Nimbus on Fibre 150 at home"), bot("Noted."), user("how much will it cost?")
    )
    reworded = conv(
        *base, user("Nimbus is my provider, Fibre 150 at home"), bot("Noted."), user("how much will it cost?")
    )
    swapped = conv(
        *base, user("I'm with Nimbus on Fibre 900 at home"), bot("Noted."), user("how much will it cost?")
    )
    other = conv(
        *base, user("I'm with Nimbus on Fibre 150 at work"), bot("Noted."), user("how much will it cost?")
    )
    differing = frozenset(
        {"I'm with Nimbus on Fibre 150 at home", "Nimbus is my provider, Fibre 150 at home"}
    )
    assert set(texts_to_embed(cached, reworded, features)) == set(differing)
    assert decide(cached, reworded, sims({differing: 0.9}), threshold=0.85, features=features) is None
    low = decide(cached, reworded, sims({differing: 0.8}), threshold=0.85, features=features)
    assert low is not None and low.rule == "conversation_similarity"
    assert decide(cached, swapped, sims(), threshold=0.85, features=features).rule == "conversation_facts"  # type: ignore[union-attr]
    # A near copy with a word swapped: refused however close the embedding says it is.
    near = decide(cached, other, sims(), threshold=0.85, features=features)
    assert near is not None and near.rule.startswith("conversation_") and near.rule in CONVERSATION_RULES
    assert near.rule != "conversation_similarity"
    # Small talk added to a turn is dropped before comparing; turn counts may differ.
    chatty = conv(
        user("Hi, hope you're well! lol"),
        *base,
        user("I'm with Nimbus on Fibre 150 at home"),
        bot("Noted."),
        user("how much will it cost?"),
    )
    assert decide(cached, chatty, sims(default=0.0), threshold=0.85, features=features) is None
    # Without earlier turns on one side: never served.
    alone = Conversation((), "how much will it cost?")
    assert decide(cached, alone, sims(), threshold=0.85, features=features).rule == "conversation_shape"  # type: ignore[union-attr]


messages = st.lists(
    st.tuples(
        roles,
        st.sampled_from(
            [
                "yes please",
                "I live in Canada",
                "it costs £5",
                "hello lol",
                "what about it?",
                "Is Flixora open?",
                "Option 1 is Fibre 500, option 2 is the TV add-on.",
                "I can freeze it for you.",
                "random q, is Leeds open?",
                "Unrelated question.",
            ]
        ),
    ),
    max_size=5,
)


@given(
    cached=messages,
    asked=messages,
    last=st.sampled_from(["yes", "how much is it?", "Is Flixora open on Sunday?", "the second one"]),
    score=st.floats(-1, 1),
)
@example(  # a choice by position after the same options, set up by different offers
    cached=[
        ("assistant", "I can freeze it for you."),
        ("assistant", "Option 1 is Fibre 500, option 2 is the TV add-on."),
    ],
    asked=[
        ("assistant", "Is Flixora open?"),
        ("assistant", "Option 1 is Fibre 500, option 2 is the TV add-on."),
    ],
    last="the second one",
    score=0.5,
)
def test_decide_is_consistent(
    cached: list[tuple[str, str]], asked: list[tuple[str, str]], last: str, score: float
) -> None:
    a, b = Conversation(tuple(cached), last), Conversation(tuple(asked), last)
    assert decide(a, a, sims(default=score), threshold=0.85, features=features) is None
    refusal = decide(a, b, sims(default=score), threshold=0.85, features=features)
    if refusal is not None:
        assert refusal.rule in CONVERSATION_RULES
    elif score < 0.85 and a.context != b.context:
        # A pass below the threshold compared nothing by meaning (or only equal texts).
        pass
    if decide(a, b, sims(default=min(score, 0.0)), threshold=0.85, features=features) is None:
        assert decide(a, b, sims(default=1.0), threshold=0.85, features=features) is None
    # decide asks only for the similarities of texts texts_to_embed listed (the index embeds those).
    listed = set(texts_to_embed(a, b, features))

    def only_listed(x: str, y: str) -> float:
        assert x in listed and y in listed, (x, y, listed)
        return score

    decide(a, b, only_listed, threshold=0.85, features=features)


# --- the scope ----------------------------------------------------------------------------------------


def prompt_of(request: CacheRequest, tenant: Tenant = TEAM, mode: str = "by_meaning") -> Any:
    found = semantic_prompt(request, tenant, conversations=mode)  # type: ignore[arg-type]
    assert found is not None
    return found


def test_single_prompts_keep_their_scope_in_both_modes() -> None:
    for request in (chat(SYSTEM, user("How far is Paris from Lyon?")), chat(user("Hi there"))):
        exact = semantic_scope(request, TEAM)
        assert exact is not None
        assert (prompt_of(request).scope, prompt_of(request).text) == exact
        assert prompt_of(request).context == ()


def test_by_meaning_scope_leaves_out_the_earlier_contents_only() -> None:
    a = chat(SYSTEM, user("I have a Flixora plan  "), bot("It renews on the 14th."), user("cancel it"))
    b = chat(SYSTEM, user("My PulseFit membership"), bot("It costs £24.99."), user("Cancel it."))
    pa, pb = prompt_of(a), prompt_of(b)
    assert pa.scope == pb.scope
    assert pa.context == (("user", "I have a Flixora plan"), ("assistant", "It renews on the 14th."))
    assert pa.text == "cancel it"
    # Today's scope: every earlier turn exact.
    assert prompt_of(a, mode="exact").scope != prompt_of(b, mode="exact").scope
    assert prompt_of(a, mode="exact").context == ()
    # Never the scope of an exact conversation or of the single prompt.
    assert pa.scope not in (
        prompt_of(a, mode="exact").scope,
        prompt_of(chat(SYSTEM, user("cancel it"))).scope,
    )
    # The number and roles of the earlier turns are no longer part of the scope (judged as a whole).
    for same in (
        prompt_of(chat(SYSTEM, user("I have a Flixora plan"), user("cancel it"))),
        prompt_of(chat(SYSTEM, bot("Hello!"), user("I have a Flixora plan"), bot("ok"), user("cancel it"))),
    ):
        assert same.scope == pa.scope
    # Still exact: tenant, model, version, parameters, system prompt, the last turn's other fields;
    # an earlier turn with another field (a name) keeps the whole conversation exact.
    history = (SYSTEM, user("I have a Flixora plan"), bot("It renews on the 14th."))
    for other in (
        prompt_of(a, OTHER),
        prompt_of(chat(*history, user("cancel it"), model="mistral")),
        prompt_of(chat(*history, user("cancel it"), version="2")),
        prompt_of(chat(*history, user("cancel it"), seed=3)),
        prompt_of(chat({"role": "system", "content": "Be brief."}, *history[1:], user("cancel it"))),
        prompt_of(chat(SYSTEM, {**user("I have a Flixora plan"), "name": "bob"}, history[2], user("x"))),
        prompt_of(chat(*history, {**user("cancel it"), "name": "bob"})),
    ):
        assert other.scope != pa.scope
    named = prompt_of(chat(SYSTEM, {**user("I have a Flixora plan"), "name": "bob"}, user("cancel it")))
    assert named.context == ()


def test_tool_calls_and_images_keep_the_exact_scope() -> None:
    tool = chat(
        user("weather in Paris?"),
        {"role": "assistant", "content": None, "tool_calls": [{"id": "1", "type": "function"}]},
        {"role": "tool", "tool_call_id": "1", "content": "sunny"},
        user("and tomorrow?"),
    )
    image = chat(
        user([{"type": "image_url", "image_url": {"url": "data:x"}}]), bot("A cat."), user("what colour?")
    )
    for request in (tool, image):
        found = prompt_of(request)
        exact = semantic_scope(request, TEAM)
        assert exact is not None and (found.scope, found.text, found.context) == (*exact, ())


def test_setting() -> None:
    assert settings_from_mapping({}, environ={}).layers.semantic.conversations == "exact"
    on = settings_from_mapping({"layers": {"semantic": {"conversations": "by_meaning"}}}, environ={})
    assert on.layers.semantic.conversations == "by_meaning"
    with pytest.raises(SettingsError, match=r"layers\.semantic\.conversations"):
        settings_from_mapping({"layers": {"semantic": {"conversations": "fuzzy"}}}, environ={})
    per_model = settings_from_mapping(
        {"models": {"llama": {"layers": {"semantic": {"enabled": True, "conversations": "by_meaning"}}}}},
        environ={},
    )
    assert per_model.for_model("llama").layers.semantic.conversations == "by_meaning"
    assert per_model.for_model("other").layers.semantic.conversations == "exact"


# --- records and the index (needs the [semantic] extra) --------------------------------------------


@pytest.fixture
def _semantic_extra() -> None:
    pytest.importorskip("numpy", reason="the [semantic] extra is not installed")


def test_record_carries_the_earlier_turns(_semantic_extra: None) -> None:
    from litellm_cache_plugin.semantic.index import Record, decode_record, encode_record
    from tests.test_semantic_index import random_unit

    context = (("user", "I have a Flixora plan"), ("assistant", "It renews on the 14th."))
    record = Record("cancel it", "t:x:1", random_unit("a"), 1.0, 2.0, 0, "m", context)
    decoded = decode_record(encode_record(record))
    assert decoded is not None and decoded.context == context and decoded.text == "cancel it"
    plain = decode_record(encode_record(Record("q", "t:x:2", random_unit("b"), 1.0, 2.0, 0, "m")))
    assert plain is not None and plain.context == ()


def conversation_table() -> dict[str, Any]:
    from tests.test_semantic_index import near, random_unit

    plan, pricey = random_unit("flixora"), random_unit("pulsefit")
    answer, cancel = random_unit("answer"), random_unit("cancel")
    return {
        "Cancel it.": cancel,
        "I barely use my 2 Flixora subscriptions.": near(plan, 0.96, "two"),
        "cancel it": near(cancel, 0.97, "lower"),
        "I barely use my Flixora subscription.": plan,
        "My Flixora subscription hardly gets used these days.": near(plan, 0.95),
        "My PulseFit gym membership is too expensive.": pricey,
        "Your Flixora Standard plan renews on the 14th at £10.99.": answer,
        "Your PulseFit Off-Peak membership is £24.99 a month.": near(answer, 0.93, "pulse"),
    }


CACHED = [
    user("I barely use my Flixora subscription."),
    bot("Your Flixora Standard plan renews on the 14th at £10.99."),
    user("Cancel it."),
]
REWORDED = [
    user("My Flixora subscription hardly gets used these days."),
    bot("Your Flixora Standard plan renews on the 14th at £10.99."),
    user("cancel it"),
]
SWAPPED = [
    user("I barely use my Flixora subscription."),
    bot("Your PulseFit Off-Peak membership is £24.99 a month."),
    user("Cancel it."),
]
TWO_PLANS = [
    user("I barely use my 2 Flixora subscriptions."),
    bot("Your Flixora Standard plan renews on the 14th at £10.99."),
    user("Cancel it."),
]
OTHER_TOPIC = [
    user("The gym membership costs too much for me."),
    bot("Your Flixora Standard plan renews on the 14th at £10.99."),
    user("Cancel it."),
]


async def test_index_checks_turns_on_both_kinds(_semantic_extra: None, kind: str, url: str | None) -> None:
    from tests.test_semantic_index import TableEmbedder
    from tests.test_semantic_shared_index import make

    index = make(kind, url, TableEmbedder(conversation_table()))
    try:
        cached = prompt_of(chat(*CACHED))
        reworded = prompt_of(chat(*REWORDED)).context
        assert await index.add(cached.scope, cached.text, "t:x:1", ttl=60, context=cached.context)
        found = await index.resolve(cached.scope, "cancel it", context=reworded)
        assert found.outcome == "hit" and found.match is not None and found.match.entry_key == "t:x:1"
        swapped = await index.resolve(cached.scope, "Cancel it.", context=prompt_of(chat(*SWAPPED)).context)
        assert swapped.outcome == "refused" and swapped.reason == "conversation_assistant_facts"
        two = await index.resolve(cached.scope, "Cancel it.", context=prompt_of(chat(*TWO_PLANS)).context)
        assert two.outcome == "refused" and two.reason == "conversation_facts"
        assert "number '2'" in two.refusals[0].detail
        topic = await index.resolve(cached.scope, "Cancel it.", context=prompt_of(chat(*OTHER_TOPIC)).context)
        assert topic.outcome == "refused" and topic.reason == "conversation_similarity"
        # A record without earlier turns in a conversation's scope is never served (shape).
        assert await index.add(cached.scope, "cancel it", "t:x:2", ttl=60)
        both = await index.resolve(cached.scope, "cancel it", context=reworded)
        assert both.match is not None and both.match.entry_key == "t:x:1"
        assert [r.rule for r in both.refusals] == ["conversation_shape"]
        stats = index.index_stats()
        assert stats["guard_conversation_facts"] == 1 and stats["guard_conversation_similarity"] == 1
        assert stats["guard_conversation_assistant_facts"] == 1
    finally:
        await index.close()


async def test_turns_longer_than_the_model_reads_are_not_compared(_semantic_extra: None) -> None:
    """The embedder reads the first ``max_tokens`` tokens only: earlier turns longer than that would
    be compared by a vector of their start, so the conversation is refused instead."""
    from tests.test_semantic_index import TableEmbedder
    from tests.test_semantic_shared_index import make

    class Reading(TableEmbedder):
        def __init__(self, max_tokens: int) -> None:
            super().__init__(conversation_table())
            self.max_tokens = max_tokens

        def token_count(self, text: str) -> int:
            return len(text.split())

    cached = prompt_of(chat(*CACHED))
    reworded = prompt_of(chat(*REWORDED)).context  # "My Flixora subscription hardly gets used these days."
    for max_tokens, outcome in ((50, "hit"), (6, "refused")):
        index = make("local", None, Reading(max_tokens))
        try:
            assert await index.add(cached.scope, cached.text, "t:x:1", ttl=60, context=cached.context)
            found = await index.resolve(cached.scope, "cancel it", context=reworded)
            assert found.outcome == outcome, max_tokens
            if outcome == "refused":
                assert found.reason == "conversation_similarity"
                assert index.index_stats()["turns_too_long"] >= 1
        finally:
            await index.close()


@pytest.fixture(params=["local", "shared"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def url(kind: str, request: pytest.FixtureRequest) -> str | None:
    if kind != "shared":
        return None
    from tests.test_semantic_shared_index import with_prefix

    return with_prefix(request.getfixturevalue("redis_search_url"))


async def test_another_replica_loads_the_earlier_turns_through_the_store(_semantic_extra: None) -> None:
    from litellm_cache_plugin.store.memory import MemoryStore
    from tests.test_semantic_index import TableEmbedder, make

    store = MemoryStore()
    table = conversation_table()
    writer, reader = make(store, TableEmbedder(table)), make(store, TableEmbedder(table))
    cached = prompt_of(chat(*CACHED))
    await writer.add(cached.scope, cached.text, "t:x:1", ttl=60, context=cached.context)
    hit = await reader.resolve(cached.scope, "cancel it", context=prompt_of(chat(*REWORDED)).context)
    assert hit.outcome == "hit"
    refused = await reader.resolve(cached.scope, "Cancel it.", context=prompt_of(chat(*TWO_PLANS)).context)
    assert refused.reason == "conversation_facts"


# --- the region ---------------------------------------------------------------------------------------


class Region:
    """A CacheRegion with a table embedder; ``ask`` stores an answer of its own on a miss."""

    def __init__(self, conversations: str) -> None:
        from litellm_cache_plugin.engine import CacheEngine
        from litellm_cache_plugin.region import CacheRegion
        from litellm_cache_plugin.semantic import SemanticIndex
        from litellm_cache_plugin.store.memory import MemoryStore
        from tests.test_semantic_index import TableEmbedder

        semantic = {"enabled": True, "threshold": 0.9, "conversations": conversations}
        self.settings = settings_from_mapping({"layers": {"semantic": semantic}}, environ={})
        self.store = MemoryStore()
        self.engine = CacheEngine(self.store, namespace="lcp")
        self.index = SemanticIndex(
            self.store,
            namespace="lcp",
            embedder=TableEmbedder(conversation_table()),
            settings=self.settings.layers.semantic,
        )
        self.region = CacheRegion(
            self.engine, self.settings, upstream=NoUpstream(), costs=NoCosts(), semantic=self.index
        )
        self.calls = 0

    async def ask(self, messages: list[dict[str, Any]], tenant: Tenant = TEAM) -> tuple[str, str]:
        from litellm_cache_plugin.region import RequestContext

        self.calls += 1
        ctx = RequestContext(
            request=chat(*messages),
            tenant=tenant,
            cacheable=True,
            reason="deterministic",
            controls=RequestControls(),
            ttl=600,
            stale_for=0,
            call_id=f"call-{self.calls}",
            stream=False,
            tags=(),
            semantic=True,
        )
        lookup = await self.region.lookup_response(ctx)
        decision = self.region.decision_for(ctx.call_id)
        if lookup.entry is not None:
            assert decision is not None
            return f"{decision.outcome}:{decision.layer}", lookup.entry.payload_json()["choices"][0][
                "message"
            ]["content"]
        answer = f"answer {self.calls} for {tenant.ident}"
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

    def stat(self, what: str) -> int:
        return self.engine.stats.get("semantic", "llama", what)


async def test_region_serves_a_reworded_conversation_and_refuses_a_swapped_one(_semantic_extra: None) -> None:
    h = Region("by_meaning")
    first = await h.ask(CACHED)
    assert first[0] == "MISS"
    assert await h.ask(REWORDED) == ("HIT:semantic", first[1])
    assert h.stat("hit") == 1
    assert (await h.ask(SWAPPED))[0] == "MISS"
    assert h.stat("refused") == 1
    assert h.index.stats["guard_conversation_assistant_facts"] == 1
    assert (await h.ask(TWO_PLANS))[0] == "MISS"
    # Both cached conversations (the original and the swapped one, stored on its miss) are refused.
    assert h.stat("refused") == 2 and h.index.stats["guard_conversation_facts"] == 2
    # Another tenant: never the cached conversation, reworded or not.
    assert (await h.ask(REWORDED, OTHER))[0] == "MISS"
    _, answer = await h.ask(CACHED, OTHER)  # served, but from the other tenant's own entry
    assert answer != first[1] and answer.endswith("for t-2")
    # The swapped conversation's own answer was stored and is served to itself (exact layer).
    assert (await h.ask(SWAPPED))[0] == "HIT:exact"


async def test_region_exact_mode_is_unchanged(_semantic_extra: None) -> None:
    h = Region("exact")
    first = await h.ask(CACHED)
    assert (await h.ask(REWORDED))[0] == "MISS"
    same_history = [*CACHED[:2], user("cancel it")]
    assert await h.ask(same_history) == ("HIT:semantic", first[1])


async def test_region_conversation_dies_with_its_entry(_semantic_extra: None) -> None:
    h = Region("by_meaning")
    await h.ask(CACHED)
    await h.engine.invalidate_model("llama")
    assert (await h.ask(REWORDED))[0] == "MISS"


def test_a_reply_needs_the_offer_set_up_earlier_to_agree() -> None:
    def chat_with(offer: str) -> Conversation:
        return conv(
            user("I'm off work for a while, I can't use the gym"),
            bot(offer),
            user("how long can it be for?"),
            bot("Up to three months. Shall I go ahead?"),
            user("yes please"),
        )

    freeze, cancel = chat_with("I can freeze your membership."), chat_with("I can cancel your membership.")
    freeze_reworded = chat_with("I'm able to freeze your membership.")
    pair = frozenset({"I can freeze your membership.", "I'm able to freeze your membership."})
    # The last assistant turns are equal; the offer made before them differs: refused.
    refusal = decide(freeze, cancel, sims({pair: 0.95}, default=0.6), threshold=0.85, features=features)
    assert refusal is not None and refusal.rule.startswith("conversation_")
    # The same offer reworded passes; the texts compared are listed for embedding.
    assert set(texts_to_embed(freeze, freeze_reworded, features)) == set(pair)
    assert (
        decide(freeze, freeze_reworded, sims({pair: 0.95}, default=0.6), threshold=0.85, features=features)
        is None
    )
    low = decide(freeze, freeze_reworded, sims({pair: 0.7}), threshold=0.85, features=features)
    assert low is not None and low.rule == "conversation_reply"


def test_an_offer_or_closed_question_binds_the_answer() -> None:
    assert binds_answer("Your plan renews on the 14th. Would you like me to cancel it?")
    assert binds_answer("Shall I switch you to annual billing?")
    assert binds_answer("Do you want the 2 pm slot or the 4 pm one?")
    assert binds_answer("I can pause it for a month if you like.")
    assert not binds_answer("Thanks. What would you like to know about it?")
    assert not binds_answer("Got it, how can I help?")
    assert not binds_answer("Would you like me to cancel it? Here is how refunds work.")
    assert not binds_answer(None)
    # An offer or a recommendation made as a statement, as the last sentence.
    assert binds_answer("Sorry to hear that. I can pause it for you instead.")
    assert binds_answer("I'd suggest a one-off payment of £180.")
    assert binds_answer("We could move you to the 30GB plan.")
    assert binds_answer("My recommendation is the annual plan.")
    # What the assistant can see or confirm, or what the user can do, offers nothing.
    assert not binds_answer("I can see a £12 late fee from the 9th.")
    assert not binds_answer("I can help with that.")
    assert not binds_answer("Yes, you can switch in the app.")
    pause = conv(
        user("I'm away for 2 months"),
        bot("I can pause your membership instead."),
        user("ok go ahead with that"),
    )
    cancel = conv(
        user("I'm away for 2 months"),
        bot("I can cancel your membership today."),
        user("ok go ahead with that"),
    )
    refusal = decide(pause, cancel, sims(), threshold=0.85, features=features)
    assert refusal is not None and refusal.rule == "conversation_reply"


def test_a_follow_up_to_an_offer_needs_the_same_offer() -> None:
    # "go ahead with that" is a follow-up (anaphora), not a bare reply: after an offer it answers the
    # offer, so the offers must be equal, however close by meaning.
    cancel = conv(
        user("My Flixora plan renews tomorrow"),
        bot("Would you like me to cancel it before then?"),
        user("Go ahead with that one then"),
    )
    pause = conv(
        user("My Flixora plan renews tomorrow"),
        bot("Would you like me to pause it before then?"),
        user("Go ahead with that one then"),
    )

    def never(a: str, b: str) -> float:
        raise AssertionError("an offer is compared for equality, not by meaning")

    refusal = decide(cancel, pause, never, threshold=0.85, features=features)
    assert refusal is not None and refusal.rule == "conversation_reply"
    assert texts_to_embed(cancel, pause, features) == []
    # After a wh-question the same follow-up is compared by its user context only.
    asked = conv(
        user("My Flixora plan renews tomorrow"),
        bot("Noted. What would you like to do?"),
        user("Go ahead with that one then"),
    )
    other = conv(
        user("My Flixora plan renews tomorrow"),
        bot("Sure. How can I help?"),
        user("Go ahead with that one then"),
    )
    assert decide(asked, other, never, threshold=0.85, features=features) is None
