"""Verified semantic matches across replicas: two real proxy processes sharing one real Redis, one
simulator (chat and judge models). Both replicas meet the same near-match pair at about the same time,
and the pair's verification lock in the shared store makes the judge see exactly one call for it
(the other replica's job ends as ``verify_deduplicated``); both replicas then serve the alias.

Single flight is off here: with it, two identical concurrent misses are coalesced into one upstream
call, and only the replica that made it verifies. Without it (or once its timeout has passed, with
a model slower than ``single_flight.timeout``) each replica answers the paraphrase upstream, stores
it and verifies the pair: the case the lock is for.

Deterministic rather than timed: the simulator answers slowly (``latency_ms``, which the judge model
shares) while both replicas go upstream, so each stores its answer and starts its verification well
within the other's judge call; the test then waits on the proxies' counters until both jobs ended."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import pytest

from litellm_cache_plugin.simulator import SimulatorThread
from tests.e2e.conftest import TEAM_A, _with_prefix, chat_body
from tests.e2e.semantic_verified_support import (
    SAME,
    alias_hit,
    ask,
    cache_canonical,
    canonical,
    content,
    judge_calls,
    paraphrase,
    start_verified_simulator,
    stats,
    upstream,
    verified_proxy_config,
    wait_until,
)
from tools.runner import DEMO_AUTH_MODULE, ProxyProcess, running, strong_master_key

pytestmark = pytest.mark.e2e

pytest.importorskip("onnxruntime", reason="the [semantic] extra is not installed")

# Slow enough that both replicas' verifications start within the first one's judge call on a loaded
# 2-core machine (each replica stores its answer within a few ms of the other: both upstream calls
# start together and last this long).
SLOW_MS = 2000.0
# What ends a verification job, as counted in the `semantic` row.
JOB_ENDS = ("verified", "rejected", "judge_failed", "verify_target_gone", "verify_deduplicated")


@pytest.fixture(scope="module")
def verified_replicas(
    request: pytest.FixtureRequest, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[list[ProxyProcess], SimulatorThread, str]]:
    """Two replicas in judge mode on one Redis (a unique prefix per run); yields them, the simulator
    and the backend URL."""
    base = tmp_path_factory.mktemp("semantic-verified-replicas")
    backend = _with_prefix(redis_url, f"verified-replicas-{uuid.uuid4().hex[:8]}")
    section = {
        "backend": backend,
        "single_flight": {"enabled": False},
        # generous deadline: two proxies, the simulator and the embedder share 2 cores
        "backend_timeout_ms": 1000,
    }
    master_key = strong_master_key()
    with start_verified_simulator(base) as sim:
        config = verified_proxy_config(sim, section, {"mode": "judge", "judge_model": "judge"})
        replicas = [
            ProxyProcess(
                config,
                Path(base / f"r{i}"),
                master_key=master_key,
                extra_files={"demo_auth.py": DEMO_AUTH_MODULE},
                name=f"sem-verified-replica-{i}",
            )
            for i in range(2)
        ]
        with running(replicas, timeout=180):
            yield replicas, sim, backend


def indexed_records(backend: str) -> int:
    """Semantic index records (``<prefix><namespace>:s:{scope}:<n>``) in the shared Redis: what a
    replica's index loads from when it syncs."""
    import redis

    parts = urlsplit(backend)
    query = dict(parse_qsl(parts.query))
    prefix = query.pop("prefix", "")
    client = redis.Redis.from_url(urlunsplit(parts._replace(query=urlencode(query))))
    try:
        keys = list(client.scan_iter(match=f"{prefix}lcp:s:*", count=1000))
    finally:
        client.close()
    return sum(1 for key in keys if not key.endswith(b":seq"))


def total(replicas: list[ProxyProcess], *what: str) -> int:
    return sum(stats(proxy, "semantic", name) for proxy in replicas for name in what)


def set_latency(sim: SimulatorThread, ms: float) -> None:
    httpx.post(f"{sim.url}/_sim/config", json={"latency_ms": ms}, timeout=10).raise_for_status()


async def at_once(replicas: list[ProxyProcess], prompt: str) -> list[httpx.Response]:
    """``prompt`` sent to every replica at the same time."""
    async with httpx.AsyncClient(timeout=60) as client:
        return await asyncio.gather(
            *(
                client.post(
                    f"{proxy.url}/v1/chat/completions",
                    json=chat_body(prompt, temperature=0),
                    headers={"Authorization": f"Bearer {TEAM_A}"},
                )
                for proxy in replicas
            )
        )


def test_replicas_meeting_one_pair_call_the_judge_once_and_both_serve_the_alias(
    verified_replicas: tuple[list[ProxyProcess], SimulatorThread, str],
) -> None:
    replicas, sim, backend = verified_replicas
    first, second = replicas
    pair = SAME[0]
    records = indexed_records(backend)
    answer = cache_canonical(first, TEAM_A, canonical(*pair))
    # The canonical prompt is findable by meaning from the shared store (the other replica syncs its
    # index from there on its next semantic lookup).
    wait_until(lambda: indexed_records(backend) > records, "the canonical prompt indexed in Redis")

    judged, calls = judge_calls(sim), upstream(sim)
    ended = total(replicas, *JOB_ENDS)
    set_latency(sim, SLOW_MS)
    try:
        responses = asyncio.run(at_once(replicas, paraphrase(*pair)))
        # Both were near matches, never served unverified: each replica answered upstream.
        assert [r.status_code for r in responses] == [200, 200]
        assert [r.headers["x-cache"] for r in responses] == ["MISS", "MISS"]
        assert all(content(r) != answer for r in responses)
        assert upstream(sim) == calls + 2
        # Asked again a few times (while the pair is being judged, or just after): each replica
        # answers from the paraphrase's own entry, or from the alias once it exists; never from the
        # unverified near match, never upstream, and no new verification starts.
        for _ in range(3):
            for response in asyncio.run(at_once(replicas, paraphrase(*pair))):
                assert response.headers["x-cache"] == "HIT"
                layer = response.headers["x-cache-layer"]
                assert (layer, content(response) == answer) in (
                    ("exact", False),
                    ("semantic-verified", True),
                ), layer
        assert upstream(sim) == calls + 2
        # Both replicas' jobs end: one judged the pair, the other found its lock held.
        wait_until(lambda: total(replicas, *JOB_ENDS) >= ended + 2, "both replicas' verifications ended")
    finally:
        set_latency(sim, 50)
    assert judge_calls(sim) == judged + 1  # one judge call for the pair, across both replicas
    assert total(replicas, "judged") == 1
    assert total(replicas, "verified") == 1
    assert total(replicas, "verify_deduplicated") == 1
    assert total(replicas, "judge_failed", "verify_unlocked") == 0
    assert upstream(sim) == calls + 2

    # Both replicas serve the alias, with no upstream and no judge call, again and again.
    for _ in range(2):
        for proxy in replicas:
            alias_hit(proxy, sim, TEAM_A, paraphrase(*pair), answer)
    concurrent = asyncio.run(at_once(replicas, paraphrase(*pair)))
    assert [r.headers.get("x-cache-layer") for r in concurrent] == ["semantic-verified"] * 2
    assert [content(r) for r in concurrent] == [answer, answer]
    assert judge_calls(sim) == judged + 1
    assert upstream(sim) == calls + 2
    assert ask(second, TEAM_A, canonical(*pair)).headers["x-cache"] == "HIT"
