"""Verified semantic matches through the real proxy (``layers.semantic.verify.mode: judge``), against
the simulator with a judge model that answers from labelled pairs.

A paraphrase of a cached prompt is answered upstream (MISS) until a background judge call has
verified it; it then hits as an alias of the cached entry (``x-cache-layer: semantic-verified``)
with no upstream and no judge call. A pair the judge rejects is never served; another tenant never
uses an alias; an alias dies with its canonical entry (tag, model group, model version)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from litellm_cache_plugin.simulator import SimulatorThread
from tests.e2e.conftest import TEAM_A, TEAM_B
from tests.e2e.semantic_verified_support import (
    CHAT_MODEL,
    SAME,
    TRAP,
    admin_delete,
    alias_hit,
    ask,
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


@pytest.fixture(scope="module", params=["memory", "redis"])
def verified_proxy(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ProxyProcess, SimulatorThread]]:
    """One proxy per backend: on Redis the aliases and remembered verdicts live in the shared store
    (a unique prefix per run), on memory:// in the proxy."""
    base = tmp_path_factory.mktemp("semantic-verified")
    verify = {"mode": "judge", "judge_model": "judge"}
    with start_verified_proxy(request, base, request.param, verify) as started:
        yield started


# --- tests ------------------------------------------------------------------------------------------


def test_verified_paraphrase_becomes_an_alias_for_its_tenant_only(
    verified_proxy: tuple[ProxyProcess, SimulatorThread],
) -> None:
    proxy, sim = verified_proxy
    pair = SAME[0]
    answer = cache_canonical(proxy, TEAM_A, canonical(*pair))

    judged = judge_calls(sim)
    unverified = verify_paraphrase(proxy, sim, TEAM_A, paraphrase(*pair))
    assert content(unverified) != answer  # answered by the model, not by the near match
    assert judge_calls(sim) == judged + 1  # one judge call for the new pair

    # Verified: the paraphrase now hits the canonical entry, with no upstream and no judge call.
    alias_hit(proxy, sim, TEAM_A, paraphrase(*pair), answer)
    alias_hit(proxy, sim, TEAM_A, paraphrase(*pair), answer)
    assert stats(proxy, "semantic", "hit") >= 2

    # Another tenant never uses the alias (nor the canonical entry).
    other = upstream_miss(proxy, sim, TEAM_B, paraphrase(*pair))
    assert content(other) != answer


def test_a_pair_the_judge_rejects_is_never_served(
    verified_proxy: tuple[ProxyProcess, SimulatorThread],
) -> None:
    proxy, sim = verified_proxy
    answer = cache_canonical(proxy, TEAM_A, canonical(*TRAP))

    rejected, judged, calls = stats(proxy, "semantic", "rejected"), judge_calls(sim), upstream(sim)
    # Tagged, so that its own entry can be dropped below without touching the canonical entry.
    trap = ask(proxy, TEAM_A, paraphrase(*TRAP), {"x-cache-tags": "trap-own"})
    assert trap.headers["x-cache"] == "MISS"
    assert upstream(sim) == calls + 1
    wait_until(lambda: stats(proxy, "semantic", "rejected") > rejected, "the judge's rejection")
    assert judge_calls(sim) == judged + 1
    assert content(trap) != answer

    # Asked again once its own answer is gone: still upstream, never the near match's answer, and
    # the remembered verdict means no second judge call.
    admin_delete(proxy, "/v1/cache/tags/trap-own")
    calls, stores = upstream(sim), stats(proxy, "exact", "store")
    again = ask(proxy, TEAM_A, paraphrase(*TRAP))
    assert again.headers["x-cache"] == "MISS"
    assert content(again) != answer
    assert upstream(sim) == calls + 1
    # Its own answer (stored by that miss) is what it gets from now on: an exact hit, never the trap's.
    wait_until(lambda: stats(proxy, "exact", "store") > stores, "its own answer stored")
    third = ask(proxy, TEAM_A, paraphrase(*TRAP))
    assert third.headers["x-cache"] == "HIT"
    assert third.headers["x-cache-layer"] == "exact"
    assert content(third) == content(again) != answer
    assert judge_calls(sim) == judged + 1  # the pair was judged once


def test_tag_invalidation_of_the_canonical_entry_kills_the_alias(
    verified_proxy: tuple[ProxyProcess, SimulatorThread],
) -> None:
    proxy, sim = verified_proxy
    pair = SAME[1]
    answer = cache_canonical(proxy, TEAM_A, canonical(*pair), {"x-cache-tags": "docs-v3"})
    verify_paraphrase(proxy, sim, TEAM_A, paraphrase(*pair))  # asked without the tag
    alias_hit(proxy, sim, TEAM_A, paraphrase(*pair), answer)

    admin_delete(proxy, "/v1/cache/tags/docs-v3")
    after = upstream_miss(proxy, sim, TEAM_A, paraphrase(*pair))
    assert content(after) != answer


def test_version_change_kills_the_alias(verified_proxy: tuple[ProxyProcess, SimulatorThread]) -> None:
    proxy, sim = verified_proxy
    pair = SAME[2]
    answer = cache_canonical(proxy, TEAM_A, canonical(*pair))
    verify_paraphrase(proxy, sim, TEAM_A, paraphrase(*pair))
    alias_hit(proxy, sim, TEAM_A, paraphrase(*pair), answer)

    # The model is re-pulled: a new digest, read by the proxy now.
    httpx.post(f"{sim.url}/_sim/digest", json={"model": CHAT_MODEL}, timeout=10).raise_for_status()
    refreshed = httpx.post(
        f"{proxy.url}/v1/cache/versions/refresh",
        headers={"Authorization": f"Bearer {proxy.master_key}"},
        timeout=30,
    )
    refreshed.raise_for_status()
    after = upstream_miss(proxy, sim, TEAM_A, paraphrase(*pair))
    assert content(after) != answer


def test_model_group_invalidation_kills_the_alias(
    verified_proxy: tuple[ProxyProcess, SimulatorThread],
) -> None:
    """Last: it drops every entry of the model group."""
    proxy, sim = verified_proxy
    pair = SAME[3]
    answer = cache_canonical(proxy, TEAM_A, canonical(*pair))
    verify_paraphrase(proxy, sim, TEAM_A, paraphrase(*pair))
    alias_hit(proxy, sim, TEAM_A, paraphrase(*pair), answer)

    admin_delete(proxy, "/v1/cache/llama3.2")
    after = upstream_miss(proxy, sim, TEAM_A, paraphrase(*pair))
    assert content(after) != answer
