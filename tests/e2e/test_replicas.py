"""Two real proxy processes sharing one real Redis: single-flight, stale-while-revalidate, tag
invalidation and model-digest versions across replicas."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from litellm_cache_plugin.simulator import SimulatorConfig, SimulatorThread
from tests.e2e.conftest import TEAM_A, TEAM_B, _with_prefix, chat_body, unique
from tools.runner import (
    DEMO_AUTH_MODULE,
    ProxyProcess,
    proxy_config,
    running,
    strong_master_key,
)

pytestmark = pytest.mark.e2e

DIGEST_REFRESH = 1.0
MASTER_KEY = strong_master_key()


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorThread]:
    with SimulatorThread(SimulatorConfig(latency_ms=100, tokens_per_second=1000, parallel=64)) as thread:
        yield thread


@pytest.fixture(scope="module")
def replicas(
    sim: SimulatorThread, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[str]]:
    section: dict[str, Any] = {
        "backend": _with_prefix(redis_url, f"replicas-{uuid.uuid4().hex[:8]}"),
        "ttl": 600,
        # generous deadline: 50 requests at once on a shared 2-core machine lag the event loop
        "backend_timeout_ms": 1000,
        "versions": {"refresh_interval": DIGEST_REFRESH},
        "models": {"llama3.2-swr": {"ttl": 1, "stale_while_revalidate": 600}},
    }
    config = proxy_config(sim.url, section)
    config["model_list"].append(
        {
            "model_name": "llama3.2-swr",
            "litellm_params": {"model": "ollama_chat/llama3.2:1b", "api_base": sim.url},
        }
    )
    base = tmp_path_factory.mktemp("replicas")
    processes = [
        ProxyProcess(
            config,
            Path(base / f"r{i}"),
            master_key=MASTER_KEY,
            extra_files={"demo_auth.py": DEMO_AUTH_MODULE},
            name=f"r{i}",
        )
        for i in range(2)
    ]
    with running(processes, timeout=180):
        yield [p.url for p in processes]


def sim_calls(sim: SimulatorThread) -> int:
    return int(httpx.get(f"{sim.url}/_sim/stats").json()["requests"]["chat"])


def set_latency(sim: SimulatorThread, ms: float) -> None:
    httpx.post(f"{sim.url}/_sim/config", json={"latency_ms": ms}).raise_for_status()


def post(url: str, key: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {key}", **(headers or {})},
        timeout=60,
    )


def wait_until(probe: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():
            return True
        time.sleep(0.05)
    return False


async def burst(urls: list[str], key: str, body: dict[str, Any], n: int) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=60) as client:
        return await asyncio.gather(
            *(
                client.post(
                    f"{urls[i % len(urls)]}/v1/chat/completions",
                    json=body,
                    headers={"Authorization": f"Bearer {key}"},
                )
                for i in range(n)
            )
        )


def test_fifty_concurrent_identical_misses_make_one_upstream_call(
    sim: SimulatorThread, replicas: list[str]
) -> None:
    set_latency(sim, 800)
    try:
        body = chat_body(unique("A question everyone asks at once."), temperature=0)
        before = sim_calls(sim)
        responses = asyncio.run(burst(replicas, TEAM_A, body, 50))
    finally:
        set_latency(sim, 100)
    assert [r.status_code for r in responses] == [200] * 50
    assert sim_calls(sim) == before + 1
    answers = {r.json()["choices"][0]["message"]["content"] for r in responses}
    assert len(answers) == 1
    outcomes = [r.headers["x-cache"] for r in responses]
    assert outcomes.count("MISS") == 1 and outcomes.count("HIT") == 49


def test_a_leader_whose_client_hangs_up_does_not_leave_its_waiters_waiting(
    sim: SimulatorThread, replicas: list[str]
) -> None:
    """The request leading a single flight is abandoned by its client mid-call (a user pressing
    "stop"). The identical requests waiting on it, on its replica and on the other, are answered
    about when the upstream answers (or lead a call of their own), never after the single-flight
    timeout (30 s)."""
    upstream_s = 1.5
    set_latency(sim, upstream_s * 1000)
    try:
        body = chat_body(unique("Asked, then abandoned."), temperature=0)

        async def scenario() -> tuple[list[httpx.Response], list[float]]:
            async with httpx.AsyncClient(timeout=60) as client:

                async def leader() -> None:
                    with contextlib.suppress(httpx.TimeoutException):
                        await client.post(
                            f"{replicas[0]}/v1/chat/completions",
                            json=body,
                            headers={"Authorization": f"Bearer {TEAM_A}"},
                            timeout=0.5,  # hangs up while the upstream call is under way
                        )

                async def waiter(url: str) -> tuple[httpx.Response, float]:
                    await asyncio.sleep(0.2)
                    started = time.perf_counter()
                    response = await client.post(
                        f"{url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {TEAM_A}"}
                    )
                    return response, time.perf_counter() - started

                _, same_replica, other_replica = await asyncio.gather(
                    leader(), waiter(replicas[0]), waiter(replicas[1])
                )
            answered = [same_replica, other_replica]
            return [r for r, _ in answered], [t for _, t in answered]

        responses, timings = asyncio.run(scenario())
    finally:
        set_latency(sim, 100)
    assert [r.status_code for r in responses] == [200, 200]
    assert max(timings) < 3 * upstream_s + 3, timings  # not the 30 s single-flight timeout
    contents = {r.json()["choices"][0]["message"]["content"] for r in responses}
    assert len(contents) == 1


def test_stale_hit_is_fast_and_triggers_exactly_one_refresh(
    sim: SimulatorThread, replicas: list[str]
) -> None:
    body = {**chat_body(unique("Stale but useful."), temperature=0), "model": "llama3.2-swr"}
    first = post(replicas[0], TEAM_A, body)
    assert first.headers["x-cache"] == "MISS"
    assert wait_until(lambda: post(replicas[1], TEAM_A, body).headers["x-cache"] in ("HIT", "STALE"))
    time.sleep(1.2)  # ttl 1 s: the entry is now stale (stale window 600 s)
    # Upstream slow enough that "did not wait for the refresh" stays measurable on a loaded CI machine
    # (a plain hit there takes 0.1-0.3 s).
    upstream_ms = 5000
    set_latency(sim, upstream_ms)
    try:
        before = sim_calls(sim)
        timings, outcomes = [], []
        for i in range(6):
            started = time.perf_counter()
            response = post(replicas[i % 2], TEAM_A, body)
            timings.append(time.perf_counter() - started)
            outcomes.append(response.headers["x-cache"])
            assert (
                response.json()["choices"][0]["message"]["content"]
                == first.json()["choices"][0]["message"]["content"]
            )
        assert outcomes.count("STALE") >= 4, outcomes
        assert max(timings) < upstream_ms / 1000 / 10, timings  # a tenth of the upstream's latency
        assert wait_until(lambda: sim_calls(sim) == before + 1, timeout=5)
        time.sleep(upstream_ms / 1000 + 1.0)  # the refresh has replaced the entry; no second refresh ran
        assert sim_calls(sim) == before + 1
    finally:
        set_latency(sim, 100)
    assert post(replicas[1], TEAM_A, body).headers["x-cache"] in ("HIT", "STALE")


def test_tag_invalidation_reaches_both_replicas_and_spares_the_rest(replicas: list[str]) -> None:
    # one tagged entry per replica to check: the first miss on a replica refills its entry
    tagged = [chat_body(unique(f"Tagged answer {i}."), temperature=0) for i in range(2)]
    other = chat_body(unique("Untagged answer."), temperature=0)
    for body in tagged:
        assert post(replicas[0], TEAM_A, body, {"x-cache-tags": "docs-v1, faq"}).status_code == 200
    post(replicas[0], TEAM_A, other)
    for url in replicas:
        for body in [*tagged, other]:
            assert wait_until(lambda u=url, b=body: post(u, TEAM_A, b).headers["x-cache"] == "HIT")

    admin = ProxyAdmin(replicas[0])
    assert admin.delete_tag("docs-v1", TEAM_B).json()["scope"] == "own_entries"  # a tenant: only its own
    assert post(replicas[1], TEAM_A, tagged[0]).headers["x-cache"] == "HIT"

    response = admin.delete_tag("docs-v1")
    assert response.status_code == 200, response.text
    assert response.json()["scope"] == "all_tenants"
    for url, body in zip(replicas, tagged, strict=True):
        assert post(url, TEAM_A, body).headers["x-cache"] == "MISS"
        assert post(url, TEAM_A, other).headers["x-cache"] == "HIT"


def test_tenant_can_invalidate_its_own_tag(replicas: list[str]) -> None:
    body = chat_body(unique("Team A draft."), temperature=0)
    post(replicas[0], TEAM_A, body, {"x-cache-tags": "draft"})
    assert wait_until(lambda: post(replicas[1], TEAM_A, body).headers["x-cache"] == "HIT")
    assert ProxyAdmin(replicas[1]).delete_tag("draft", TEAM_A).status_code == 200
    assert post(replicas[0], TEAM_A, body).headers["x-cache"] == "MISS"


def test_invalid_tags_are_rejected_with_a_clear_error(replicas: list[str]) -> None:
    response = post(replicas[0], TEAM_A, chat_body("x", temperature=0), {"x-cache-tags": "bad tag!"})
    assert response.status_code == 400
    assert "invalid cache tag" in response.text


def test_re_pulled_model_misses_within_the_refresh_interval(
    sim: SimulatorThread, replicas: list[str]
) -> None:
    body = chat_body(unique("Version sensitive."), temperature=0)
    old_answer = post(replicas[0], TEAM_A, body).json()["choices"][0]["message"]["content"]
    assert wait_until(lambda: post(replicas[1], TEAM_A, body).headers["x-cache"] == "HIT")
    httpx.post(f"{sim.url}/_sim/digest", json={"model": "llama3.2:1b"}).raise_for_status()
    re_pulled = time.monotonic()
    # Every replica must stop serving the old version's answer within the documented interval (the
    # first replica to notice refills the entry under the new digest, so the other may see a HIT of
    # the new answer rather than a MISS).
    served_new = {url: None for url in replicas}
    while time.monotonic() - re_pulled < DIGEST_REFRESH * 3 + 2 and None in served_new.values():
        for url in replicas:
            if served_new[url] is None:
                answer = post(url, TEAM_A, body).json()["choices"][0]["message"]["content"]
                if answer != old_answer:
                    served_new[url] = time.monotonic() - re_pulled
        time.sleep(0.1)
    assert None not in served_new.values(), served_new
    assert max(served_new.values()) <= DIGEST_REFRESH * 3 + 1  # type: ignore[type-var]
    for url in replicas:  # and never the old answer again
        assert post(url, TEAM_A, body).json()["choices"][0]["message"]["content"] != old_answer


class ProxyAdmin:
    def __init__(self, url: str) -> None:
        self.url = url

    def delete_tag(self, tag: str, key: str | None = None) -> httpx.Response:
        token = key or MASTER_KEY
        return httpx.delete(f"{self.url}/v1/cache/tags/{tag}", headers={"Authorization": f"Bearer {token}"})
