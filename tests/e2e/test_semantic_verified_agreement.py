"""Verification by answer agreement through the real proxy (``layers.semantic.verify.mode:
agreement`` and ``both``), against the simulator with ``intent_answers``: the paraphrases of one
intent are answered alike, a prompt of another intent otherwise.

``agreement``: a paraphrase of a cached prompt is answered upstream (MISS); once its answer agrees
with the cached one it hits as an alias of the cached entry (``x-cache-layer: semantic-verified``),
with no upstream and no judge call. A near prompt of another intent (answered otherwise) is never
served nor aliased and costs no judge call; another tenant never uses an alias; an alias dies with
its canonical entry. ``both``: agreeing answers make an alias without any judge call; differing
answers go to the judge, whose "yes" makes an alias and whose "no" rejects the pair."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from litellm_cache_plugin.simulator import SimulatorThread
from tests.e2e.conftest import TEAM_A, TEAM_B
from tests.e2e.semantic_verified_support import (
    SAME,
    TRAP,
    admin_delete,
    alias_hit,
    ask,
    ask_streamed,
    cache_canonical,
    canonical,
    content,
    judge_calls,
    paraphrase,
    start_verified_proxy,
    stats,
    upstream,
    upstream_miss,
    verify_paraphrase,
    wait_until,
)
from tools.runner import ProxyProcess

pytestmark = pytest.mark.e2e

pytest.importorskip("onnxruntime", reason="the [semantic] extra is not installed")

# Near "How far is Oslo from Bergen?" (threshold and guard pass) but in no labelled pair: the
# simulator answers it as itself (otherwise than the canonical prompt) and its judge, configured with
# ``unknown: yes`` in the both-mode proxy, says it asks the same thing.
UNLABELLED = "How far away is Oslo from Bergen?"


@pytest.fixture(scope="module", params=["memory", "redis"])
def agreement_proxy(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ProxyProcess, SimulatorThread]]:
    """Agreement mode, no judge_model: the judge model group exists but must never be asked."""
    base = tmp_path_factory.mktemp("semantic-agreement")
    with start_verified_proxy(
        request, base, request.param, {"mode": "agreement"}, intent_answers=True
    ) as started:
        yield started


@pytest.fixture(scope="module", params=["memory", "redis"])
def both_proxy(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ProxyProcess, SimulatorThread]]:
    base = tmp_path_factory.mktemp("semantic-both")
    verify = {"mode": "both", "judge_model": "judge"}
    with start_verified_proxy(
        request, base, request.param, verify, intent_answers=True, unknown="yes"
    ) as started:
        yield started


# --- agreement --------------------------------------------------------------------------------------


def test_agreeing_answers_make_an_alias_for_its_tenant_only(
    agreement_proxy: tuple[ProxyProcess, SimulatorThread],
) -> None:
    proxy, sim = agreement_proxy
    pair = SAME[0]
    answer = cache_canonical(proxy, TEAM_A, canonical(*pair))

    agreed = stats(proxy, "semantic", "agreed")
    unverified = verify_paraphrase(proxy, sim, TEAM_A, paraphrase(*pair))
    assert content(unverified) == answer  # answered by the model (an upstream call), alike
    assert stats(proxy, "semantic", "agreed") == agreed + 1
    assert stats(proxy, "semantic", "judged") == 0 and judge_calls(sim) == 0

    # Verified: the paraphrase now hits the canonical entry, with no upstream and no judge call.
    alias_hit(proxy, sim, TEAM_A, paraphrase(*pair), answer)
    alias_hit(proxy, sim, TEAM_A, paraphrase(*pair), answer)

    # Another tenant never uses the alias (nor the canonical entry): its own upstream call.
    upstream_miss(proxy, sim, TEAM_B, paraphrase(*pair))
    assert judge_calls(sim) == 0


def test_a_trap_answered_otherwise_is_never_served_nor_aliased(
    agreement_proxy: tuple[ProxyProcess, SimulatorThread],
) -> None:
    proxy, sim = agreement_proxy
    answer = cache_canonical(proxy, TEAM_A, canonical(*TRAP))

    disagreed, verified, calls = (
        stats(proxy, "semantic", "disagreed"),
        stats(proxy, "semantic", "verified"),
        upstream(sim),
    )
    # Tagged, so that its own entry can be dropped below without touching the canonical entry.
    trap = ask(proxy, TEAM_A, paraphrase(*TRAP), {"x-cache-tags": "trap-own"})
    assert trap.headers["x-cache"] == "MISS"
    assert upstream(sim) == calls + 1
    assert content(trap) != answer
    wait_until(lambda: stats(proxy, "semantic", "disagreed") > disagreed, "the answers compared")
    assert stats(proxy, "semantic", "verified") == verified
    assert stats(proxy, "semantic", "rejected") == 0  # nothing recorded for the pair

    # Its own answer, never the near match's.
    again = ask(proxy, TEAM_A, paraphrase(*TRAP))
    assert again.headers["x-cache"] == "HIT" and again.headers["x-cache-layer"] == "exact"
    assert content(again) == content(trap)

    # Its own entry dropped: found near again, answered upstream again, compared again, never served.
    admin_delete(proxy, "/v1/cache/tags/trap-own")
    third = upstream_miss(proxy, sim, TEAM_A, paraphrase(*TRAP))
    assert content(third) != answer
    wait_until(lambda: stats(proxy, "semantic", "disagreed") > disagreed + 1, "the answers compared again")
    assert stats(proxy, "semantic", "verified") == verified
    assert judge_calls(sim) == 0


def test_a_streamed_paraphrase_is_verified_by_its_assembled_answer(
    agreement_proxy: tuple[ProxyProcess, SimulatorThread],
) -> None:
    proxy, sim = agreement_proxy
    pair = SAME[2]
    answer = cache_canonical(proxy, TEAM_A, canonical(*pair))

    verified, calls = stats(proxy, "semantic", "verified"), upstream(sim)
    headers, streamed = ask_streamed(proxy, TEAM_A, paraphrase(*pair))
    assert headers["x-cache"] == "MISS"
    assert streamed == answer
    assert upstream(sim) == calls + 1
    wait_until(lambda: stats(proxy, "semantic", "verified") > verified, "the streamed paraphrase verified")

    alias_hit(proxy, sim, TEAM_A, paraphrase(*pair), answer)
    calls = upstream(sim)
    headers, replayed = ask_streamed(proxy, TEAM_A, paraphrase(*pair))
    assert headers["x-cache"] == "HIT" and headers["x-cache-layer"] == "semantic-verified"
    assert replayed == answer
    assert upstream(sim) == calls
    assert judge_calls(sim) == 0


def test_tag_invalidation_of_the_canonical_entry_kills_the_agreed_alias(
    agreement_proxy: tuple[ProxyProcess, SimulatorThread],
) -> None:
    proxy, sim = agreement_proxy
    pair = SAME[1]
    answer = cache_canonical(proxy, TEAM_A, canonical(*pair), {"x-cache-tags": "docs-agree"})
    verify_paraphrase(proxy, sim, TEAM_A, paraphrase(*pair))  # asked without the tag
    alias_hit(proxy, sim, TEAM_A, paraphrase(*pair), answer)

    admin_delete(proxy, "/v1/cache/tags/docs-agree")
    upstream_miss(proxy, sim, TEAM_A, paraphrase(*pair))
    assert judge_calls(sim) == 0


# --- both -------------------------------------------------------------------------------------------


def test_both_agreeing_answers_make_an_alias_without_a_judge_call(
    both_proxy: tuple[ProxyProcess, SimulatorThread],
) -> None:
    """First of this module's both-mode tests: the simulator's judge has seen no call at all."""
    proxy, sim = both_proxy
    pair = SAME[3]
    answer = cache_canonical(proxy, TEAM_A, canonical(*pair))
    verify_paraphrase(proxy, sim, TEAM_A, paraphrase(*pair))
    assert stats(proxy, "semantic", "agreed") == 1
    alias_hit(proxy, sim, TEAM_A, paraphrase(*pair), answer)
    assert judge_calls(sim) == 0
    assert stats(proxy, "semantic", "judged") == 0 and stats(proxy, "semantic", "disagreed") == 0


def test_both_differing_answers_reach_the_judge(both_proxy: tuple[ProxyProcess, SimulatorThread]) -> None:
    proxy, sim = both_proxy

    # The trap: answered otherwise, the judge says no: rejected, never served.
    answer = cache_canonical(proxy, TEAM_A, canonical(*TRAP))
    judged, disagreed = judge_calls(sim), stats(proxy, "semantic", "disagreed")
    rejected, verified = stats(proxy, "semantic", "rejected"), stats(proxy, "semantic", "verified")
    trap = upstream_miss(proxy, sim, TEAM_A, paraphrase(*TRAP))
    assert content(trap) != answer
    wait_until(lambda: stats(proxy, "semantic", "rejected") > rejected, "the judge's rejection")
    assert judge_calls(sim) == judged + 1
    assert stats(proxy, "semantic", "disagreed") == disagreed + 1
    assert stats(proxy, "semantic", "verified") == verified
    again = ask(proxy, TEAM_A, paraphrase(*TRAP))
    assert again.headers["x-cache-layer"] == "exact" and content(again) == content(trap)

    # A paraphrase answered otherwise that the judge finds the same: an alias after one judge call.
    pair = SAME[4]
    answer = cache_canonical(proxy, TEAM_A, canonical(*pair))
    judged = judge_calls(sim)
    unverified = verify_paraphrase(proxy, sim, TEAM_A, UNLABELLED)
    assert content(unverified) != answer
    assert judge_calls(sim) == judged + 1
    assert stats(proxy, "semantic", "disagreed") == disagreed + 2
    alias_hit(proxy, sim, TEAM_A, UNLABELLED, answer)
