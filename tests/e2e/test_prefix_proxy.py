"""Prefix-affinity routing inside a real ``litellm`` proxy process: three simulator instances serve one
model group; the plugin (loaded from config.yaml like any user would) routes by system prompt."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from benchmarks.prefix_affinity import TOPICS, workload
from litellm_cache_plugin.simulator import SimulatorConfig, SimulatorThread
from tools.runner import DEMO_AUTH_MODULE, ProxyProcess, proxy_config

pytestmark = pytest.mark.e2e

KEY = "sk-team-a-0001"
PROMPTS, QUESTIONS = 4, 15


@pytest.fixture(scope="module")
def servers() -> Iterator[list[SimulatorThread]]:
    config = SimulatorConfig(latency_ms=5, tokens_per_second=5000, prompt_tokens_per_second=2000)
    started = [SimulatorThread(config).start() for _ in range(3)]
    yield started
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def proxy(servers: list[SimulatorThread], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    section = {"backend": "memory://", "layers": {"prefix": {"enabled": True}}}
    config = proxy_config(servers[0].url, section)
    config["model_list"] = [
        {
            "model_name": "llama3.2",
            "litellm_params": {"model": "ollama_chat/llama3.2:1b", "api_base": server.url},
            "model_info": {"id": f"sim-{index}"},
        }
        for index, server in enumerate(servers)
    ]
    process = ProxyProcess(
        config,
        Path(tmp_path_factory.mktemp("prefix-proxy")),
        extra_files={"demo_auth.py": DEMO_AUTH_MODULE},
        name="proxy-prefix",
    ).start()
    try:
        yield process.wait_ready(timeout=180)
    finally:
        process.stop()


def test_proxy_routes_each_system_prompt_to_one_server(
    proxy: ProxyProcess, servers: list[SimulatorThread]
) -> None:
    requests = workload(PROMPTS, QUESTIONS)
    with httpx.Client(base_url=proxy.url, timeout=60) as http:

        def send(messages: list[Any]) -> int:
            body = {"model": "llama3.2", "messages": messages, "temperature": 0}
            return http.post(
                "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}"}
            ).status_code

        with ThreadPoolExecutor(4) as pool:
            statuses = list(pool.map(send, requests))
        assert statuses == [200] * len(requests)
        # Reuse is measured in LiteLLM's success callbacks, which run in background tasks.
        deadline = time.monotonic() + 10
        while True:
            stats = http.get("/v1/cache/stats", headers={"Authorization": f"Bearer {proxy.master_key}"})
            stats.raise_for_status()
            prefix = stats.json()["layers"]["prefix"]["llama3.2"]
            if prefix.get("hit", 0) + prefix.get("miss", 0) >= len(requests) or time.monotonic() > deadline:
                break
            time.sleep(0.1)

    # Which server answered which system prompt (the questions name their topic).
    served: dict[str, Counter[int]] = {topic: Counter() for topic in TOPICS[:PROMPTS]}
    for index, server in enumerate(servers):
        for call in server.simulator.stats()["last_calls"]:
            topic = call["inputs"][0].split(" about ", 1)[1].split(":", 1)[0]
            served[topic][index] += 1
    for topic, counts in served.items():
        assert counts.most_common(1)[0][1] >= 0.9 * QUESTIONS, (topic, counts)

    totals = [server.simulator.stats() for server in servers]
    share = sum(s["prompt_tokens_reused"] for s in totals) / sum(s["prompt_tokens"] for s in totals)
    print(f"\nproxy: reuse share {share:.3f}, served {dict(served)}, plugin stats {prefix}")
    assert share >= 0.7
    assert prefix["routed"] == len(requests)
    assert prefix["hit"] + prefix["miss"] == len(requests)
    assert prefix["input_tokens_saved"] / prefix["prompt_tokens"] == pytest.approx(share, abs=0.05)
