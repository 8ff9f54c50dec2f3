"""End-to-end fixtures: the Ollama simulator and real ``litellm`` proxy processes that load the plugin.

One proxy per backend (memory, Redis) boots in parallel at session start; the same tests run on each.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from litellm_cache_plugin.simulator import SimulatorConfig, SimulatorThread

# Defined here, not imported into each test module: a fixture imported into three modules is three
# fixtures, and its five proxies booted three times per session.
from tests.e2e.fast_path_support import fp_proxies  # noqa: F401
from tools.runner import DEMO_AUTH_MODULE, ProxyProcess, proxy_config, running

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

TEAM_A = "sk-team-a-0001"
TEAM_A_2 = "sk-team-a-0002"
TEAM_B = "sk-team-b-0001"
SIM_LATENCY_MS = 150.0


@pytest.fixture(scope="session")
def simulator() -> Iterator[SimulatorThread]:
    with SimulatorThread(SimulatorConfig(latency_ms=SIM_LATENCY_MS, tokens_per_second=400)) as sim:
        yield sim


@pytest.fixture(scope="session")
def proxies(
    simulator: SimulatorThread, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, ProxyProcess]]:
    base = tmp_path_factory.mktemp("proxies")
    prefix = f"e2e-{uuid.uuid4().hex[:8]}"
    plugins = {
        "memory": {"backend": "memory://", "ttl": 600},
        "redis": {"backend": _with_prefix(redis_url, prefix), "ttl": 600},
    }
    started = {
        name: ProxyProcess(
            proxy_config(simulator.url, section),
            base / name,
            extra_files={"demo_auth.py": DEMO_AUTH_MODULE},
            name=f"proxy-{name}",
        )
        for name, section in plugins.items()
    }
    with running(started.values(), timeout=180):
        yield started


def _with_prefix(redis_url: str, prefix: str) -> str:
    separator = "&" if "?" in redis_url else "?"
    if "prefix=" in redis_url:
        return redis_url.replace("prefix=", f"prefix={prefix}-", 1)
    return f"{redis_url}{separator}prefix={prefix}:"


@pytest.fixture(params=["memory", "redis"])
def proxy(request: pytest.FixtureRequest, proxies: dict[str, ProxyProcess]) -> ProxyProcess:
    return proxies[request.param]


class Client:
    """A tiny OpenAI-style HTTP client for one proxy."""

    def __init__(self, proxy: ProxyProcess, simulator: SimulatorThread) -> None:
        self.proxy = proxy
        self.simulator = simulator
        self.http = httpx.Client(base_url=proxy.url, timeout=60)

    def chat(
        self, key: str, body: dict[str, Any] | bytes, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        all_headers = {
            "Authorization": f"Bearer {key}",
            "Content-Type": "application/json",
            **(headers or {}),
        }
        if isinstance(body, bytes):
            return self.http.post("/v1/chat/completions", content=body, headers=all_headers)
        return self.http.post("/v1/chat/completions", json=body, headers=all_headers)

    def embed(self, key: str, inputs: list[str] | str, model: str = "nomic-embed-text") -> httpx.Response:
        return self.http.post(
            "/v1/embeddings",
            json={"model": model, "input": inputs, "encoding_format": "float"},
            headers={"Authorization": f"Bearer {key}"},
        )

    def sim_stats(self) -> dict[str, Any]:
        return httpx.get(f"{self.simulator.url}/_sim/stats", timeout=10).json()  # type: ignore[no-any-return]

    def upstream_calls(self, endpoint: str = "chat") -> int:
        return int(self.sim_stats()["requests"][endpoint])

    def stores(self, layer: str = "exact", model: str = "llama3.2") -> int:
        stats = self.http.get("/v1/cache/stats", headers={"Authorization": f"Bearer {self.proxy.master_key}"})
        stats.raise_for_status()
        return int(stats.json()["layers"].get(layer, {}).get(model, {}).get("store", 0))

    def wait_stored(self, before: int, layer: str = "exact", model: str = "llama3.2") -> None:
        """Misses are written in a background task: wait (bounded) until the write is counted."""
        assert self.wait_for(lambda: self.stores(layer, model) > before), "entry was not stored in time"

    def wait_for(self, probe: Callable[[], bool], timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if probe():
                return True
            time.sleep(0.05)
        return probe()


@pytest.fixture
def client(proxy: ProxyProcess, simulator: SimulatorThread) -> Iterator[Client]:
    c = Client(proxy, simulator)
    yield c
    c.http.close()


def unique(text: str) -> str:
    return f"{text} [{uuid.uuid4().hex[:10]}]"


def chat_body(prompt: str, **params: Any) -> dict[str, Any]:
    return {"model": "llama3.2", "messages": [{"role": "user", "content": prompt}], **params}
