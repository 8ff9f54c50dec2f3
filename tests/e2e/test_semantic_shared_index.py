"""The shared semantic index through two real proxies (``layers.semantic.index: redis+search://``):
one proxy's semantic entries are served by the other, which starts cold (nothing to load); an
invalidated entry is never served by meaning and its vector is deleted; the search server killed
(then restarted empty) and hung (SIGSTOP, then SIGCONT) under load fails no request, semantic lookups
fall back to misses within the deadline and resume without restarting the proxies."""

from __future__ import annotations

import math
import os
import signal
import statistics
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import redis

from litellm_cache_plugin.simulator import SimulatorConfig, SimulatorThread
from tests.conftest import ServerProcess
from tests.e2e.conftest import TEAM_A, TEAM_B, chat_body
from tools.runner import DEMO_AUTH_MODULE, ProxyProcess, proxy_config, running

pytestmark = pytest.mark.e2e

pytest.importorskip("onnxruntime", reason="the [semantic] extra is not installed")

BREAKER_RESET_S = 5.0  # the search client's circuit breaker (CircuitBreaker.reset_after, default)
DEADLINE_MS = 250  # backend_timeout_ms, the search server's deadline too (a loaded 2-core machine)
UPSTREAM_MS = 100
PROXY_OVERHEAD_MS = 400  # LiteLLM's own time per request on this shared 2-core machine (generous)


@dataclass
class Fleet:
    a: ProxyProcess
    b: ProxyProcess
    sim: SimulatorThread
    search: ServerProcess
    factory: Any
    prefix: str

    def search_client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.search.port, socket_timeout=2)

    def vectors(self) -> int:
        with self.search_client() as client:
            return sum(1 for _ in client.scan_iter(match=f"{self.prefix}*:*:*", count=1000))

    def upstream_calls(self) -> int:
        return int(httpx.get(f"{self.sim.url}/_sim/stats").json()["requests"]["chat"])


@pytest.fixture(scope="module")
def fleet(
    redis_url: str, redis_search_factory: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    search = redis_search_factory()  # this module's own: the fault tests kill and pause it
    prefix = f"fleet{uuid.uuid4().hex[:8]}:"
    backend = redis_url.replace("prefix=", f"prefix={prefix}", 1)
    section = {
        "backend": backend,
        "backend_timeout_ms": DEADLINE_MS,
        "layers": {
            "semantic": {
                "enabled": True,
                "index": f"redis+search://127.0.0.1:{search.port}/0?prefix={prefix}",
            }
        },
    }
    base = tmp_path_factory.mktemp("fleet")
    with SimulatorThread(SimulatorConfig(latency_ms=UPSTREAM_MS, tokens_per_second=2000)) as sim:
        proxies = [
            ProxyProcess(
                proxy_config(sim.url, section),
                base / name,
                extra_files={"demo_auth.py": DEMO_AUTH_MODULE},
                name=f"fleet-{name}",
            )
            for name in ("a", "b")
        ]
        with running(proxies, timeout=240):
            yield Fleet(proxies[0], proxies[1], sim, search, redis_search_factory, prefix)


def ask(proxy: ProxyProcess, key: str, prompt: str, **cache: bool) -> httpx.Response:
    body: dict[str, Any] = chat_body(prompt, temperature=0)
    if cache:
        body["cache"] = cache
    return httpx.post(
        f"{proxy.url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=60
    )


def stats(proxy: ProxyProcess) -> dict[str, Any]:
    response = httpx.get(
        f"{proxy.url}/v1/cache/stats", headers={"Authorization": f"Bearer {proxy.master_key}"}
    )
    return dict(response.json())


def wait_for(check: Any, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} not reached in {timeout} s")
        time.sleep(0.05)


def test_two_proxies_serve_each_others_semantic_entries(fleet: Fleet) -> None:
    before_vectors = fleet.vectors()
    original = ask(fleet.a, TEAM_A, "How far is Paris from Lyon?")
    assert original.headers["x-cache"] == "MISS"
    wait_for(lambda: fleet.vectors() > before_vectors, what="the vector written to the shared index")
    calls = fleet.upstream_calls()
    # B never saw this prompt and loads nothing: its first lookup searches the shared index.
    paraphrase = ask(fleet.b, TEAM_A, "Tell me how far Paris is from Lyon.")
    assert paraphrase.headers["x-cache"] == "HIT"
    assert paraphrase.headers["x-cache-layer"] == "semantic"
    assert (
        paraphrase.json()["choices"][0]["message"]["content"]
        == (original.json()["choices"][0]["message"]["content"])
    )
    assert fleet.upstream_calls() == calls
    # ... and the other way round.
    other = ask(fleet.b, TEAM_A, "What is the capital city of Australia?")
    assert other.headers["x-cache"] == "MISS"
    wait_for(
        lambda: (
            ask(fleet.a, TEAM_A, "Which city is the capital of Australia?", **{"no-store": True}).headers[
                "x-cache-layer"
            ]
            == "semantic"
        ),
        what="A serving B's entry",
    )
    # Never to another tenant, never a near-miss.
    assert ask(fleet.b, TEAM_B, "Tell me how far Paris is from Lyon.").headers["x-cache"] == "MISS"
    assert ask(fleet.a, TEAM_A, "How far is Paris from Lyon in miles?").headers["x-cache"] == "MISS"


def settled_vectors(fleet: Fleet, quiet: float = 1.0, timeout: float = 15.0) -> int:
    """The vector count once it stopped changing for ``quiet`` seconds: the misses of the test before
    add their vectors in the background, possibly after it returned."""
    deadline = time.monotonic() + timeout
    count, since = fleet.vectors(), time.monotonic()
    while time.monotonic() - since < quiet and time.monotonic() < deadline:
        time.sleep(0.1)
        now = fleet.vectors()
        if now != count:
            count, since = now, time.monotonic()
    return count


def test_an_invalidated_entry_is_never_served_by_meaning_and_its_vector_goes(fleet: Fleet) -> None:
    before_vectors = settled_vectors(fleet)
    assert ask(fleet.a, TEAM_A, "How many legs does a spider have?").headers["x-cache"] == "MISS"
    wait_for(lambda: fleet.vectors() == before_vectors + 1, what="the vector written")
    hit = ask(fleet.b, TEAM_A, "How many legs do spiders have?", **{"no-store": True})
    assert hit.headers.get("x-cache-layer") == "semantic"
    # Invalidate the model group on A (an O(1) counter in the shared backend, seen by B as well).
    deleted = httpx.delete(
        f"{fleet.a.url}/v1/cache/llama3.2", headers={"Authorization": f"Bearer {fleet.a.master_key}"}
    )
    assert deleted.status_code == 200
    calls = fleet.upstream_calls()
    after = ask(fleet.b, TEAM_A, "How many legs do spiders have?", **{"no-store": True})
    assert after.headers["x-cache"] == "MISS"  # the vector still pointed at it: the region re-checked
    assert fleet.upstream_calls() == calls + 1

    # The dead entry's vectors are deleted (B found them dead), not only left to expire. The delete is
    # best effort, in the background, within the backend deadline: a lookup that finds the dead vector
    # again deletes it again (on a loaded machine the first delete may miss its 250 ms deadline).
    def deleted() -> bool:
        if fleet.vectors() < before_vectors + 1:
            return True
        ask(fleet.b, TEAM_A, "How many legs do spiders have?", **{"no-store": True})
        return False

    wait_for(deleted, timeout=20.0, what="dead vectors deleted")


@dataclass
class Load:
    """A few clients asking paraphrases of cached questions with ``no-store``: every request misses the
    exact layer and looks the semantic index up; a miss is answered upstream and stores nothing."""

    proxy: ProxyProcess
    prompts: list[str]
    results: list[tuple[float, float, int, str]] = field(default_factory=list)  # (t, ms, status, layer)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self, clients: int = 3) -> list[threading.Thread]:
        threads = [threading.Thread(target=self._client, args=(i,), daemon=True) for i in range(clients)]
        for thread in threads:
            thread.start()
        return threads

    def _client(self, index: int) -> None:
        with httpx.Client(timeout=30) as http:
            n = index
            while not self.stop.is_set():
                body = {
                    **chat_body(self.prompts[n % len(self.prompts)], temperature=0),
                    "cache": {"no-store": True},
                }
                started = time.perf_counter()
                try:
                    response = http.post(
                        f"{self.proxy.url}/v1/chat/completions",
                        json=body,
                        headers={"Authorization": f"Bearer {TEAM_A}"},
                    )
                    status = response.status_code
                    outcome = response.headers.get("x-cache-layer") or response.headers.get("x-cache", "?")
                except httpx.HTTPError:
                    status, outcome = 0, "error"
                self.results.append(
                    (time.monotonic(), (time.perf_counter() - started) * 1000, status, outcome)
                )
                n += 1
                time.sleep(0.02)

    def window(self, start: float, end: float) -> list[tuple[float, float, int, str]]:
        return [r for r in self.results if start <= r[0] < end]


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def report(name: str, rows: list[tuple[float, float, int, str]]) -> str:
    latencies = [r[1] for r in rows] or [0.0]
    outcomes = {o: sum(1 for r in rows if r[3] == o) for o in {r[3] for r in rows}}
    return (
        f"{name}: {len(rows)} requests, failures {sum(1 for r in rows if r[2] != 200)}, "
        f"p50 {statistics.median(latencies):.0f} ms, p99 {p99(latencies):.0f} ms, outcomes {outcomes}"
    )


# (question, paraphrases): each is asked once plainly (MISS: stored and indexed), then only its
# paraphrases, with no-store. Every question is used once per module (afterwards it is an exact hit).
ROUTER = (
    "How do I reset a forgotten Wi-Fi router password?",
    [
        "How can I reset a forgotten Wi-Fi router password?",
        "How do I reset the forgotten password of a Wi-Fi router?",
        "How do you reset a forgotten Wi-Fi router password?",
    ],
)
WATER = (
    "What is the boiling point of water at sea level?",
    [
        "At what temperature does water boil at sea level?",
        "What's the boiling point of water at sea level?",
        "Tell me the boiling point of water at sea level.",
    ],
)
NOVEL = (
    "Who wrote the novel Pride and Prejudice?",
    [
        "Who is the author of the novel Pride and Prejudice?",
        "Who was the writer of the novel Pride and Prejudice?",
        "Tell me who wrote the novel Pride and Prejudice.",
    ],
)
# fault -> (seeded before the outage, seeded after it: a restarted server is empty)
QUESTIONS = {"killed": (ROUTER, WATER), "hung": (NOVEL, None)}


@pytest.mark.parametrize("fault", ["killed", "hung"])
def test_search_server_outage_fails_no_request(
    fleet: Fleet, fault: str, capsys: pytest.CaptureFixture[str]
) -> None:
    first, later = QUESTIONS[fault]
    assert ask(fleet.a, TEAM_A, first[0]).headers["x-cache"] == "MISS"
    wait_for(
        lambda: (
            ask(fleet.a, TEAM_A, first[1][0], **{"no-store": True}).headers.get("x-cache-layer") == "semantic"
        ),
        what="the question served by meaning",
    )
    load = Load(fleet.a, first[1] + (later[1] if later else []))
    threads = load.run()
    recovered_at = None
    try:
        time.sleep(3)
        outage_start = time.monotonic()
        if fault == "killed":
            fleet.search.stop()
        else:
            assert fleet.search.pid is not None
            os.kill(fleet.search.pid, signal.SIGSTOP)
        time.sleep(6)
        outage_end = time.monotonic()
        if fault == "killed":
            fleet.search = fleet.factory(fleet.search.port)  # empty: no index, no vectors
        else:
            assert fleet.search.pid is not None
            os.kill(fleet.search.pid, signal.SIGCONT)
        # A restarted server is empty: new answers must be indexed (each asked plainly once: MISS,
        # stored, indexed once the proxy's breaker lets calls through again; the others hit it).
        # One question per breaker period at most: the proxy's circuit breaker may still be open
        # (reset_after 5 s) when the server is back, and an answer stored then is not indexed.
        unasked = ([later[0], *later[1]] if later is not None else [])[::-1]
        asked_at = -math.inf
        while time.monotonic() - outage_end < 40:
            time.sleep(0.5)
            if any(r[3] == "semantic" for r in load.window(outage_end, time.monotonic())):
                recovered_at = time.monotonic()
                break
            if unasked and fleet.vectors() == 0 and time.monotonic() - asked_at > BREAKER_RESET_S + 1:
                ask(fleet.a, TEAM_A, unasked.pop())
                asked_at = time.monotonic()
        time.sleep(2)
        after_end = time.monotonic()
    finally:
        if fault == "hung" and fleet.search.pid is not None:
            os.kill(fleet.search.pid, signal.SIGCONT)
        load.stop.set()
        for thread in threads:
            thread.join(30)

    before = load.window(0, outage_start)
    during = load.window(outage_start + 0.5, outage_end)  # requests in flight at the fault excluded
    after = load.window(recovered_at or outage_end, after_end)
    with capsys.disabled():
        print(f"\n[search {fault}] " + report("before", before))
        print(f"[search {fault}] " + report("during", during))
        print(f"[search {fault}] " + report("after", after))
        recovery = f"{recovered_at - outage_end:.1f} s" if recovered_at else "not within 40 s"
        print(f"[search {fault}] semantic hits resumed {recovery} after the search server came back")
        print(f"[search {fault}] semantic stats of A: {stats(fleet.a)['layers'].get('semantic')}")
    assert all(r[2] == 200 for r in load.results), "a client request failed"
    assert any(r[3] == "semantic" for r in before)
    assert len(during) >= 10
    assert not any(r[3] == "semantic" for r in during)  # misses, answered upstream
    misses_before = [r[1] for r in load.results if r[3] == "MISS"] or [UPSTREAM_MS + PROXY_OVERHEAD_MS]
    pipeline = max(UPSTREAM_MS + PROXY_OVERHEAD_MS, statistics.median(misses_before))
    assert p99([r[1] for r in during]) <= DEADLINE_MS + 2 * pipeline
    assert recovered_at is not None, "semantic hits did not resume after the search server came back"
