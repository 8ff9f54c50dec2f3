"""The demo: a real LiteLLM proxy with the plugin in front of Ollama (or the bundled simulator).

Run with ``scripts/demo.sh`` (or ``python -m tools.demo`` from the repository root). It starts the proxy with
the embedded ``memory://`` backend, sends a small workload from two teams and prints what was cached,
the hit rate and what the hits saved per layer (latency, tokens, cost, GPU time: the numbers the
OpenTelemetry metrics carry, read from ``GET /v1/cache/stats``), and writes a plot of the hit rate and
the saved time per layer over the run to a PNG (``--plot``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from litellm_cache_plugin.cli import render
from litellm_cache_plugin.simulator import SimulatorConfig, SimulatorThread
from tools.runner import DEMO_AUTH_MODULE, ProxyProcess, proxy_config

REAL_OLLAMA = "http://127.0.0.1:11434"
QUESTIONS = [
    "What is the capital of France?",
    "Explain what a hash table is in two sentences.",
    "Give me three tips for writing clear commit messages.",
    "What does HTTP status 304 mean?",
    "Translate 'good morning' into Spanish.",
]


def _real_ollama_models() -> tuple[str, str] | None:
    """(chat model, embedding model) from a real Ollama on localhost, or None."""
    try:
        with urllib.request.urlopen(f"{REAL_OLLAMA}/api/tags", timeout=0.5) as response:
            models = [m["name"] for m in json.load(response).get("models", [])]
    except (OSError, ValueError):
        return None
    embedders = [m for m in models if "embed" in m]
    chats = [m for m in models if m not in embedders]
    if not chats:
        return None
    return chats[0], (embedders[0] if embedders else chats[0])


@contextmanager
def _upstream(force_simulator: bool, latency_ms: float) -> Iterator[tuple[str, str, str, str]]:
    found = None if force_simulator else _real_ollama_models()
    if found is not None:
        yield REAL_OLLAMA, found[0], found[1], "real Ollama on localhost:11434"
        return
    with SimulatorThread(SimulatorConfig(latency_ms=latency_ms)) as sim:
        yield (
            sim.url,
            "llama3.2:1b",
            "nomic-embed-text",
            f"Ollama simulator ({latency_ms:.0f} ms base latency)",
        )


# Local models cost GPU time, not tokens: price it so that "cost saved" means something in the demo.
DEMO_GPU_COST_PER_HOUR = 2.0
LAYERS = ("exact", "semantic", "embedding")


def _config(url: str, chat_model: str, embed_model: str) -> dict[str, Any]:
    section = {
        "backend": "memory://",
        "ttl": 3600,
        "telemetry": {"prometheus": {"enabled": True}},
        "models": {
            "chat": {"prices": {"gpu_cost_per_hour": DEMO_GPU_COST_PER_HOUR}},
            "embed": {"prices": {"gpu_cost_per_hour": DEMO_GPU_COST_PER_HOUR}},
        },
    }
    config = proxy_config(url, section)
    config["model_list"] = [
        {"model_name": "chat", "litellm_params": {"model": f"ollama_chat/{chat_model}", "api_base": url}},
        {"model_name": "embed", "litellm_params": {"model": f"ollama/{embed_model}", "api_base": url}},
    ]
    return config


def run(force_simulator: bool = False, latency_ms: float = 400.0, plot: Path | None = None) -> int:
    with _upstream(force_simulator, latency_ms) as (url, chat_model, embed_model, label):
        print(f"upstream: {label} (chat model {chat_model}, embedding model {embed_model})")
        workdir = Path(tempfile.mkdtemp(prefix="lcp-demo-"))
        proxy = ProxyProcess(
            _config(url, chat_model, embed_model), workdir, extra_files={"demo_auth.py": DEMO_AUTH_MODULE}
        )
        print("starting the LiteLLM proxy with litellm_cache_plugin (takes ~15 s to import)...")
        with proxy:
            print(f"proxy ready at {proxy.url}\n")
            return _workload(proxy, plot)


def _layers(http: httpx.Client, proxy: ProxyProcess) -> dict[str, dict[str, float]]:
    """Per layer (summed over model groups): lookups, served results and milliseconds saved so far."""
    stats = http.get("/v1/cache/stats", headers={"Authorization": f"Bearer {proxy.master_key}"}).json()
    out: dict[str, dict[str, float]] = {}
    for layer in LAYERS:
        rows = (stats["layers"].get(layer) or {}).values()
        served = sum(r.get("hit", 0) + r.get("stale", 0) + r.get("coalesced", 0) for r in rows)
        looked = served + sum(r.get("miss", 0) for r in rows)
        saved = sum(r.get("latency_saved_ms", 0.0) for r in rows)
        out[layer] = {"served": served, "looked": looked, "saved_ms": saved}
    return out


def _plot(timeline: list[dict[str, dict[str, float]]], path: Path) -> Path | None:
    """Hit rate and cumulative saved time per layer over the run."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib is not installed: no plot; pip install 'litellm-cache-plugin[bench]')")
        return None
    figure, (rates, saved) = plt.subplots(2, 1, figsize=(9, 7), sharex=True)
    steps = list(range(1, len(timeline) + 1))
    for layer in LAYERS:
        if not any(point[layer]["looked"] for point in timeline):
            continue
        ratio = [p[layer]["served"] / p[layer]["looked"] if p[layer]["looked"] else 0.0 for p in timeline]
        rates.plot(steps, [100 * r for r in ratio], label=layer, marker=".")
        saved.plot(steps, [p[layer]["saved_ms"] / 1000 for p in timeline], label=layer, marker=".")
    rates.set_ylabel("hit rate so far (%)")
    rates.set_ylim(0, 100)
    rates.legend()
    rates.set_title("litellm_cache_plugin demo: hit rate and saved time per layer")
    saved.set_ylabel("latency saved so far (s)")
    saved.set_xlabel("request")
    saved.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _workload(proxy: ProxyProcess, plot: Path | None = None) -> int:
    rows: list[tuple[str, str, str, float]] = []
    http = httpx.Client(base_url=proxy.url, timeout=120)
    timeline: list[dict[str, dict[str, float]]] = []

    def ask(team_key: str, team: str, question: str, **params: Any) -> None:
        body = {"model": "chat", "messages": [{"role": "user", "content": question}], **params}
        started = time.perf_counter()
        response = http.post(
            "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {team_key}"}
        )
        elapsed = (time.perf_counter() - started) * 1000
        response.raise_for_status()
        outcome = response.headers.get("x-cache", "?")
        label = question.strip()[:48] + (f" (t={params['temperature']})" if params else "")
        rows.append((team, label, outcome, elapsed))
        print(f"  {team:6} {outcome:6} {elapsed:8.1f} ms  {rows[-1][1]}")
        time.sleep(0.05)  # a miss is written in the background; give it a moment before the repeat
        timeline.append(_layers(http, proxy))

    print("team-a asks five questions (temperature 0), then asks them again:")
    for question in QUESTIONS:
        ask("sk-team-a-0001", "team-a", question, temperature=0)
    for question in QUESTIONS:
        ask("sk-team-a-0002", "team-a", "  " + question + "\n", temperature=0)
    print("team-b asks the same questions: another tenant never sees team-a's entries:")
    for question in QUESTIONS[:2]:
        ask("sk-team-b-0001", "team-b", question, temperature=0)
    print("creative requests (temperature 0.7) are never cached:")
    ask("sk-team-a-0001", "team-a", "Write a haiku about caches.", temperature=0.7)
    ask("sk-team-a-0001", "team-a", "Write a haiku about caches.", temperature=0.7)

    print("embeddings: a batch whose items are partly cached sends only the missing ones:")
    for batch in (["red", "green"], ["green", "blue", "red"]):
        started = time.perf_counter()
        response = http.post(
            "/v1/embeddings",
            json={"model": "embed", "input": batch, "encoding_format": "float"},
            headers={"Authorization": "Bearer sk-team-a-0001"},
        )
        response.raise_for_status()
        elapsed = (time.perf_counter() - started) * 1000
        print(f"  {batch}: x-cache-items={response.headers.get('x-cache-items')} {elapsed:.1f} ms")
        time.sleep(0.05)
        timeline.append(_layers(http, proxy))

    stats = http.get("/v1/cache/stats", headers={"Authorization": f"Bearer {proxy.master_key}"}).json()
    hits = [r[3] for r in rows if r[2] == "HIT"]
    misses = [r[3] for r in rows if r[2] == "MISS"]
    looked_up = len(hits) + len(misses)
    print("\n=== summary ===")
    bypassed = len(rows) - looked_up
    print(f"chat requests: {len(rows)}  hits: {len(hits)}  misses: {len(misses)}  bypassed: {bypassed}")
    print(
        f"hit rate (cacheable requests): {len(hits) / looked_up:.0%}"
        if looked_up
        else "no cacheable requests"
    )
    if hits and misses:
        miss_p50, hit_p50 = statistics.median(misses), statistics.median(hits)
        print(
            f"median latency: miss {miss_p50:.1f} ms, hit {hit_p50:.1f} ms ({miss_p50 / hit_p50:.1f}x faster)"
        )
        print(f"latency saved by {len(hits)} hits: ~{(miss_p50 - hit_p50) * len(hits) / 1000:.2f} s")
    print(
        "\nwhat the cache saved, per layer and model group (GET /v1/cache/stats, `litellm-cache stats`;"
        f" the same numbers as the OpenTelemetry metrics; GPU time priced at ${DEMO_GPU_COST_PER_HOUR}/h):"
    )
    print(render(stats))
    scrape = http.get("/v1/cache/metrics").text
    series = [line for line in scrape.splitlines() if line.startswith("llm_cache_requests_total{")]
    print(f"Prometheus endpoint {proxy.url}/v1/cache/metrics: {len(series)} llm_cache_requests_total series")
    if plot is not None:
        written = _plot(timeline, plot)
        if written is not None:
            print(f"plot of hit rate and saved time per layer: {written}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--simulator", action="store_true", help="use the simulator even if Ollama is running"
    )
    parser.add_argument("--latency-ms", type=float, default=400.0, help="simulator base latency per request")
    parser.add_argument(
        "--plot",
        type=Path,
        default=Path("demo-report.png"),
        help="where to write the PNG (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    return run(force_simulator=args.simulator, latency_ms=args.latency_ms, plot=args.plot)


if __name__ == "__main__":
    raise SystemExit(main())
