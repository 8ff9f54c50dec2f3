"""Memcached backend: the hand-written asyncio client (up to commit 7e1992c) against the emcache-based
one, through ``MemcachedStore`` (what the engine calls), on one real memcached, side by side.

    python -m benchmarks.memcached_client [--rounds 5] [--ops 2000] [--out results/<dir>/memcached_client.txt]

Starts its own ``memcached`` on a free loopback port (``--port`` uses a running one instead; keys are
under a unique prefix either way). The old client is loaded from git (``--old-ref``), so the run
needs the repository. Both stores are open at once and every workload alternates between them in
blocks of 100 calls, the order flipping each block, so both see the same background load (the
machine is shared); figures are medians over the rounds.

Workloads (values like the cache's: a 1.5 KB chat answer, 3 KB embedding items):

- ``get``: one hit, sequential; ``get_with_counters``: a hit and 2 invalidation counters (the read
  every lookup makes); ``set``: one 1.5 KB write; ``get_many 32`` / ``set_many 32``: an embedding
  batch. Latency p50/p99 in microseconds over ``--ops`` sequential calls.
- ``concurrent``: 64 tasks doing ``get_with_counters`` (then ``set``), throughput in operations per
  second, 4 alternating blocks of ``--ops`` x 3 calls per store.

Besides wall time, every workload reports the client's CPU time per operation (``time.process_time``
of this process; memcached runs in its own): on a shared machine, other processes stretch latency
and throughput but barely move what an operation costs the client.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from litellm_cache_plugin.store.memcached import MemcachedStore

OLD_REF = "7e1992c"  # the last commit with the hand-written client
ANSWER = os.urandom(1500)
ITEM = os.urandom(3000)
CONCURRENCY = 64


def load_old_module(ref: str) -> ModuleType:
    """``litellm_cache_plugin/store/memcached.py`` as it was at ``ref``, as a module of its own."""
    root = Path(__file__).resolve().parent.parent
    source = subprocess.run(
        ["git", "show", f"{ref}:litellm_cache_plugin/store/memcached.py"],
        cwd=root,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    path = Path(tempfile.mkdtemp()) / "memcached_handwritten.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("memcached_handwritten", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def start_memcached() -> tuple[subprocess.Popen[bytes], int]:
    binary = shutil.which("memcached")
    if binary is None:
        raise SystemExit("memcached is not installed (scripts/install-services.sh installs it)")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    argv = [binary, "-l", "127.0.0.1", "-p", str(port), "-m", "256", "-U", "0", "-I", "2m"]
    if os.geteuid() == 0:
        argv += ["-u", "root"]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return process, port
        except OSError:
            time.sleep(0.02)
    process.kill()
    raise SystemExit("memcached did not start")


async def timed(
    call: Callable[[], Awaitable[object]], ops: int, samples: list[float], cpu: list[float]
) -> None:
    """``ops`` sequential calls: each one's wall time into ``samples``, the block's CPU time (this
    process only: the client's cost, not memcached's) into ``cpu``."""
    cpu_started = time.process_time()
    for _ in range(ops):
        started = time.perf_counter()
        await call()
        samples.append(time.perf_counter() - started)
    cpu.append((time.process_time() - cpu_started) / ops)


async def throughput(call: Callable[[], Awaitable[object]], ops: int) -> tuple[float, float]:
    """(operations per second, CPU seconds per operation) of ``CONCURRENCY`` tasks calling ``call``."""
    per_task = ops // CONCURRENCY

    async def worker() -> None:
        for _ in range(per_task):
            await call()

    started, cpu_started = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    done = per_task * CONCURRENCY
    return done / (time.perf_counter() - started), (time.process_time() - cpu_started) / done


def workloads(store: Any) -> list[tuple[str, Callable[[], Awaitable[object]]]]:
    counters = ["gen:model", "gen:tenant"]
    batch = [f"item:{i}" for i in range(32)]
    return [
        ("get", lambda: store.get("answer")),
        ("get_with_counters", lambda: store.get_with_counters("answer", counters)),
        ("set", lambda: store.set("answer", ANSWER, 600)),
        ("get_many 32", lambda: store.get_many(batch)),
        ("set_many 32", lambda: store.set_many([(key, ITEM) for key in batch], 600)),
    ]


async def prepare(store: Any) -> None:
    await store.set("answer", ANSWER, 600)
    for counter in ("gen:model", "gen:tenant"):
        await store.incr(counter)
    await store.set_many([(f"item:{i}", ITEM) for i in range(32)], 600)
    found = await store.get_with_counters("answer", ["gen:model", "gen:tenant"])
    assert found[0] == ANSWER and all(value >= 1 for value in found[1]), "store does not answer"
    for _, call in workloads(store):  # warm the pools
        for _ in range(50):
            await call()


async def run(url: str, old: ModuleType, rounds: int, ops: int) -> dict[str, dict[str, list[float]]]:
    """Both stores open at once; every workload alternates between them in blocks of 100 calls (the
    order flipping each block), so that both see the same background load."""
    stores = {
        "hand-written": old.MemcachedStore.from_url(url, prefix=f"bench-{uuid.uuid4().hex[:8]}:"),
        "emcache": MemcachedStore.from_url(url, prefix=f"bench-{uuid.uuid4().hex[:8]}:"),
    }
    results: dict[str, dict[str, list[float]]] = {name: {} for name in stores}
    try:
        for store in stores.values():
            await prepare(store)
        for index in range(rounds):
            cases = {name: workloads(store) for name, store in stores.items()}
            for position, (case, _) in enumerate(cases["emcache"]):
                samples: dict[str, list[float]] = {name: [] for name in stores}
                cpu: dict[str, list[float]] = {name: [] for name in stores}
                for block in range(max(1, ops // 100)):
                    order = list(stores) if block % 2 == 0 else list(stores)[::-1]
                    for name in order:
                        await timed(cases[name][position][1], min(100, ops), samples[name], cpu[name])
                for name, values in samples.items():
                    values.sort()
                    row = results[name]
                    row.setdefault(f"{case} p50 us", []).append(values[len(values) // 2] * 1e6)
                    row.setdefault(f"{case} p99 us", []).append(values[int(len(values) * 0.99)] * 1e6)
                    row.setdefault(f"{case} cpu us/op", []).append(statistics.median(cpu[name]) * 1e6)
            for case, position in (("get_with_counters", 1), ("set", 2)):
                rates: dict[str, list[tuple[float, float]]] = {name: [] for name in stores}
                for block in range(4):
                    order = list(stores) if block % 2 == 0 else list(stores)[::-1]
                    for name in order:
                        rates[name].append(await throughput(cases[name][position][1], ops * 3))
                for name, measured in rates.items():
                    row = results[name]
                    row.setdefault(f"concurrent {case} ops/s", []).append(
                        statistics.median(rate for rate, _ in measured)
                    )
                    row.setdefault(f"concurrent {case} cpu us/op", []).append(
                        statistics.median(cost for _, cost in measured) * 1e6
                    )
            print(f"round {index + 1}/{rounds}: done", file=sys.stderr)
    finally:
        for store in stores.values():
            await store.close()
    return results


def report(results: dict[str, dict[str, list[float]]], args: argparse.Namespace, version: str) -> str:
    import emcache.version

    lines = [
        "Memcached client: hand-written asyncio client vs emcache, through MemcachedStore",
        f"python -m benchmarks.memcached_client --rounds {args.rounds} --ops {args.ops}",
        f"python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs; "
        f"memcached {version} on loopback; emcache {emcache.version.__version__}; "
        f"old client from {args.old_ref}; load average at the end "
        f"{', '.join(f'{value:.1f}' for value in os.getloadavg())} (1/5/15 min)",
        f"{args.rounds} rounds x {args.ops} sequential ops (throughput: 4 x {args.ops * 3} ops, "
        f"{CONCURRENCY} tasks); medians over rounds. cpu us/op: this process's CPU time (the client's "
        "cost, not memcached's), robust to other load on the machine",
        "",
        f"{'figure':<42}{'hand-written':>14}{'emcache':>12}{'new/old':>10}",
    ]
    for key in results["hand-written"]:
        old = statistics.median(results["hand-written"][key])
        new = statistics.median(results["emcache"][key])
        lines.append(f"{key:<42}{old:>14.1f}{new:>12.1f}{new / old:>10.2f}")
    return "\n".join(lines) + "\n"


async def server_version(url: str) -> str:
    store = MemcachedStore.from_url(url)
    try:
        return await store.clients[0].version()
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--ops", type=int, default=2000)
    parser.add_argument("--port", type=int, help="a running memcached on 127.0.0.1 (default: start one)")
    parser.add_argument("--old-ref", default=OLD_REF)
    parser.add_argument("--out", type=Path, help="also write the table to this file")
    args = parser.parse_args()
    old = load_old_module(args.old_ref)
    process = None
    port = args.port
    if port is None:
        process, port = start_memcached()
    try:
        url = f"memcached://127.0.0.1:{port}"
        version = asyncio.run(server_version(url))
        results = asyncio.run(run(url, old, args.rounds, args.ops))
    finally:
        if process is not None:
            process.kill()
            process.wait()
    text = report(results, args, version)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
