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


# A question the user announced as unrelated, after two different histories; and the same question
# after a statement about the user, which binds it.
UNRELATED_A = [
    SYSTEM,
    user("My Flixora download stopped working on the train."),
    bot("Downloads expire after 30 days offline; open the app online to renew them."),
    user("ok thanks. unrelated question"),
    bot("Sure, go ahead."),
    user("Does Flixora offer a student discount?"),
]
UNRELATED_B = [
    SYSTEM,
    user("How do I set up a kids profile on Flixora?"),
    bot("Go to Manage Profiles and switch on Kids."),
    user("actually random q"),
    bot("Of course."),
    user("Does Flixora offer a student discount?"),
]
IN_CANADA = [
    SYSTEM,
    user("I live in Canada."),
    bot("Thanks for letting me know."),
    user("Does Flixora offer a student discount?"),
]


def test_an_unrelated_question_is_served_across_histories_to_the_openai_sdk(
    conversation_proxy: tuple[ProxyProcess, SimulatorThread],
) -> None:
    openai = pytest.importorskip("openai")
    proxy, sim = conversation_proxy

    def calls() -> int:
        return int(httpx.get(f"{sim.url}/_sim/stats").json()["requests"]["chat"])

    def refused() -> int:
        return int(stats(proxy).get("semantic", {}).get("llama3.2", {}).get("refused", 0))

    def stored() -> int:
        return int(stats(proxy).get("exact", {}).get("llama3.2", {}).get("store", 0))

    stored_before = stored()
    first = ask(proxy, TEAM_A, UNRELATED_A)
    assert first.status_code == 200 and first.headers["x-cache"] == "MISS"
    answer = first.json()["choices"][0]["message"]["content"]
    for _ in range(100):  # the entry is written after the answer is sent
        if stored() > stored_before:
            break
        time.sleep(0.05)
    before = calls()
    client = openai.OpenAI(api_key=TEAM_A, base_url=f"{proxy.url}/v1", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="llama3.2", messages=UNRELATED_B, temperature=0
    )
    assert raw.headers["x-cache"] == "HIT" and raw.headers["x-cache-layer"] == "semantic"
    assert raw.parse().choices[0].message.content == answer
    assert calls() == before

    refused_before, upstream_before = refused(), calls()
    bound = client.chat.completions.with_raw_response.create(
        model="llama3.2", messages=IN_CANADA, temperature=0
    )
    assert bound.headers["x-cache"] == "MISS"
    assert calls() == upstream_before + 1
    assert refused() == refused_before + 1  # conversation_facts: "Canada" is known to one side only
