"""Set-up and helpers shared by the end-to-end tests of verified semantic matches
(``test_semantic_verified.py``: judge mode; ``test_semantic_verified_agreement.py``: agreement and
both modes): a real proxy with the semantic layer in verified mode, in front of the simulator with a
judge model that answers from labelled pairs (:data:`SAME`, :data:`TRAP`)."""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import httpx
import orjson
import pytest

from litellm_cache_plugin.simulator import SimulatorConfig, SimulatorThread
from litellm_cache_plugin.simulator.config import EquivalencePair, SimJudge, SimModel
from tests.e2e.conftest import _with_prefix, chat_body
from tools.runner import DEMO_AUTH_MODULE, ProxyProcess, proxy_config

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

CHAT_MODEL = "llama3.2:1b"
JUDGE_MODEL = "judge:1b"
DEADLINE_S = 30.0


def canonical(a: str, b: str) -> str:
    return f"How far is {a} from {b}?"


def paraphrase(a: str, b: str) -> str:
    return f"Tell me how far {a} is from {b}."


# The judge's ground truth: these paraphrases ask the same thing as their canonical prompt...
SAME = [("Paris", "Lyon"), ("Rome", "Milan"), ("Berlin", "Munich"), ("Vienna", "Prague"), ("Oslo", "Bergen")]
# ... and this one, near enough for the threshold and the guard, is labelled a trap.
TRAP = ("Madrid", "Seville")


@contextlib.contextmanager
def start_verified_proxy(
    request: pytest.FixtureRequest,
    base: Path,
    backend_kind: str,
    verify: dict[str, Any],
    *,
    intent_answers: bool = False,
    unknown: Literal["yes", "no"] = "no",
) -> Iterator[tuple[ProxyProcess, SimulatorThread]]:
    """A proxy whose ``layers.semantic.verify`` is ``verify``, with a judge model group ``judge``,
    over ``memory://`` or Redis (``backend_kind``; a unique prefix per run). ``intent_answers``: the
    simulator answers the prompts labelled "same" alike; ``unknown``: its judge's answer to a pair
    that is not labelled."""
    if backend_kind == "redis":
        backend = _with_prefix(request.getfixturevalue("redis_url"), f"verified-{uuid.uuid4().hex[:8]}")
    else:
        backend = "memory://"
    with start_verified_simulator(base, intent_answers=intent_answers, unknown=unknown) as sim:
        proxy = ProxyProcess(
            verified_proxy_config(sim, {"backend": backend}, verify),
            base / "proxy",
            extra_files={"demo_auth.py": DEMO_AUTH_MODULE},
            name=f"sem-verified-{verify.get('mode')}-{backend_kind}",
        )
        with proxy:
            yield proxy, sim


@contextlib.contextmanager
def start_verified_simulator(
    base: Path, *, intent_answers: bool = False, unknown: Literal["yes", "no"] = "no"
) -> Iterator[SimulatorThread]:
    """The simulator with the chat model, the embedding model and the judge model :data:`JUDGE_MODEL`
    answering from the labelled pairs (:data:`SAME`, :data:`TRAP`)."""
    equivalence = base / "equivalence.jsonl"
    lines = [
        EquivalencePair(a=canonical(*pair), b=paraphrase(*pair), label="same").model_dump_json()
        for pair in SAME
    ]
    lines.append(
        EquivalencePair(a=canonical(*TRAP), b=paraphrase(*TRAP), label="different").model_dump_json()
    )
    equivalence.write_text("\n".join(lines) + "\n", encoding="utf-8")
    sim_config = SimulatorConfig(
        latency_ms=50,
        models=[
            SimModel(name=CHAT_MODEL),
            SimModel(name="nomic-embed-text", kind="embed"),
            SimModel(name=JUDGE_MODEL),
        ],
        judge=SimJudge(
            models=[JUDGE_MODEL],
            equivalence_file=str(equivalence),
            intent_answers=intent_answers,
            unknown=unknown,
        ),
    )
    with SimulatorThread(sim_config) as sim:
        yield sim


def verified_proxy_config(
    sim: SimulatorThread, section: dict[str, Any], verify: dict[str, Any]
) -> dict[str, Any]:
    """A proxy config in front of ``sim``: the plugin's ``section`` (its ``backend`` at least) with the
    semantic layer in verified mode ``verify``, and the judge model group ``judge``."""
    config = proxy_config(sim.url, {**section, "layers": {"semantic": {"enabled": True, "verify": verify}}})
    config["model_list"].append(
        {
            "model_name": "judge",
            "litellm_params": {"model": f"ollama_chat/{JUDGE_MODEL}", "api_base": sim.url},
        }
    )
    return config


# --- helpers ----------------------------------------------------------------------------------------


def ask(proxy: ProxyProcess, key: str, prompt: str, headers: dict[str, str] | None = None) -> httpx.Response:
    response = httpx.post(
        f"{proxy.url}/v1/chat/completions",
        json=chat_body(prompt, temperature=0),
        headers={"Authorization": f"Bearer {key}", **(headers or {})},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    return response


def ask_streamed(proxy: ProxyProcess, key: str, prompt: str) -> tuple[httpx.Headers, str]:
    """A streamed request: its response headers and the text of its content deltas."""
    pieces: list[str] = []
    with httpx.stream(
        "POST",
        f"{proxy.url}/v1/chat/completions",
        json=chat_body(prompt, temperature=0, stream=True),
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
    ) as response:
        assert response.status_code == 200, response.read()
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            for choice in orjson.loads(line[len("data: ") :]).get("choices") or []:
                piece = (choice.get("delta") or {}).get("content")
                if isinstance(piece, str):
                    pieces.append(piece)
        return response.headers, "".join(pieces)


def content(response: httpx.Response) -> str:
    return str(response.json()["choices"][0]["message"]["content"])


def sim_requests(sim: SimulatorThread) -> dict[str, Any]:
    return httpx.get(f"{sim.url}/_sim/stats", timeout=10).json()  # type: ignore[no-any-return]


def upstream(sim: SimulatorThread) -> int:
    """Generations of the chat model (the judge's calls are counted apart)."""
    return int(sim_requests(sim)["requests_by_model"].get(CHAT_MODEL, 0))


def judge_calls(sim: SimulatorThread) -> int:
    return int(sim_requests(sim)["requests"]["judge"])


def stats(proxy: ProxyProcess, layer: str, what: str) -> int:
    response = httpx.get(
        f"{proxy.url}/v1/cache/stats", headers={"Authorization": f"Bearer {proxy.master_key}"}, timeout=10
    )
    response.raise_for_status()
    return int(response.json()["layers"].get(layer, {}).get("llama3.2", {}).get(what, 0))


def wait_until(probe: Callable[[], bool], what: str, deadline: float = DEADLINE_S) -> None:
    """Poll ``probe`` until it holds (background writes and verifications), failing after ``deadline``."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if probe():
            return
        time.sleep(0.1)
    assert probe(), f"timed out waiting for: {what}"


def cache_canonical(proxy: ProxyProcess, key: str, prompt: str, headers: dict[str, str] | None = None) -> str:
    """Ask ``prompt`` (a MISS) and wait until its answer is stored and findable; returns the answer."""
    stores = stats(proxy, "exact", "store")
    first = ask(proxy, key, prompt, headers)
    assert first.headers["x-cache"] == "MISS"
    wait_until(lambda: stats(proxy, "exact", "store") > stores, "the canonical answer stored")
    return content(first)


def upstream_miss(
    proxy: ProxyProcess, sim: SimulatorThread, key: str, prompt: str, headers: dict[str, str] | None = None
) -> httpx.Response:
    """Ask a prompt that must not be served from the cache: a MISS, answered by one upstream call."""
    calls = upstream(sim)
    response = ask(proxy, key, prompt, headers)
    assert response.headers["x-cache"] == "MISS"
    assert upstream(sim) == calls + 1
    return response


def verify_paraphrase(proxy: ProxyProcess, sim: SimulatorThread, key: str, prompt: str) -> httpx.Response:
    """Ask a paraphrase of a cached prompt: answered upstream (MISS), then verified in the background."""
    verified = stats(proxy, "semantic", "verified")
    first = upstream_miss(proxy, sim, key, prompt)
    wait_until(lambda: stats(proxy, "semantic", "verified") > verified, "the paraphrase verified")
    return first


def alias_hit(proxy: ProxyProcess, sim: SimulatorThread, key: str, prompt: str, answer: str) -> None:
    calls, judged = upstream(sim), judge_calls(sim)
    hit = ask(proxy, key, prompt)
    assert hit.headers["x-cache"] == "HIT"
    assert hit.headers["x-cache-layer"] == "semantic-verified"
    assert content(hit) == answer
    assert upstream(sim) == calls
    assert judge_calls(sim) == judged


def admin_delete(proxy: ProxyProcess, path: str) -> None:
    response = httpx.delete(
        f"{proxy.url}{path}", headers={"Authorization": f"Bearer {proxy.master_key}"}, timeout=30
    )
    response.raise_for_status()
