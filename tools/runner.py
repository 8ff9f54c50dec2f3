"""Start a real ``litellm`` proxy process with a given config (used by the demo, tests and benchmark).

No LiteLLM import here: the proxy runs in its own process exactly as a user would start it.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import yaml


def stop_process_group(process: subprocess.Popen[bytes] | None, *, timeout: float) -> None:
    """SIGTERM the process group started with ``start_new_session=True``; SIGKILL it after ``timeout``."""
    if process is None or process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def strong_master_key() -> str:
    return "sk-" + secrets.token_urlsafe(32)


class ProxyProcess:
    """A ``litellm --config ...`` process on a free loopback port.

    ``start()`` returns at once; ``wait_ready()`` blocks until the proxy answers (imports take
    10-20 s on a small machine), so several proxies can boot in parallel. ``litellm_cli`` runs another
    installation's ``litellm`` command (default: the one next to this interpreter, else on ``PATH``).
    ``num_workers``: uvicorn worker processes (``litellm --num_workers``); each loads its own plugin,
    and ``wait_ready`` returns once one of them answers (see :meth:`wait_workers`). ``server``:
    ``"gunicorn"`` runs the workers under gunicorn (``litellm --run_gunicorn``) instead of uvicorn.
    """

    def __init__(
        self,
        config: dict[str, Any],
        workdir: Path,
        *,
        master_key: str | None = None,
        extra_files: dict[str, str] | None = None,
        env: dict[str, str] | None = None,
        port: int | None = None,
        name: str = "proxy",
        litellm_cli: Path | None = None,
        num_workers: int = 1,
        server: Literal["uvicorn", "gunicorn"] = "uvicorn",
    ) -> None:
        self.config = config
        self.workdir = workdir
        self.master_key = master_key or strong_master_key()
        self.extra_files = extra_files or {}
        self.env = env or {}
        self.port = port or free_port()
        self.name = name
        self.litellm_cli = litellm_cli
        self.num_workers = num_workers
        self.server = server
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / f"{name}.log"

    @property
    def config_path(self) -> Path:
        return self.workdir / f"{self.name}_config.yaml"

    def start(self) -> ProxyProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(yaml.safe_dump(self.config, sort_keys=False), encoding="utf-8")
        for relative, text in self.extra_files.items():
            target = self.workdir / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        env = {
            **os.environ,
            "LITELLM_MASTER_KEY": self.master_key,
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "LITELLM_LOG": os.environ.get("LITELLM_LOG", "ERROR"),
            "PYTHONUNBUFFERED": "1",
            **self.env,
        }
        env.pop("DATABASE_URL", None)
        # pytest's name of the running test: a parametrized id can be longer than the kernel takes
        # for one environment string (E2BIG), and it means nothing to the proxy.
        env.pop("PYTEST_CURRENT_TEST", None)
        if self.num_workers > 1:
            # uvicorn kills a worker that misses its 5 s health ping; importing LiteLLM on a busy
            # 2-core machine can hold the GIL that long (LiteLLM's --timeout_worker_healthcheck).
            env.setdefault("TIMEOUT_WORKER_HEALTHCHECK", "120")
        litellm_cli = self.litellm_cli
        if litellm_cli is None:
            sibling = Path(sys.executable).with_name("litellm")
            litellm_cli = sibling if sibling.exists() else Path("litellm")
        command = [
            str(litellm_cli),
            "--config",
            str(self.config_path),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--num_workers",
            str(self.num_workers),
        ]
        if self.server == "gunicorn":
            command.append("--run_gunicorn")
        log_file = self.log_path.open("wb")
        self.process = subprocess.Popen(
            command,
            cwd=self.workdir,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log_file.close()
        return self

    def wait_ready(self, timeout: float = 120.0) -> ProxyProcess:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/health/liveliness", timeout=2) as response:
                    if response.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.25)
        raise TimeoutError(f"{self.name} not ready after {timeout}s:\n{self.log_tail()}")

    def wait_workers(self, timeout: float = 180.0) -> set[int]:
        """Block until every worker answers (each loads its config and plugin on its own); the pids
        that answered ``GET /v1/cache/stats``, asked on a new connection each time."""
        deadline = time.monotonic() + timeout
        seen: set[int] = set()
        while time.monotonic() < deadline and len(seen) < self.num_workers:
            request = urllib.request.Request(
                f"{self.url}/v1/cache/stats", headers={"Authorization": f"Bearer {self.master_key}"}
            )
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    seen.add(int(json.loads(response.read())["worker"]["pid"]))
            except (urllib.error.URLError, OSError, KeyError, ValueError):
                time.sleep(0.25)
        if len(seen) < self.num_workers:
            answered = f"{len(seen)} of {self.num_workers} workers answered"
            raise TimeoutError(f"{self.name}: {answered}:\n{self.log_tail()}")
        return seen

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        stop_process_group(self.process, timeout=15)

    def __enter__(self) -> ProxyProcess:
        return self.start().wait_ready()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def running(processes: Iterable[ProxyProcess], *, timeout: float = 180.0) -> Iterator[None]:
    """Start every proxy, wait until all of them answer (in parallel: each spends 10-20 s importing
    LiteLLM), and stop them all on exit, whatever happened."""
    proxies = list(processes)
    try:
        for proxy in proxies:
            proxy.start()
        with ThreadPoolExecutor(max(1, len(proxies))) as pool:
            list(pool.map(lambda proxy: proxy.wait_ready(timeout=timeout), proxies))
        yield
    finally:
        for proxy in proxies:
            proxy.stop()


# A custom_auth module for tests and the demo: fixed keys map to fixed identities, so tenant isolation
# can be exercised without a database. The master key is the proxy admin.
DEMO_AUTH_MODULE = """
import hashlib
import os

from fastapi import HTTPException, Request
from litellm.proxy._types import LitellmUserRoles, UserAPIKeyAuth

KEYS = {
    "sk-team-a-0001": {"team_id": "team-a", "user_id": "alice"},
    "sk-team-a-0002": {"team_id": "team-a", "user_id": "anna"},
    "sk-team-b-0001": {"team_id": "team-b", "user_id": "bob"},
    "sk-no-team-0001": {"user_id": "carol"},
}


async def custom_auth(request: Request, api_key: str) -> UserAPIKeyAuth:
    hashed = hashlib.sha256(api_key.encode()).hexdigest()
    if api_key == os.environ.get("LITELLM_MASTER_KEY"):
        return UserAPIKeyAuth(api_key=hashed, user_role=LitellmUserRoles.PROXY_ADMIN, user_id="admin")
    identity = KEYS.get(api_key)
    if identity is None:
        raise HTTPException(status_code=401, detail="invalid key")
    return UserAPIKeyAuth(api_key=hashed, user_role=LitellmUserRoles.INTERNAL_USER, **identity)
"""


def proxy_config(
    simulator_url: str,
    cache_plugin: dict[str, Any] | None,
    *,
    with_plugin: bool = True,
    custom_auth: bool = True,
    litellm_settings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A proxy config with a chat and an embedding model on an Ollama(-compatible) server."""
    settings: dict[str, Any] = {"drop_params": True, **(litellm_settings or {})}
    if with_plugin:
        settings["callbacks"] = ["litellm_cache_plugin.proxy_plugin"]
    config: dict[str, Any] = {
        "model_list": [
            {
                "model_name": "llama3.2",
                "litellm_params": {"model": "ollama_chat/llama3.2:1b", "api_base": simulator_url},
            },
            {
                "model_name": "llama3.2-text",
                "litellm_params": {"model": "ollama/llama3.2:1b", "api_base": simulator_url},
            },
            {
                "model_name": "nomic-embed-text",
                "litellm_params": {"model": "ollama/nomic-embed-text", "api_base": simulator_url},
            },
        ],
        "litellm_settings": settings,
        "general_settings": {},
    }
    if custom_auth:
        config["general_settings"]["custom_auth"] = "demo_auth.custom_auth"
    if cache_plugin is not None:
        config["cache_plugin"] = cache_plugin
    return config
