"""The project's benchmark: real LiteLLM proxies driven with the same workload, measured in one run.

    .venv/bin/python -m benchmarks.run            # full run, 11-16 minutes on 2 cores
    .venv/bin/python -m benchmarks.run --quick    # smoke run, about 2 minutes

Cases (each a real ``litellm`` proxy process, one uvicorn worker, the demo custom_auth), all against
an Ollama simulator that answers almost instantly so that proxy overhead dominates:

    a-no-cache          no cache at all (plugin not listed)
    b-litellm-redis     LiteLLM's built-in cache on Redis (``cache: true``), plugin not listed
    c-plugin-memory     our plugin on ``memory://`` with default settings, i.e. whatever the plugin
                        does when installed (today: including the fast path)
    d-plugin-redis      our plugin on Redis
    e-plugin-memory-nofast  our plugin on ``memory://`` with ``fast_path: {enabled: false}``

plus, unless ``--no-realistic``, two proxies against a simulator with a realistic upstream latency
(``f-no-cache-realistic``, ``g-plugin-memory-realistic``).

Hits: a set of prompts is warmed first (until each answers from the cache), then only those are
requested. Misses: unique prompts. Concurrency 1 is measured *paired* (one request to each case in
turn, rotating the order) so that every case sees the same background noise; higher levels run each
case for a fixed slice of time, several rounds in rotating order.

Micro-measurements without a proxy: the plugin's hit path on the Redis store against a bare redis-py
GET of the same value, and bytes of memory per entry in ``MemoryStore``. With py-spy installed, the
proxies are profiled under load. Everything lands in ``results/<date>-<machine>/``: ``results.json``,
PNG plots, flame graphs and a README describing the machine and the command.

Needs a Redis on 127.0.0.1:6379 (``--redis-host``/``--redis-port``); every key written is under a
per-run prefix and deleted at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import gc
import gzip
import hashlib
import importlib.metadata
import json
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
import numpy as np
import orjson

from tools.runner import (
    DEMO_AUTH_MODULE,
    ProxyProcess,
    free_port,
    proxy_config,
    stop_process_group,
)

# Set before anything imports litellm (the micro-benchmarks do, lazily): without it every import
# tries to download the model cost map.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

REPO = Path(__file__).resolve().parent.parent
API_KEY = "sk-team-a-0001"  # a team key of the demo custom_auth
TEAM_ID, USER_ID = "team-a", "alice"
MODEL_GROUP = "llama3.2"
SIM_MODEL = "llama3.2:1b"
PROFILE_LEVEL = 16

Phase = Literal["hits", "misses"]
PHASES: tuple[Phase, ...] = ("hits", "misses")
Kind = Literal["none", "builtin", "plugin"]

# Upstream answering in well under a millisecond: what is measured is the proxy, not the model.
FAST_UPSTREAM = {
    "latency_ms": 0,
    "tokens_per_second": 1e7,
    "prompt_tokens_per_second": 1e8,
    "parallel": 128,
    "default_answer_tokens": 160,
}
# A small model on a decent GPU: 100 ms to the first token, then 200 tokens/s.
REALISTIC_UPSTREAM = {
    "latency_ms": 100,
    "tokens_per_second": 200,
    "prompt_tokens_per_second": 2000,
    "parallel": 4,
    "default_answer_tokens": 160,
}

SYSTEM_PROMPT = (
    "You are the assistant of an internal engineering wiki. Answer in plain prose, in at most two "
    "short paragraphs, cite the page names you rely on, and say so when the wiki does not cover the "
    "question instead of guessing. Keep code samples minimal and runnable."
)
TOPICS = (
    "rotating the database credentials", "adding a new service to the deploy pipeline",
    "reading the latency dashboards", "our incident review process", "the on-call handover",
    "requesting a GPU quota increase", "tuning the Redis eviction policy", "the feature flag lifecycle",
    "writing a runbook", "the code review checklist", "retiring an API version", "log retention",
    "backfilling a Kafka topic", "the staging environment reset", "canary releases",
    "cost attribution per team", "the SLO error budget policy", "secrets in CI",
    "load testing before launches", "the schema migration rules", "debugging DNS in the cluster",
    "choosing a queue", "the release train calendar", "dependency upgrade cadence",
    "the data retention exceptions", "tracing a slow request", "the vendor security review",
    "bootstrapping a laptop", "the backup restore drill", "rate limits for internal APIs",
    "pager noise reduction", "naming conventions for metrics",
)  # fmt: skip


# --------------------------------------------------------------------------- processes


class SimulatorProcess:
    """The Ollama simulator in its own process, so that it does not share the load generator's GIL."""

    def __init__(self, name: str, workdir: Path, options: Mapping[str, float]) -> None:
        self.name = name
        self.options = dict(options)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> SimulatorProcess:
        command = [sys.executable, "-m", "litellm_cache_plugin.simulator", "--port", str(self.port)]
        for option, value in self.options.items():
            command += [f"--{option.replace('_', '-')}", str(value)]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=REPO
            )
        return self

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"simulator {self.name} exited: {self.log_path.read_text()[-2000:]}")
            with (
                contextlib.suppress(urllib.error.URLError, OSError),
                urllib.request.urlopen(f"{self.url}/api/version", timeout=2) as response,
            ):
                if response.status == 200:
                    return
            time.sleep(0.2)
        raise TimeoutError(f"simulator {self.name} not ready after {timeout}s")

    def stop(self) -> None:
        stop_process_group(self.process, timeout=10)


@dataclass
class Case:
    name: str
    title: str
    kind: Kind
    backend: str
    upstream: Literal["fast", "realistic"]
    proxy: ProxyProcess
    settings: dict[str, Any]


def build_cases(
    fast_url: str,
    real_url: str | None,
    run_id: str,
    workdir: Path,
    redis_host: str,
    redis_port: int,
) -> list[Case]:
    files = {"demo_auth.py": DEMO_AUTH_MODULE}
    redis_backend = f"redis://{redis_host}:{redis_port}/0?prefix=lcp-bench-{run_id}:"
    builtin_settings = {
        "cache": True,
        "cache_params": {
            "type": "redis",
            "host": redis_host,
            "port": redis_port,
            "namespace": f"lcp-bench-{run_id}-litellm",
        },
    }

    def plugin(name: str, title: str, url: str, backend: str, extra: dict[str, Any] | None = None) -> Case:
        settings = {"backend": backend, "ttl": 3600, **(extra or {})}
        config = proxy_config(url, settings)
        label = "redis" if backend.startswith("redis") else "memory"
        upstream: Literal["fast", "realistic"] = "fast" if url == fast_url else "realistic"
        proxy = ProxyProcess(config, workdir / name, extra_files=files, name=name)
        return Case(name, title, "plugin", label, upstream, proxy, {"cache_plugin": settings})

    def plain(name: str, title: str, url: str, litellm_settings: dict[str, Any] | None) -> Case:
        config = proxy_config(url, None, with_plugin=False, litellm_settings=litellm_settings)
        kind: Kind = "builtin" if litellm_settings else "none"
        upstream: Literal["fast", "realistic"] = "fast" if url == fast_url else "realistic"
        proxy = ProxyProcess(config, workdir / name, extra_files=files, name=name)
        settings = {"litellm_settings": litellm_settings or {}}
        return Case(name, title, kind, "redis" if litellm_settings else "-", upstream, proxy, settings)

    cases = [
        plain("a-no-cache", "no cache", fast_url, None),
        plain("b-litellm-redis", "LiteLLM built-in cache, Redis", fast_url, builtin_settings),
        plugin("c-plugin-memory", "plugin, memory:// (defaults)", fast_url, "memory://"),
        plugin("d-plugin-redis", "plugin, Redis (defaults)", fast_url, redis_backend),
        plugin(
            "e-plugin-memory-nofast",
            "plugin, memory://, fast_path off",
            fast_url,
            "memory://",
            {"fast_path": {"enabled": False}},
        ),
    ]
    if real_url is not None:
        cases += [
            plain("f-no-cache-realistic", "no cache, realistic upstream", real_url, None),
            plugin(
                "g-plugin-memory-realistic", "plugin, memory://, realistic upstream", real_url, "memory://"
            ),
        ]
    return cases


# --------------------------------------------------------------------------- workload


def chat_body(question: str) -> dict[str, Any]:
    return {
        "model": MODEL_GROUP,
        "messages": [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": question}],
        "temperature": 0,
    }


def hit_bodies(run_id: str, count: int) -> list[dict[str, Any]]:
    return [
        chat_body(f"How do we handle {TOPICS[i % len(TOPICS)]}? (set {run_id}, question {i})")
        for i in range(count)
    ]


def miss_body() -> dict[str, Any]:
    topic = random.choice(TOPICS)
    return chat_body(f"How do we handle {topic}? (unique {uuid.uuid4().hex})")


def classify(case: Case, response: httpx.Response) -> str:
    """What the proxy did with a request: hit, miss, upstream (no cache), or error."""
    if response.status_code != 200:
        return "error"
    if case.kind == "none":
        return "upstream"
    if case.kind == "builtin":
        # LiteLLM returns the key of the entry it served; a miss carries no key.
        return "hit" if "x-litellm-cache-key" in response.headers else "miss"
    return str(response.headers.get("x-cache", "none")).lower()


def expected(case: Case, phase: Phase) -> str:
    if case.kind == "none":
        return "upstream"
    return "hit" if phase == "hits" else "miss"


@dataclass
class Series:
    """Samples of one case in one phase at one concurrency level."""

    latencies: list[float] = field(default_factory=list)  # ms, requests with the expected outcome
    outcomes: Counter[str] = field(default_factory=Counter)
    busy_s: float = 0.0  # sliced: wall time under load; paired: sum of this case's latencies
    # CPU seconds the proxy process used meanwhile: unlike wall time, barely moved by whatever else
    # runs on the machine, so per-request CPU is the noise-robust measure of cost.
    cpu_s: float = 0.0
    fast_path: int = 0  # hits answered without LiteLLM's own x-litellm-version header
    overhead_ms: list[float] = field(default_factory=list)  # LiteLLM's x-litellm-overhead-duration-ms

    def add(self, case: Case, phase: Phase, response: httpx.Response | None, elapsed_ms: float) -> None:
        outcome = "error" if response is None else classify(case, response)
        self.outcomes[outcome] += 1
        if response is None or outcome != expected(case, phase):
            return
        self.latencies.append(elapsed_ms)
        if outcome == "hit" and "x-litellm-version" not in response.headers:
            self.fast_path += 1
        overhead = response.headers.get("x-litellm-overhead-duration-ms")
        if overhead:
            with contextlib.suppress(ValueError):
                self.overhead_ms.append(float(overhead))

    def summary(self) -> dict[str, Any]:
        total = sum(self.outcomes.values())
        out: dict[str, Any] = {
            "n": len(self.latencies),
            "requests": total,
            "outcomes": dict(self.outcomes),
            "seconds": round(self.busy_s, 3),
            "rate": len(self.latencies) / self.busy_s if self.busy_s else 0.0,
            "requests_per_s": total / self.busy_s if self.busy_s else 0.0,
            "cpu_s": round(self.cpu_s, 3),
            "cpu_ms_per_request": 1000 * self.cpu_s / total if total and self.cpu_s else None,
        }
        if self.latencies:
            values = np.asarray(self.latencies)
            points = (1, 5, 10, 25, 50, 75, 90, 95, 99, 99.9)
            quantiles = np.percentile(values, points)
            out.update(
                {f"p{str(p).replace('.', '_')}": float(q) for p, q in zip(points, quantiles, strict=True)}
            )
            out.update(mean=float(values.mean()), max=float(values.max()), min=float(values.min()))
        if self.overhead_ms:
            out["litellm_overhead_p50"] = float(np.median(self.overhead_ms))
        if out.get("outcomes", {}).get("hit"):
            out["fast_path_share"] = self.fast_path / max(1, len(self.latencies))
        return out


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def proxy_cpu_seconds(case: Case) -> float:
    """User + system CPU time of the proxy process so far (all its threads)."""
    process = case.proxy.process
    if process is None:
        return 0.0
    try:
        stat = Path(f"/proc/{process.pid}/stat").read_text()
    except OSError:
        return 0.0
    # The command name may contain spaces: fields are counted after its closing parenthesis.
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


async def post(client: httpx.AsyncClient, body: dict[str, Any]) -> tuple[httpx.Response | None, float]:
    started = time.perf_counter()
    try:
        response = await client.post("/v1/chat/completions", json=body)
    except httpx.HTTPError:
        return None, (time.perf_counter() - started) * 1000
    return response, (time.perf_counter() - started) * 1000


def body_for(phase: Phase, bodies: Sequence[dict[str, Any]], index: int) -> dict[str, Any]:
    return bodies[index % len(bodies)] if phase == "hits" else miss_body()


async def run_paired(
    cases: Sequence[Case],
    clients: Mapping[str, httpx.AsyncClient],
    phase: Phase,
    count: int,
    bodies: Sequence[dict[str, Any]],
    warmup: int = 5,
) -> dict[str, Series]:
    """Concurrency 1: one request to each case in turn, rotating the order, so drift and background
    noise fall on every case alike."""
    series = {case.name: Series() for case in cases}
    cpu_before: dict[str, float] = {}
    for index in range(count + warmup):
        if index == warmup:
            cpu_before = {case.name: proxy_cpu_seconds(case) for case in cases}
        shift = index % len(cases)
        for case in [*cases[shift:], *cases[:shift]]:
            response, elapsed = await post(clients[case.name], body_for(phase, bodies, index))
            if index >= warmup:
                series[case.name].add(case, phase, response, elapsed)
                series[case.name].busy_s += elapsed / 1000
    for case in cases:
        series[case.name].cpu_s += proxy_cpu_seconds(case) - cpu_before.get(case.name, 0.0)
    return series


async def run_load(
    case: Case,
    client: httpx.AsyncClient,
    phase: Phase,
    level: int,
    bodies: Sequence[dict[str, Any]],
    series: Series,
    keep_going: Callable[[], bool],
) -> None:
    """``level`` closed-loop clients, each sending its next request as soon as the last one ends."""

    async def worker(number: int) -> None:
        index = number * 7919  # each worker walks the prompt set from its own offset
        while keep_going():
            response, elapsed = await post(client, body_for(phase, bodies, index))
            series.add(case, phase, response, elapsed)
            index += 1

    started, cpu = time.perf_counter(), proxy_cpu_seconds(case)
    await asyncio.gather(*(worker(n) for n in range(level)))
    series.busy_s += time.perf_counter() - started
    series.cpu_s += proxy_cpu_seconds(case) - cpu


async def run_slice(
    case: Case,
    client: httpx.AsyncClient,
    phase: Phase,
    level: int,
    seconds: float,
    bodies: Sequence[dict[str, Any]],
    series: Series,
) -> None:
    deadline = time.perf_counter() + seconds
    await run_load(case, client, phase, level, bodies, series, lambda: time.perf_counter() < deadline)


async def warm(case: Case, client: httpx.AsyncClient, bodies: Sequence[dict[str, Any]]) -> float:
    """Store every prompt of the hit set and wait until each one answers from the cache (the write
    happens in the background after the first answer). Returns the seconds it took."""
    started = time.perf_counter()
    for body in bodies:
        response, _ = await post(client, body)
        if response is None or response.status_code != 200:
            detail = "no response" if response is None else f"{response.status_code} {response.text[:300]}"
            raise RuntimeError(f"{case.name}: warm-up request failed: {detail}\n{case.proxy.log_tail(30)}")
    pending = list(bodies) if case.kind != "none" else []
    deadline = time.perf_counter() + 30
    while pending and time.perf_counter() < deadline:
        await asyncio.sleep(0.1)
        still = []
        for body in pending:
            response, _ = await post(client, body)
            if response is None or classify(case, response) != "hit":
                still.append(body)
        pending = still
    if pending:
        raise RuntimeError(f"{case.name}: {len(pending)} prompts never answered from the cache")
    # Exercise both code paths under concurrency before anything is measured (lazy imports, pools).
    for phase in PHASES:
        await run_slice(case, client, phase, 4, 1.0, bodies, Series())
    return time.perf_counter() - started


# --------------------------------------------------------------------------- profiling

_FRAME_RE = re.compile(r"^(?P<func>.*) \((?P<file>.*):(?P<line>\d+)\)$")
_FRAMEWORK = ("uvicorn", "starlette", "fastapi", "h11", "httptools", "uvloop", "anyio", "asyncio")


def _owner(path: str, func: str = "") -> str:
    if func == "FastPathApp.__call__":
        # The fast path's middleware entry: on a miss it only hands the request on, and what runs
        # below it (Starlette routing, LiteLLM's endpoint) is not ours.
        return ""
    if "litellm_cache_plugin" in path:
        return "ours"
    if re.search(r"/(litellm|litellm_enterprise|litellm_proxy_extras)/", path):
        return "litellm"
    return ""


def _library(path: str) -> str:
    if "litellm_cache_plugin" in path:
        return "litellm_cache_plugin"
    match = re.search(r"site-packages/([^/]+)", path)
    if match:
        return match.group(1).removesuffix(".py")
    match = re.search(r"/lib/python3\.\d+/([^/]+)", path)
    if match:
        return "stdlib:" + match.group(1).removesuffix(".py")
    return "other"


def _short(path: str) -> str:
    for marker in ("site-packages/", "/work/main/", "/lib/python3.11/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


# Stages of a proxy request. A sample whose innermost frame of ours-or-LiteLLM is ours is "ours"
# (library code such as orjson or redis-py counts for whoever called it). Any other sample goes to the
# first stage below with a matching frame anywhere on its stack, so cost calculation done while
# logging counts as cost calculation, and LiteLLM's auth called by our fast path counts as auth. Our
# frames that merely pass a request on (the fast path is an ASGI middleware) do not make it ours.
_STAGES: tuple[tuple[str, Callable[[str, str], bool]], ...] = (
    ("cost calculation", lambda fn, f: "cost_calculator" in f or "response_cost" in fn),
    ("auth", lambda fn, f: "/proxy/auth/" in f or "custom_auth" in fn or "demo_auth" in f),
    (
        "logging/callbacks",
        lambda fn, f: "litellm_logging.py" in f or "/litellm/integrations/" in f or "success_handler" in fn,
    ),
    ("LiteLLM cache machinery", lambda fn, f: "/litellm/caching/" in f),
    ("pre-call hooks/setup", lambda fn, f: "litellm_pre_call_utils" in f or "pre_call" in fn),
    ("router", lambda fn, f: "/litellm/router" in f),
    ("provider call", lambda fn, f: "/litellm/llms/" in f or "/aiohttp/" in f or "/httpx/" in f),
    ("proxy request handling", lambda fn, f: "/litellm/proxy/" in f),
    ("other LiteLLM", lambda fn, f: _owner(f) == "litellm"),
    ("web server/event loop", lambda fn, f: any(name in f for name in _FRAMEWORK)),
)
STAGE_NAMES = ("ours", *(name for name, _ in _STAGES), "other")


def _stage(frames: Sequence[tuple[str, str]], owner: str) -> str:
    if owner == "ours":
        return "ours"
    for name, matches in _STAGES:
        if any(matches(fn, f) for fn, f in frames):
            return name
    return "other"


def analyse_profile(raw_path: Path, top: int = 12) -> dict[str, Any]:
    """Where the proxy's CPU samples went (py-spy raw output, full file names).

    ``attributed``: each sample goes to its innermost frame that is ours or LiteLLM's; samples with
    neither are the web server/event loop (``framework``) or ``other``. ``stages``: see ``_STAGES``.
    ``ours_top``: our functions by inclusive share (their callees, LiteLLM's included, count too).
    """
    samples = 0
    attributed: Counter[str] = Counter()
    stages: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    library_self: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for line in raw_path.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = []
        for text in stack.split(";"):
            match = _FRAME_RE.match(text)
            if match:
                frames.append((match.group("func"), match.group("file")))
        if not frames:
            continue
        samples += count
        owner = next((o for fn, f in reversed(frames) if (o := _owner(f, fn))), "")
        stages[_stage(frames, owner)] += count
        if not owner:
            leaf_library = _library(frames[-1][1])
            owner = "framework" if any(name in leaf_library for name in _FRAMEWORK) else "other"
        attributed[owner] += count
        func, path = frames[-1]
        self_time[f"{func} ({_short(path)})"] += count
        library_self[_library(path)] += count
        for name in {f"{fn} ({_short(fl)})" for fn, fl in frames if _owner(fl)}:
            inclusive[name] += count
    if not samples:
        return {"samples": 0}

    def share(counter: Counter[str], limit: int, skip_above: float = 1.01) -> list[list[Any]]:
        rows = [[k, round(v / samples, 4)] for k, v in counter.most_common() if v / samples <= skip_above]
        return rows[:limit]

    # FastPathApp.__call__ is the middleware entry: on a miss the whole normal pipeline runs under it.
    ours = Counter(
        {
            k: v
            for k, v in inclusive.items()
            if "litellm_cache_plugin" in k and "FastPathApp.__call__" not in k
        }
    )
    theirs = Counter({k: v for k, v in inclusive.items() if "litellm_cache_plugin" not in k})
    return {
        "samples": samples,
        "attributed": {k: round(v / samples, 4) for k, v in attributed.most_common()},
        "stages": {k: round(v / samples, 4) for k, v in stages.most_common()},
        "self_top": share(self_time, top),
        "library_self": share(library_self, top),
        "ours_top": share(ours, top),
        # Functions on nearly every stack (the request handler itself) say nothing: skip above 90 %.
        "litellm_inclusive_top": share(theirs, top, skip_above=0.9),
    }


async def profile_case(
    case: Case,
    client: httpx.AsyncClient,
    phase: Phase,
    bodies: Sequence[dict[str, Any]],
    seconds: float,
    out_dir: Path,
    work_dir: Path,
) -> dict[str, Any]:
    """py-spy on the proxy process while ``PROFILE_LEVEL`` clients load it: an SVG flame graph for
    people, then raw stacks (full file names) for :func:`analyse_profile`."""
    py_spy = Path(sys.executable).with_name("py-spy")
    executable = str(py_spy) if py_spy.exists() else shutil.which("py-spy")
    if executable is None or case.proxy.process is None:
        return {"skipped": "py-spy not installed (pip install py-spy)"}
    running = True
    load = asyncio.create_task(
        run_load(case, client, phase, PROFILE_LEVEL, bodies, Series(), lambda: running)
    )
    svg = out_dir / "profiles" / f"{case.name}-{phase}.svg"
    raw = work_dir / f"{case.name}-{phase}.raw.txt"
    svg.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    try:
        await asyncio.sleep(1.0)  # let the load settle
        for fmt, path, extra in (("flamegraph", svg, []), ("raw", raw, ["--full-filenames"])):
            command = [executable, "record", "-p", str(case.proxy.process.pid), "-d", str(int(seconds))]
            # --gil: only samples that hold the GIL, i.e. Python work (idle pool threads parked in
            # queue.get would otherwise look busy).
            command += ["-r", "100", "--gil", "--format", fmt, "-o", str(path), *extra]
            proc = await asyncio.create_subprocess_exec(
                *command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
            )
            _, stderr = await proc.communicate()
            if proc.returncode != 0:
                errors.append(stderr.decode(errors="replace")[-500:])
    finally:
        running = False
        await load
    if errors or not raw.exists():
        return {"skipped": "py-spy failed: " + " | ".join(errors)}
    result = analyse_profile(raw)
    result["flamegraph"] = str(svg.relative_to(out_dir))
    # The raw stacks too, compressed, so that the breakdown can be redone another way later.
    stacks = svg.with_suffix(".collapsed.txt.gz")
    stacks.write_bytes(gzip.compress(raw.read_bytes()))
    result["stacks"] = str(stacks.relative_to(out_dir))
    return result


# --------------------------------------------------------------------------- micro-benchmarks


FILLER = (
    "the service reads its settings at start and the runbook explains each step with a short "
    "example so that the on-call engineer can follow it without prior context while the page "
    "names point to the wiki sections that cover the details"
)


def chat_completion_skeleton(rng: random.Random, model: str) -> dict[str, Any]:
    """A chat completion as LiteLLM returns it, with empty content and usage to fill in."""
    return {
        "id": f"chatcmpl-{uuid.UUID(int=rng.getrandbits(128))}",
        "created": 1763800000 + rng.randint(0, 10**6),
        "model": model,
        "object": "chat.completion",
        "system_fingerprint": None,
        "choices": [
            {
                "finish_reason": "stop",
                "index": 0,
                "message": {"content": "", "role": "assistant", "tool_calls": None, "function_call": None},
            }
        ],
        "usage": {"completion_tokens": 0, "prompt_tokens": 96, "total_tokens": 0},
    }


def realistic_payload(rng: random.Random, size_range: tuple[int, int] = (1024, 2048)) -> bytes:
    """A chat completion as LiteLLM returns it, 1-2 KB of JSON."""
    target = rng.randint(*size_range)
    words = FILLER.split()
    body = chat_completion_skeleton(rng, f"ollama_chat/{SIM_MODEL}")
    skeleton = len(orjson.dumps(body))
    content: list[str] = []
    length = 0
    while skeleton + length < target:
        word = rng.choice(words)
        content.append(word)
        length += len(word) + 1
    text = " ".join(content)
    body["choices"][0]["message"]["content"] = text
    tokens = max(1, len(content) * 4 // 3)
    body["usage"].update(completion_tokens=tokens, total_tokens=96 + tokens)
    return orjson.dumps(body)


def proxy_like_kwargs(plugin: Any, api_base: str, question: str) -> dict[str, Any]:
    """The SDK-level kwargs the carrier sees behind the proxy (shape taken from LiteLLM 1.106's
    proxy: router + proxy metadata), with the identity our pre-call hook signs."""
    from litellm_cache_plugin.policy.keys import Identity

    key_hash = hashlib.sha256(API_KEY.encode()).hexdigest()
    identity = plugin.signer.sign(Identity(api_key_hash=key_hash, team_id=TEAM_ID, user_id=USER_ID))
    model_info = {"id": hashlib.sha256(b"deployment").hexdigest(), "db_model": False}
    metadata = {
        "requester_metadata": {},
        "user_api_key_hash": key_hash,
        "user_api_key_alias": None,
        "user_api_key_team_id": TEAM_ID,
        "user_api_key_user_id": USER_ID,
        "user_api_key_org_id": None,
        "user_api_key_team_alias": None,
        "user_api_key_end_user_id": None,
        "user_api_key_user_email": None,
        "user_api_key": key_hash,
        "user_api_end_user_max_budget": None,
        "litellm_api_version": "1.106.0",
        "global_max_parallel_requests": None,
        "user_api_key_spend": 0.0,
        "user_api_key_max_budget": None,
        "user_api_key_metadata": {},
        "headers": {"content-type": "application/json", "user-agent": "python-httpx/0.28.1"},
        "endpoint": "http://127.0.0.1:4000/v1/chat/completions",
        "litellm_parent_otel_span": None,
        "requester_ip_address": "",
        "model_group": MODEL_GROUP,
        "model_group_size": 1,
        "deployment": f"ollama_chat/{SIM_MODEL}",
        "model_info": model_info,
        "api_base": api_base,
        "caching_groups": None,
        "lcp_identity": identity,
    }
    return {
        "model": f"ollama_chat/{SIM_MODEL}",
        "messages": [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": question}],
        "temperature": 0,
        "stream": False,
        "api_base": api_base,
        "custom_llm_provider": "ollama_chat",
        "litellm_call_id": str(uuid.uuid4()),
        "litellm_logging_obj": None,
        "proxy_server_request": {
            "url": "http://127.0.0.1:4000/v1/chat/completions",
            "method": "POST",
            "headers": metadata["headers"],
            "body": {"model": MODEL_GROUP, "temperature": 0},
        },
        "metadata": metadata,
        "model_info": model_info,
        "timeout": 600.0,
        "max_retries": 0,
        "caching": False,
        "client": None,
    }


def _pct(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def _per_call_us(fn: Callable[[], object], iterations: int) -> float:
    """Best of three timed loops, in microseconds per call (the best run is the least disturbed)."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(iterations):
            fn()
        best = min(best, (time.perf_counter() - started) / iterations)
    return best * 1e6


async def micro_hit_path(
    redis_host: str, redis_port: int, prefix: str, sim_url: str | None, iterations: int
) -> dict[str, Any]:
    """Our hit path on the Redis store (context + key + engine lookup + envelope decode, the way the
    carrier does it) against a bare redis-py asyncio GET of the same stored value."""
    import redis.asyncio as aioredis

    from litellm_cache_plugin.envelope import decode_entry
    from litellm_cache_plugin.integrations.litellm import CachePlugin
    from litellm_cache_plugin.policy.keys import exact_key
    from litellm_cache_plugin.settings import settings_from_mapping

    backend = f"redis://{redis_host}:{redis_port}/0?prefix={prefix}"
    plugin = CachePlugin(settings_from_mapping({"backend": backend}, environ={}), proxy_mode=True)
    api_base = sim_url or "http://127.0.0.1:11434"
    if sim_url is not None:
        # As in the proxy: the Ollama digest is read once and then served from memory.
        await plugin.versions.ensure(api_base, f"ollama_chat/{SIM_MODEL}")
    rng = random.Random(7)
    kwargs = proxy_like_kwargs(plugin, api_base, "How do we handle canary releases? (micro)")
    ctx = plugin.context(kwargs)
    if ctx is None or not ctx.cacheable:
        raise RuntimeError(f"micro-benchmark request is not cacheable: {getattr(ctx, 'reason', None)}")
    key = plugin.region.key_for(ctx)
    payload = realistic_payload(rng)
    await plugin.engine.store_entry(
        key,
        payload,
        tenant=ctx.tenant,
        model_group=ctx.request.model_group,
        model_version=ctx.request.model_version,
        ttl=3600,
    )
    bare = aioredis.Redis(host=redis_host, port=redis_port)
    full_key = prefix + key
    raw = await bare.get(full_key)
    if not isinstance(raw, bytes):
        raise RuntimeError("the micro-benchmark entry was not written to Redis")
    call_ids = [str(uuid.uuid4()) for _ in range(iterations + 200)]

    not_hits: Counter[str] = Counter()

    async def ours(index: int) -> float:
        kwargs["litellm_call_id"] = call_ids[index]
        started = time.perf_counter()
        context = plugin.context(kwargs)
        assert context is not None
        lookup = await plugin.region.lookup_response(context)
        elapsed = time.perf_counter() - started
        plugin.region.decision_for(call_ids[index])  # the header hook pops it in the proxy
        if lookup.entry is None:
            # Failed open (e.g. the 100 ms backend deadline on a starved machine): counted, and its
            # time still counts, as a proxy would have spent it too.
            not_hits[lookup.reason] += 1
        return elapsed * 1000

    async def bare_get(_: int) -> float:
        started = time.perf_counter()
        value = await bare.get(full_key)
        elapsed = time.perf_counter() - started
        assert value is not None
        return elapsed * 1000

    async def bare_pipeline(_: int) -> float:
        # What one round trip for the entry and its invalidation counters would cost.
        started = time.perf_counter()
        pipe = bare.pipeline(transaction=False)
        pipe.get(full_key)
        pipe.mget(counter_keys)
        await pipe.execute()
        return (time.perf_counter() - started) * 1000

    # The layers in between, to show where the time goes.
    async def engine_lookup(_: int) -> float:
        started = time.perf_counter()
        await plugin.region.exact(ctx, key)  # the engine lookup exactly as the plugin calls it
        return (time.perf_counter() - started) * 1000

    async def guarded_get(_: int) -> float:
        started = time.perf_counter()
        await plugin.engine.store.get(key)
        return (time.perf_counter() - started) * 1000

    async def store_get(_: int) -> float:
        started = time.perf_counter()
        await plugin.raw_store.get(key)
        return (time.perf_counter() - started) * 1000

    entry = decode_entry(raw)
    assert entry is not None
    counter_keys = [prefix + name for name in entry.counters]
    runners: dict[str, Callable[[int], Awaitable[float]]] = {
        "ours": ours,
        "bare_get": bare_get,
        "bare_get_plus_counters_pipelined": bare_pipeline,
        "engine_lookup": engine_lookup,
        "guarded_store_get": guarded_get,
        "redis_store_get": store_get,
    }
    timings: dict[str, list[float]] = {name: [] for name in runners}
    names = list(runners)
    for index in range(iterations + 200):
        # Interleaved, rotating order: every path sees the same machine at the same moment.
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            elapsed = await runners[name](index)
            if index >= 200:
                timings[name].append(elapsed)

    # Throughput with 16 concurrent callers on one event loop (the proxy's situation).
    async def throughput(fn: Callable[[int], Awaitable[float]], seconds: float = 2.0) -> float:
        done = 0
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                await fn(done % len(call_ids))
                done += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(16)))
        return done / (time.perf_counter() - started)

    rates = {"ours": await throughput(ours), "bare_get": await throughput(bare_get)}

    # Synchronous parts, per call.
    breakdown = {
        "context_us": _per_call_us(lambda: plugin.context(kwargs), 2000),
        # The key itself: key_for memoizes it on the context, which would time a dict lookup.
        "key_for_us": _per_call_us(
            lambda: exact_key(plugin.settings.namespace, ctx.request, ctx.tenant), 2000
        ),
        "decode_entry_us": _per_call_us(lambda: decode_entry(raw), 5000),
        "payload_json_parse_us": _per_call_us(lambda: orjson.loads(entry.payload), 5000),
    }
    await bare.aclose()
    await plugin.raw_store.close()
    await plugin.versions.close()
    summary = {
        name: {"p50_ms": _pct(values, 50), "p90_ms": _pct(values, 90), "p99_ms": _pct(values, 99)}
        for name, values in timings.items()
    }
    return {
        "iterations": iterations,
        "lookups_not_hit": dict(not_hits),
        "value_bytes": len(raw),
        "payload_bytes": len(payload),
        "counters_read": len(entry.counters),
        "latency": summary,
        "ratio_p50": summary["ours"]["p50_ms"] / summary["bare_get"]["p50_ms"],
        "ops_per_s_16_concurrent": rates,
        "breakdown": breakdown,
    }


def _rss_bytes() -> int:
    with open("/proc/self/statm", encoding="ascii") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def micro_memory(entries: int) -> dict[str, Any]:
    """Bytes of memory per entry in ``MemoryStore`` against the payload bytes, entries written through
    the engine with real keys and envelopes (1-2 KB chat completions).

    Runs in a fresh interpreter: in this long-lived process memory freed by earlier phases would be
    reused and hide the growth from RSS."""
    command = [sys.executable, "-m", "benchmarks.run", "--memory-child", str(entries)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=600, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"memory measurement failed: {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


async def memory_child(entries: int) -> dict[str, Any]:
    """The measurement itself: RSS first (nothing freed yet to be reused), then tracemalloc."""
    from litellm_cache_plugin.envelope import encode_entry
    from litellm_cache_plugin.integrations.litellm import CachePlugin
    from litellm_cache_plugin.settings import settings_from_mapping

    async def fill(traced: bool) -> dict[str, Any]:
        # The model version as a proxy in front of Ollama has it: the model's 64-hex-digit digest (it
        # is part of every envelope; without a server to ask it would be the short "unknown").
        digest = hashlib.sha256(SIM_MODEL.encode()).hexdigest()
        settings = {"backend": "memory://?max_bytes=1GiB", "models": {MODEL_GROUP: {"version": digest}}}
        plugin = CachePlugin(settings_from_mapping(settings, environ={}), proxy_mode=True)
        rng = random.Random(11)
        template = proxy_like_kwargs(plugin, "http://127.0.0.1:11434", "")
        store = plugin.raw_store
        gc.collect()
        if traced:
            tracemalloc.start()
            before = tracemalloc.get_traced_memory()[0]
        else:
            before = _rss_bytes()
        # Keys and payloads are built inside the measured window (what the store keeps of them must
        # be counted); everything else they allocate is garbage by the end.
        payload_bytes = key_bytes = value_bytes = 0
        for index in range(entries):
            kwargs = dict(template)
            question = f"How do we handle {TOPICS[index % len(TOPICS)]}? (memory {index})"
            kwargs["messages"] = [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": question},
            ]
            ctx = plugin.context(kwargs)
            assert ctx is not None and ctx.cacheable
            key = plugin.region.key_for(ctx)
            payload = realistic_payload(rng)
            payload_bytes += len(payload)
            key_bytes += len(key)
            entry = await plugin.engine.store_entry(
                key,
                payload,
                tenant=ctx.tenant,
                model_group=ctx.request.model_group,
                model_version=ctx.request.model_version,
                ttl=3600,
            )
            assert entry is not None
            value_bytes += len(encode_entry(entry))
            del entry, payload, kwargs, ctx
            if index % 256 == 0:
                # Let the loop run as a proxy's would: it drops the deadline timers GuardedStore
                # cancelled (a loop that never turns keeps ~200 B of them per call, not the store's).
                await asyncio.sleep(0)
        await asyncio.sleep(0)
        gc.collect()
        if traced:
            after = tracemalloc.get_traced_memory()[0]
            tracemalloc.stop()
        else:
            after = _rss_bytes()
        stats = await store.stats()
        held = after - before
        result = {
            "entries": entries,
            "payload_bytes": payload_bytes,
            "key_bytes": key_bytes,
            "stored_value_bytes": value_bytes,
            "memory_bytes": held,
            "bytes_per_entry": held / entries,
            "payload_per_entry": payload_bytes / entries,
            "envelope_header_per_entry": (value_bytes - payload_bytes) / entries,
            "store_accounted_bytes": stats.bytes,
            "ratio_to_payload": held / payload_bytes,
        }
        # Where the bytes go: the stored value (version byte + binary header + payload) and the
        # key as Python objects; the rest is the store's containers (dict slot, LRU links, tuple, float).
        value_object = value_bytes / entries + sys.getsizeof(b"")
        key_object = key_bytes / entries + sys.getsizeof("")
        result["value_object_per_entry"] = value_object
        result["key_object_per_entry"] = key_object
        result["containers_per_entry"] = held / entries - value_object - key_object
        await store.close()
        return result

    rss = await fill(False)
    return {"tracemalloc": await fill(True), "rss": rss}


# --------------------------------------------------------------------------- reporting


def fmt_ms(value: float | None) -> str:
    if value is None or value != value:
        return "-"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def cell(stats: Mapping[str, Any] | None) -> str:
    if not stats or not stats.get("n"):
        return "-"
    return f"{fmt_ms(stats.get('p50'))}/{fmt_ms(stats.get('p99'))} {stats['rate']:6.1f}/s"


def print_level(phase: Phase, level: int, cases: Sequence[Case], results: Mapping[str, Any]) -> None:
    print(f"  {phase} at concurrency {level}:")
    print(f"    {'case':28} {'n':>6} {'p50 ms':>8} {'p99 ms':>8} {'rate/s':>8}  outcomes")
    for case in cases:
        stats = results[case.name]
        outcomes = ", ".join(f"{k} {v}" for k, v in sorted(stats["outcomes"].items()))
        fast = f"  fast-path {stats['fast_path_share']:.0%}" if "fast_path_share" in stats else ""
        print(
            f"    {case.name:28} {stats['n']:6d} {fmt_ms(stats.get('p50')):>8} {fmt_ms(stats.get('p99')):>8} "
            f"{stats['rate']:8.1f}  {outcomes}{fast}",
            flush=True,
        )


def results_table(load: Mapping[str, Any], cases: Sequence[str], levels: Sequence[int]) -> list[str]:
    lines = []
    for phase, unit in (("hits", "hits/s"), ("misses", "req/s")):
        lines.append(
            f"{phase.upper()}: p50/p99 latency in ms, throughput in {unit} (case a: upstream every time)"
        )
        header = f"{'case':26}" + "".join(f" | {'c=' + str(level):^22}" for level in levels)
        lines += [header, "-" * len(header)]
        for case in cases:
            row = f"{case:26}"
            for level in levels:
                row += f" | {cell(load[phase].get(str(level), {}).get(case)):>22}"
            lines.append(row)
        lines.append("")
    lines.append("PROXY CPU PER REQUEST: ms of proxy-process CPU time per request, all levels (noise-robust)")
    header = f"{'case':26} | {'hits':>8} | {'misses':>8}"
    lines += [header, "-" * len(header)]
    for case in cases:
        row = f"{case:26}"
        for phase in PHASES:
            requests = sum(level.get(case, {}).get("requests", 0) for level in load[phase].values())
            cpu = sum(level.get(case, {}).get("cpu_s", 0.0) for level in load[phase].values())
            row += f" | {1000 * cpu / requests if requests else float('nan'):8.2f}"
        lines.append(row)
    lines.append("")
    return lines


@dataclass
class Target:
    name: str
    value: float
    threshold: float
    op: Literal["<=", ">="]
    detail: str

    @property
    def met(self) -> bool:
        if self.value != self.value:
            return False
        return self.value <= self.threshold if self.op == "<=" else self.value >= self.threshold

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": self.value,
            "threshold": self.threshold,
            "op": self.op,
            "met": self.met,
            "detail": self.detail,
        }


def evaluate_targets(
    load: Mapping[str, Any], micro: Mapping[str, Any] | None, memory: Mapping[str, Any] | None
) -> list[Target]:
    nan = float("nan")

    def stat(phase: str, level: int, case: str, key: str) -> float:
        value = load[phase].get(str(level), {}).get(case, {}).get(key)
        return float(value) if isinstance(value, (int, float)) else nan

    def peak(phase: str, case: str) -> tuple[float, int]:
        best = max(
            ((stat(phase, int(level), case, "rate"), int(level)) for level in load[phase]),
            default=(nan, 0),
        )
        return best

    targets = []
    ours_cases = ["d-plugin-redis", "c-plugin-memory"]
    builtin_p50 = stat("hits", 1, "b-litellm-redis", "p50")
    for case in ours_cases:
        ours = stat("hits", 1, case, "p50")
        targets.append(
            Target(
                f"hit p50 {case[0]} / b (c=1)",
                ours / builtin_p50,
                0.7,
                "<=",
                f"{fmt_ms(ours)} ms vs {fmt_ms(builtin_p50)} ms",
            )
        )
    builtin_rate, builtin_level = peak("hits", "b-litellm-redis")
    for case in ours_cases:
        rate, level = peak("hits", case)
        targets.append(
            Target(
                f"peak hits/s {case[0]} / b",
                rate / builtin_rate,
                1.5,
                ">=",
                f"{rate:.0f}/s (c={level}) vs {builtin_rate:.0f}/s (c={builtin_level})",
            )
        )

    def cpu_per_request(phase: str, case: str) -> float:
        requests = sum(level.get(case, {}).get("requests", 0) for level in load[phase].values())
        cpu = sum(level.get(case, {}).get("cpu_s", 0.0) for level in load[phase].values())
        return 1000 * cpu / requests if requests and cpu else nan

    builtin_cpu = cpu_per_request("hits", "b-litellm-redis")
    for case in ours_cases:
        ours_cpu = cpu_per_request("hits", case)
        targets.append(
            Target(
                f"hits per proxy CPU-second {case[0]} / b (cross-check)",
                builtin_cpu / ours_cpu,
                1.5,
                ">=",
                f"{ours_cpu:.1f} vs {builtin_cpu:.1f} CPU-ms per hit, all levels",
            )
        )
    base = stat("misses", 1, "a-no-cache", "p50")
    for case in sorted(ours_cases):
        ours = stat("misses", 1, case, "p50")
        targets.append(
            Target(
                f"miss cost p50 {case[0]} - a (c=1), ms",
                ours - base,
                1.0,
                "<=",
                f"{fmt_ms(ours)} ms vs {fmt_ms(base)} ms",
            )
        )
    base_cpu = cpu_per_request("misses", "a-no-cache")
    for case in sorted(ours_cases):
        ours_cpu = cpu_per_request("misses", case)
        targets.append(
            Target(
                f"miss CPU ms {case[0]} - a (cross-check)",
                ours_cpu - base_cpu,
                1.0,
                "<=",
                f"{ours_cpu:.1f} vs {base_cpu:.1f} CPU-ms per miss, all levels",
            )
        )
    if micro:
        latency = micro["latency"]
        targets.append(
            Target(
                "micro hit path / bare redis GET (p50)",
                micro["ratio_p50"],
                2.0,
                "<=",
                f"{latency['ours']['p50_ms'] * 1000:.0f} us vs {latency['bare_get']['p50_ms'] * 1000:.0f} us",
            )
        )
    if memory:
        traced = memory["tracemalloc"]
        targets.append(
            Target(
                "MemoryStore bytes / payload bytes",
                traced["ratio_to_payload"],
                1.3,
                "<=",
                f"{traced['bytes_per_entry']:.0f} B/entry for {traced['payload_per_entry']:.0f} B payloads",
            )
        )
    return targets


def target_lines(targets: Sequence[Target]) -> list[str]:
    lines = [f"{'target':46} {'value':>8} {'goal':>8}  {'':6} detail"]
    for target in targets:
        verdict = "MET" if target.met else "MISSED"
        goal = f"{target.op}{target.threshold:g}"
        lines.append(f"{target.name:46} {target.value:8.2f} {goal:>8}  {verdict:6} {target.detail}")
    return lines


CASE_COLORS = {
    "a-no-cache": "#7f7f7f",
    "b-litellm-redis": "#d62728",
    "c-plugin-memory": "#1f77b4",
    "d-plugin-redis": "#2ca02c",
    "e-plugin-memory-nofast": "#9467bd",
    "f-no-cache-realistic": "#bcbd22",
    "g-plugin-memory-realistic": "#17becf",
}


def make_plots(
    samples: Mapping[str, Mapping[int, Mapping[str, Series]]],
    load: Mapping[str, Any],
    cases: Sequence[Case],
    levels: Sequence[int],
    out_dir: Path,
    title: str,
    realistic: Mapping[str, Mapping[str, Series]] | None,
) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    def plain(value: float, _: object) -> str:
        return f"{value:g}"

    def plain_minor(value: float, _: object) -> str:
        # Label 2x and 5x minor ticks of a log axis too, so that short ranges still read easily.
        mantissa = round(value / 10 ** np.floor(np.log10(value)), 6) if value > 0 else 0
        return f"{value:g}" if mantissa in (2, 5) else ""

    written = []
    shown_levels = sorted({levels[0], levels[-1]})
    fig, axes = plt.subplots(2, len(shown_levels), figsize=(7 * len(shown_levels), 10), squeeze=False)
    for row, phase in enumerate(("hits", "misses")):
        for col, level in enumerate(shown_levels):
            ax = axes[row][col]
            for case in cases:
                values = np.sort(np.asarray(samples[phase][level][case.name].latencies))
                if values.size == 0:
                    continue
                fraction = np.arange(1, values.size + 1) / values.size
                ax.plot(values, fraction, label=case.name, color=CASE_COLORS.get(case.name), lw=1.6)
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(FuncFormatter(plain))
            ax.xaxis.set_minor_formatter(FuncFormatter(plain_minor))
            ax.axhline(0.5, color="black", lw=0.6, ls=":")
            ax.axhline(0.99, color="black", lw=0.6, ls=":")
            ax.set_xlabel("latency seen by the client, ms (log scale)")
            ax.set_ylabel("fraction of requests at or below")
            what = "hits (case a: same prompts, upstream)" if phase == "hits" else "misses (unique prompts)"
            ax.set_title(f"{what}, concurrency {level}")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8, loc="lower right")
    fig.suptitle(f"Latency distributions (CDF), dotted lines at p50 and p99 - {title}")
    fig.tight_layout()
    path = out_dir / "latency_cdf.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path.name)

    fig, axes = plt.subplots(2, 2, figsize=(14, 10))
    panels = (
        ("hits", "rate", "hits/s (case a: requests/s)", axes[0][0], False),
        ("misses", "rate", "requests/s (misses)", axes[0][1], False),
        ("hits", "p50", "hit latency p50, ms (p99 dashed)", axes[1][0], True),
        ("misses", "p50", "miss latency p50, ms (p99 dashed)", axes[1][1], True),
    )
    for phase, key, label, ax, with_p99 in panels:
        for case in cases:
            xs, ys, tails = [], [], []
            for level in levels:
                stats = load[phase].get(str(level), {}).get(case.name)
                if stats and stats.get("n"):
                    xs.append(level)
                    ys.append(stats[key])
                    tails.append(stats.get("p99"))
            color = CASE_COLORS.get(case.name)
            ax.plot(xs, ys, marker="o", label=case.name, color=color)
            if with_p99:
                ax.plot(xs, tails, ls="--", color=color, alpha=0.6)
        ax.set_xscale("log", base=2)
        ax.set_xticks(list(levels))
        ax.set_xticklabels([str(level) for level in levels])
        if with_p99:
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(FuncFormatter(plain))
            ax.yaxis.set_minor_formatter(FuncFormatter(plain_minor))
        else:
            ax.set_ylim(bottom=0)
        ax.set_xlabel("concurrent clients")
        ax.set_ylabel(label)
        ax.set_title(f"{phase}: {label}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Throughput and latency vs concurrency - {title}")
    fig.tight_layout()
    path = out_dir / "throughput.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path.name)

    fig, ax = plt.subplots(figsize=(10, 5))
    positions = np.arange(len(cases))
    for offset, phase in ((-0.2, "hits"), (0.2, "misses")):
        costs = []
        for case in cases:
            requests = sum(level.get(case.name, {}).get("requests", 0) for level in load[phase].values())
            cpu = sum(level.get(case.name, {}).get("cpu_s", 0.0) for level in load[phase].values())
            costs.append(1000 * cpu / requests if requests else np.nan)
        label = "hits (case a: upstream)" if phase == "hits" else "misses"
        bars = ax.bar(positions + offset, costs, width=0.38, label=label)
        ax.bar_label(bars, fmt="%.1f", fontsize=8)
    ax.set_xticks(positions)
    ax.set_xticklabels([case.name for case in cases], rotation=15)
    ax.set_ylabel("proxy CPU ms per request")
    ax.set_title(f"Proxy CPU time per request, all concurrency levels - {title}")
    ax.legend()
    fig.tight_layout()
    path = out_dir / "cpu_cost.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path.name)

    if realistic:
        fig, ax = plt.subplots(figsize=(9, 5))
        names = list(realistic["hits"])
        positions = np.arange(len(names))
        for offset, phase in ((-0.2, "hits"), (0.2, "misses")):
            medians = [np.median(realistic[phase][name].latencies or [np.nan]) for name in names]
            label = "hits p50 (f: same prompts, upstream)" if phase == "hits" else "misses p50"
            bars = ax.bar(positions + offset, medians, width=0.38, label=label)
            ax.bar_label(bars, fmt="%.0f ms", fontsize=8)
        ax.set_xticks(positions)
        ax.set_xticklabels(names)
        ax.set_ylabel("p50 latency, ms")
        ax.set_title("Realistic upstream (100 ms + 160 tokens at 200 tok/s), concurrency 1")
        ax.legend(loc="upper center")
        fig.tight_layout()
        path = out_dir / "realistic.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path.name)
    return written


def add_stage_ms(profiles: Mapping[str, Any], load: Mapping[str, Any]) -> None:
    """Shares of the samples times the measured CPU per request: CPU-ms per request by stage."""
    for key, prof in profiles.items():
        name, _, phase = key.rpartition("-")
        requests = sum(level.get(name, {}).get("requests", 0) for level in load[phase].values())
        cpu = sum(level.get(name, {}).get("cpu_s", 0.0) for level in load[phase].values())
        if "stages" in prof and requests:
            per_request = 1000 * cpu / requests
            prof["cpu_ms_per_request"] = per_request
            prof["stage_ms_per_request"] = {k: round(v * per_request, 3) for k, v in prof["stages"].items()}


def reanalyse(out_dir: Path) -> int:
    """Redo the profile breakdown, the targets and README.md of a results directory from its saved
    stacks and results.json (after a change to the analysis; the plots are left as they are)."""
    path = out_dir / "results.json"
    report = json.loads(path.read_text(encoding="utf-8"))
    for key, prof in report.get("profile", {}).items():
        stacks = prof.get("stacks")
        if not stacks or not (out_dir / stacks).exists():
            continue
        with tempfile.TemporaryDirectory() as tmp:
            raw = Path(tmp) / "stacks.txt"
            raw.write_bytes(gzip.decompress((out_dir / stacks).read_bytes()))
            fresh = analyse_profile(raw)
        report["profile"][key] = {**fresh, "flamegraph": prof.get("flamegraph"), "stacks": stacks}
    add_stage_ms(report.get("profile", {}), report["load"])
    targets = evaluate_targets(report["load"], report.get("micro"), report.get("memory"))
    report["targets"] = [t.as_dict() for t in targets]
    cases = [name for name, case in report["cases"].items() if case.get("upstream") == "fast"]
    table = results_table(report["load"], cases, report["meta"]["levels"])
    path.write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")
    write_readme(out_dir, report, table, target_lines(targets))
    print("\n".join(target_lines(targets)))
    print(f"re-analysed {out_dir}")
    return 0


def profile_section_title() -> str:
    return "## Where the proxy's CPU goes (py-spy --gil, 100 Hz, 16 concurrent clients)"


def profile_table(profiles: Mapping[str, Any]) -> list[str]:
    """CPU-ms per request by stage (profile shares times the measured CPU per request), one column
    per profile."""
    names = [name for name, prof in profiles.items() if "stage_ms_per_request" in prof]
    if not names:
        return []
    lines = [
        "CPU-ms per request by stage (share of samples x measured proxy CPU per request; see "
        "`_STAGES` in benchmarks/run.py):",
        "",
        "| stage | " + " | ".join(names) + " |",
        "|---" * (len(names) + 1) + "|",
    ]
    for stage in STAGE_NAMES:
        values = [profiles[name]["stage_ms_per_request"].get(stage, 0.0) for name in names]
        if any(value >= 0.05 for value in values):
            lines.append(f"| {stage} | " + " | ".join(f"{value:.2f}" for value in values) + " |")
    totals = " | ".join(f"**{profiles[name]['cpu_ms_per_request']:.2f}**" for name in names)
    lines += [f"| **total** | {totals} |", ""]
    return lines


# --------------------------------------------------------------------------- machine and cleanup


def machine_info() -> dict[str, Any]:
    cpu_model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    ram = 0
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram = int(line.split()[1]) * 1024
    versions = {}
    for package in ("litellm", "litellm-cache-plugin", "redis", "httpx", "uvicorn", "fastapi", "orjson"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[package] = importlib.metadata.version(package)
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model,
        "ram_bytes": ram,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": versions,
    }


def _cpu_by_process() -> dict[int, tuple[float, str]]:
    found: dict[int, tuple[float, str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        name = command or stat[stat.find("(") + 1 : stat.rfind(")")]
        found[int(entry.name)] = ((int(fields[11]) + int(fields[12])) / _CLOCK_TICKS, name)
    return found


def busy_processes(exclude: set[int], window: float = 3.0, limit: int = 6) -> list[str]:
    """The processes that used the most CPU during the next ``window`` seconds (our own excluded)."""
    before = _cpu_by_process()
    time.sleep(window)
    after = _cpu_by_process()
    usage = []
    for pid, (cpu, name) in after.items():
        if pid in exclude or pid not in before:
            continue
        share = (cpu - before[pid][0]) / window
        if share >= 0.01:
            usage.append((share, pid, name))
    usage.sort(reverse=True)
    return [f"{share:.0%} of a core: pid {pid} `{name[:90]}`" for share, pid, name in usage[:limit]] or [
        "nothing above 1% of a core"
    ]


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def machine_slug(info: Mapping[str, Any]) -> str:
    model = str(info["cpu_model"]).lower()
    vendor = "amd" if "amd" in model else "intel" if "intel" in model else platform.machine().lower()
    return f"{info['cpus']}cpu-{round(info['ram_bytes'] / 2**30)}gb-{vendor}"


def redis_keys_cleanup(host: str, port: int, run_id: str) -> int:
    import redis

    deleted = 0
    with redis.Redis(host=host, port=port, socket_timeout=5) as client:
        batch: list[bytes] = []
        for key in client.scan_iter(match=f"lcp-bench-{run_id}*", count=1000):
            batch.append(key)
            if len(batch) >= 500:
                deleted += int(client.unlink(*batch))
                batch.clear()
        if batch:
            deleted += int(client.unlink(*batch))
    return deleted


def check_redis(host: str, port: int) -> str:
    import redis

    try:
        with redis.Redis(host=host, port=port, socket_timeout=3) as client:
            return str(client.info("server").get("redis_version", "?"))
    except redis.RedisError as error:
        raise SystemExit(f"benchmark needs Redis on {host}:{port} ({error})") from None


def write_readme(
    out_dir: Path, report: Mapping[str, Any], table: Sequence[str], targets: Sequence[str]
) -> None:
    meta = report["meta"]
    machine = meta["machine"]
    lines = [
        f"# Benchmark run {meta['started'][:10]} on {meta['slug']}",
        "",
        "Generated by `benchmarks/run.py`; the analysis of these numbers is in `results/README.md`.",
        "",
        "## Command",
        "",
        f"    {meta['command']}",
        "",
        f"Wall time {meta['wall_seconds'] / 60:.1f} min. Run id `{meta['run_id']}` (Redis keys under "
        f"`lcp-bench-{meta['run_id']}*`, deleted at the end: {meta.get('redis_keys_deleted', '?')} keys).",
        "",
        "## Machine",
        "",
        f"- CPU: {machine['cpus']} x {machine['cpu_model']}",
        f"- RAM: {machine['ram_bytes'] / 2**30:.1f} GiB",
        f"- OS: {machine['platform']}",
        f"- Python {machine['python']}; "
        + ", ".join(f"{name} {version}" for name, version in machine["versions"].items()),
        f"- Redis server {meta['redis_version']} on {meta['redis']}",
        f"- Load average at start {meta['load_start']}, at end {meta['load_end']}",
        "- Also running (CPU used by other processes over 3 s; shared machine, other engineers were "
        "working on it, so absolute numbers are noisy and only same-run ratios are meant to be compared):",
    ]
    lines += [f"  - at start: {row}" for row in meta["busy_at_start"]]
    lines += [f"  - after the proxy measurements: {row}" for row in meta.get("busy_after_load_phase", [])]
    lines += [f"  - at the end: {row}" for row in meta.get("busy_at_end", [])]
    lines += [
        "",
        "## Setup",
        "",
        f"- Proxies: `litellm` {machine['versions'].get('litellm')}, one uvicorn worker each, demo "
        "custom_auth, team key; fast upstream: Ollama simulator with "
        + ", ".join(f"{k}={v}" for k, v in FAST_UPSTREAM.items()),
        f"- Levels {meta['levels']}; concurrency 1 paired ({meta['pairs']} requests per case and phase), "
        f"higher levels {meta['rounds']} rounds x {meta['seconds']} s per case in rotating order.",
        f"- Hit set: {meta['prompts']} prompts (system + user message, temperature 0, ~1.4 KB answers).",
        f"- Fast path active in case c: {meta.get('fast_path_active', 'unknown')}",
        "",
        *(
            ["## Errors", "", *[f"- {error}" for error in meta.get("errors", [])], ""]
            if meta.get("errors")
            else []
        ),
        "## Results",
        "",
        "```",
        *table,
        "```",
        "",
        "## Targets",
        "",
        "```",
        *targets,
        "```",
        "",
    ]
    micro = report.get("micro")
    if micro:
        lat = micro["latency"]
        lines += [
            "## Micro-measurements (no proxy)",
            "",
            f"Hit path on Redis ({micro['value_bytes']} B value, {micro['counters_read']} invalidation "
            f"counters), p50 / p99 in microseconds, {micro['iterations']} interleaved iterations:",
            "",
            "| path | p50 us | p99 us | ops/s, 16 concurrent |",
            "|---|---|---|---|",
        ]
        rates = micro["ops_per_s_16_concurrent"]
        for name, stats in lat.items():
            rate = rates.get(name)
            lines.append(
                f"| {name} | {stats['p50_ms'] * 1000:.0f} | {stats['p99_ms'] * 1000:.0f} | "
                f"{f'{rate:.0f}' if rate else '-'} |"
            )
        lines += ["", "Synchronous parts per call: " + ", ".join(
            f"{k.removesuffix('_us')} {v:.1f} us" for k, v in micro["breakdown"].items()
        ), ""]  # fmt: skip
    memory = report.get("memory")
    if memory:
        traced, rss = memory["tracemalloc"], memory["rss"]
        lines += [
            f"MemoryStore, {traced['entries']} entries of {traced['payload_per_entry']:.0f} B payload "
            f"(+{traced['envelope_header_per_entry']:.0f} B envelope header, "
            f"{traced['key_bytes'] / traced['entries']:.0f} B key): "
            f"{traced['bytes_per_entry']:.0f} B/entry by tracemalloc "
            f"(x{traced['ratio_to_payload']:.2f} payload), {rss['bytes_per_entry']:.0f} B/entry by RSS "
            f"(x{rss['ratio_to_payload']:.2f}); the store's own accounting says "
            f"{traced['store_accounted_bytes'] / traced['entries']:.0f} B/entry.",
            "",
        ]
    realistic = report.get("realistic")
    if realistic:
        lines += ["## Realistic upstream (concurrency 1)", ""]
        for name, phases in realistic.items():
            lines.append(
                f"- {name}: hit p50 {fmt_ms(phases['hits'].get('p50'))} ms, "
                f"miss p50 {fmt_ms(phases['misses'].get('p50'))} ms"
            )
        lines.append("")
    profiles = report.get("profile") or {}
    if profiles:
        lines += [profile_section_title(), ""]
        lines += profile_table(profiles)
        for name, prof in profiles.items():
            if "attributed" not in prof:
                lines.append(f"- {name}: {prof.get('skipped', 'no samples')}")
                continue
            shares = ", ".join(f"{k} {v:.0%}" for k, v in prof["attributed"].items())
            lines.append(
                f"- `{name}` ({prof['samples']} samples, `{prof['flamegraph']}`), innermost owner: {shares}"
            )
            for function, share in prof["self_top"][:4]:
                lines.append(f"  - self {share:.1%}: `{function}`")
            for function, share in prof["ours_top"][:4]:
                lines.append(f"  - ours, inclusive {share:.1%}: `{function}`")
        lines.append("")
    lines += [
        "## Files",
        "",
        "- `results.json`: every figure above plus percentiles, outcome counts and profile breakdowns",
        *[f"- `{name}`" for name in report.get("plots", [])],
        "- `profiles/*.svg`: py-spy flame graphs; `profiles/*.collapsed.txt.gz`: their raw stacks",
        "",
    ]
    (out_dir / "README.md").write_text("\n".join(lines), encoding="utf-8")


# --------------------------------------------------------------------------- main


@dataclass
class Options:
    levels: list[int]
    seconds: float
    rounds: int
    pairs: int
    prompts: int
    realistic: bool
    profile: bool
    profile_seconds: float
    micro_iterations: int
    memory_entries: int
    redis_host: str
    redis_port: int
    out_dir: Path | None
    quick: bool
    keep_workdir: bool


def parse_args(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: ~2 minutes, fewer levels, no profile"
    )
    parser.add_argument("--levels", help="concurrency levels, comma separated (default 1,4,16,32)")
    parser.add_argument("--seconds", type=float, help="length of one measured slice (default 2)")
    parser.add_argument("--rounds", type=int, help="slices per case and level, rotating order (default 4)")
    parser.add_argument(
        "--pairs", type=int, help="requests per case and phase at concurrency 1 (default 250)"
    )
    parser.add_argument("--prompts", type=int, help="prompts in the hit set (default 32)")
    parser.add_argument("--no-realistic", action="store_true", help="skip the realistic-upstream cases")
    parser.add_argument("--no-profile", action="store_true", help="skip py-spy profiling")
    parser.add_argument("--profile-seconds", type=float, default=8.0, help="py-spy duration per recording")
    parser.add_argument(
        "--micro-iterations", type=int, help="hit-path micro-benchmark iterations (default 3000)"
    )
    parser.add_argument(
        "--memory-entries", type=int, help="entries for the memory measurement (default 20000)"
    )
    parser.add_argument("--redis-host", default="127.0.0.1")
    parser.add_argument("--redis-port", type=int, default=6379)
    parser.add_argument("--out-dir", type=Path, help="results directory (default results/<date>-<machine>)")
    parser.add_argument("--keep-workdir", action="store_true", help="keep proxy configs and logs")
    parser.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)  # internal, see micro_memory
    parser.add_argument(
        "--reanalyse",
        type=Path,
        metavar="RESULTS_DIR",
        help="redo the profile breakdown, targets and README of an earlier run, measuring nothing",
    )
    args = parser.parse_args(argv)
    if args.reanalyse:
        raise SystemExit(reanalyse(args.reanalyse))
    if args.memory_child:
        print(json.dumps(asyncio.run(memory_child(args.memory_child))))
        raise SystemExit(0)
    quick = bool(args.quick)
    levels_text = args.levels or ("1,16" if quick else "1,4,16,32")
    levels = sorted({int(x) for x in levels_text.split(",") if x.strip()})
    if not levels or levels[0] < 1:
        parser.error("--levels needs positive integers")
    return Options(
        levels=levels,
        seconds=args.seconds or 2.0,
        rounds=args.rounds or (1 if quick else 4),
        pairs=args.pairs or (60 if quick else 250),
        prompts=args.prompts or (16 if quick else 32),
        realistic=not (args.no_realistic or quick),
        profile=not (args.no_profile or quick),
        profile_seconds=args.profile_seconds,
        micro_iterations=args.micro_iterations or (600 if quick else 3000),
        memory_entries=args.memory_entries or (5_000 if quick else 20_000),
        redis_host=args.redis_host,
        redis_port=args.redis_port,
        out_dir=args.out_dir,
        quick=quick,
        keep_workdir=bool(args.keep_workdir),
    )


async def measure(
    opts: Options,
    cases: Sequence[Case],
    realistic_cases: Sequence[Case],
    bodies: Sequence[dict[str, Any]],
    out_dir: Path,
    work_dir: Path,
) -> dict[str, Any]:
    """Warm-up, then every phase and level; returns the load results, samples and profiles."""
    headers = {"Authorization": f"Bearer {API_KEY}"}
    biggest = max(max(opts.levels), PROFILE_LEVEL)
    limits = httpx.Limits(max_connections=biggest, max_keepalive_connections=biggest)
    clients = {
        case.name: httpx.AsyncClient(base_url=case.proxy.url, headers=headers, limits=limits, timeout=60)
        for case in [*cases, *realistic_cases]
    }
    load: dict[str, dict[str, dict[str, Any]]] = {"hits": {}, "misses": {}}
    samples: dict[str, dict[int, dict[str, Series]]] = {"hits": {}, "misses": {}}
    try:
        # A realistic miss takes about a second: a smaller hit set keeps its warm-up short.
        real_bodies = bodies[:8]
        for case in [*cases, *realistic_cases]:
            took = await warm(case, clients[case.name], bodies if case.upstream == "fast" else real_bodies)
            print(f"  warmed {case.name} in {took:.1f}s", flush=True)
        phase: Phase
        for phase in ("hits", "misses"):
            for level in opts.levels:
                if level == 1:
                    count = opts.pairs
                    print(f"[{phase} c=1] paired, {count} requests per case ...", flush=True)
                    by_case = await run_paired(cases, clients, phase, count, bodies)
                else:
                    by_case = {case.name: Series() for case in cases}
                    for round_number in range(opts.rounds):
                        shift = (round_number + level) % len(cases)
                        for case in [*cases[shift:], *cases[:shift]]:
                            series = by_case[case.name]
                            before = len(series.latencies)
                            await run_slice(
                                case, clients[case.name], phase, level, opts.seconds, bodies, series
                            )
                            print(
                                f"[{phase} c={level}] round {round_number + 1}/{opts.rounds} {case.name}: "
                                f"{len(series.latencies) - before} ok",
                                flush=True,
                            )
                samples[phase][level] = by_case
                load[phase][str(level)] = {name: series.summary() for name, series in by_case.items()}
                print_level(phase, level, cases, load[phase][str(level)])

        realistic: dict[str, Any] = {}
        realistic_samples: dict[str, dict[str, Series]] = {}
        if realistic_cases:
            for phase, count in (("hits", min(opts.pairs, 60)), ("misses", 15)):
                print(f"[realistic {phase} c=1] paired, {count} requests per case ...", flush=True)
                by_case = await run_paired(realistic_cases, clients, phase, count, real_bodies, warmup=2)
                realistic_samples[phase] = by_case
                for name, series in by_case.items():
                    realistic.setdefault(name, {})[phase] = series.summary()
                print_level(phase, 1, realistic_cases, {n: s.summary() for n, s in by_case.items()})

        profiles: dict[str, Any] = {}
        if opts.profile:
            by_name = {case.name: case for case in cases}
            plan: list[tuple[str, Phase]] = [
                ("b-litellm-redis", "hits"),
                ("c-plugin-memory", "hits"),
                ("d-plugin-redis", "hits"),
                ("e-plugin-memory-nofast", "hits"),
                ("a-no-cache", "misses"),
                ("c-plugin-memory", "misses"),
            ]
            for name, profile_phase in plan:
                case = by_name[name]
                print(f"[profile] {name} {profile_phase} ...", flush=True)
                try:
                    result = await profile_case(
                        case, clients[name], profile_phase, bodies, opts.profile_seconds, out_dir, work_dir
                    )
                except Exception as error:  # a profile is a bonus: never lose the run over it
                    result = {"skipped": f"failed: {error!r}"}
                profiles[f"{name}-{profile_phase}"] = result
                if "attributed" in result:
                    shares = ", ".join(f"{k} {v:.0%}" for k, v in result["attributed"].items())
                    print(f"  {result['samples']} samples: {shares}", flush=True)
                else:
                    print(f"  {result.get('skipped')}", flush=True)
    finally:
        for client in clients.values():
            await client.aclose()
    return {
        "load": load,
        "samples": samples,
        "realistic": realistic,
        "realistic_samples": realistic_samples,
        "profiles": profiles,
    }


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_args(argv)
    started = time.time()
    started_at = dt.datetime.now(dt.timezone.utc)
    run_id = uuid.uuid4().hex[:10]
    info = machine_info()
    slug = machine_slug(info)
    out_dir = (
        opts.out_dir or REPO / "results" / f"{started_at:%Y-%m-%d}-{slug}{'-quick' if opts.quick else ''}"
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    work_dir = Path(tempfile.mkdtemp(prefix="lcp-bench-"))
    redis_version = check_redis(opts.redis_host, opts.redis_port)
    busy_at_start = busy_processes({os.getpid()})
    load_start = load_average()
    print(
        f"benchmark run {run_id}: {info['cpus']} CPUs ({info['cpu_model']}), load {load_start}, "
        f"results in {out_dir}",
        flush=True,
    )

    fast_sim = SimulatorProcess("sim-fast", work_dir, FAST_UPSTREAM)
    real_sim = SimulatorProcess("sim-realistic", work_dir, REALISTIC_UPSTREAM) if opts.realistic else None
    sims = [s for s in (fast_sim, real_sim) if s is not None]
    all_cases = build_cases(
        fast_sim.url,
        real_sim.url if real_sim else None,
        run_id,
        work_dir,
        opts.redis_host,
        opts.redis_port,
    )
    cases = [c for c in all_cases if c.upstream == "fast"]
    realistic_cases = [c for c in all_cases if c.upstream == "realistic"]
    bodies = hit_bodies(run_id, opts.prompts)
    report: dict[str, Any] = {}
    measured: dict[str, Any] = {}
    micro: dict[str, Any] | None = None
    memory: dict[str, Any] | None = None
    busy_mid_run: list[str] = []
    errors: list[str] = []
    deleted: int | str = "?"
    try:
        for sim in sims:
            sim.start()
        for sim in sims:
            sim.wait_ready()
        boot = time.perf_counter()
        for case in all_cases:
            case.proxy.start()
        # Imports dominate a proxy's start; they run in parallel on however many cores there are.
        with ThreadPoolExecutor(len(all_cases)) as pool:
            list(pool.map(lambda c: c.proxy.wait_ready(timeout=300), all_cases))
        print(f"{len(all_cases)} proxies ready in {time.perf_counter() - boot:.0f}s", flush=True)

        measured = asyncio.run(measure(opts, cases, realistic_cases, bodies, out_dir, work_dir))
        ours = {os.getpid()} | {
            p.pid
            for p in [*(c.proxy.process for c in all_cases), *(x.process for x in sims)]
            if p is not None
        }
        busy_mid_run = busy_processes(ours)

        for case in all_cases:
            case.proxy.stop()
        # A failure from here on must not throw away the proxy measurements: report it and go on.
        print("[micro] hit path on Redis vs bare GET ...", flush=True)
        try:
            micro = asyncio.run(
                micro_hit_path(
                    opts.redis_host,
                    opts.redis_port,
                    f"lcp-bench-{run_id}-micro:",
                    fast_sim.url,
                    opts.micro_iterations,
                )
            )
            lat = micro["latency"]
            print(
                f"  ours p50 {lat['ours']['p50_ms'] * 1000:.0f} us, "
                f"bare GET p50 {lat['bare_get']['p50_ms'] * 1000:.0f} us "
                f"(x{micro['ratio_p50']:.2f}); GET+counters pipelined "
                f"{lat['bare_get_plus_counters_pipelined']['p50_ms'] * 1000:.0f} us; "
                f"lookups not served: {micro['lookups_not_hit'] or 0}",
                flush=True,
            )
        except Exception as error:
            errors.append(f"hit-path micro-benchmark: {error!r}")
            print(f"  failed: {error!r}", flush=True)
        print(f"[micro] MemoryStore bytes per entry, {opts.memory_entries} entries ...", flush=True)
        try:
            memory = micro_memory(opts.memory_entries)
            traced = memory["tracemalloc"]
            print(
                f"  {traced['bytes_per_entry']:.0f} B/entry for {traced['payload_per_entry']:.0f} B "
                f"payload (x{traced['ratio_to_payload']:.2f}); RSS x{memory['rss']['ratio_to_payload']:.2f}",
                flush=True,
            )
        except Exception as error:
            errors.append(f"memory measurement: {error!r}")
            print(f"  failed: {error!r}", flush=True)
    finally:
        for case in all_cases:
            case.proxy.stop()
        for sim in sims:
            sim.stop()
        with contextlib.suppress(Exception):
            deleted = redis_keys_cleanup(opts.redis_host, opts.redis_port, run_id)
        if not opts.keep_workdir:
            shutil.rmtree(work_dir, ignore_errors=True)

    load = measured["load"]
    add_stage_ms(measured["profiles"], load)
    targets = evaluate_targets(load, micro, memory)
    fast_share = load["hits"].get(str(opts.levels[0]), {}).get("c-plugin-memory", {}).get("fast_path_share")
    command = "LITELLM_LOCAL_MODEL_COST_MAP=True .venv/bin/python -m benchmarks.run " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    report = {
        "meta": {
            "run_id": run_id,
            "started": started_at.isoformat(),
            "wall_seconds": round(time.time() - started, 1),
            "command": command.strip(),
            "slug": slug,
            "machine": info,
            "redis": f"{opts.redis_host}:{opts.redis_port}",
            "redis_version": redis_version,
            "redis_keys_deleted": deleted,
            "load_start": load_start,
            "load_end": load_average(),
            "busy_at_start": busy_at_start,
            "busy_after_load_phase": busy_mid_run,
            "errors": errors,
            "busy_at_end": busy_processes({os.getpid()}),
            "levels": opts.levels,
            "seconds": opts.seconds,
            "rounds": opts.rounds,
            "pairs": opts.pairs,
            "prompts": opts.prompts,
            "quick": opts.quick,
            "fast_upstream": FAST_UPSTREAM,
            "realistic_upstream": REALISTIC_UPSTREAM if opts.realistic else None,
            "fast_path_active": (
                "unknown" if fast_share is None else f"{fast_share:.0%} of case c hits bypassed LiteLLM"
            ),
        },
        "cases": {
            c.name: {
                "title": c.title,
                "kind": c.kind,
                "backend": c.backend,
                "upstream": c.upstream,
                **c.settings,
            }
            for c in all_cases
        },
        "load": load,
        "realistic": measured["realistic"],
        "micro": micro,
        "memory": memory,
        "targets": [t.as_dict() for t in targets],
        "profile": measured["profiles"],
    }
    table = results_table(load, [case.name for case in cases], opts.levels)
    target_text = target_lines(targets)
    report["plots"] = make_plots(
        measured["samples"],
        load,
        cases,
        opts.levels,
        out_dir,
        f"{slug}, litellm {info['versions'].get('litellm')}",
        measured["realistic_samples"] or None,
    )
    (out_dir / "results.json").write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")
    write_readme(out_dir, report, table, target_text)
    print()
    print("\n".join(table))
    print("\n".join(target_text))
    print(
        f"\nwrote {out_dir}/results.json, README.md, {', '.join(report['plots'])}; "
        f"Redis keys deleted: {deleted}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
