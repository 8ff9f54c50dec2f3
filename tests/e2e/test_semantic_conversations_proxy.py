"""Multi-turn conversations through the real proxy with ``layers.semantic.conversations: by_meaning``:
a conversation reworded turn by turn is served by meaning (``x-cache-layer: semantic``), one whose
earlier turns name another plan goes upstream (counted as a refusal), and another tenant is never
served. On both index kinds (in-process, and the shared redis+search index: the earlier turns travel
with the record)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from litellm_cache_plugin.simulator import SimulatorConfig, SimulatorThread
from tests.e2e.conftest import TEAM_A, TEAM_B
from tools.runner import DEMO_AUTH_MODULE, ProxyProcess, proxy_config

pytestmark = pytest.mark.e2e

pytest.importorskip("onnxruntime", reason="the [semantic] extra is not installed")


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def bot(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


SYSTEM = {"role": "system", "content": "You are the Flixora help desk."}
CACHED = [
    SYSTEM,
    user("What is the cheapest Flixora plan?"),
    bot("Standard with Ads, at £5.99 a month."),
    user("Does it have downloads?"),
]
REWORDED = [
    SYSTEM,
    user("Which Flixora plan is the cheapest?"),
    bot("Standard with Ads, at £5.99 a month."),
    user("Does it have any downloads?"),
]
SWAPPED = [
    SYSTEM,
    user("What is the most expensive Flixora plan?"),
    bot("Premium, at £18.99 a month."),
    user("Does it have downloads?"),
]


@pytest.fixture(scope="module", params=["local", "shared"])
def conversation_proxy(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ProxyProcess, SimulatorThread]]:
    semantic: dict[str, object] = {"enabled": True, "conversations": "by_meaning"}
    if request.param == "shared":
        search_url: str = request.getfixturevalue("redis_search_url")
        semantic["index"] = search_url.replace("prefix=", "prefix=semconv-", 1)
    with SimulatorThread(SimulatorConfig(latency_ms=50)) as sim:
        config = proxy_config(sim.url, {"backend": "memory://", "layers": {"semantic": semantic}})
        proxy = ProxyProcess(
            config,
            tmp_path_factory.mktemp("semconv"),
            extra_files={"demo_auth.py": DEMO_AUTH_MODULE},
            name=f"semconv-{request.param}",
        )
        with proxy:
            yield proxy, sim


def ask(proxy: ProxyProcess, key: str, messages: list[dict[str, Any]]) -> httpx.Response:
    return httpx.post(
        f"{proxy.url}/v1/chat/completions",
        json={"model": "llama3.2", "messages": messages, "temperature": 0},
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
    )


def stats(proxy: ProxyProcess) -> dict[str, Any]:
    found = httpx.get(f"{proxy.url}/v1/cache/stats", headers={"Authorization": f"Bearer {proxy.master_key}"})
    layers: dict[str, Any] = found.json()["layers"]
    return layers


def test_reworded_conversation_hits_and_swapped_context_goes_upstream(
    conversation_proxy: tuple[ProxyProcess, SimulatorThread],
) -> None:
    proxy, sim = conversation_proxy

    def calls() -> int:
        return int(httpx.get(f"{sim.url}/_sim/stats").json()["requests"]["chat"])

    def stored() -> int:
        return int(stats(proxy).get("exact", {}).get("llama3.2", {}).get("store", 0))

    def refused() -> int:
        return int(stats(proxy).get("semantic", {}).get("llama3.2", {}).get("refused", 0))

    original = ask(proxy, TEAM_A, CACHED)
    assert original.status_code == 200 and original.headers["x-cache"] == "MISS"
    for _ in range(100):
        if stored() >= 1:
            break
        time.sleep(0.05)
    before = calls()

    reworded = ask(proxy, TEAM_A, REWORDED)
    assert reworded.status_code == 200
    assert reworded.headers["x-cache"] == "HIT"
    assert reworded.headers["x-cache-layer"] == "semantic"
    assert (
        reworded.json()["choices"][0]["message"]["content"]
        == original.json()["choices"][0]["message"]["content"]
    )
    assert calls() == before

    refused_before = refused()
    swapped = ask(proxy, TEAM_A, SWAPPED)
    assert swapped.status_code == 200 and swapped.headers["x-cache"] == "MISS"
    assert calls() == before + 1
    assert refused() == refused_before + 1  # the turn-by-turn refusal is counted as a refusal

    other_tenant = ask(proxy, TEAM_B, REWORDED)
    assert other_tenant.headers["x-cache"] == "MISS"
    assert calls() == before + 2
