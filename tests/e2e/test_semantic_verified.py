"""Verified semantic matches through the real proxy (``layers.semantic.verify.mode: judge``), against
the simulator with a judge model that answers from labelled pairs.

A paraphrase of a cached prompt is answered upstream (MISS) until a background judge call has
verified it; it then hits as an alias of the cached entry (``x-cache-layer: semantic-verified``)
with no upstream and no judge call. A pair the judge rejects is never served; another tenant never
uses an alias; an alias dies with its canonical entry (tag, model group, model version)."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from litellm_cache_plugin.simulator import SimulatorConfig, SimulatorThread
from litellm_cache_plugin.simulator.config import EquivalencePair, SimJudge, SimModel
from tests.e2e.conftest import TEAM_A, TEAM_B, _with_prefix, chat_body
from tools.runner import DEMO_AUTH_MODULE, ProxyProcess, proxy_config

pytestmark = pytest.mark.e2e

pytest.importorskip("onnxruntime", reason="the [semantic] extra is not installed")

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

CHAT_MODEL = "llama3.2:1b"
JUDGE_MODEL = "judge:1b"
DEADLINE_S = 30.0


def canonical(a: str, b: str) -> str:
    return f"How far is {a} from {b}?"


def paraphrase(a: str, b: str) -> str:
    return f"Tell me how far {a} is from {b}."


# The judge's ground truth: these paraphrases ask the same thing as their canonical prompt...
SAME = [("Paris", "Lyon"), ("Rome", "Milan"), ("Berlin", "Munich"), ("Vienna", "Prague"), ("Oslo", "Bergen")]
# ... and this one, near enough for the threshold and the guard, is labelled a trap.
TRAP = ("Madrid", "Seville")


@pytest.fixture(scope="module", params=["memory", "redis"])
def verified_proxy(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ProxyProcess, SimulatorThread]]:
    """One proxy per backend: on Redis the aliases and remembered verdicts live in the shared store
    (a unique prefix per run), on memory:// in the proxy."""
    base = tmp_path_factory.mktemp("semantic-verified")
    if request.param == "redis":
        backend = _with_prefix(request.getfixturevalue("redis_url"), f"verified-{uuid.uuid4().hex[:8]}")
    else:
        backend = "memory://"
    equivalence = base / "equivalence.jsonl"
    lines = [
        EquivalencePair(a=canonical(*pair), b=paraphrase(*pair), label="same").model_dump_json()
        for pair in SAME
    ]
    lines.append(
        EquivalencePair(a=canonical(*TRAP), b=paraphrase(*TRAP), label="different").model_dump_json()
    )
    equivalence.write_text("\n".join(lines) + "\n", encoding="utf-8")
    sim_config = SimulatorConfig(
        latency_ms=50,
        models=[
            SimModel(name=CHAT_MODEL),
            SimModel(name="nomic-embed-text", kind="embed"),
            SimModel(name=JUDGE_MODEL),
        ],
        judge=SimJudge(models=[JUDGE_MODEL], equivalence_file=str(equivalence)),
    )
    with SimulatorThread(sim_config) as sim:
        section = {
            "backend": backend,
            "layers": {"semantic": {"enabled": True, "verify": {"mode": "judge", "judge_model": "judge"}}},
        }
        config = proxy_config(sim.url, section)
        config["model_list"].append(
            {
                "model_name": "judge",
                "litellm_params": {"model": f"ollama_chat/{JUDGE_MODEL}", "api_base": sim.url},
            }
        )
        proxy = ProxyProcess(
            config,
            base / "proxy",
            extra_files={"demo_auth.py": DEMO_AUTH_MODULE},
            name=f"sem-verified-{request.param}",
        )
        with proxy:
            yield proxy, sim


# --- helpers ----------------------------------------------------------------------------------------


def ask(proxy: ProxyProcess, key: str, prompt: str, headers: dict[str, str] | None = None) -> httpx.Response:
    response = httpx.post(
        f"{proxy.url}/v1/chat/completions",
        json=chat_body(prompt, temperature=0),
        headers={"Authorization": f"Bearer {key}", **(headers or {})},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    return response


def content(response: httpx.Response) -> str:
    return str(response.json()["choices"][0]["message"]["content"])


def sim_requests(sim: SimulatorThread) -> dict[str, Any]:
    return httpx.get(f"{sim.url}/_sim/stats", timeout=10).json()  # type: ignore[no-any-return]


def upstream(sim: SimulatorThread) -> int:
    """Generations of the chat model (the judge's calls are counted apart)."""
    return int(sim_requests(sim)["requests_by_model"].get(CHAT_MODEL, 0))


def judge_calls(sim: SimulatorThread) -> int:
    return int(sim_requests(sim)["requests"]["judge"])


def stats(proxy: ProxyProcess, layer: str, what: str) -> int:
    response = httpx.get(
        f"{proxy.url}/v1/cache/stats", headers={"Authorization": f"Bearer {proxy.master_key}"}, timeout=10
    )
    response.raise_for_status()
    return int(response.json()["layers"].get(layer, {}).get("llama3.2", {}).get(what, 0))


def wait_until(probe: Callable[[], bool], what: str, deadline: float = DEADLINE_S) -> None:
    """Poll ``probe`` until it holds (background writes and verifications), failing after ``deadline``."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if probe():
            return
        time.sleep(0.1)
    assert probe(), f"timed out waiting for: {what}"


def cache_canonical(proxy: ProxyProcess, key: str, prompt: str, headers: dict[str, str] | None = None) -> str:
    """Ask ``prompt`` (a MISS) and wait until its answer is stored and findable; returns the answer."""
    stores = stats(proxy, "exact", "store")
    first = ask(proxy, key, prompt, headers)
    assert first.headers["x-cache"] == "MISS"
    wait_until(lambda: stats(proxy, "exact", "store") > stores, "the canonical answer stored")
    return content(first)


def verify_paraphrase(proxy: ProxyProcess, sim: SimulatorThread, key: str, prompt: str) -> httpx.Response:
    """Ask a paraphrase of a cached prompt: answered upstream (MISS), then verified in the background."""
    verified, calls = stats(proxy, "semantic", "verified"), upstream(sim)
    first = ask(proxy, key, prompt)
    assert first.headers["x-cache"] == "MISS"
    assert upstream(sim) == calls + 1
    wait_until(lambda: stats(proxy, "semantic", "verified") > verified, "the paraphrase verified")
    return first


def alias_hit(proxy: ProxyProcess, sim: SimulatorThread, key: str, prompt: str, answer: str) -> None:
    calls, judged = upstream(sim), judge_calls(sim)
    hit = ask(proxy, key, prompt)
    assert hit.headers["x-cache"] == "HIT"
    assert hit.headers["x-cache-layer"] == "semantic-verified"
    assert content(hit) == answer
    assert upstream(sim) == calls
    assert judge_calls(sim) == judged


def admin_delete(proxy: ProxyProcess, path: str) -> None:
    response = httpx.delete(
        f"{proxy.url}{path}", headers={"Authorization": f"Bearer {proxy.master_key}"}, timeout=30
    )
    response.raise_for_status()


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
    calls = upstream(sim)
    other = ask(proxy, TEAM_B, paraphrase(*pair))
    assert other.headers["x-cache"] == "MISS"
    assert content(other) != answer
    assert upstream(sim) == calls + 1


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
    calls = upstream(sim)
    after = ask(proxy, TEAM_A, paraphrase(*pair))
    assert after.headers["x-cache"] == "MISS"
    assert content(after) != answer
    assert upstream(sim) == calls + 1


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
    calls = upstream(sim)
    after = ask(proxy, TEAM_A, paraphrase(*pair))
    assert after.headers["x-cache"] == "MISS"
    assert content(after) != answer
    assert upstream(sim) == calls + 1


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
    calls = upstream(sim)
    after = ask(proxy, TEAM_A, paraphrase(*pair))
    assert after.headers["x-cache"] == "MISS"
    assert content(after) != answer
    assert upstream(sim) == calls + 1
