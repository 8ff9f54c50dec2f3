"""Hit-path benchmark: the plugin's fast path against LiteLLM's built-in Redis cache at its best.

One command, one run, every server up at once and measured side by side::

    LITELLM_LOCAL_MODEL_COST_MAP=True .venv/bin/python -m benchmarks.hit_path [--seconds 5] [--rounds 3]
        [--workers2] [--profile] [--out results/<dir>]

Servers (each its own process group; the proxies are real ``litellm`` processes, LiteLLM's uvicorn
settings, the demo ``custom_auth`` with a team key, in front of the Ollama simulator in its own process
answering at once):

- ``litellm-priced``: **the baseline**. LiteLLM's own cache on the same Redis
  (``cache: true, cache_params: {type: redis, host, port, ttl: 900}``: no namespace), every
  deployment priced with LiteLLM's custom pricing (``input_cost_per_token: 0``,
  ``output_cost_per_token: 0`` in ``litellm_params``), as a careful user of a local model sets it.
  The targets are judged against this row only.
- ``litellm-unpriced``: the same without the pricing: ``ollama_chat/llama3.2:1b`` is then looked up in
  the cost map on every hit and never found, which makes LiteLLM's hit about three times as expensive
  (issue 15). Many Ollama users meet it; shown as a second, labelled row, never used for a target.
- ``plugin-memory`` / ``plugin-redis``: the plugin (``memory://`` / ``redis://`` on the same Redis),
  same priced deployments, defaults otherwise (so the fast path is on).
- ``plugin-memory-reuse`` / ``plugin-redis-reuse``: the same with the opt-in
  ``fast_path.auth_reuse_seconds: 1`` (a hit within a second of the credential's last LiteLLM auth
  reuses that verdict; see the README for what that trades).
- ``litellm-priced-observed`` / ``plugin-memory-observed``: ``litellm-priced`` and ``plugin-memory``
  with one success callback that counts what it is given (``observer.counter``, a ``CustomLogger``
  overriding ``async_log_success_event``, no I/O): a proxy with a logging integration, where every
  hit must go through LiteLLM's success logging. Without one, the plugin does not log a hit that no
  callback would see (``fast_path/observers.py``); these rows show the cost when one does. Compared
  with each other (informational), never used for a target.
- ``no-cache``: the same priced proxy without any cache: the cost of a miss without us.
- ``floor``: a trivial ASGI app under the same uvicorn settings (uvloop, log level error) that reads
  the body and answers a fixed 1.4 KB JSON: the least any Python HTTP server here costs per request.
- ``--ceiling`` adds ``plugin-memory-ceiling*``: unsafe experiments, never a mode, that measure how much
  of a hit LiteLLM's per-hit stages cost: the first auth verdict of a credential reused forever
  (``-auth``), LiteLLM's request setup replaced by the body and the identity fields (``-setup``), hit
  logging dropped (``-log``), and combinations (all three without a suffix); and
  ``plugin-memory-outermost``: the fast path installed around the whole middleware stack instead of
  inside ``ExceptionMiddleware`` (LiteLLM's middlewares then never see a hit: no security headers, gzip,
  CORS or in-flight count on it), which measures what those layers cost a hit.
- ``--workers2`` adds ``litellm-priced-w2``, ``plugin-redis-w2`` and ``plugin-redis-reuse-w2``: the same
  with ``--num_workers 2``.

Method. Each server gets one warmed prompt (sent until it answers from the cache). Then ``--rounds``
rounds; in each the servers are measured one after the other in rotating order (round r starts r
places further), so drift on a shared machine hits every server alike; the figure reported is the
median of the rounds. Per server and round:

1. ``--sequential`` (300) keep-alive requests one at a time on one connection: hit p50 / p99;
2. ``--clients`` (16) keep-alive connections for ``--seconds``: hits/s, and CPU per hit = the CPU time
   (user + system, ``/proc``) of every process of the server's process group over the phase and one
   second after it (background logging of the last hits is part of a hit's cost), divided by hits.

Every response is checked: status 200, the warmed answer's ``id``, the cache's hit header
(``x-cache: HIT``; ``x-litellm-cache-key`` for LiteLLM's cache), and the simulator's count of chat
calls must not move during a server's hit phases (no upstream call). A response that fails a check is
an error, not a sample. Misses: unique prompts, one at a time, the servers interleaved in rotating
order, ``--misses`` per server: miss p50 and CPU per miss; the added cost is the difference to
``no-cache``; the paired figure is the median of the per-round differences to ``no-cache`` (the two
misses measured moments apart) with a distribution-free 95% interval. The client is a minimal HTTP/1.1
client on raw asyncio streams (uvloop), so that its own cost (~30 us a request) stays small against
what is measured.

``--profile`` then records a py-spy flame graph (``--profile-seconds``, 100 Hz, ``--gil`` off: all
threads, idle excluded) of each of ``--profile-cases`` under the concurrent load, after the
measurement (py-spy slows the process it samples).

Output: the tables and verdicts on stdout, and ``results.json`` + ``summary.txt`` (+ flame graphs) in
``--out`` (default ``results/<date>-hit-path``). Keys written to Redis are deleted at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # `python benchmarks/hit_path.py` as well as `python -m benchmarks.hit_path`
    sys.path.insert(0, str(REPO))

from tools.runner import (  # noqa: E402
    DEMO_AUTH_MODULE,
    ProxyProcess,
    free_port,
    proxy_config,
    running,
    stop_process_group,
)

KEY = "sk-team-a-0001"
MODEL = "llama3.2"
Role = Literal["baseline", "unpriced", "plugin", "before", "no-cache", "floor", "experiment", "ceiling"]

# --------------------------------------------------------------------------- servers

FLOOR_APP = '''
"""The floor: the least a Python ASGI server answers a keep-alive POST with (reads the body, fixed JSON)."""

BODY = open(__file__.replace("floor_app.py", "floor_body.json"), "rb").read()
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})
'''

# Issue 15's miss experiment, as a proxy callback module (``--miss-experiment``): the plugin without its
# carrier. ``litellm.cache`` stays None, so LiteLLM's caching handler does nothing on a miss; the
# pre-call hook does the region's lookup the carrier would have done (it claims the single flight),
# and the success callback stores the answer (and releases the flight). Hits come from the fast path.
# A measurement prototype of the design's miss path, not a complete design (no stale/semantic
# serving on the hook path, no per-item embeddings, no stream replay): see the README of the results.
NO_CARRIER_MODULE = """
import litellm
from litellm.integrations.custom_logger import CustomLogger

from litellm_cache_plugin.integrations.fast_path.groups import group_info, sdk_kwargs
from litellm_cache_plugin.integrations.litellm import create_proxy_plugin

plugin = create_proxy_plugin()
litellm.cache = None  # the experiment: no carrier, so no LiteLLM caching handler on any call


def _sdk_kwargs(data):
    from litellm.proxy import proxy_server

    router = proxy_server.llm_router
    group = data.get("model")
    deployments = [d for d in router.model_list if d.get("model_name") == group]
    info = group_info(deployments) if deployments else None
    return sdk_kwargs(data, info, group) if info is not None else None


class CallbackStore(CustomLogger):
    async def async_pre_call_hook(self, user_api_key_dict, cache, data, call_type):
        kwargs = _sdk_kwargs(data)
        ctx = plugin.context({**kwargs, "litellm_call_id": data.get("litellm_call_id")}) if kwargs else None
        if ctx is not None and ctx.cacheable:
            await plugin.region.lookup_response(ctx)  # claims the flight of a miss, like the carrier
        return data

    async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
        if kwargs.get("cache_hit"):
            return
        params = kwargs.get("litellm_params") or {}
        sdk = {
            **(kwargs.get("optional_params") or {}),
            "model": kwargs.get("model"),
            "messages": kwargs.get("messages"),
            "metadata": params.get("metadata"),
            "custom_llm_provider": kwargs.get("custom_llm_provider"),
            "api_base": params.get("api_base"),
            "model_info": params.get("model_info"),
            "litellm_call_id": kwargs.get("litellm_call_id"),
            "litellm_logging_obj": kwargs.get("litellm_logging_obj"),
        }
        await plugin.carrier.async_add_cache(response_obj, **sdk)


store = CallbackStore()
"""

# Issue 15's ceiling experiment, as a proxy callback module (``--ceiling``): how cheap a fast-path hit
# could be if it skipped the LiteLLM stages it keeps today. NOT a product mode and unsafe as one: the
# first auth verdict of a credential is reused for every later request (no expiry, no budget, no
# block), LiteLLM's request setup is replaced by the body plus the identity fields, and hits are not
# logged at all (no spend tracking, no callbacks). It measures the bound those stages put on the
# targets, nothing else.
CEILING_MODULE = """
import os

import orjson
from litellm.integrations.custom_logger import CustomLogger

from litellm_cache_plugin.integrations.fast_path import app as fast_path

_verdicts = {}
_authenticate = fast_path._Attempt._authenticate


async def reused_auth(self):
    credential = self.headers.get("authorization")
    if credential not in _verdicts:
        _verdicts[credential] = await _authenticate(self)
        return _verdicts[credential]
    from starlette.requests import Request

    body = self.body

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    self.request = Request(dict(self.scope), receive)  # what LiteLLM's request setup reads
    return _verdicts[credential]


async def lite_setup(self, auth, proxy_server):
    from litellm_cache_plugin.integrations import compat

    data = orjson.loads(self.body)
    data["metadata"] = {
        field: getattr(auth, attr)
        for field, attr in (
            ("user_api_key_user_id", "user_id"),
            ("user_api_key_team_id", "team_id"),
            ("user_api_key_org_id", "org_id"),
        )
        if getattr(auth, attr, None) is not None
    }
    resolve = compat.fast_path_internals().resolve_litellm_call_id
    data["litellm_call_id"] = resolve(self.headers.get("x-litellm-call-id"))
    return data


_skip = os.environ.get("LCP_CEILING_SKIP", "auth,setup,log").split(",")
if "auth" in _skip:
    fast_path._Attempt._authenticate = reused_auth
if "setup" in _skip:
    fast_path._Attempt._setup = lite_setup
if "log" in _skip:
    fast_path._log_hit = lambda **_: None


class Marker(CustomLogger):
    pass


marker = Marker()"""

# The outermost experiment (``--ceiling``): the fast path around the whole middleware stack. Listed before
# the plugin's callback so that the installer is replaced before the plugin installs.
OUTERMOST_MODULE = """
from litellm.integrations.custom_logger import CustomLogger

from litellm_cache_plugin.integrations import asgi

asgi._wrap_inside_exceptions = lambda stack, name, wrap: wrap(stack, False)


class Marker(CustomLogger):
    pass


marker = Marker()
"""

# The observed rows' success callback (``observer.counter``): the cheapest possible logging
# integration, so that the rows measure LiteLLM's logging machinery, not an integration's I/O.
OBSERVER_MODULE = """
from litellm.integrations.custom_logger import CustomLogger


class CountingLogger(CustomLogger):
    def __init__(self):
        super().__init__()
        self.seen = 0
        self.cache_hits = 0

    async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
        self.seen += 1
        self.cache_hits += kwargs.get("cache_hit") is True


counter = CountingLogger()
"""

FLOOR_ID = "chatcmpl-floor"
# fast_path.auth_reuse_seconds of the opt-in rows (plugin-*-reuse).
REUSE_S = 1.0


def floor_body() -> bytes:
    """A chat completion of the size the simulator answers (~1.4 KB), with a fixed id."""
    words = " ".join(f"word{i % 50}" for i in range(160))
    return orjson.dumps(
        {
            "id": FLOOR_ID,
            "created": 1700000000,
            "model": MODEL,
            "object": "chat.completion",
            "choices": [
                {
                    "finish_reason": "stop",
                    "index": 0,
                    "message": {"content": words, "role": "assistant"},
                }
            ],
            "usage": {"completion_tokens": 160, "prompt_tokens": 20, "total_tokens": 180},
            "cached": True,
        }
    )


class FloorProcess:
    """``uvicorn floor_app:app`` with the settings the LiteLLM CLI gives its uvicorn (uvloop, log level
    error, no server header), one worker."""

    def __init__(self, workdir: Path, name: str = "floor") -> None:
        self.workdir = workdir
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / f"{name}.log"

    def start(self) -> FloorProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "floor_app.py").write_text(FLOOR_APP, encoding="utf-8")
        (self.workdir / "floor_body.json").write_bytes(floor_body())
        command = [
            sys.executable, "-m", "uvicorn", "floor_app:app", "--host", "127.0.0.1",
            "--port", str(self.port), "--loop", "uvloop", "--log-level", "error", "--no-server-header",
        ]  # fmt: skip
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                command, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        return self

    def wait_ready(self, timeout: float = 60.0) -> FloorProcess:
        wait_http(self.url + "/", self.process, self.name, self.log_path, timeout, method="POST")
        return self

    def stop(self) -> None:
        stop_process_group(self.process, timeout=10)


class SimulatorProcess:
    """The Ollama simulator in its own process (not in the load generator's GIL), answering at once."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "simulator.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> SimulatorProcess:
        command = [
            sys.executable, "-m", "litellm_cache_plugin.simulator", "--port", str(self.port),
            "--latency-ms", "0", "--tokens-per-second", "1e7", "--prompt-tokens-per-second", "1e8",
            "--parallel", "64",
        ]  # fmt: skip
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=REPO
            )
        wait_http(self.url + "/api/version", self.process, "simulator", self.log_path, 60.0)
        return self

    def chat_calls(self) -> int:
        with urllib.request.urlopen(self.url + "/_sim/stats", timeout=10) as response:
            return int(json.loads(response.read())["requests"]["chat"])

    def stop(self) -> None:
        stop_process_group(self.process, timeout=10)


def wait_http(
    url: str,
    process: subprocess.Popen[bytes] | None,
    name: str,
    log_path: Path,
    timeout: float,
    method: str = "GET",
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{name} exited: {log_path.read_text(errors='replace')[-2000:]}")
        with contextlib.suppress(urllib.error.URLError, OSError):
            request = urllib.request.Request(url, data=b"{}" if method == "POST" else None, method=method)
            with urllib.request.urlopen(request, timeout=2) as response:
                if response.status == 200:
                    return
        time.sleep(0.2)
    raise TimeoutError(f"{name} not ready after {timeout}s")


Server = ProxyProcess | FloorProcess


@dataclass
class Case:
    name: str
    title: str
    role: Role
    server: Server
    workers: int = 1
    prompt: str = ""
    stored_id: str = ""


def priced(config: dict[str, Any]) -> dict[str, Any]:
    """LiteLLM's custom pricing on every deployment (what a careful user of a local model sets)."""
    for deployment in config["model_list"]:
        deployment["litellm_params"].update(input_cost_per_token=0, output_cost_per_token=0)
    return config


def proxy_with_workers(
    config: dict[str, Any], workdir: Path, name: str, workers: int, extra_files: dict[str, str]
) -> ProxyProcess:
    """A proxy process with ``workers`` uvicorn workers (``tools.runner.ProxyProcess(num_workers=...)``,
    which also lets a worker importing LiteLLM on a busy machine miss uvicorn's health checks)."""
    return ProxyProcess(config, workdir / name, extra_files=extra_files, name=name, num_workers=workers)


def wait_all_workers(case: Case, timeout: float = 300.0) -> None:
    """Block until every worker of a multi-worker server accepts connections: ``running`` returns once
    one answers. New keep-alive connections are opened and answered, then the established sockets of
    each worker process are counted (``/proc/<pid>/fd`` and ``/proc/net/tcp``)."""
    if case.workers < 2:
        return
    deadline = time.monotonic() + timeout
    port = case.server.port
    leader = server_pid(case.server)
    request = f"GET /health/liveliness HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()

    async def workers_answering() -> int:
        connections = [Connection(port) for _ in range(4 * case.workers)]
        try:
            for connection in connections:
                await connection.request(request)
            established = established_inodes(port)
            workers = [pid for pid in worker_pids(leader) if pid != leader]
            return sum(1 for pid in workers if socket_inodes(pid) & established)
        finally:
            for connection in connections:
                await connection.close()

    while time.monotonic() < deadline:
        if asyncio.run(workers_answering()) >= case.workers:
            return
        time.sleep(2.0)
    raise TimeoutError(f"{case.name}: not every worker accepted connections after {timeout:g}s")


def established_inodes(port: int) -> set[int]:
    """Inodes of established TCP sockets whose local port is ``port`` (server side)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "01" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(int(fields[9]))
    return inodes


def socket_inodes(pid: int) -> set[int]:
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(int(target[8:-1]))
    return inodes


def build_cases(
    sim_url: str,
    run_id: str,
    workdir: Path,
    redis_host: str,
    redis_port: int,
    workers2: bool,
    miss_experiment: bool = False,
    before: tuple[str, Path] | None = None,
    ceiling: bool = False,
) -> list[Case]:
    files = {"demo_auth.py": DEMO_AUTH_MODULE}
    # No namespace (LiteLLM at its best); a TTL so that the miss phase's entries leave the shared Redis.
    builtin = {
        "cache": True,
        "cache_params": {"type": "redis", "host": redis_host, "port": redis_port, "ttl": 900},
    }
    redis_url = f"redis://{redis_host}:{redis_port}/0?prefix=lcp-hitbench-{run_id}:"

    observer_files = {**files, "observer.py": OBSERVER_MODULE}

    def with_module(
        name: str, what: str, role: Role, config: dict[str, Any], module: tuple[str, str], **env: str
    ) -> Case:
        """A one-worker proxy with one more callback module (file name, text) beside the config."""
        extra = {**files, module[0]: module[1]}
        return Case(
            name, what, role, ProxyProcess(config, workdir / name, extra_files=extra, env=env, name=name)
        )

    def observed(config: dict[str, Any]) -> dict[str, Any]:
        config["litellm_settings"].setdefault("callbacks", []).append("observer.counter")
        return config

    def litellm_cache(pricing: bool) -> dict[str, Any]:
        config = proxy_config(sim_url, None, with_plugin=False, litellm_settings=builtin)
        return priced(config) if pricing else config

    def plugin(backend: str, reuse: float = 0) -> dict[str, Any]:
        section: dict[str, Any] = {"backend": backend, "ttl": 3600}
        if reuse:
            section["fast_path"] = {"auth_reuse_seconds": reuse}
        return priced(proxy_config(sim_url, section))

    cases = [
        Case(
            "litellm-priced",
            "LiteLLM's Redis cache, priced deployments (the baseline)",
            "baseline",
            proxy_with_workers(litellm_cache(True), workdir, "litellm-priced", 1, files),
        ),
        Case(
            "litellm-unpriced",
            "LiteLLM's Redis cache, unpriced ollama_chat/llama3.2:1b",
            "unpriced",
            proxy_with_workers(litellm_cache(False), workdir, "litellm-unpriced", 1, files),
        ),
        Case(
            "plugin-memory",
            "plugin, memory://",
            "plugin",
            proxy_with_workers(plugin("memory://"), workdir, "plugin-memory", 1, files),
        ),
        Case(
            "plugin-redis",
            "plugin, redis://",
            "plugin",
            proxy_with_workers(plugin(redis_url), workdir, "plugin-redis", 1, files),
        ),
        Case(
            "plugin-memory-reuse",
            f"plugin, memory://, fast_path.auth_reuse_seconds: {REUSE_S:g} (opt-in)",
            "plugin",
            proxy_with_workers(plugin("memory://", REUSE_S), workdir, "plugin-memory-reuse", 1, files),
        ),
        Case(
            "plugin-redis-reuse",
            f"plugin, redis://, fast_path.auth_reuse_seconds: {REUSE_S:g} (opt-in)",
            "plugin",
            proxy_with_workers(
                plugin(redis_url.replace("hitbench-", "hitbench-r-"), REUSE_S),
                workdir,
                "plugin-redis-reuse",
                1,
                files,
            ),
        ),
        Case(
            "litellm-priced-observed",
            "LiteLLM's Redis cache, priced, with a success callback",
            "baseline",
            proxy_with_workers(
                observed(litellm_cache(True)), workdir, "litellm-priced-observed", 1, observer_files
            ),
        ),
        Case(
            "plugin-memory-observed",
            "plugin, memory://, with a success callback",
            "plugin",
            proxy_with_workers(
                observed(plugin("memory://")), workdir, "plugin-memory-observed", 1, observer_files
            ),
        ),
        Case(
            "no-cache",
            "no cache (priced deployments)",
            "no-cache",
            proxy_with_workers(
                priced(proxy_config(sim_url, None, with_plugin=False)), workdir, "no-cache", 1, files
            ),
        ),
        Case("floor", "trivial keep-alive ASGI app (the floor)", "floor", FloorProcess(workdir / "floor")),
    ]
    if before is not None:  # the plugin at another revision, from its git worktree (PYTHONPATH first)
        revision, tree = before
        before_redis = redis_url.replace("hitbench-", "hitbench-b-")
        for backend, label in (("memory://", "memory"), (before_redis, "redis")):
            name = f"plugin-{label}-before"
            cases.append(
                Case(
                    name,
                    f"plugin, {label}://, at {revision}",
                    "before",
                    ProxyProcess(
                        plugin(backend),
                        workdir / name,
                        extra_files=files,
                        env={"PYTHONPATH": str(tree)},
                        name=name,
                    ),
                )
            )
    if miss_experiment:
        # What a miss costs with the carrier alone: the fast path (and its probe) turned off.
        config = priced(
            proxy_config(sim_url, {"backend": "memory://", "ttl": 3600, "fast_path": {"enabled": False}})
        )
        cases.append(
            Case(
                "plugin-memory-no-fast-path",
                "plugin, memory://, fast_path.enabled: false (misses: the carrier without the probe)",
                "experiment",
                ProxyProcess(
                    config, workdir / "no-fast-path", extra_files=files, name="plugin-memory-no-fast-path"
                ),
            )
        )
        config = priced(proxy_config(sim_url, {"backend": "memory://", "ttl": 3600}))
        config["litellm_settings"]["callbacks"].append("no_carrier.store")
        cases.append(
            with_module(
                "plugin-memory-no-carrier",
                "experiment: plugin, memory://, no litellm.cache (lookup in a pre-call hook, store from "
                "the success callback)",
                "experiment",
                config,
                ("no_carrier.py", NO_CARRIER_MODULE),
            )
        )
    if ceiling:
        config = plugin("memory://")
        config["litellm_settings"]["callbacks"].append("ceiling.marker")
        skipped = {
            "auth,setup,log": "auth verdict reused, no request setup, hits not logged",
            "auth": "auth verdict reused",
            "setup": "no request setup",
            "log": "hits not logged",
            "auth,setup": "auth verdict reused, no request setup",
            "auth,log": "auth verdict reused, hits not logged",
        }
        for skip, what in skipped.items():
            suffix = "" if skip == "auth,setup,log" else "-" + skip.replace(",", "-")
            name = f"plugin-memory-ceiling{suffix}"
            cases.append(
                with_module(
                    name,
                    f"experiment: plugin, memory://, {what} (unsafe; a bound, not a mode)",
                    "ceiling",
                    config,
                    ("ceiling.py", CEILING_MODULE),
                    LCP_CEILING_SKIP=skip,
                )
            )
        config = plugin("memory://")
        config["litellm_settings"]["callbacks"].insert(0, "outermost.marker")
        cases.append(
            with_module(
                "plugin-memory-outermost",
                "experiment: plugin, memory://, fast path around the whole middleware stack",
                "ceiling",
                config,
                ("outermost.py", OUTERMOST_MODULE),
            )
        )
    if workers2:
        cases += [
            Case(
                "litellm-priced-w2",
                "LiteLLM's Redis cache, priced, 2 workers",
                "baseline",
                proxy_with_workers(litellm_cache(True), workdir, "litellm-priced-w2", 2, files),
                workers=2,
            ),
            Case(
                "plugin-redis-w2",
                "plugin, redis://, 2 workers",
                "plugin",
                proxy_with_workers(plugin(redis_url), workdir, "plugin-redis-w2", 2, files),
                workers=2,
            ),
            Case(
                "plugin-redis-reuse-w2",
                f"plugin, redis://, fast_path.auth_reuse_seconds: {REUSE_S:g} (opt-in), 2 workers",
                "plugin",
                proxy_with_workers(
                    plugin(redis_url.replace("hitbench-", "hitbench-rw-"), REUSE_S),
                    workdir,
                    "plugin-redis-reuse-w2",
                    2,
                    files,
                ),
                workers=2,
            ),
        ]
    return cases


# --------------------------------------------------------------------------- measuring


def session_cpu_seconds(leader: int) -> float:
    """User + system CPU time of every live process in the session ``leader`` started (the server and
    its workers; each is started with ``start_new_session``)."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[3]) == leader:  # field 6 of stat: session id
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def server_pid(server: Server) -> int:
    return server.process.pid if server.process is not None else -1


def worker_pids(leader: int) -> list[int]:
    """The processes of a server's session, leader first."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError):
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[3]) == leader:
                    pids.append(int(entry))
    return sorted(pids, key=lambda pid: (pid != leader, pid))


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


class Reply:
    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: dict[bytes, bytes], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body


class Connection:
    """One keep-alive HTTP/1.1 connection on raw asyncio streams (content-length or chunked bodies)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, raw: bytes) -> Reply:
        reused = self.writer is not None
        try:
            return await self._request(raw)
        except (asyncio.IncompleteReadError, ConnectionError):
            await self.close()
            if not reused:
                raise
            return await self._request(raw)  # the server closed an idle keep-alive connection: once more

    async def _request(self, raw: bytes) -> Reply:
        if self.writer is None or self.reader is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        reader, writer = self.reader, self.writer
        writer.write(raw)
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head[:-4].split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        headers: dict[bytes, bytes] = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers.setdefault(name.strip().lower(), value.strip())
        if b"content-length" in headers:
            body = await reader.readexactly(int(headers[b"content-length"]))
        elif headers.get(b"transfer-encoding", b"").lower() == b"chunked":
            parts = []
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
                if size == 0:
                    while (await reader.readuntil(b"\r\n")) != b"\r\n":
                        pass
                    break
                parts.append((await reader.readexactly(size + 2))[:-2])
            body = b"".join(parts)
        else:
            body = await reader.read()
            headers[b"connection"] = b"close"
        if headers.get(b"connection", b"").lower() == b"close":
            await self.close()
        return Reply(status, headers, body)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()
        self.reader = self.writer = None


def raw_post(port: int, body: dict[str, Any], path: str = "/v1/chat/completions") -> bytes:
    payload = orjson.dumps(body)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {KEY}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    )
    return head.encode() + payload


def chat_body(prompt: str) -> dict[str, Any]:
    return {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": "You are a concise assistant."},
            {"role": "user", "content": prompt},
        ],
        "temperature": 0,
    }


def is_hit(case: Case, reply: Reply) -> bool:
    if case.role == "floor":
        return True
    if case.role in ("baseline", "unpriced"):
        return b"x-litellm-cache-key" in reply.headers
    return reply.headers.get(b"x-cache") == b"HIT"


def check(case: Case, reply: Reply) -> str | None:
    """Why a hit-phase reply is not the warmed answer served from the cache (None: it is)."""
    if reply.status != 200:
        return f"status {reply.status}"
    if not is_hit(case, reply):
        return "not a hit"
    try:
        got = orjson.loads(reply.body).get("id")
    except orjson.JSONDecodeError:
        return "bad json"
    if got == case.stored_id:
        return None
    # A hit of another answer: a request fell through (e.g. a backend deadline under load), went
    # upstream and replaced the entry. Counted once (and its upstream call is counted too); the new
    # entry is then the one to check against, or one fall-through would fail the rest of the phase.
    case.stored_id = str(got)
    return "entry replaced"


async def warm(case: Case) -> None:
    """Send the case's prompt until its answer comes from the cache (writes happen in the background)."""
    port = case.server.port
    if case.role == "floor":
        case.stored_id = FLOOR_ID
        return
    case.prompt = f"Benchmark question {uuid.uuid4().hex[:8]} for {case.name}: what is a cache?"
    request = raw_post(port, chat_body(case.prompt))
    connection = Connection(port)
    try:
        first = await connection.request(request)
        if first.status != 200:
            raise RuntimeError(f"{case.name}: warm-up answered {first.status}: {first.body[:300]!r}")
        case.stored_id = str(orjson.loads(first.body)["id"])
        for _ in range(200):
            await asyncio.sleep(0.05)
            reply = await connection.request(request)
            if check(case, reply) is None:
                return
        raise RuntimeError(f"{case.name}: the entry never became a hit")
    finally:
        await connection.close()


@dataclass
class HitRound:
    p50: float
    p99: float
    seq_errors: int
    rate: float
    hits: int
    errors: int
    cpu_ms: float
    fast_path_share: float
    error_kinds: dict[str, int] = field(default_factory=dict)


async def sequential(case: Case, count: int) -> tuple[list[float], dict[str, int], int]:
    request = raw_post(case.server.port, chat_body(case.prompt))
    connection = Connection(case.server.port)
    latencies: list[float] = []
    errors: dict[str, int] = {}
    fast = 0
    try:
        for _ in range(20):  # connection, code paths, the credential hint
            await connection.request(request)
        for _ in range(count):
            started = time.perf_counter()
            reply = await connection.request(request)
            elapsed = (time.perf_counter() - started) * 1000
            problem = check(case, reply)
            if problem is None:
                latencies.append(elapsed)
                fast += b"x-litellm-version" not in reply.headers
            else:
                errors[problem] = errors.get(problem, 0) + 1
    finally:
        await connection.close()
    return latencies, errors, fast


async def concurrent(
    case: Case, clients: int, seconds: float, settle: float = 1.0
) -> tuple[int, dict[str, int], float, float, int]:
    request = raw_post(case.server.port, chat_body(case.prompt))
    connections = [Connection(case.server.port) for _ in range(clients)]
    for connection in connections:  # open and warm every connection first
        await connection.request(request)
    ok = 0
    fast = 0
    errors: dict[str, int] = {}
    deadline = 0.0

    async def worker(connection: Connection) -> None:
        nonlocal ok, fast
        while time.perf_counter() < deadline:
            reply = await connection.request(request)
            problem = check(case, reply)
            if problem is None:
                ok += 1
                fast += b"x-litellm-version" not in reply.headers
            else:
                errors[problem] = errors.get(problem, 0) + 1

    leader = server_pid(case.server)
    cpu_before = session_cpu_seconds(leader)
    began = time.perf_counter()
    deadline = began + seconds
    await asyncio.gather(*(worker(connection) for connection in connections))
    took = time.perf_counter() - began
    await asyncio.sleep(settle)  # background logging of the last hits is part of their cost
    cpu = session_cpu_seconds(leader) - cpu_before
    for connection in connections:
        await connection.close()
    return ok, errors, took, cpu, fast


async def measure_hits(case: Case, sequential_count: int, clients: int, seconds: float) -> HitRound:
    latencies, seq_errors, seq_fast = await sequential(case, sequential_count)
    ok, errors, took, cpu, fast = await concurrent(case, clients, seconds)
    total_errors = sum(errors.values()) + sum(seq_errors.values())
    kinds = {k: seq_errors.get(k, 0) + errors.get(k, 0) for k in {*seq_errors, *errors}}
    return HitRound(
        p50=statistics.median(latencies) if latencies else float("nan"),
        p99=percentile(latencies, 0.99),
        seq_errors=sum(seq_errors.values()),
        rate=ok / took,
        hits=ok,
        errors=sum(errors.values()),
        cpu_ms=cpu * 1000 / max(1, ok + sum(errors.values())),
        fast_path_share=(fast + seq_fast) / max(1, ok + len(latencies)),
        error_kinds=kinds if total_errors else {},
    )


async def measure_misses(cases: Sequence[Case], count: int, offset: int) -> dict[str, dict[str, Any]]:
    """Unique cacheable prompts, one at a time, the cases interleaved in rotating order."""
    connections = {case.name: Connection(case.server.port) for case in cases}
    samples: dict[str, list[float]] = {case.name: [] for case in cases}
    outcomes: dict[str, dict[str, int]] = {case.name: {} for case in cases}
    cpu_before: dict[str, float] = {}
    try:
        for number in range(count + 10):
            if number == 10:  # the first ones warm connections and paths
                cpu_before = {c.name: session_cpu_seconds(server_pid(c.server)) for c in cases}
            shift = (number + offset) % len(cases)
            for case in [*cases[shift:], *cases[:shift]]:
                body = chat_body(f"Unique miss {uuid.uuid4().hex} for {case.name}: what is a queue?")
                request = raw_post(case.server.port, body)
                started = time.perf_counter()
                reply = await connections[case.name].request(request)
                elapsed = (time.perf_counter() - started) * 1000
                if reply.status != 200:
                    raise RuntimeError(f"{case.name}: miss answered {reply.status}: {reply.body[:300]!r}")
                if number >= 10:
                    samples[case.name].append(elapsed)
                    outcome = (
                        reply.headers.get(b"x-cache", b"-").decode()
                        if case.role in ("plugin", "before", "experiment")
                        else ("HIT" if b"x-litellm-cache-key" in reply.headers else "MISS")
                    )
                    outcomes[case.name][outcome] = outcomes[case.name].get(outcome, 0) + 1
        await asyncio.sleep(1.0)
    finally:
        for connection in connections.values():
            await connection.close()
    return {
        case.name: {
            "p50": statistics.median(samples[case.name]),
            "p99": percentile(samples[case.name], 0.99),
            "count": len(samples[case.name]),
            "outcomes": outcomes[case.name],
            "cpu_ms": (session_cpu_seconds(server_pid(case.server)) - cpu_before[case.name])
            * 1000
            / max(1, len(samples[case.name])),
            "samples_ms": [round(value, 3) for value in samples[case.name]],  # in rounds, for pairing
        }
        for case in cases
    }


def paired_added(ours: Sequence[float], none: Sequence[float]) -> tuple[float, float, float]:
    """Median of the per-round differences (this server's miss minus no-cache's, measured moments
    apart in the same round) with its distribution-free 95% interval (order statistics of the
    sorted differences): less exposed to the host's drift than the difference of the two medians."""
    diffs = sorted(a - b for a, b in zip(ours, none, strict=True))
    n = len(diffs)
    low = max(0, math.floor((n - 1.96 * math.sqrt(n)) / 2))
    high = min(n - 1, math.ceil((n + 1.96 * math.sqrt(n)) / 2))
    return statistics.median(diffs), diffs[low], diffs[high]


async def miss_load(case: Case, clients: int, seconds: float) -> int:
    """``clients`` keep-alive connections sending unique cacheable prompts for ``seconds``."""
    port = case.server.port
    deadline = time.perf_counter() + seconds
    done = 0

    async def worker() -> None:
        nonlocal done
        connection = Connection(port)
        try:
            while time.perf_counter() < deadline:
                body = chat_body(f"Unique miss {uuid.uuid4().hex} for {case.name}: what is a queue?")
                reply = await connection.request(raw_post(port, body))
                done += reply.status == 200
        finally:
            await connection.close()

    await asyncio.gather(*(worker() for _ in range(clients)))
    return done


def profile(
    case: Case,
    out_dir: Path,
    clients: int,
    seconds: float,
    *,
    misses: bool = False,
    raw: bool = False,
    rate: int = 100,
) -> list[str]:
    """py-spy flame graphs of every process of the case's server under the concurrent load (hits of
    the warmed prompt, or with ``misses`` unique prompts), ``rate`` samples a second; with ``raw``,
    py-spy's collapsed stacks (``.txt``, one line per stack with its sample count) for reading with a
    script instead. The number of requests answered meanwhile is printed, so that samples can be
    compared per request between cases."""
    spy = Path(sys.executable).with_name("py-spy")
    if not spy.exists() and shutil.which("py-spy") is None:
        print("py-spy not installed: no profile", flush=True)
        return []
    spy_cmd = str(spy) if spy.exists() else "py-spy"
    leader = server_pid(case.server)
    pids = worker_pids(leader)
    workers = [pid for pid in pids if pid != leader] or pids  # uvicorn's workers (or the only process)
    written = []
    recorders = []
    for number, pid in enumerate(workers):
        suffix = f"-w{number}" if len(workers) > 1 else ""
        path = out_dir / f"flame-{case.name}{'-misses' if misses else ''}{suffix}.{'txt' if raw else 'svg'}"
        command = [
            spy_cmd, "record", "--pid", str(pid), "--rate", str(rate), "--duration", str(int(seconds)),
            "--format", "raw" if raw else "flamegraph", "--output", str(path), "--nonblocking",
        ]  # fmt: skip
        recorders.append(subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
        written.append(path.name)
    if misses:
        answered = asyncio.run(miss_load(case, clients, seconds + 1))
    else:
        answered = asyncio.run(concurrent(case, clients, seconds + 1, settle=0.0))[0]
    print(f"  {case.name}: {answered} requests answered while profiling", flush=True)
    for recorder in recorders:
        try:
            _, err = recorder.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            recorder.kill()
            err = b"timeout"
        if recorder.returncode:
            print(f"py-spy failed for {case.name}: {err.decode(errors='replace')[-500:]}", flush=True)
    return written


# --------------------------------------------------------------------------- reporting


def machine() -> dict[str, Any]:
    model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    redis_version = "?"
    with contextlib.suppress(Exception):
        import redis

        redis_version = str(redis.Redis(socket_timeout=2).info("server").get("redis_version"))
    import importlib.metadata as metadata

    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "litellm": metadata.version("litellm"),
        "uvicorn": metadata.version("uvicorn"),
        "redis_server": redis_version,
        "httptools": _installed("httptools"),
    }


def _installed(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def load_average() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def median_of(rounds: Sequence[HitRound], attr: str) -> float:
    return statistics.median(float(getattr(r, attr)) for r in rounds)


@dataclass
class Verdict:
    """One acceptance target. ``value`` is the ratio of the medians of rounds (or the miss's added
    p50); ``rounds``, for a ratio, the same ratio within each round (both servers measured minutes
    apart, so host drift between rounds cancels), and ``met_rounds`` how many of them meet the
    target: a verdict is only as firm as its spread."""

    target: str
    value: float
    limit: float
    met: bool
    rounds: list[float] = field(default_factory=list)
    met_rounds: int = 0
    # For the miss: the paired added p50 and its 95% interval (``paired_added``), when sampled.
    paired: list[float] = field(default_factory=list)


def verdicts(
    summary: dict[str, dict[str, Any]],
    misses: dict[str, dict[str, Any]],
    rounds_detail: dict[str, list[dict[str, Any]]] | None = None,
) -> list[Verdict]:
    out: list[Verdict] = []
    if not {"litellm-priced", "floor"} <= summary.keys() or "no-cache" not in misses:
        return out  # a partial (--only) run
    floor = summary["floor"]
    detail = rounds_detail or {}

    def per_round(ours: str, baseline: str, attr: str) -> list[float]:
        pairs = zip(detail.get(ours, []), detail.get(baseline, []), strict=False)
        return [o[attr] / b[attr] for o, b in pairs if b[attr]]

    def add(target: str, value: float, limit: float, *, at_least: bool, rounds: Sequence[float] = ()) -> None:
        def meets(x: float) -> bool:
            return x >= limit if at_least else x <= limit

        out.append(Verdict(target, value, limit, meets(value), list(rounds), sum(map(meets, rounds))))

    def against(label: str, ours: str, baseline: str, named: str) -> None:
        """Issue 15's three ratio targets of one server against one baseline."""
        mine, theirs = summary[ours], summary[baseline]
        add(f"{label}: hits/s vs {named} >= 5x", mine["rate"] / theirs["rate"], 5.0, at_least=True,
            rounds=per_round(ours, baseline, "rate"))  # fmt: skip
        add(f"{label}: sequential hit p50 vs {named} <= 0.2x", mine["p50"] / theirs["p50"], 0.2,
            at_least=False, rounds=per_round(ours, baseline, "p50"))  # fmt: skip
        add(f"{label}: CPU per hit vs {named} <= 0.2x", mine["cpu_ms"] / theirs["cpu_ms"], 0.2,
            at_least=False, rounds=per_round(ours, baseline, "cpu_ms"))  # fmt: skip

    for name in ("plugin-memory", "plugin-redis", "plugin-memory-reuse", "plugin-redis-reuse"):
        if name not in summary:
            continue
        ours = summary[name]
        against(name, name, "litellm-priced", "LiteLLM priced (16 clients)")
        add(f"{name}: sequential hit p50 vs the floor <= 10x", ours["p50"] / floor["p50"], 10.0,
            at_least=False, rounds=per_round(name, "floor", "p50"))  # fmt: skip
        add(f"{name}: miss p50 added over no cache <= 1 ms", misses[name]["p50"] - misses["no-cache"]["p50"],
            1.0, at_least=False)  # fmt: skip
        samples, none = misses[name].get("samples_ms"), misses["no-cache"].get("samples_ms")
        if samples and none:
            out[-1].paired = list(paired_added(samples, none))
    compared = (
        ("plugin-memory-observed", "litellm-priced-observed",
         "(informational) plugin-memory, with a success callback", "LiteLLM priced, with one"),
        ("plugin-redis-w2", "litellm-priced-w2", "plugin-redis, 2 workers", "LiteLLM priced, 2 workers"),
        ("plugin-redis-reuse-w2", "litellm-priced-w2", "plugin-redis-reuse, 2 workers",
         "LiteLLM priced, 2 workers"),
    )  # fmt: skip
    for name, baseline_name, label, named in compared:
        if name in summary and baseline_name in summary:
            against(label, name, baseline_name, named)
    return out


def render(report: dict[str, Any]) -> str:
    summary: dict[str, dict[str, Any]] = report["hits"]
    misses: dict[str, dict[str, Any]] = report["misses"]
    nan_row = {"rate": float("nan"), "p50": float("nan"), "cpu_ms": float("nan")}
    base = summary.get("litellm-priced", nan_row)
    unpriced = summary.get("litellm-unpriced", nan_row)
    floor = summary.get("floor", nan_row)
    lines = [
        f"hit path benchmark, run {report['run_id']} ({report['started']}), {report['command']}",
        "machine: {nproc} CPUs ({cpu_model}), {memory_gib} GiB, Python {python}, LiteLLM {litellm}, "
        "uvicorn {uvicorn} (httptools: {httptools}), Redis {redis_server}".format(**report["machine"]),
        "load average (1/5/15 min) at start {}, during the rounds {}, at the end {}".format(
            report["load"]["start"], [x[0] for x in report["load"]["rounds"]], report["load"]["end"]
        ),
        f"{report['rounds']} rounds in rotating order, medians of rounds; {report['sequential']} sequential "
        f"keep-alive hits (p50/p99), then {report['clients']} keep-alive clients for {report['seconds']:g} s "
        "(hits/s, CPU per hit of the server's processes)",
        "",
        "hits (medians of rounds)     seq p50 ms  seq p99 ms   hits/s  CPU ms/hit  fast%  "
        "hits/s÷base  p50÷base  CPU÷base  p50÷floor  hits/s÷unpriced  errors (of which upstream calls)",
    ]
    for name, row in summary.items():
        lines.append(
            f"{name:28} {row['p50']:10.2f} {row['p99']:11.2f} {row['rate']:8.1f} {row['cpu_ms']:11.2f} "
            f"{row['fast_path_share'] * 100:5.0f}  {row['rate'] / base['rate']:11.2f} "
            f"{row['p50'] / base['p50']:9.3f} {row['cpu_ms'] / base['cpu_ms']:9.3f} "
            f"{row['p50'] / floor['p50']:10.1f} {row['rate'] / unpriced['rate']:16.2f}  {row['errors']} "
            f"({row['upstream_calls_during_hits']} upstream)"
        )
    lines += ["", "rows: " + "; ".join(f"{name} = {row['title']}" for name, row in summary.items()), ""]
    lines.append("misses (one at a time, interleaved)   p50 ms   p99 ms  CPU ms/miss  added p50 ms  "
                 "added CPU ms  paired added ms [95%]  outcomes")  # fmt: skip
    none = misses.get("no-cache", {"p50": float("nan"), "cpu_ms": float("nan")})
    for name, row in misses.items():
        paired = "-"
        if "samples_ms" in row and "samples_ms" in none and name != "no-cache":
            mid, low, high = paired_added(row["samples_ms"], none["samples_ms"])
            paired = f"{mid:+.2f} [{low:+.2f}, {high:+.2f}]"
        lines.append(
            f"{name:36} {row['p50']:8.2f} {row['p99']:8.2f} {row['cpu_ms']:12.2f} "
            f"{row['p50'] - none['p50']:+13.2f} {row['cpu_ms'] - none['cpu_ms']:+13.2f}  {paired:22} "
            f"{row['outcomes']}"
        )
    lines += ["", "idle CPU of each server before the run (ms per second): " + ", ".join(
        f"{name} {value:.1f}" for name, value in report["idle_cpu_ms_per_s"].items())]  # fmt: skip
    lines += ["", "acceptance (issue 15; against litellm-priced only):"]
    for verdict in report["verdicts"]:
        rounds = verdict.get("rounds") or []
        spread = ""
        if rounds:
            spread = f"  (per round {min(rounds):.3f}-{max(rounds):.3f}, met in {verdict['met_rounds']}"
            spread += f" of {len(rounds)})"
        paired = verdict.get("paired") or []
        if paired:
            spread = f"  (paired {paired[0]:+.2f} ms [{paired[1]:+.2f}, {paired[2]:+.2f}])"
        met = "MET    " if verdict["met"] else "MISSED "
        lines.append(f"  {met} {verdict['target']}: {verdict['value']:.3f}{spread}")
    lines += ["", "per round (p50 ms / hits/s / CPU ms per hit):"]
    for name, rounds in report["rounds_detail"].items():
        cells = "   ".join(f"{r['p50']:.2f} / {r['rate']:.1f} / {r['cpu_ms']:.2f}" for r in rounds)
        lines.append(f"  {name:26} {cells}")
    if report.get("flame_graphs"):
        lines += ["", "flame graphs: " + ", ".join(report["flame_graphs"])]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- main


def cleanup_redis(host: str, port: int, run_id: str, litellm_keys: Sequence[str]) -> None:
    try:
        import redis
    except ImportError:
        return
    try:
        with redis.Redis(host=host, port=port, socket_timeout=2) as client:
            keys = list(client.scan_iter(match=f"lcp-hitbench-*{run_id}:*", count=1000)) + list(litellm_keys)
            for start in range(0, len(keys), 500):
                client.delete(*keys[start : start + 500])
    except redis.RedisError:
        pass


@contextlib.contextmanager
def started(simulator: SimulatorProcess) -> Iterator[SimulatorProcess]:
    try:
        yield simulator.start()
    finally:
        simulator.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="concurrent phase per server and round")
    parser.add_argument("--clients", type=int, default=16, help="keep-alive clients in the concurrent phase")
    parser.add_argument("--sequential", type=int, default=300, help="sequential hits per server and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--misses", type=int, default=150, help="miss samples per server")
    parser.add_argument("--workers2", action="store_true", help="also LiteLLM and plugin-redis, 2 workers")
    parser.add_argument(
        "--miss-experiment",
        action="store_true",
        help="also the plugin without litellm.cache (misses stored from a success callback) and the plugin "
        "with fast_path.enabled: false (the carrier alone), misses only",
    )
    parser.add_argument(
        "--ceiling",
        action="store_true",
        help="also the plugin with LiteLLM's per-hit stages skipped (auth reused, no setup, no hit "
        "logging): an unsafe experiment measuring the bound those stages set, hits only",
    )
    parser.add_argument(
        "--before",
        default=None,
        metavar="REV",
        help="also the plugin (memory://, redis://) at git revision REV, from a temporary worktree",
    )
    parser.add_argument("--only", default=None, help="comma-separated case names (development runs)")
    parser.add_argument("--profile", action="store_true", help="py-spy flame graphs after the measurement")
    parser.add_argument("--profile-seconds", type=float, default=15.0)
    parser.add_argument("--profile-raw", action="store_true", help="collapsed stacks (.txt), not SVG")
    parser.add_argument(
        "--profile-rate",
        type=int,
        default=100,
        help="py-spy samples per second (a few hundred resolve a miss's extra ~1 ms; py-spy slows "
        "the sampled process more the higher it is)",
    )
    parser.add_argument(
        "--profile-cases", default="plugin-memory,plugin-redis,litellm-priced", help="comma-separated"
    )
    parser.add_argument(
        "--profile-miss-cases",
        default="no-cache,plugin-memory,plugin-memory-no-carrier",
        help="comma-separated; profiled under 4 clients sending unique prompts",
    )
    parser.add_argument("--redis-host", default="127.0.0.1")
    parser.add_argument("--redis-port", type=int, default=6379)
    parser.add_argument("--out", type=Path, default=None, help="results directory")
    parser.add_argument("--keep", action="store_true", help="keep the servers' work directory")
    args = parser.parse_args(argv)

    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    run_id = uuid.uuid4().hex[:10]
    today = datetime.date.today().isoformat()
    out_dir: Path = args.out or REPO / "results" / f"{today}-hit-path"
    out_dir.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="lcp-hitbench-"))
    load: dict[str, Any] = {"start": load_average(), "rounds": []}
    litellm_keys: list[str] = []
    report: dict[str, Any] = {
        "run_id": run_id,
        "started": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": "python -m benchmarks.hit_path " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": machine(),
        "rounds": args.rounds,
        "sequential": args.sequential,
        "clients": args.clients,
        "seconds": args.seconds,
    }
    began = time.monotonic()
    before_tree: Path | None = None
    if args.before:
        before_tree = workdir / "before-tree"
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "add", "-q", "--detach", str(before_tree), args.before],
            check=True,
        )
        report["before"] = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", args.before], capture_output=True, text=True
        ).stdout.strip()
    try:
        with started(SimulatorProcess(workdir)) as simulator:
            cases = build_cases(
                simulator.url,
                run_id,
                workdir,
                args.redis_host,
                args.redis_port,
                args.workers2,
                args.miss_experiment,
                (args.before, before_tree) if before_tree is not None else None,
                args.ceiling,
            )
            if args.only:
                cases = [case for case in cases if case.name in args.only.split(",")]
            with running([case.server for case in cases], timeout=400):  # type: ignore[misc]
                print(f"{len(cases)} servers ready after {time.monotonic() - began:.0f} s ({workdir})",
                      flush=True)  # fmt: skip
                before = {c.name: session_cpu_seconds(server_pid(c.server)) for c in cases}
                time.sleep(3.0)
                report["idle_cpu_ms_per_s"] = {
                    c.name: (session_cpu_seconds(server_pid(c.server)) - before[c.name]) * 1000 / 3.0
                    for c in cases
                }
                for case in cases:
                    wait_all_workers(case)
                    if case.role not in ("no-cache", "experiment"):
                        asyncio.run(warm(case))
                detail: dict[str, list[HitRound]] = {case.name: [] for case in cases}
                upstream: dict[str, int] = {case.name: 0 for case in cases}
                hit_cases = [c for c in cases if c.role not in ("no-cache", "experiment")]
                for number in range(args.rounds):
                    shift = (number * max(1, len(hit_cases) // args.rounds)) % len(hit_cases)
                    order = [*hit_cases[shift:], *hit_cases[:shift]]
                    for case in order:
                        calls_before = simulator.chat_calls()
                        result = asyncio.run(measure_hits(case, args.sequential, args.clients, args.seconds))
                        upstream[case.name] += simulator.chat_calls() - calls_before
                        detail[case.name].append(result)
                        print(
                            f"round {number + 1} {case.name:20} p50 {result.p50:7.2f} ms  "
                            f"{result.rate:7.1f} hits/s  {result.cpu_ms:6.2f} CPU-ms/hit  "
                            f"errors {result.errors + result.seq_errors}",
                            flush=True,
                        )
                    load["rounds"].append(load_average())
                miss_cases = [
                    c
                    for c in cases
                    if c.role in ("no-cache", "plugin", "before", "baseline", "unpriced", "experiment")
                    and c.workers == 1
                ]
                report["misses"] = asyncio.run(measure_misses(miss_cases, args.misses, 0))
                summary: dict[str, dict[str, Any]] = {}
                for case in hit_cases:
                    rounds = detail[case.name]
                    summary[case.name] = {
                        "title": case.title,
                        "workers": case.workers,
                        **{
                            a: median_of(rounds, a)
                            for a in ("p50", "p99", "rate", "cpu_ms", "fast_path_share")
                        },
                        "errors": sum(r.errors + r.seq_errors for r in rounds),
                        "upstream_calls_during_hits": upstream[case.name],
                    }
                    if upstream[case.name]:
                        summary[case.name]["errors"] += upstream[case.name]
                report["hits"] = summary
                report["rounds_detail"] = {n: [asdict(r) for r in rs] for n, rs in detail.items() if rs}
                report["verdicts"] = [
                    asdict(v) for v in verdicts(summary, report["misses"], report["rounds_detail"])
                ]
                load["end"] = load_average()
                report["load"] = load
                if args.profile:
                    wanted = [c for c in cases if c.name in args.profile_cases.split(",")]
                    graphs: list[str] = []
                    for case in wanted:
                        print(f"profiling {case.name} for {args.profile_seconds:g} s", flush=True)
                        graphs += profile(
                            case,
                            out_dir,
                            args.clients,
                            args.profile_seconds,
                            raw=args.profile_raw,
                            rate=args.profile_rate,
                        )
                    for case in [c for c in cases if c.name in args.profile_miss_cases.split(",")]:
                        print(f"profiling misses of {case.name} for {args.profile_seconds:g} s", flush=True)
                        graphs += profile(
                            case,
                            out_dir,
                            4,
                            args.profile_seconds,
                            misses=True,
                            raw=args.profile_raw,
                            rate=args.profile_rate,
                        )
                    report["flame_graphs"] = graphs
                litellm_keys += collect_litellm_keys(cases)
    finally:
        cleanup_redis(args.redis_host, args.redis_port, run_id, litellm_keys)
        if before_tree is not None:
            subprocess.run(
                ["git", "-C", str(REPO), "worktree", "remove", "--force", str(before_tree)], check=False
            )
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    report["minutes"] = round((time.monotonic() - began) / 60, 1)
    text = render(report)
    print()
    print(text)
    (out_dir / "results.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (out_dir / "summary.txt").write_text(text, encoding="utf-8")
    print(f"written to {out_dir}")
    return 0


def collect_litellm_keys(cases: Sequence[Case]) -> list[str]:
    """LiteLLM's own cache keys (no namespace, so no pattern): asked from each LiteLLM proxy by
    sending its warmed prompt once more (the hit reports its key)."""
    keys: list[str] = []

    async def ask(case: Case) -> None:
        connection = Connection(case.server.port)
        try:
            reply = await connection.request(raw_post(case.server.port, chat_body(case.prompt)))
            key = reply.headers.get(b"x-litellm-cache-key")
            if key:
                keys.append(key.decode())
        finally:
            await connection.close()

    for case in cases:
        if case.role in ("baseline", "unpriced"):
            with contextlib.suppress(Exception):
                asyncio.run(ask(case))
    return keys


if __name__ == "__main__":
    sys.exit(main())
