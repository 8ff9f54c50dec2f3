"""Two revisions of the plugin side by side in one run: hit and miss latency, CPU per hit.

For a refactor ("behaviour unchanged, not slower"): each revision is checked out into a temporary git
worktree and served by its own real ``litellm`` proxy (same config, same simulator, the revision's
package first on ``PYTHONPATH``), and the two are measured alternately, so machine noise hits both::

    LITELLM_LOCAL_MODEL_COST_MAP=True .venv/bin/python -m benchmarks.compare_revisions \\
        --old 463fa7a --new HEAD [--rounds 5] [--hits 200] [--misses 30] [--fast-path on|off]

Per round and revision: ``--hits`` sequential keep-alive hits of one warmed entry (p50, p99), then
``--misses`` unique prompts one at a time against an instant simulator (p50). Reported: medians over
the rounds and the new/old ratios; the proxies' CPU seconds per hit over the whole hit phase.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from litellm_cache_plugin.simulator import SimulatorConfig, SimulatorThread
from tools.runner import DEMO_AUTH_MODULE, ProxyProcess, proxy_config, running

KEY = "sk-team-a-0001"
REPO = Path(__file__).resolve().parent.parent


def cpu_seconds(pid: int) -> float:
    """CPU time of a process and its children (the proxy runs its worker as a child)."""
    total = 0.0
    for proc in [pid, *_children(pid)]:
        try:
            fields = Path(f"/proc/{proc}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks = os.sysconf("SC_CLK_TCK")
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids = (task / "children").read_text().split()
        except OSError:
            continue
        for kid in kids:
            found.append(int(kid))
            found.extend(_children(int(kid)))
    return found


def body(prompt: str) -> dict[str, Any]:
    return {"model": "llama3.2", "messages": [{"role": "user", "content": prompt}], "temperature": 0}


def measure_hits(client: httpx.Client, request: dict[str, Any], n: int) -> list[float]:
    timings = []
    for _ in range(n):
        started = time.perf_counter()
        response = client.post("/v1/chat/completions", json=request)
        timings.append((time.perf_counter() - started) * 1000)
        if response.headers.get("x-cache") != "HIT":
            raise RuntimeError(
                f"expected a hit, got {response.headers.get('x-cache')}: {response.text[:200]}"
            )
    return timings


def measure_misses(client: httpx.Client, n: int) -> list[float]:
    timings = []
    for _ in range(n):
        request = body(f"miss {uuid.uuid4().hex}")
        started = time.perf_counter()
        response = client.post("/v1/chat/completions", json=request)
        timings.append((time.perf_counter() - started) * 1000)
        if response.headers.get("x-cache") != "MISS":
            raise RuntimeError(f"expected a miss, got {response.headers.get('x-cache')}")
    return timings


def p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--old", required=True)
    parser.add_argument("--new", default="HEAD")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--hits", type=int, default=200)
    parser.add_argument("--misses", type=int, default=30)
    parser.add_argument("--fast-path", choices=("on", "off"), default="on")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="lcp-compare-"))
    trees: dict[str, Path] = {}
    for label, rev in (("old", args.old), ("new", args.new)):
        tree = work / label
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "add", "-q", "--detach", str(tree), rev], check=True
        )
        trees[label] = tree
    try:
        with SimulatorThread(SimulatorConfig(latency_ms=0, tokens_per_second=100_000)) as sim:
            section = {"backend": "memory://", "ttl": 3600, "fast_path": {"enabled": args.fast_path == "on"}}
            proxies = {
                label: ProxyProcess(
                    proxy_config(sim.url, section),
                    work / f"proxy-{label}",
                    extra_files={"demo_auth.py": DEMO_AUTH_MODULE},
                    env={"PYTHONPATH": str(tree)},
                    name=f"proxy-{label}",
                )
                for label, tree in trees.items()
            }
            with running(proxies.values(), timeout=240):
                clients = {
                    label: httpx.Client(
                        base_url=proxy.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=60
                    )
                    for label, proxy in proxies.items()
                }
                warmed = body(f"warm {uuid.uuid4().hex}")
                for client in clients.values():
                    client.post("/v1/chat/completions", json=warmed)
                    deadline = time.monotonic() + 10
                    while time.monotonic() < deadline:
                        if client.post("/v1/chat/completions", json=warmed).headers.get("x-cache") == "HIT":
                            break
                        time.sleep(0.05)
                hits: dict[str, list[float]] = {"old": [], "new": []}
                hits99: dict[str, list[float]] = {"old": [], "new": []}
                misses: dict[str, list[float]] = {"old": [], "new": []}
                cpu: dict[str, float] = {"old": 0.0, "new": 0.0}
                order = ["old", "new"]
                for round_number in range(args.rounds):
                    for label in order if round_number % 2 == 0 else order[::-1]:
                        pid = proxies[label].process.pid  # type: ignore[union-attr]
                        before = cpu_seconds(pid)
                        timings = measure_hits(clients[label], warmed, args.hits)
                        cpu[label] += cpu_seconds(pid) - before
                        hits[label].append(statistics.median(timings))
                        hits99[label].append(p(timings, 0.99))
                        misses[label].append(statistics.median(measure_misses(clients[label], args.misses)))
                total_hits = args.rounds * args.hits
                rows = []
                for label in order:
                    rows.append(
                        (
                            label,
                            statistics.median(hits[label]),
                            statistics.median(hits99[label]),
                            cpu[label] / total_hits * 1000,
                            statistics.median(misses[label]),
                        )
                    )
                shape = f"{args.rounds} rounds x {args.hits} hits / {args.misses} misses"
                print(f"fast path {args.fast_path}; {shape}")
                print(f"load average at the end: {os.getloadavg()}")
                print(
                    f"{'rev':<4} {'hit p50 ms':>11} {'hit p99 ms':>11} {'CPU ms/hit':>11} {'miss p50 ms':>12}"
                )
                for label, h50, h99, c, m50 in rows:
                    print(f"{label:<4} {h50:>11.2f} {h99:>11.2f} {c:>11.2f} {m50:>12.2f}")
                old, new = rows
                print(
                    f"new/old: hit p50 {new[1] / old[1]:.2f}x, hit p99 {new[2] / old[2]:.2f}x, "
                    f"CPU/hit {new[3] / old[3]:.2f}x, miss p50 {new[4] / old[4]:.2f}x"
                )
    finally:
        for tree in trees.values():
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
