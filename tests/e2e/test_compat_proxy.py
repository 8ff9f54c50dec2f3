"""A real proxy on a LiteLLM that lacks an internal the fast path needs (simulated: the compatibility
module reads ``LCP_TEST_HIDE_LITELLM_INTERNALS`` and treats the names listed there as missing): it
starts, says so in one log line, and answers every request through the hook path, with every cache
layer working."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from litellm_cache_plugin.integrations.compat import HIDE_ENV
from litellm_cache_plugin.simulator import SimulatorThread
from tests.e2e.conftest import TEAM_A, Client, chat_body, unique
from tools.runner import DEMO_AUTH_MODULE, ProxyProcess, proxy_config, running

pytestmark = pytest.mark.e2e

HIDDEN = "can_key_call_model"


@pytest.fixture(scope="module")
def lacking_proxy(
    simulator: SimulatorThread, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ProxyProcess]:
    proxy = ProxyProcess(
        proxy_config(simulator.url, {"backend": "memory://", "ttl": 600}),
        tmp_path_factory.mktemp("compat-proxy"),
        extra_files={"demo_auth.py": DEMO_AUTH_MODULE},
        env={HIDE_ENV: HIDDEN},
        name="proxy-lacking",
    )
    with running([proxy], timeout=180):
        yield proxy


@pytest.fixture
def lacking(lacking_proxy: ProxyProcess, simulator: SimulatorThread) -> Iterator[Client]:
    client = Client(lacking_proxy, simulator)
    yield client
    client.http.close()


def _log(proxy: ProxyProcess) -> str:
    return proxy.log_path.read_text(encoding="utf-8", errors="replace")


def test_one_log_line_names_the_missing_internal(lacking: Client) -> None:
    lines = [line for line in _log(lacking.proxy).splitlines() if "fast path off" in line]
    assert len(lines) == 1, lines
    assert HIDDEN in lines[0] and "hook path" in lines[0]
    assert "Traceback" not in _log(lacking.proxy)


def test_every_request_succeeds_through_the_hook_path(lacking: Client) -> None:
    body = chat_body(unique("Name a colour."), temperature=0)
    upstream, stores = lacking.upstream_calls(), lacking.stores()
    miss = lacking.chat(TEAM_A, body)
    assert miss.status_code == 200, miss.text
    assert miss.headers["x-cache"] == "MISS"
    lacking.wait_stored(stores)
    hit = lacking.chat(TEAM_A, body)
    assert hit.status_code == 200 and hit.headers["x-cache"] == "HIT"
    assert hit.json()["choices"][0]["message"]["content"] == miss.json()["choices"][0]["message"]["content"]
    with lacking.http.stream(
        "POST", "/v1/chat/completions", json={**body, "stream": True},
        headers={"Authorization": f"Bearer {TEAM_A}"},
    ) as streamed:  # fmt: skip
        assert streamed.status_code == 200 and streamed.headers["x-cache"] == "HIT"
        assert any(line.startswith("data: [DONE]") for line in streamed.iter_lines())
    assert lacking.upstream_calls() == upstream + 1

    inputs = [unique("vector a"), unique("vector b")]
    embed_stores = lacking.stores("embedding", "nomic-embed-text")
    assert lacking.embed(TEAM_A, inputs).headers["x-cache"] == "MISS"
    lacking.wait_stored(embed_stores, "embedding", "nomic-embed-text")
    again = lacking.embed(TEAM_A, inputs)
    assert again.status_code == 200 and again.headers["x-cache"] == "HIT"

    denied = lacking.chat("sk-not-a-key", body)
    assert denied.status_code == 401  # auth still LiteLLM's, on the hook path

    stats = httpx.get(
        f"{lacking.proxy.url}/v1/cache/stats",
        headers={"Authorization": f"Bearer {lacking.proxy.master_key}"},
        timeout=30,
    ).json()
    assert "fast_path" not in stats["layers"]  # the fast path never looked at a request
