"""Fixtures and helpers for the fast-path end-to-end tests (``test_fast_path.py``).

Several real ``litellm`` proxies boot in parallel, each with the plugin and a custom_auth module whose
keys carry the fields LiteLLM's auth may enforce (expiry, blocked, model list, budget, rate limit,
allowed cache controls), so auth equivalence can be tested without a database:

- ``memory`` / ``redis``: the fast path on, default LiteLLM auth settings for custom_auth;
- ``strict``: ``enable_post_custom_auth_checks`` (LiteLLM then refuses expired keys) and
  ``fast_path.apply_rate_limits: true``;
- ``master``: no custom_auth, only the master key;
- ``off``: ``fast_path.enabled: false`` (the hook path alone);
- ``reuse``: ``fast_path.auth_reuse_seconds`` (:data:`REUSE_WINDOW_S`); the custom_auth module counts
  its calls for the ``sk-fp-reuse`` keys and refuses one once a test revoked it
  (``FastClient.auth_calls``, ``FastClient.revoke``).

A small CustomLogger written next to each config appends every success event it sees to a JSON-lines
file, so tests can check how hits reach LiteLLM's success callbacks.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from litellm_cache_plugin.simulator import SimulatorThread
from tools.runner import ProxyProcess, proxy_config, running

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

# Keys of the test custom_auth module (all but team-b belong to team-a, so they share team-a's entries).
OK = "sk-fp-ok"
OK_2 = "sk-fp-ok-2"
TEAM_B = "sk-fp-team-b"
EXPIRED = "sk-fp-expired"
BLOCKED = "sk-fp-blocked"
OVER_BUDGET = "sk-fp-over-budget"
OTHER_MODELS = "sk-fp-other-models"
RPM_1 = "sk-fp-rpm-1"
CACHE_CONTROLS = "sk-fp-cache-controls"
BOGUS = "sk-fp-bogus"
# fast_path.auth_reuse_seconds of the "reuse" proxy.
REUSE_WINDOW_S = 1.5
# Keys whose auth calls are counted and which a test may revoke (auth_calls(), revoke()).
REUSE = "sk-fp-reuse"
REUSE_2 = "sk-fp-reuse-2"
# Counted like them; used by one test only (its hit streak starts from nothing).
STREAK = "sk-fp-reuse-streak"
# A key with a model_max_budget: LiteLLM's model-budget limiter then observes its hits.
MODEL_BUDGET = "sk-fp-model-budget"

AUTH_MODULE = """
import hashlib
import os
from datetime import datetime, timedelta, timezone

from fastapi import HTTPException, Request
from litellm.proxy._types import LitellmUserRoles, UserAPIKeyAuth

_YESTERDAY = (datetime.now(timezone.utc) - timedelta(days=1)).isoformat()
KEYS = {
    "sk-fp-ok": {"team_id": "team-a", "user_id": "alice"},
    "sk-fp-ok-2": {"team_id": "team-a", "user_id": "anna"},
    "sk-fp-team-b": {"team_id": "team-b", "user_id": "bob"},
    "sk-fp-expired": {"team_id": "team-a", "user_id": "eve", "expires": _YESTERDAY},
    "sk-fp-blocked": {"team_id": "team-a", "user_id": "blake", "blocked": True},
    "sk-fp-over-budget": {"team_id": "team-a", "user_id": "bo", "max_budget": 1.0, "spend": 5.0},
    "sk-fp-other-models": {"team_id": "team-a", "user_id": "oz", "models": ["nomic-embed-text"]},
    "sk-fp-rpm-1": {"team_id": "team-a", "user_id": "ray", "rpm_limit": 1},
    "sk-fp-cache-controls": {"team_id": "team-a", "user_id": "cc", "allowed_cache_controls": ["no-store"]},
    "sk-fp-reuse": {"team_id": "team-r", "user_id": "rita"},
    "sk-fp-reuse-2": {"team_id": "team-r", "user_id": "remy"},
    "sk-fp-reuse-streak": {"team_id": "team-r", "user_id": "sam"},
    "sk-fp-model-budget": {
        "team_id": "team-r",
        "user_id": "mo",
        "model_max_budget": {"llama3.2": {"budget_limit": 100.0, "time_period": "1d"}},
    },
}
_DIR = os.environ["LCP_AUTH_DIR"]


async def custom_auth(request: Request, api_key: str) -> UserAPIKeyAuth:
    key = api_key or ""
    hashed = hashlib.sha256(key.encode()).hexdigest()
    if key and key == os.environ.get("LITELLM_MASTER_KEY"):
        return UserAPIKeyAuth(api_key=hashed, user_role=LitellmUserRoles.PROXY_ADMIN, user_id="admin")
    if key.startswith("sk-fp-reuse"):
        with open(os.path.join(_DIR, "auth_calls.txt"), "a", encoding="utf-8") as handle:
            handle.write(key + "\\n")
        if os.path.exists(os.path.join(_DIR, "revoked-" + key)):
            raise HTTPException(status_code=401, detail="revoked key")
    identity = KEYS.get(key)
    if identity is None:
        raise HTTPException(status_code=401, detail="invalid key")
    return UserAPIKeyAuth(api_key=hashed, token=hashed, user_role=LitellmUserRoles.INTERNAL_USER, **identity)
"""

HIT_LOGGER_MODULE = """
import json
import os

from litellm.integrations.custom_logger import CustomLogger


class SuccessRecorder(CustomLogger):
    async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
        params = kwargs.get("litellm_params") or {}
        metadata = params.get("metadata") or {}
        record = {
            "call_id": kwargs.get("litellm_call_id"),
            "call_type": kwargs.get("call_type"),
            "cache_hit": kwargs.get("cache_hit"),
            "response_cost": kwargs.get("response_cost"),
            "team_id": metadata.get("user_api_key_team_id"),
            "model_group": metadata.get("model_group"),
        }
        with open(os.environ["LCP_SUCCESS_LOG"], "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\\n")


recorder = SuccessRecorder()
"""

# Until create_proxy_plugin() installs the fast path itself, a config-level callback does it (the
# call is idempotent, so this keeps working once the plugin wires it in).
WIRING_MODULE = """
from litellm.integrations.custom_logger import CustomLogger
from litellm_cache_plugin.integrations.fast_path import install_fast_path
from litellm_cache_plugin.integrations.litellm import create_proxy_plugin

install_fast_path(create_proxy_plugin())


def _middleware_chain():
    # The built middleware stack's layers, outermost first (tests of where the plugin sits in it).
    from litellm.proxy.proxy_server import app

    names, node = [], app.middleware_stack
    while node is not None and len(names) < 64:
        names.append(type(node).__name__)
        node = getattr(node, "app", None)
    return names


def _register_test_route():
    from litellm.proxy.proxy_server import app

    app.add_api_route("/_fp_test/middleware", _middleware_chain, methods=["GET"])


_register_test_route()


class FastPathWiring(CustomLogger):
    pass


wiring = FastPathWiring()
"""


def _with_prefix(redis_url: str, prefix: str) -> str:
    if "prefix=" in redis_url:
        return redis_url.replace("prefix=", f"prefix={prefix}-", 1)
    separator = "&" if "?" in redis_url else "?"
    return f"{redis_url}{separator}prefix={prefix}:"


def _proxy(
    simulator: SimulatorThread,
    base: Path,
    name: str,
    section: dict[str, Any],
    *,
    custom_auth: bool = True,
    general: dict[str, Any] | None = None,
    litellm_settings: dict[str, Any] | None = None,
    recorder: bool = True,
    extra_callbacks: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
) -> ProxyProcess:
    config = proxy_config(
        simulator.url, section, with_plugin=False, custom_auth=False, litellm_settings=litellm_settings
    )
    config["litellm_settings"]["callbacks"] = [
        "litellm_cache_plugin.proxy_plugin",
        "fast_path_wiring.wiring",
        *(["success_recorder.recorder"] if recorder else []),
        *extra_callbacks,
    ]
    if custom_auth:
        config["general_settings"]["custom_auth"] = "fp_auth.custom_auth"
    config["general_settings"].update(general or {})
    workdir = base / name
    return ProxyProcess(
        config,
        workdir,
        extra_files={
            "fp_auth.py": AUTH_MODULE,
            "success_recorder.py": HIT_LOGGER_MODULE,
            "fast_path_wiring.py": WIRING_MODULE,
        },
        env={"LCP_SUCCESS_LOG": str(workdir / "success.jsonl"), "LCP_AUTH_DIR": str(workdir), **(env or {})},
        name=f"fp-{name}",
    )


@pytest.fixture(scope="session")
def fp_proxies(
    simulator: SimulatorThread, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, ProxyProcess]]:
    base = tmp_path_factory.mktemp("fast-path")
    prefix = f"fp-{uuid.uuid4().hex[:8]}"
    started = {
        "memory": _proxy(simulator, base, "memory", {"backend": "memory://", "ttl": 600}),
        "redis": _proxy(simulator, base, "redis", {"backend": _with_prefix(redis_url, prefix), "ttl": 600}),
        "strict": _proxy(
            simulator,
            base,
            "strict",
            {"backend": "memory://", "ttl": 600, "fast_path": {"apply_rate_limits": True}},
            litellm_settings={"enable_post_custom_auth_checks": True},
        ),
        "master": _proxy(simulator, base, "master", {"backend": "memory://", "ttl": 600}, custom_auth=False),
        "off": _proxy(
            simulator, base, "off", {"backend": "memory://", "ttl": 600, "fast_path": {"enabled": False}}
        ),
        # Also the proxy without a success recorder: no callback observes its hits (hit_not_logged).
        "reuse": _proxy(
            simulator,
            base,
            "reuse",
            {"backend": "memory://", "ttl": 600, "fast_path": {"auth_reuse_seconds": REUSE_WINDOW_S}},
            recorder=False,
        ),
    }
    with running(started.values(), timeout=240):
        yield started


class FastClient:
    """OpenAI-style calls to one proxy plus the counters the tests need."""

    def __init__(self, proxy: ProxyProcess, simulator: SimulatorThread) -> None:
        self.proxy = proxy
        self.simulator = simulator
        self.http = httpx.Client(base_url=proxy.url, timeout=60)

    def close(self) -> None:
        self.http.close()

    def post(
        self, path: str, key: str | None, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> httpx.Response:
        all_headers = dict(headers or {})
        if key is not None:
            all_headers["Authorization"] = f"Bearer {key}"
        return self.http.post(path, json=body, headers=all_headers)

    def chat(
        self, key: str | None, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> httpx.Response:
        return self.post("/v1/chat/completions", key, body, headers)

    def embed(self, key: str, inputs: list[str]) -> httpx.Response:
        body = {"model": "nomic-embed-text", "input": inputs, "encoding_format": "float"}
        return self.post("/v1/embeddings", key, body)

    def stats(self) -> dict[str, Any]:
        response = self.http.get(
            "/v1/cache/stats", headers={"Authorization": f"Bearer {self.proxy.master_key}"}
        )
        response.raise_for_status()
        return response.json()["layers"]  # type: ignore[no-any-return]

    def counter(self, layer: str, model: str, what: str) -> int:
        return int(self.stats().get(layer, {}).get(model, {}).get(what, 0))

    def fast_hits(self, model: str = "llama3.2") -> int:
        return self.counter("fast_path", model, "hit")

    def setups_reused(self, model: str = "llama3.2") -> int:
        """Fast-path hits that reused a remembered request setup."""
        return self.counter("fast_path", model, "setup_reused")

    def upstream_calls(self, endpoint: str = "chat") -> int:
        stats = httpx.get(f"{self.simulator.url}/_sim/stats", timeout=10).json()
        return int(stats["requests"][endpoint])

    def wait_for(self, probe: Any, timeout: float = 8.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if probe():
                return True
            time.sleep(0.05)
        return bool(probe())

    def warm(self, key: str, body: dict[str, Any]) -> httpx.Response:
        """Send until the entry is stored and served as a hit (writes happen in the background)."""
        first = self.chat(key, body)
        assert first.status_code == 200, first.text
        assert self.wait_for(lambda: self.chat(key, body).headers.get("x-cache") == "HIT"), "never a hit"
        return first

    def auth_calls(self, key: str) -> int:
        """How often the custom_auth module was asked about ``key`` (the sk-fp-reuse keys only)."""
        path = self.proxy.workdir / "auth_calls.txt"
        if not path.exists():
            return 0
        return sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line == key)

    def revoke(self, key: str) -> None:
        """From now on the custom_auth module refuses ``key`` (the sk-fp-reuse keys only)."""
        (self.proxy.workdir / f"revoked-{key}").touch()

    def success_records(self) -> list[dict[str, Any]]:
        path = self.proxy.workdir / "success.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def fast_client(
    proxies: dict[str, ProxyProcess], simulator: SimulatorThread, name: str
) -> Iterator[FastClient]:
    """A FastClient on one of ``fp_proxies``, closed afterwards (``yield from`` it in a fixture)."""
    client = FastClient(proxies[name], simulator)
    yield client
    client.close()


def identical_hits(
    client: FastClient, key: str, body: dict[str, Any], first: httpx.Response, n: int
) -> set[str]:
    """Send ``body`` ``n`` more times; each must be a hit with ``first``'s answer. Their call ids."""
    call_ids = set()
    for _ in range(n):
        hit = client.chat(key, body)
        assert hit.status_code == 200 and hit.headers["x-cache"] == "HIT"
        assert hit.json()["id"] == first.json()["id"]
        call_ids.add(hit.headers["x-litellm-call-id"])
    return call_ids


def unique(text: str) -> str:
    return f"{text} [{uuid.uuid4().hex[:10]}]"


def chat_body(prompt: str, **params: Any) -> dict[str, Any]:
    return {"model": "llama3.2", "messages": [{"role": "user", "content": prompt}], **params}


def sse_events(response: httpx.Response) -> list[str]:
    return [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
