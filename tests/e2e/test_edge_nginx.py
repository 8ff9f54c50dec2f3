"""Edge layer end to end: real ``litellm`` proxies (fast path on and off) with a real nginx in front,
configured with ``examples/nginx/litellm-edge-cache.conf`` (see ``nginx_support.py``).

Model groups (all on the simulator):
- ``edge-global``: ``scope: global`` - public, served by nginx to everyone;
- ``edge-short``: global with ``s_maxage: 3`` - the staleness bound after an invalidation;
- ``edge-keyed``: team scope with ``public: true`` - nginx keeps one copy per Authorization;
- ``edge-pii``: ``pii: true`` - never public;
- ``llama3.2``: team scope, edge on - private, never stored by nginx.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from litellm_cache_plugin.simulator import SimulatorThread
from tests.e2e.conftest import TEAM_A, TEAM_A_2, TEAM_B, unique
from tests.e2e.nginx_support import NginxProcess, nginx_binary
from tools.runner import DEMO_AUTH_MODULE, ProxyProcess, proxy_config, running

pytestmark = pytest.mark.e2e

SHORT_S_MAXAGE = 3
EDGE_SECTION: dict[str, Any] = {
    "backend": "memory://",
    "ttl": 600,
    "scope": "team",
    "encryption": {"keys": [base64.b64encode(secrets.token_bytes(32)).decode()]},
    "layers": {"edge": {"enabled": True}},
    "models": {
        "edge-global": {
            "scope": "global",
            "layers": {"edge": {"enabled": True, "s_maxage": 60, "max_age": 5}},
        },
        "edge-short": {"scope": "global", "layers": {"edge": {"enabled": True, "s_maxage": SHORT_S_MAXAGE}}},
        "edge-keyed": {"layers": {"edge": {"enabled": True, "public": True}}},
        "edge-pii": {"pii": True, "layers": {"edge": {"enabled": True}}},
    },
}


def _config(simulator_url: str, fast_path: bool) -> dict[str, Any]:
    section = {**EDGE_SECTION, "fast_path": {"enabled": fast_path}}
    config = proxy_config(simulator_url, section)
    chat = config["model_list"][0]
    assert chat["model_name"] == "llama3.2"
    for name in EDGE_SECTION["models"]:
        config["model_list"].append({"model_name": name, "litellm_params": dict(chat["litellm_params"])})
    return config


@dataclass
class Edge:
    """One proxy (fast path on or off) and the nginx in front of it."""

    name: str
    proxy: ProxyProcess
    nginx: NginxProcess
    simulator: SimulatorThread

    def __post_init__(self) -> None:
        self.direct = httpx.Client(base_url=self.proxy.url, timeout=60)
        self.cached = httpx.Client(base_url=self.nginx.url, timeout=60)

    def chat(
        self, key: str, body: dict[str, Any], *, via_nginx: bool = True, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        client = self.cached if via_nginx else self.direct
        response = client.post(
            "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}", **(headers or {})}
        )
        assert response.status_code in (200, 304), response.text
        return response

    def upstream_calls(self) -> int:
        stats = httpx.get(f"{self.simulator.url}/_sim/stats", timeout=10).json()
        return int(stats["requests"]["chat"])

    def stats(self, model: str, layer: str = "exact") -> dict[str, float]:
        response = self.direct.get(
            "/v1/cache/stats", headers={"Authorization": f"Bearer {self.proxy.master_key}"}
        )
        response.raise_for_status()
        return dict(response.json()["layers"].get(layer, {}).get(model, {}))

    def not_modified(self) -> float:
        """304s the proxy sent (all model groups: the hook path does not name the group)."""
        response = self.direct.get(
            "/v1/cache/stats", headers={"Authorization": f"Bearer {self.proxy.master_key}"}
        )
        rows = response.json()["layers"].get("edge", {}).values()
        return float(sum(row.get("not_modified", 0) for row in rows))

    def proxy_lookups(self, model: str) -> float:
        """Requests of ``model`` the proxy's exact layer saw (hits, misses, stale hits)."""
        row = self.stats(model)
        return row.get("hit", 0) + row.get("miss", 0) + row.get("stale", 0)

    def wait_stored(self, model: str, before: float) -> None:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and self.stats(model).get("store", 0) <= before:
            time.sleep(0.05)
        assert self.stats(model).get("store", 0) > before, "entry was not stored in time"

    def warm(self, key: str, body: dict[str, Any], model: str) -> httpx.Response:
        before = self.stats(model).get("store", 0)
        first = self.chat(key, body, via_nginx=False)
        self.wait_stored(model, before)
        return first

    def invalidate_tag(self, tag: str) -> None:
        response = self.direct.delete(
            f"/v1/cache/tags/{tag}", headers={"Authorization": f"Bearer {self.proxy.master_key}"}
        )
        assert response.status_code == 200, response.text

    def close(self) -> None:
        self.direct.close()
        self.cached.close()


@pytest.fixture(scope="module")
def edges(simulator: SimulatorThread, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Edge]]:
    nginx_binary()  # skip (fail in CI) before booting proxies for nothing
    base = tmp_path_factory.mktemp("edge")
    proxies = {
        name: ProxyProcess(
            _config(simulator.url, fast_path),
            base / name,
            extra_files={"demo_auth.py": DEMO_AUTH_MODULE},
            name=f"proxy-edge-{name}",
        )
        for name, fast_path in (("fast", True), ("hooks", False))
    }
    started: dict[str, Edge] = {}
    with running(proxies.values(), timeout=180):
        try:
            for name, proxy in proxies.items():
                nginx = NginxProcess(base / f"nginx-{name}", proxy.port).start()
                started[name] = Edge(name, proxy, nginx, simulator)
            yield started
        finally:
            for edge in started.values():
                edge.close()
                edge.nginx.stop()


@pytest.fixture(params=["fast", "hooks"])
def edge(request: pytest.FixtureRequest, edges: dict[str, Edge]) -> Edge:
    return edges[request.param]


def chat_body(model: str, prompt: str, **params: Any) -> dict[str, Any]:
    return {
        "model": model,
        "messages": [{"role": "user", "content": unique(prompt)}],
        "temperature": 0,
        **params,
    }


def content_of(response: httpx.Response) -> str:
    return str(response.json()["choices"][0]["message"]["content"])


def varies_on(response: httpx.Response) -> set[str]:
    # LiteLLM's CORS middleware adds Origin.
    return {part.strip() for part in response.headers.get("vary", "").split(",") if part.strip()}


def nginx_status(response: httpx.Response) -> str:
    return str(response.headers.get("x-cache-status", ""))


# --- public answers ------------------------------------------------------------------------------------


def test_public_answer_is_served_by_nginx_without_reaching_the_proxy(edge: Edge) -> None:
    model = "edge-global"
    body = chat_body(model, "What is the capital of Peru?")
    stored_before = edge.stats(model).get("store", 0)
    first = edge.chat(TEAM_A, body)
    assert nginx_status(first) == "MISS"
    assert first.headers["x-cache"] == "MISS"
    assert first.headers["cache-control"] == "public, max-age=5, s-maxage=60"
    assert "Authorization" not in varies_on(first)
    assert first.headers["etag"].startswith('"') and "set-cookie" not in first.headers
    assert "x-litellm-key-spend" not in first.headers  # per-key figures are hidden by the example
    edge.wait_stored(model, stored_before)
    calls, lookups = edge.upstream_calls(), edge.proxy_lookups(model)

    second = edge.chat(TEAM_B, body)  # a global answer: another tenant gets it from nginx
    assert nginx_status(second) == "HIT"
    assert content_of(second) == content_of(first)
    assert second.headers["etag"] == first.headers["etag"]
    assert edge.upstream_calls() == calls
    assert edge.proxy_lookups(model) == lookups  # the request never reached the proxy

    # The proxy's own hit of that entry carries the ETag the miss announced.
    direct = edge.chat(TEAM_A, body, via_nginx=False)
    assert direct.headers["x-cache"] == "HIT"
    assert direct.headers["etag"] == first.headers["etag"]
    assert int(direct.headers["age"]) >= 0
    assert edge.proxy_lookups(model) == lookups + 1


def test_explicitly_public_tenant_answer_is_kept_per_key(edge: Edge) -> None:
    model = "edge-keyed"
    body = chat_body(model, "Name a colour of the rainbow.")
    before = edge.stats(model).get("store", 0)
    first = edge.chat(TEAM_A, body)
    assert first.headers["cache-control"].startswith("public, ")
    assert "Authorization" in varies_on(first)
    edge.wait_stored(model, before)
    assert nginx_status(edge.chat(TEAM_A, body)) == "HIT"  # same key: nginx serves its copy

    calls = edge.upstream_calls()
    same_team_other_key = edge.chat(TEAM_A_2, body)
    assert nginx_status(same_team_other_key) != "HIT"  # Vary: Authorization
    assert same_team_other_key.headers["x-cache"] == "HIT"  # the proxy shares it within the team
    other_team = edge.chat(TEAM_B, body)
    assert nginx_status(other_team) != "HIT"
    assert other_team.headers["x-cache"] == "MISS"
    assert edge.upstream_calls() == calls + 1


# --- private answers -----------------------------------------------------------------------------------


def test_tenant_answer_is_never_served_by_nginx(edge: Edge) -> None:
    model = "llama3.2"
    body = chat_body(model, "Summarise our onboarding policy.")
    statuses: list[str] = []
    for key in (TEAM_A, TEAM_B):
        before = edge.stats(model).get("store", 0)
        miss = edge.chat(key, body)
        assert miss.headers["x-cache"] == "MISS"
        assert miss.headers["cache-control"] == "private, max-age=0"
        assert "Authorization" in varies_on(miss) and miss.headers["etag"]
        edge.wait_stored(model, before)
        lookups = edge.proxy_lookups(model)
        hit = edge.chat(key, body)
        assert hit.headers["x-cache"] == "HIT"  # answered by the proxy, for this tenant
        assert hit.headers["etag"] == miss.headers["etag"]
        assert edge.proxy_lookups(model) == lookups + 1
        statuses += [nginx_status(miss), nginx_status(hit)]
    assert "HIT" not in statuses, statuses


def test_pii_model_never_gets_public_headers(edge: Edge) -> None:
    model = "edge-pii"
    body = chat_body(model, "What is my salary band?")
    before = edge.stats(model).get("store", 0)
    first = edge.chat(TEAM_A, body)
    edge.wait_stored(model, before)
    second = edge.chat(TEAM_A, body)
    assert [first.headers["x-cache"], second.headers["x-cache"]] == ["MISS", "HIT"]
    for response in (first, second):
        assert response.headers["cache-control"] == "private, no-store"
        assert "etag" not in response.headers
        assert nginx_status(response) != "HIT"


def test_non_deterministic_answer_is_private_no_store(edge: Edge) -> None:
    body = chat_body("edge-global", "Write a poem.")
    body.pop("temperature")  # Ollama's default temperature 0.8: not cacheable
    for _ in range(2):
        response = edge.chat(TEAM_A, body)
        assert response.headers["x-cache"] == "BYPASS"
        assert response.headers["cache-control"] == "private, no-store"
        assert nginx_status(response) != "HIT"


# --- conditional requests ------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["edge-global", "llama3.2"])
def test_if_none_match_on_a_hit_gets_304(edge: Edge, model: str) -> None:
    body = chat_body(model, "How many legs does a spider have?")
    miss = edge.warm(TEAM_A, body, model)
    etag = miss.headers["etag"]
    hits_before = edge.stats(model).get("hit", 0)
    fast_before = edge.stats(model, layer="fast_path").get("hit", 0)
    not_modified_before = edge.not_modified()

    not_modified = edge.chat(TEAM_A, body, via_nginx=False, headers={"If-None-Match": etag})
    assert not_modified.status_code == 304
    assert not_modified.content == b""
    assert not_modified.headers["etag"] == etag
    assert not_modified.headers["x-cache"] == "HIT"
    assert "cache-control" in not_modified.headers
    assert edge.stats(model).get("hit", 0) == hits_before + 1
    if edge.name == "fast":
        assert edge.stats(model, layer="fast_path").get("hit", 0) == fast_before + 1
    assert edge.not_modified() == not_modified_before + 1

    changed = edge.chat(TEAM_A, body, via_nginx=False, headers={"If-None-Match": '"something-else"'})
    assert changed.status_code == 200 and changed.headers["etag"] == etag
    assert content_of(changed) == content_of(miss)


def test_if_none_match_from_another_tenant_does_not_match(edge: Edge) -> None:
    model = "llama3.2"
    body = chat_body(model, "Which planet is the largest?")
    etag = edge.warm(TEAM_A, body, model).headers["etag"]
    other = edge.chat(TEAM_B, body, via_nginx=False, headers={"If-None-Match": etag})
    assert other.status_code == 200  # team B's own (new) answer, never a 304 on team A's validator
    assert other.headers["x-cache"] == "MISS" and other.headers["etag"] != etag


# --- streaming -----------------------------------------------------------------------------------------


def sse_text(response: httpx.Response) -> str:
    parts = []
    for line in response.text.splitlines():
        if line.startswith("data: ") and line != "data: [DONE]":
            delta = json.loads(line[6:])["choices"]
            if delta:
                parts.append(delta[0].get("delta", {}).get("content") or "")
    return "".join(parts)


def test_streaming_still_works_through_nginx(edge: Edge) -> None:
    model = "edge-global"
    body = chat_body(model, "Count to three.", stream=True)
    before = edge.stats(model).get("store", 0)
    first = edge.chat(TEAM_A, body)
    assert first.headers["content-type"].startswith("text/event-stream")
    assert first.headers["cache-control"] == "no-cache"
    text = sse_text(first)
    assert text and first.text.rstrip().endswith("data: [DONE]")
    edge.wait_stored(model, before)
    replay = edge.chat(TEAM_A, body)
    assert replay.headers["x-cache"] == "HIT" and sse_text(replay) == text
    assert nginx_status(first) != "HIT" and nginx_status(replay) != "HIT"
    direct = edge.chat(TEAM_A, body, via_nginx=False)
    assert direct.headers["x-accel-buffering"] == "no"  # nginx passes SSE on chunk by chunk
    assert "etag" not in direct.headers
    # the non-streamed request shares the entry and is public
    plain = edge.chat(TEAM_A, {**body, "stream": False})
    assert plain.headers["x-cache"] == "HIT" and plain.headers["cache-control"].startswith("public")


# --- invalidation and staleness ------------------------------------------------------------------------


def test_tag_invalidation_reaches_nginx_within_s_maxage(edge: Edge) -> None:
    model = "edge-short"
    tag = f"docs-{secrets.token_hex(4)}"
    body = chat_body(model, "What does the refund policy say?")
    tagged = {"x-cache-tags": tag}
    before = edge.stats(model).get("store", 0)
    first = edge.chat(TEAM_A, body, headers=tagged)
    filled_at = time.monotonic()
    assert first.headers["cache-control"] == f"public, max-age=0, s-maxage={SHORT_S_MAXAGE}"
    edge.wait_stored(model, before)
    edge.invalidate_tag(tag)
    calls = edge.upstream_calls()

    stale = edge.chat(TEAM_A, body, headers=tagged)
    if time.monotonic() - filled_at < SHORT_S_MAXAGE - 0.5:
        # Documented: nginx may serve the invalidated answer until s-maxage has passed.
        assert nginx_status(stale) == "HIT" and stale.headers["etag"] == first.headers["etag"]
        assert edge.upstream_calls() == calls

    time.sleep(max(0.0, filled_at + SHORT_S_MAXAGE + 1 - time.monotonic()))
    fresh = edge.chat(TEAM_A, body, headers=tagged)
    assert nginx_status(fresh) in ("EXPIRED", "MISS")
    assert fresh.headers["x-cache"] == "MISS"  # the proxy refused the invalidated entry
    assert fresh.headers["etag"] != first.headers["etag"]
    assert edge.upstream_calls() == calls + 1


def test_nginx_revalidates_an_unchanged_answer_with_a_304(edge: Edge) -> None:
    model = "edge-short"
    body = chat_body(model, "Spell 'cache'.")
    before = edge.stats(model).get("store", 0)
    first = edge.chat(TEAM_A, body)
    filled_at = time.monotonic()
    edge.wait_stored(model, before)
    calls = edge.upstream_calls()
    not_modified = edge.not_modified()
    time.sleep(max(0.0, filled_at + SHORT_S_MAXAGE + 1 - time.monotonic()))

    again = edge.chat(TEAM_A, body)
    assert nginx_status(again) == "REVALIDATED"
    assert content_of(again) == content_of(first) and again.headers["etag"] == first.headers["etag"]
    assert edge.upstream_calls() == calls
    assert edge.not_modified() == not_modified + 1


# --- the example nginx configuration on its own (a stub upstream, no proxy) ----------------------------


def test_example_config_never_shares_a_key_it_cannot_see(tmp_path: Path) -> None:
    """Bodies nginx does not keep in memory have an empty ``$request_body``: they must bypass the cache,
    as must requests without credentials; a ``private`` answer is never stored."""
    upstream_calls: list[bytes] = []

    class Upstream(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            upstream_calls.append(self.rfile.read(int(self.headers.get("content-length", 0))))
            payload = b'{"ok": true}'
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            self.send_header("cache-control", self.headers.get("x-answer-cache-control", ""))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    nginx = NginxProcess(tmp_path / "nginx", server.server_port).start()
    try:
        with httpx.Client(base_url=nginx.url, timeout=30) as client:

            def post(body: bytes, answer: str, auth: bool = True) -> str:
                headers = {
                    "x-answer-cache-control": answer,
                    **({"Authorization": "Bearer k"} if auth else {}),
                }
                response = client.post("/v1/chat/completions", content=body, headers=headers)
                assert response.status_code == 200
                return str(response.headers.get("x-cache-status"))

            public = "public, max-age=0, s-maxage=60"
            assert [post(b'{"a": 1}', public), post(b'{"a": 1}', public)] == ["MISS", "HIT"]
            big = b'{"a": "' + b"x" * (2 * 1024 * 1024) + b'"}'  # over client_body_buffer_size
            assert [post(big, public), post(big, public)] == ["BYPASS", "BYPASS"]
            assert post(b'{"a": 1}', public, auth=False) == "BYPASS"
            private = "private, max-age=30"
            assert [post(b'{"b": 1}', private), post(b'{"b": 1}', private)] == ["MISS", "MISS"]
            assert len(upstream_calls) == 6
    finally:
        nginx.stop()
        server.shutdown()
