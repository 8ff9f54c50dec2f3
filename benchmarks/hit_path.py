"""Hit-path benchmark: LiteLLM's built-in Redis cache against the plugin, with and without the fast path.

Runs offline against the Ollama simulator and the local Redis (127.0.0.1:6379), in a minute or two::

    LITELLM_LOCAL_MODEL_COST_MAP=True .venv/bin/python benchmarks/hit_path.py [--seconds 10] [--clients 16]

Cases, each a real ``litellm`` proxy process (one worker, the demo custom_auth):

- ``a-builtin-redis``: LiteLLM's own cache on Redis (``cache: true``, unique namespace), no plugin;
- ``b-plugin-memory-fast``: the plugin on ``memory://`` with the fast path;
- ``c-plugin-memory-hooks``: the same with ``fast_path.enabled: false`` (hook path only);
- ``d-plugin-redis-fast``: the plugin on Redis (unique prefix) with the fast path.

Every case warms one entry, then ``--clients`` concurrent async clients repeat that request for
``--seconds`` seconds. Reported: hit latency p50/p99, hits/s, the proxy process's CPU time per hit
(including its background logging; unlike latency it does not depend on what else the machine is
running), and the ratios against case (a). Misses:
unique prompts sent alternately to (b) and (c), one at a time, with an instant simulator; the p50
difference is what the fast path adds to a miss.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from litellm_cache_plugin.simulator import SimulatorConfig, SimulatorThread
from tools.runner import DEMO_AUTH_MODULE, ProxyProcess, proxy_config, running

REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
KEY = "sk-team-a-0001"
# Until create_proxy_plugin() installs the fast path itself, a config-level callback does (idempotent).
WIRING_MODULE = """
from litellm.integrations.custom_logger import CustomLogger
from litellm_cache_plugin.integrations.fast_path import install_fast_path
from litellm_cache_plugin.integrations.litellm import create_proxy_plugin

install_fast_path(create_proxy_plugin())


class FastPathWiring(CustomLogger):
    pass


wiring = FastPathWiring()
"""


@dataclass
class Result:
    name: str
    p50: float
    p99: float
    rate: float
    count: int
    errors: int
    cpu_ms: float  # proxy process CPU time per hit (robust to other load on the machine)


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux ``/proc``; NaN elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def build_cases(sim_url: str, run_id: str, workdir: Path) -> dict[str, ProxyProcess]:
    redis_url = f"redis://{REDIS_HOST}:{REDIS_PORT}/0?prefix=lcp-bench-{run_id}:"
    plugin_files = {"demo_auth.py": DEMO_AUTH_MODULE, "fast_path_wiring.py": WIRING_MODULE}
    wiring = ["litellm_cache_plugin.proxy_plugin", "fast_path_wiring.wiring"]

    def plugin_case(name: str, backend: str, fast: bool) -> ProxyProcess:
        config = proxy_config(
            sim_url,
            {"backend": backend, "ttl": 3600, "fast_path": {"enabled": fast}},
            with_plugin=False,
        )
        config["litellm_settings"]["callbacks"] = wiring
        return ProxyProcess(config, workdir / name, extra_files=plugin_files, name=name)

    builtin = proxy_config(
        sim_url,
        None,
        with_plugin=False,
        litellm_settings={
            "cache": True,
            "cache_params": {
                "type": "redis",
                "host": REDIS_HOST,
                "port": REDIS_PORT,
                "namespace": f"litellm-bench-{run_id}",
            },
        },
    )
    return {
        "a-builtin-redis": ProxyProcess(
            builtin, workdir / "a", extra_files={"demo_auth.py": DEMO_AUTH_MODULE}, name="a-builtin-redis"
        ),
        "b-plugin-memory-fast": plugin_case("b-plugin-memory-fast", "memory://", True),
        "c-plugin-memory-hooks": plugin_case("c-plugin-memory-hooks", "memory://", False),
        "d-plugin-redis-fast": plugin_case("d-plugin-redis-fast", redis_url, True),
    }


def chat_body(prompt: str) -> dict[str, Any]:
    return {"model": "llama3.2", "messages": [{"role": "user", "content": prompt}], "temperature": 0}


async def warm(client: httpx.AsyncClient, body: dict[str, Any]) -> str:
    """Send until the answer comes from the cache (same response id as the stored answer)."""
    first = await client.post("/v1/chat/completions", json=body)
    first.raise_for_status()
    stored_id = first.json()["id"]
    for _ in range(100):
        await asyncio.sleep(0.1)
        again = await client.post("/v1/chat/completions", json=body)
        again.raise_for_status()
        if again.json()["id"] == stored_id and again.headers.get("x-cache", "HIT") == "HIT":
            return str(stored_id)
    raise RuntimeError("the entry never became a hit")


async def drive_hits(proxy: ProxyProcess, seconds: float, clients: int) -> Result:
    headers = {"Authorization": f"Bearer {KEY}"}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=proxy.url, headers=headers, limits=limits, timeout=30) as client:
        body = chat_body(f"Benchmark question {uuid.uuid4().hex[:8]}: what is a cache?")
        stored_id = await warm(client, body)
        for _ in range(50):  # warm connections and code paths
            await client.post("/v1/chat/completions", json=body)
        latencies: list[float] = []
        errors = 0
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                response = await client.post("/v1/chat/completions", json=body)
                elapsed = time.perf_counter() - started
                if response.status_code != 200 or response.json().get("id") != stored_id:
                    errors += 1
                    continue
                latencies.append(elapsed * 1000)

        pid = proxy.process.pid if proxy.process is not None else -1
        cpu_before = process_cpu_seconds(pid)
        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        took = time.perf_counter() - began
        await asyncio.sleep(1.0)  # let background logging of the last hits finish: it is part of the cost
        cpu = process_cpu_seconds(pid) - cpu_before
    return Result(
        proxy.name,
        statistics.median(latencies) if latencies else float("nan"),
        percentile(latencies, 0.99),
        len(latencies) / took,
        len(latencies),
        errors,
        cpu * 1000 / max(1, len(latencies) + errors),
    )


async def drive_misses(
    fast: ProxyProcess, hooks: ProxyProcess, count: int
) -> tuple[list[float], list[float]]:
    """Unique (cacheable) prompts, alternating between the two proxies so drift hits both alike."""
    headers = {"Authorization": f"Bearer {KEY}"}
    samples: dict[str, list[float]] = {fast.name: [], hooks.name: []}
    async with (
        httpx.AsyncClient(base_url=fast.url, headers=headers, timeout=30) as fast_client,
        httpx.AsyncClient(base_url=hooks.url, headers=headers, timeout=30) as hooks_client,
    ):
        pairs = ((fast, fast_client), (hooks, hooks_client))
        for number in range(count + 20):
            for proxy, client in pairs if number % 2 == 0 else pairs[::-1]:
                body = chat_body(f"Unique miss {uuid.uuid4().hex}")
                started = time.perf_counter()
                response = await client.post("/v1/chat/completions", json=body)
                elapsed = (time.perf_counter() - started) * 1000
                response.raise_for_status()
                if number >= 20:  # the first ones warm connections and the credential hint
                    samples[proxy.name].append(elapsed)
    return samples[fast.name], samples[hooks.name]


def cleanup_redis(run_id: str) -> None:
    try:
        import redis
    except ImportError:
        return
    try:
        with redis.Redis(host=REDIS_HOST, port=REDIS_PORT, socket_timeout=2) as client:
            for pattern in (f"lcp-bench-{run_id}:*", f"litellm-bench-{run_id}*"):
                keys = list(client.scan_iter(match=pattern, count=1000))
                for start in range(0, len(keys), 500):
                    client.delete(*keys[start : start + 500])
    except redis.RedisError:
        pass


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="hit phase length per case")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients in the hit phase")
    parser.add_argument("--misses", type=int, default=150, help="miss samples per proxy")
    parser.add_argument("--keep", action="store_true", help="keep the proxies' work directory")
    args = parser.parse_args()

    run_id = uuid.uuid4().hex[:10]
    workdir = Path(tempfile.mkdtemp(prefix="lcp-bench-"))
    simulator = SimulatorThread(SimulatorConfig(latency_ms=0, tokens_per_second=1e6, parallel=64))
    simulator.start()
    cases = build_cases(simulator.url, run_id, workdir)
    try:
        with running(cases.values(), timeout=240):
            print(
                f"proxies ready ({workdir}); {args.clients} clients x {args.seconds:.0f}s per case",
                flush=True,
            )
            results = [asyncio.run(drive_hits(proxy, args.seconds, args.clients)) for proxy in cases.values()]
            fast_misses, hook_misses = asyncio.run(
                drive_misses(cases["b-plugin-memory-fast"], cases["c-plugin-memory-hooks"], args.misses)
            )
    finally:
        simulator.stop()
        cleanup_redis(run_id)

    base = results[0]
    print()
    header = ("case", "p50 ms", "p99 ms", "hits/s", "p50/a", "rate/a", "cpu ms", "cpu/a", "n", "err")
    print(f"{header[0]:24} " + " ".join(f"{title:>8}" for title in header[1:]))
    for result in results:
        cells = (
            result.p50,
            result.p99,
            result.rate,
            result.p50 / base.p50,
            result.rate / base.rate,
            result.cpu_ms,
            result.cpu_ms / base.cpu_ms,
        )
        numbers = " ".join(f"{value:8.2f}" for value in cells)
        print(f"{result.name:24} {numbers} {result.count:8d} {result.errors:8d}")
    fast_p50, hook_p50 = statistics.median(fast_misses), statistics.median(hook_misses)
    print()
    print(
        f"miss p50: fast path on {fast_p50:.2f} ms, off {hook_p50:.2f} ms, "
        f"added {fast_p50 - hook_p50:+.2f} ms ({len(fast_misses)} samples each)"
    )
    if not args.keep:
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
