"""The semantic layer through the real proxy: a paraphrase is served by meaning, never to another
tenant, and a near-miss (same words, different unit) goes upstream. Every test runs on both index
kinds (in-process, and the shared redis+search index)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from litellm_cache_plugin.simulator import SimulatorConfig, SimulatorThread
from tests.e2e.conftest import TEAM_A, TEAM_B, chat_body
from tools.runner import DEMO_AUTH_MODULE, ProxyProcess, proxy_config

pytestmark = pytest.mark.e2e

pytest.importorskip("onnxruntime", reason="the [semantic] extra is not installed")


@pytest.fixture(scope="module", params=["local", "shared"])
def semantic_proxy(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ProxyProcess, SimulatorThread]]:
    """One proxy per index kind: the in-process index ("local") and the shared vector index on a
    Redis server with the search module ("shared", ``layers.semantic.index: redis+search://``)."""
    semantic: dict[str, object] = {"enabled": True}
    if request.param == "shared":
        search_url: str = request.getfixturevalue("redis_search_url")
        semantic["index"] = search_url.replace("prefix=", "prefix=semproxy-", 1)
    with SimulatorThread(SimulatorConfig(latency_ms=50)) as sim:
        config = proxy_config(sim.url, {"backend": "memory://", "layers": {"semantic": semantic}})
        proxy = ProxyProcess(
            config,
            tmp_path_factory.mktemp("semantic"),
            extra_files={"demo_auth.py": DEMO_AUTH_MODULE},
            name=f"sem-{request.param}",
        )
        with proxy:
            yield proxy, sim


def ask(proxy: ProxyProcess, key: str, prompt: str) -> httpx.Response:
    return httpx.post(
        f"{proxy.url}/v1/chat/completions",
        json=chat_body(prompt, temperature=0),
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
    )


def stored(proxy: ProxyProcess) -> int:
    stats = httpx.get(f"{proxy.url}/v1/cache/stats", headers={"Authorization": f"Bearer {proxy.master_key}"})
    return int(stats.json()["layers"].get("exact", {}).get("llama3.2", {}).get("store", 0))


def test_paraphrase_served_by_meaning_only_within_the_tenant(
    semantic_proxy: tuple[ProxyProcess, SimulatorThread],
) -> None:
    proxy, sim = semantic_proxy
    original = ask(proxy, TEAM_A, "How far is Paris from Lyon?")
    assert original.headers["x-cache"] == "MISS"
    for _ in range(100):
        if stored(proxy) >= 1:
            break
        time.sleep(0.05)

    def calls() -> int:
        return int(httpx.get(f"{sim.url}/_sim/stats").json()["requests"]["chat"])

    before = calls()
    paraphrase = ask(proxy, TEAM_A, "Tell me how far Paris is from Lyon.")
    assert paraphrase.status_code == 200
    assert paraphrase.headers["x-cache"] == "HIT"
    assert paraphrase.headers["x-cache-layer"] == "semantic"
    assert float(paraphrase.headers["x-cache-similarity"]) >= 0.9
    assert (
        paraphrase.json()["choices"][0]["message"]["content"]
        == original.json()["choices"][0]["message"]["content"]
    )
    assert calls() == before

    other_tenant = ask(proxy, TEAM_B, "Tell me how far Paris is from Lyon.")
    assert other_tenant.headers["x-cache"] == "MISS"

    def refused() -> int:
        stats = httpx.get(
            f"{proxy.url}/v1/cache/stats", headers={"Authorization": f"Bearer {proxy.master_key}"}
        ).json()
        return int(stats["layers"].get("semantic", {}).get("llama3.2", {}).get("refused", 0))

    refused_before = refused()
    trap = ask(proxy, TEAM_A, "How far is Paris from Lyon in miles?")
    assert trap.headers["x-cache"] == "MISS"
    assert refused() == refused_before + 1  # the guard's refusal is counted as such, not as no match
    assert (
        trap.json()["choices"][0]["message"]["content"] != original.json()["choices"][0]["message"]["content"]
    )
    assert calls() == before + 2


def test_no_store_paraphrase_is_served_and_adds_nothing_to_the_index(
    semantic_proxy: tuple[ProxyProcess, SimulatorThread],
) -> None:
    """``no-store`` may be answered from a cached entry by meaning; its own miss is neither stored
    nor made findable by meaning."""
    proxy, sim = semantic_proxy

    def calls() -> int:
        return int(httpx.get(f"{sim.url}/_sim/stats").json()["requests"]["chat"])

    def ask_no_store(prompt: str) -> httpx.Response:
        return httpx.post(
            f"{proxy.url}/v1/chat/completions",
            json={**chat_body(prompt, temperature=0), "cache": {"no-store": True}},
            headers={"Authorization": f"Bearer {TEAM_A}"},
            timeout=60,
        )

    before_stores = stored(proxy)
    original = ask(proxy, TEAM_A, "How far is Madrid from Seville?")
    assert original.headers["x-cache"] == "MISS"
    for _ in range(100):
        if stored(proxy) > before_stores:
            break
        time.sleep(0.05)
    before = calls()
    paraphrase = ask_no_store("Tell me how far Madrid is from Seville.")
    assert paraphrase.headers["x-cache"] == "HIT"
    assert paraphrase.headers["x-cache-layer"] == "semantic"
    assert calls() == before

    stores = stored(proxy)
    fresh = ask_no_store("How far is Porto from Lisbon?")
    assert fresh.headers["x-cache"] == "MISS"
    time.sleep(0.5)  # a write would be a background task: give one the time to be counted
    assert stored(proxy) == stores
    again = ask(proxy, TEAM_A, "Tell me how far Porto is from Lisbon.")
    assert again.headers["x-cache"] == "MISS"  # nothing of the no-store answer was indexed
    assert calls() == before + 2
