"""Issue 15: a fast-path hit that no LiteLLM callback would see is not logged (``fast_path/observers``).

The "reuse" proxy of ``fp_proxies`` has no logging integration (no success recorder): LiteLLM's own
callbacks there ignore a zero-cost cache hit, so its hits skip LiteLLM's logging and are counted as
``hit_not_logged``. The "memory" proxy has a recorder: its hits are logged (``test_fast_path``). A key
with a model_max_budget makes LiteLLM's model-budget limiter an observer: its hits are logged even on
the proxy without a recorder."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from litellm_cache_plugin.simulator import SimulatorThread
from tests.e2e.fast_path_support import MODEL_BUDGET, OK, REUSE, FastClient, chat_body, fast_client, unique
from tools.runner import ProxyProcess

pytestmark = pytest.mark.e2e


@pytest.fixture
def unobserved(fp_proxies: dict[str, ProxyProcess], simulator: SimulatorThread) -> Iterator[FastClient]:
    yield from fast_client(fp_proxies, simulator, "reuse")


@pytest.fixture
def observed(fp_proxies: dict[str, ProxyProcess], simulator: SimulatorThread) -> Iterator[FastClient]:
    yield from fast_client(fp_proxies, simulator, "memory")


def test_hits_nobody_observes_are_served_and_not_logged(unobserved: FastClient) -> None:
    body = chat_body(unique("Which callbacks see a hit?"), temperature=0)
    unobserved.warm(REUSE, body)
    served = unobserved.fast_hits()
    skipped = unobserved.counter("fast_path", "llama3.2", "hit_not_logged")
    upstream = unobserved.upstream_calls()
    exact_hits = unobserved.counter("exact", "llama3.2", "hit")
    first = unobserved.chat(REUSE, body)
    for _ in range(3):
        hit = unobserved.chat(REUSE, body)
        assert hit.status_code == 200 and hit.headers["x-cache"] == "HIT"
        assert hit.json()["id"] == first.json()["id"]
        assert hit.json()["choices"][0]["message"]["content"]
    assert unobserved.fast_hits() == served + 4
    assert unobserved.counter("fast_path", "llama3.2", "hit_not_logged") == skipped + 4
    assert unobserved.upstream_calls() == upstream
    # The plugin's own accounting counts every one of them.
    assert unobserved.counter("exact", "llama3.2", "hit") == exact_hits + 4


def test_a_model_budget_key_s_hits_are_logged(unobserved: FastClient) -> None:
    body = chat_body(unique("A key with a model budget."), temperature=0)
    unobserved.warm(MODEL_BUDGET, body)
    served = unobserved.fast_hits()
    skipped = unobserved.counter("fast_path", "llama3.2", "hit_not_logged")
    for _ in range(3):
        hit = unobserved.chat(MODEL_BUDGET, body)
        assert hit.status_code == 200 and hit.headers["x-cache"] == "HIT"
    assert unobserved.fast_hits() == served + 3
    assert unobserved.counter("fast_path", "llama3.2", "hit_not_logged") == skipped


def test_a_proxy_with_a_success_callback_logs_every_hit(observed: FastClient) -> None:
    body = chat_body(unique("Logged because someone listens."), temperature=0)
    observed.warm(OK, body)
    served = observed.fast_hits()
    skipped = observed.counter("fast_path", "llama3.2", "hit_not_logged")
    call_ids = [observed.chat(OK, body).headers["x-litellm-call-id"] for _ in range(3)]
    assert observed.fast_hits() == served + 3
    assert observed.counter("fast_path", "llama3.2", "hit_not_logged") == skipped

    def logged() -> set[str]:
        return {str(r["call_id"]) for r in observed.success_records() if r["cache_hit"] is True}

    assert observed.wait_for(lambda: set(call_ids) <= logged()), "a hit never reached the recorder"
