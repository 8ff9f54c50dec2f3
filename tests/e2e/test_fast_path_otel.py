"""The opt-in auth and setup reuse with LiteLLM's own OpenTelemetry callback on (``callbacks: ["otel"]``,
console exporter) and LiteLLM's own key auth (the master key, no custom_auth): LiteLLM's auth then puts
the request's trace span on the auth object and in the request state. A remembered verdict must not
carry the first request's span, and must still be remembered: a live span cannot be deep-copied, and
before the span was dropped first every hit here fell through to the normal pipeline. A remembered
setup must still be kept and reused. The OTel callback observes every hit, so hits are logged."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from litellm_cache_plugin.simulator import SimulatorThread
from tests.e2e.fast_path_support import FastClient, _proxy, chat_body, unique
from tools.runner import running

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def otel(simulator: SimulatorThread, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastClient]:
    proxy = _proxy(
        simulator,
        tmp_path_factory.mktemp("fast-path-otel"),
        "otel",
        {"backend": "memory://", "ttl": 600, "fast_path": {"auth_reuse_seconds": 30}},
        custom_auth=False,
        recorder=False,
        extra_callbacks=("otel",),
        env={"OTEL_EXPORTER": "console", "OTEL_SERVICE_NAME": "lcp-fast-path-otel"},
    )
    with running([proxy], timeout=240):
        client = FastClient(proxy, simulator)
        yield client
        client.close()


def test_reused_verdicts_and_setups_with_litellm_tracing_on(otel: FastClient) -> None:
    key = otel.proxy.master_key
    body = chat_body(unique("Traced and cached."), temperature=0)
    first = otel.warm(key, body)
    counters = ("hit", "auth_reused", "setup_reused", "hit_not_logged", "pass_error")
    before = {name: otel.counter("fast_path", "llama3.2", name) for name in counters}
    for _ in range(4):
        hit = otel.chat(key, body)
        assert hit.status_code == 200 and hit.headers["x-cache"] == "HIT", hit.text
        assert (
            hit.json()["choices"][0]["message"]["content"] == first.json()["choices"][0]["message"]["content"]
        )
    after = {name: otel.counter("fast_path", "llama3.2", name) for name in counters}
    assert after["hit"] == before["hit"] + 4  # every one served by the fast path, none fell through
    assert after["pass_error"] == before["pass_error"]
    # The warm-up's hit remembered the verdict (so its span did not stop that): all four reuse it, and
    # from the second on the setup is reused too.
    assert after["auth_reused"] == before["auth_reused"] + 4
    assert after["setup_reused"] >= before["setup_reused"] + 3
    assert after["hit_not_logged"] == before["hit_not_logged"]  # LiteLLM's OTel logger sees each hit
