"""Telemetry through the real proxy: a known workload, then the OpenTelemetry metrics and spans (read
from the SDK's in-memory reader/exporter inside the proxy process), the Prometheus endpoint and
``GET /v1/cache/stats`` must say exactly what the workload implies — and never carry a prompt or a
tenant."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from litellm_cache_plugin.policy.keys import Identity, tenant_for
from litellm_cache_plugin.simulator import SimulatorConfig, SimulatorThread
from tests.e2e.conftest import TEAM_A, TEAM_B
from tests.e2e.otel_probe_module import OTEL_PROBE_MODULE
from tools.runner import DEMO_AUTH_MODULE, ProxyProcess, proxy_config, running

LATENCY_MS = 300.0
INPUT_PRICE = 1e-6
OUTPUT_PRICE = 2e-6
# Three prompts; the first request of each misses, the other seven hit.
WORKLOAD = [0, 1, 2, 0, 0, 1, 1, 2, 0, 1]


@pytest.fixture(scope="module")
def otel_simulator() -> Iterator[SimulatorThread]:
    with SimulatorThread(SimulatorConfig(latency_ms=LATENCY_MS, tokens_per_second=1000)) as sim:
        yield sim


@pytest.fixture(scope="module")
def otel_proxies(
    otel_simulator: SimulatorThread, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, ProxyProcess]]:
    base = tmp_path_factory.mktemp("otel")
    started: dict[str, ProxyProcess] = {}
    for fast_path in (True, False):
        section = {
            "backend": "memory://",
            "ttl": 600,
            "fast_path": {"enabled": fast_path},
            # The hook-path proxy's scrape endpoint requires the admin key, the other one is open.
            "telemetry": {"prometheus": {"enabled": True, "require_auth": not fast_path}},
            "models": {
                "llama3.2": {
                    "prices": {"input_cost_per_token": INPUT_PRICE, "output_cost_per_token": OUTPUT_PRICE}
                }
            },
        }
        config = proxy_config(otel_simulator.url, section)
        config["litellm_settings"]["callbacks"] = [
            "otel_probe.probe",
            *config["litellm_settings"]["callbacks"],
        ]
        name = "fast" if fast_path else "hooks"
        started[name] = ProxyProcess(
            config,
            Path(base) / name,
            extra_files={"demo_auth.py": DEMO_AUTH_MODULE, "otel_probe.py": OTEL_PROBE_MODULE},
            name=f"otel-{name}",
        )
    with running(started.values(), timeout=180):
        yield started


def _admin(proxy: ProxyProcess) -> dict[str, str]:
    return {"Authorization": f"Bearer {proxy.master_key}"}


def _stats(proxy: ProxyProcess) -> dict[str, Any]:
    response = httpx.get(f"{proxy.url}/v1/cache/stats", headers=_admin(proxy), timeout=10)
    response.raise_for_status()
    return response.json()  # type: ignore[no-any-return]


def _otel(proxy: ProxyProcess) -> dict[str, Any]:
    response = httpx.get(f"{proxy.url}/_test/otel", timeout=10)
    response.raise_for_status()
    return response.json()  # type: ignore[no-any-return]


def _points(dump: dict[str, Any], name: str, **labels: str) -> list[dict[str, Any]]:
    return [
        p
        for p in dump["metrics"]
        if p["name"] == name and all(p["attributes"].get(k) == v for k, v in labels.items())
    ]


def _total(dump: dict[str, Any], name: str, **labels: str) -> float:
    return sum(p.get("value", 0) for p in _points(dump, name, **labels))


def _wait_stored(proxy: ProxyProcess, count: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if _stats(proxy)["layers"].get("exact", {}).get("llama3.2", {}).get("store", 0) >= count:
            return
        time.sleep(0.05)
    raise AssertionError("entries were not stored in time")


@pytest.fixture(scope="module")
def workloads(
    otel_proxies: dict[str, ProxyProcess], otel_simulator: SimulatorThread
) -> dict[str, dict[str, Any]]:
    """Run the workload once on each proxy; returns what the client and the simulator saw."""
    out: dict[str, dict[str, Any]] = {}
    for name, proxy in otel_proxies.items():
        marker = f"zebracorn-{name}-{uuid.uuid4().hex[:6]}"
        prompts = [f"{marker} question number {i}: what is {i} plus {i}?" for i in range(3)]
        usages: dict[int, dict[str, int]] = {}
        results: list[str] = []
        with httpx.Client(base_url=proxy.url, timeout=60) as http:
            for index in WORKLOAD:
                body = {
                    "model": "llama3.2",
                    "messages": [{"role": "user", "content": prompts[index]}],
                    "temperature": 0,
                }
                response = http.post(
                    "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {TEAM_A}"}
                )
                assert response.status_code == 200, response.text
                results.append(response.headers["x-cache"])
                if response.headers["x-cache"] == "MISS":
                    usages[index] = response.json()["usage"]
                    _wait_stored(proxy, len(usages))
            # One request that is never cacheable: counted as a bypass.
            hot = {
                "model": "llama3.2",
                "messages": [{"role": "user", "content": prompts[0]}],
                "temperature": 0.9,
            }
            assert (
                http.post(
                    "/v1/chat/completions", json=hot, headers={"Authorization": f"Bearer {TEAM_B}"}
                ).status_code
                == 200
            )
        calls = [c for c in otel_simulator.simulator.stats()["last_calls"] if c["endpoint"] == "chat"]
        durations = {
            c["inputs"][0]: c["total_duration"]
            for c in calls
            if c.get("total_duration") and c["options"].get("temperature") == 0
        }
        out[name] = {
            "prompts": prompts,
            "usages": usages,
            "results": results,
            "durations": durations,
            "marker": marker,
        }
    return out


@pytest.mark.parametrize("name", ["fast", "hooks"])
def test_metrics_equal_the_workload(
    name: str, otel_proxies: dict[str, ProxyProcess], workloads: dict[str, dict[str, Any]]
) -> None:
    proxy, run = otel_proxies[name], workloads[name]
    assert run["results"].count("HIT") == 7 and run["results"].count("MISS") == 3
    dump = _otel(proxy)
    exact = {"llm_cache.layer": "exact", "gen_ai.request.model": "llama3.2"}
    assert _total(dump, "llm_cache.requests", **exact, **{"llm_cache.result": "hit"}) == 7
    assert _total(dump, "llm_cache.requests", **exact, **{"llm_cache.result": "miss"}) == 3
    assert _total(dump, "llm_cache.requests", **exact, **{"llm_cache.result": "bypass"}) == 1

    hits_per_prompt = {i: WORKLOAD.count(i) - 1 for i in range(3)}
    # GPU time saved: exactly the durations the simulator reported for the answers that were reused.
    expected_gpu = sum(hits_per_prompt[i] * run["durations"][run["prompts"][i]] / 1e9 for i in range(3))
    assert _total(dump, "llm_cache.gpu_time_saved", **exact) == pytest.approx(expected_gpu, rel=1e-6)
    # Tokens and cost: the usage of the answers that were reused.
    expected_in = sum(hits_per_prompt[i] * run["usages"][i]["prompt_tokens"] for i in range(3))
    expected_out = sum(hits_per_prompt[i] * run["usages"][i]["completion_tokens"] for i in range(3))
    assert _total(dump, "llm_cache.tokens_saved", **exact, **{"gen_ai.token.type": "input"}) == expected_in
    assert _total(dump, "llm_cache.tokens_saved", **exact, **{"gen_ai.token.type": "output"}) == expected_out
    expected_cost = expected_in * INPUT_PRICE + expected_out * OUTPUT_PRICE
    assert _total(dump, "llm_cache.cost_saved", **exact) == pytest.approx(expected_cost, rel=1e-9)
    # Latency saved: one observation per hit, each within the simulator's latency and its full answer time.
    (saved,) = _points(dump, "llm_cache.latency_saved", **exact)
    longest_ms = max(run["durations"].values()) / 1e6
    assert saved["count"] == 7
    assert saved["min"] >= LATENCY_MS - 100
    assert saved["max"] <= longest_ms + 250
    assert _total(dump, "llm_cache.stores", **exact) == 3

    # The human view says the same.
    row = _stats(proxy)["layers"]["exact"]["llama3.2"]
    assert row["hit"] == 7 and row["miss"] == 3 and row["bypass"] == 1
    assert row["gpu_seconds_saved"] == pytest.approx(expected_gpu, abs=1e-3)
    assert row["input_tokens_saved"] == expected_in and row["output_tokens_saved"] == expected_out
    assert row["latency_saved_ms"] == pytest.approx(saved["sum"], abs=0.01)
    assert row["hit_ratio"] == 0.7

    # One lookup span per request that reached the cache, with the decision on it.
    lookups = [s for s in dump["spans"] if s["name"] == "llm_cache.lookup"]
    results = sorted(s["attributes"].get("llm_cache.result") for s in lookups)
    assert results.count("hit") == 7 and results.count("miss") == 3 and results.count("bypass") == 1
    hit_span = next(s for s in lookups if s["attributes"].get("llm_cache.result") == "hit")
    assert hit_span["attributes"]["llm_cache.gpu_time_saved_s"] > 0
    assert len(hit_span["attributes"]["llm_cache.key.fingerprint"]) == 16
    assert len([s for s in dump["spans"] if s["name"] == "llm_cache.store"]) == 3
    # Lookups in LiteLLM's pipeline are children of LiteLLM's own request span.
    by_id = {s["span_id"]: s for s in dump["spans"]}
    misses = [s for s in lookups if s["attributes"].get("llm_cache.result") == "miss"]
    assert misses and all(s["parent_id"] in by_id for s in misses), [s["parent_id"] for s in misses]
    assert all(not by_id[s["parent_id"]]["name"].startswith("llm_cache.") for s in misses)


def test_stats_cli_shows_the_same_numbers(
    otel_proxies: dict[str, ProxyProcess], workloads: dict[str, dict[str, Any]]
) -> None:
    proxy = otel_proxies["fast"]
    command = [sys.executable, "-m", "litellm_cache_plugin.cli", "stats", "--url", proxy.url]
    shown = subprocess.run(
        command, env={**os.environ, "LITELLM_MASTER_KEY": proxy.master_key}, capture_output=True, text=True
    )
    assert shown.returncode == 0, shown.stderr
    row = next(line for line in shown.stdout.splitlines() if line.startswith("exact") and "llama3.2" in line)
    cells = row.split()
    # hit, stale, coalesced, miss, refused, bypass, hit%
    assert cells[2:8] == ["7", "0", "0", "3", "0", "1"] and cells[8] == "70.0"
    assert "7 of the hits were served by the fast path" in shown.stdout
    refused = subprocess.run([*command, "--key", TEAM_A], capture_output=True, text=True)
    assert refused.returncode != 0 and "admin" in refused.stderr


def test_invalidation_is_counted_and_traced(otel_proxies: dict[str, ProxyProcess]) -> None:
    proxy = otel_proxies["hooks"]
    assert (
        httpx.delete(f"{proxy.url}/v1/cache/tags/otel-tag", headers=_admin(proxy), timeout=10).status_code
        == 200
    )
    dump = _otel(proxy)
    assert _total(dump, "llm_cache.invalidations", **{"llm_cache.invalidation.kind": "tag"}) == 1
    assert any(s["name"] == "llm_cache.invalidate" for s in dump["spans"])


def test_prometheus_endpoint_can_require_the_admin_key(otel_proxies: dict[str, ProxyProcess]) -> None:
    proxy = otel_proxies["hooks"]
    url = f"{proxy.url}/v1/cache/metrics"
    assert httpx.get(url, headers={"Authorization": f"Bearer {TEAM_A}"}, timeout=10).status_code == 403
    assert httpx.get(url, headers={"Authorization": "Bearer sk-bogus-0000"}, timeout=10).status_code == 401
    admin = httpx.get(url, headers=_admin(proxy), timeout=10)
    assert admin.status_code == 200 and "llm_cache_requests_total" in admin.text


def test_prometheus_endpoint_has_the_per_layer_series(
    otel_proxies: dict[str, ProxyProcess], workloads: dict[str, dict[str, Any]]
) -> None:
    proxy = otel_proxies["fast"]
    response = httpx.get(f"{proxy.url}/v1/cache/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    hit_lines = [
        line
        for line in text.splitlines()
        if line.startswith("llm_cache_requests_total{")
        and 'llm_cache_layer="exact"' in line
        and 'llm_cache_result="hit"' in line
        and 'gen_ai_request_model="llama3.2"' in line
    ]
    assert hit_lines and float(hit_lines[0].rsplit(" ", 1)[1]) == 7.0
    assert "llm_cache_gpu_time_saved_seconds_total" in text
    assert "llm_cache_latency_saved_milliseconds_bucket" in text


def test_no_prompt_or_tenant_in_any_attribute_or_label(
    otel_proxies: dict[str, ProxyProcess], workloads: dict[str, dict[str, Any]]
) -> None:
    forbidden = {"team-a", "team-b", "alice", "bob", TEAM_A, TEAM_B, "zebracorn"}
    for key in (TEAM_A, TEAM_B):
        hashed = hashlib.sha256(key.encode()).hexdigest()
        forbidden.add(hashed)
        for team, user in (("team-a", "alice"), ("team-b", "bob")):
            identity = Identity(api_key_hash=hashed, team_id=team, user_id=user)
            forbidden.update(
                tenant_for(identity, scope).fingerprint for scope in ("team", "user", "key", "global")
            )
    forbidden.discard("-")
    for name, proxy in otel_proxies.items():
        dump = _otel(proxy)
        ours = [s for s in dump["spans"] if s["name"].startswith("llm_cache.")]
        assert ours
        texts = [str(v) for s in ours for v in s["attributes"].values()]
        texts += [str(k) for s in ours for k in s["attributes"]]
        texts += [
            str(v)
            for p in dump["metrics"]
            if p["name"].startswith("llm_cache.")
            for v in p["attributes"].values()
        ]
        texts.append(httpx.get(f"{proxy.url}/v1/cache/metrics", headers=_admin(proxy), timeout=10).text)
        for text in texts:
            for secret in forbidden:
                assert secret not in text, f"{secret!r} leaked into telemetry of {name}: {text[:200]!r}"
