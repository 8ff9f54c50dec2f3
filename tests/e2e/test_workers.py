"""The proxy as production runs it: ``litellm --num_workers 2`` (uvicorn worker processes, each loading
its own copy of the config and the plugin).

- ``redis``: both workers share one Redis (unique prefix): the fast path serves hits in each worker,
  an entry stored by one worker is a hit in the other, single-flight holds across them;
- ``memory``: each worker has its own cache, and says so at start-up (one line per worker);
- ``GET /v1/cache/stats`` and the Prometheus endpoint say which worker answered.

Which worker answers a request is up to the kernel (the workers accept on one shared socket), so the
tests send requests on new connections, several at once, and read each worker's counters until
every worker has answered (bounded by a deadline, never by a fixed sleep).
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from litellm_cache_plugin.simulator import SimulatorConfig, SimulatorThread
from tests.e2e.conftest import TEAM_A, _with_prefix, chat_body, unique
from tools.runner import DEMO_AUTH_MODULE, ProxyProcess, proxy_config, running

pytestmark = pytest.mark.e2e

WORKERS = 2
SIM_LATENCY_MS = 400.0


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorThread]:
    with SimulatorThread(
        SimulatorConfig(latency_ms=SIM_LATENCY_MS, tokens_per_second=1000, parallel=64)
    ) as s:
        yield s


@pytest.fixture(scope="module")
def worker_proxies(
    sim: SimulatorThread, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, ProxyProcess]]:
    base = tmp_path_factory.mktemp("workers")
    sections: dict[str, dict[str, Any]] = {
        "memory": {"backend": "memory://", "ttl": 600},
        "redis": {
            "backend": _with_prefix(redis_url, f"workers-{uuid.uuid4().hex[:8]}"),
            "ttl": 600,
            "backend_timeout_ms": 1000,  # a busy 2-core machine running 4 workers lags event loops
            "telemetry": {"prometheus": {"enabled": True}},
        },
        # The same under gunicorn (litellm --run_gunicorn): another process model, same expectations.
        "gunicorn": {
            "backend": _with_prefix(redis_url, f"workers-g-{uuid.uuid4().hex[:8]}"),
            "ttl": 600,
            "backend_timeout_ms": 1000,
            "telemetry": {"prometheus": {"enabled": True}},
        },
    }
    proxies = {
        name: ProxyProcess(
            proxy_config(sim.url, section),
            base / name,
            extra_files={"demo_auth.py": DEMO_AUTH_MODULE},
            name=f"workers-{name}",
            num_workers=WORKERS,
            server="gunicorn" if name == "gunicorn" else "uvicorn",
        )
        for name, section in sections.items()
    }
    with running(proxies.values(), timeout=240):
        for proxy in proxies.values():
            proxy.wait_workers(timeout=240)
        yield proxies


def _admin(proxy: ProxyProcess) -> dict[str, str]:
    return {"Authorization": f"Bearer {proxy.master_key}"}


def _fresh(proxy: ProxyProcess, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """One request on a new connection (so that any worker may take it)."""
    with httpx.Client(base_url=proxy.url, timeout=60) as http:
        return http.request(method, path, **kwargs)


def _chat(proxy: ProxyProcess, body: dict[str, Any]) -> httpx.Response:
    return _fresh(
        proxy, "POST", "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {TEAM_A}"}
    )


def per_worker(proxy: ProxyProcess, timeout: float = 60.0) -> dict[int, dict[str, Any]]:
    """Every worker's ``GET /v1/cache/stats`` (asked on new connections until each pid answered)."""
    found: dict[int, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout
    with ThreadPoolExecutor(4) as pool:
        while len(found) < WORKERS and time.monotonic() < deadline:
            answers = pool.map(
                lambda _: _fresh(proxy, "GET", "/v1/cache/stats", headers=_admin(proxy)), range(4)
            )
            for answer in answers:
                answer.raise_for_status()
                stats = answer.json()
                found.setdefault(int(stats["worker"]["pid"]), stats)
    assert len(found) == WORKERS, f"only workers {sorted(found)} answered"
    return found


def counter(stats: dict[str, Any], layer: str, what: str, model: str = "llama3.2") -> int:
    return int(stats["layers"].get(layer, {}).get(model, {}).get(what, 0))


def sim_calls(sim: SimulatorThread) -> int:
    return int(httpx.get(f"{sim.url}/_sim/stats", timeout=10).json()["requests"]["chat"])


def until(probe: Callable[[], bool], timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():
            return True
    return probe()


# --- start-up: the plugin in every worker --------------------------------------------------------


def test_each_worker_loads_the_plugin_once_and_memory_says_each_has_its_own_cache(
    worker_proxies: dict[str, ProxyProcess],
) -> None:
    memory = worker_proxies["memory"]
    pids = set(per_worker(memory))
    log = memory.log_path.read_text(encoding="utf-8", errors="replace")
    notes = [line for line in log.splitlines() if "each worker" in line and "has its own cache" in line]
    noted = [int(m.group(1)) for line in notes if (m := re.search(r"pid (\d+)", line))]
    assert sorted(noted) == sorted(pids), notes  # one line per worker, from each worker that answers
    for shared in ("redis", "gunicorn"):
        log = worker_proxies[shared].log_path.read_text(encoding="utf-8", errors="replace")
        assert "has its own cache" not in log
    for proxy in worker_proxies.values():
        assert "fast path off" not in proxy.log_path.read_text(encoding="utf-8", errors="replace")


# --- Redis: one cache for every worker ----------------------------------------------------------


@pytest.mark.parametrize("shared", ["redis", "gunicorn"])
def test_the_fast_path_serves_hits_in_every_worker_from_one_entry(
    worker_proxies: dict[str, ProxyProcess], sim: SimulatorThread, shared: str
) -> None:
    proxy = worker_proxies[shared]
    body = chat_body(unique("Name a planet."), temperature=0)
    upstream = sim_calls(sim)
    first = _chat(proxy, body)
    assert first.status_code == 200 and first.headers["x-cache"] == "MISS"
    assert until(lambda: _chat(proxy, body).headers["x-cache"] == "HIT"), "never stored"
    before = per_worker(proxy)
    answer = first.json()["choices"][0]["message"]["content"]

    def hit(_: int) -> None:
        response = _chat(proxy, body)
        assert response.status_code == 200 and response.headers["x-cache"] == "HIT"
        assert response.json()["choices"][0]["message"]["content"] == answer

    with ThreadPoolExecutor(4) as pool:
        for _ in range(10):  # batches of 8 concurrent hits until each worker has served some
            list(pool.map(hit, range(8)))
            after = per_worker(proxy)
            served = {
                pid: counter(after[pid], "fast_path", "hit")
                - counter(before.get(pid, after[pid]), "fast_path", "hit")
                for pid in after
            }
            if len(served) == WORKERS and all(n > 0 for n in served.values()):
                break
    assert set(served) == set(before) and all(n > 0 for n in served.values()), served
    assert sim_calls(sim) == upstream + 1  # one entry, stored by one worker, served by both


def _burst(proxy: ProxyProcess, body: dict[str, Any], n: int) -> list[httpx.Response]:
    """``n`` identical requests sent at once, each on its own connection."""
    start = threading.Barrier(n)

    def ask(_: int) -> httpx.Response:
        with httpx.Client(base_url=proxy.url, timeout=60) as http:
            start.wait()
            return http.post("/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {TEAM_A}"})

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(ask, range(n)))


@pytest.mark.parametrize("shared", ["redis", "gunicorn"])
def test_single_flight_holds_across_workers(
    worker_proxies: dict[str, ProxyProcess], sim: SimulatorThread, shared: str
) -> None:
    """Identical concurrent misses that land on both workers make one upstream call: the worker
    without the leader waits on the flight through Redis (``flight_polled``)."""
    proxy = worker_proxies[shared]
    for attempt in range(5):
        body = chat_body(unique(f"Describe a lighthouse ({attempt})."), temperature=0)
        before, upstream = per_worker(proxy), sim_calls(sim)
        answers = _burst(proxy, body, 8)
        assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
        assert len({a.json()["choices"][0]["message"]["content"] for a in answers}) == 1
        assert sim_calls(sim) == upstream + 1, "identical concurrent misses went upstream more than once"
        after = per_worker(proxy)
        took_part = {
            pid
            for pid in after
            if sum(
                counter(after[pid], "exact", what) - counter(before.get(pid, after[pid]), "exact", what)
                for what in ("miss", "coalesced", "hit")
            )
            > 0
        }
        if len(took_part) == WORKERS:
            polled = sum(
                counter(after[pid], "exact", "flight_polled")
                - counter(before.get(pid, after[pid]), "exact", "flight_polled")
                for pid in after
            )
            assert polled > 0, after  # the other worker waited on the leader through the backend
            return
    pytest.fail("the kernel gave every burst of 8 connections to one worker, 5 times in a row")


# --- memory://: a cache per worker --------------------------------------------------------------


def test_memory_workers_do_not_share_entries(
    worker_proxies: dict[str, ProxyProcess], sim: SimulatorThread
) -> None:
    """Each worker goes upstream for the same prompt once (its own miss), then serves its own entry."""
    proxy = worker_proxies["memory"]
    body = chat_body(unique("Name a river."), temperature=0)
    upstream, before = sim_calls(sim), per_worker(proxy)

    def stored_everywhere() -> bool:
        _burst(proxy, body, 4)
        after = per_worker(proxy)
        return all(
            counter(after[pid], "exact", "store") > counter(before[pid], "exact", "store") for pid in after
        )

    assert until(stored_everywhere), "not every worker answered the prompt"
    calls = sim_calls(sim)
    assert calls >= upstream + WORKERS  # no worker found the other's entry
    assert {r.headers["x-cache"] for r in _burst(proxy, body, 8)} == {"HIT"}
    assert sim_calls(sim) == calls


# --- what the admin answers cover ----------------------------------------------------------------


@pytest.mark.parametrize("shared", ["redis", "gunicorn"])
def test_stats_and_metrics_name_the_worker_that_answered(
    worker_proxies: dict[str, ProxyProcess], shared: str
) -> None:
    proxy = worker_proxies[shared]
    stats = per_worker(proxy)
    for pid, answer in stats.items():
        assert answer["scope"] == "worker"
        assert answer["worker"] == {"pid": pid, "workers": WORKERS, "counters": "this worker only"}
    seen: set[int] = set()
    deadline = time.monotonic() + 60
    while seen != set(stats) and time.monotonic() < deadline:
        text = _fresh(proxy, "GET", "/v1/cache/metrics").text
        pids = set(re.findall(r'worker_pid="(\d+)"', text))
        assert len(pids) == 1, pids  # one worker's counters, labelled as such
        samples = [line for line in text.splitlines() if line.startswith("llm_cache_")]
        assert samples and all('worker_pid="' in line for line in samples)
        seen |= {int(p) for p in pids}
    assert seen == set(stats)
