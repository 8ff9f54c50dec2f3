"""``fast_path.setup_reuse_seconds`` (on by default) through a real proxy with default settings: LiteLLM's
auth still runs on every hit (custom_auth is asked each time and a revoked key is refused at once), and
an identical request whose verdict is equal reuses the route's request setup kept for it (kept once an
identical request was seen twice); a request that differs, or comes with another credential, runs its
own. (A verdict with a budget
reservation is never kept: ``tests/test_fast_path_verdicts.py``; custom_auth keys get none here.)"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from litellm_cache_plugin.simulator import SimulatorThread
from tests.e2e.fast_path_support import (
    OK,
    OK_2,
    REUSE,
    REUSE_2,
    FastClient,
    chat_body,
    fast_client,
    identical_hits,
    unique,
)
from tools.runner import ProxyProcess

pytestmark = pytest.mark.e2e


@pytest.fixture
def defaults(fp_proxies: dict[str, ProxyProcess], simulator: SimulatorThread) -> Iterator[FastClient]:
    yield from fast_client(fp_proxies, simulator, "memory")


def test_identical_hits_run_auth_every_time_and_reuse_the_setup(defaults: FastClient) -> None:
    body = chat_body(unique("What is a victim cache?"), temperature=0)
    defaults.warm(REUSE, body)
    first = defaults.chat(REUSE, body)  # its setup is remembered now (if the warm-up's was not)
    assert first.status_code == 200 and first.headers["x-cache"] == "HIT"
    calls, served, setups = defaults.auth_calls(REUSE), defaults.fast_hits(), defaults.setups_reused()
    call_ids = identical_hits(defaults, REUSE, body, first, 5)
    assert defaults.fast_hits() == served + 5
    assert defaults.auth_calls(REUSE) == calls + 5  # LiteLLM's auth (and custom_auth) ran for each
    assert defaults.setups_reused() == setups + 5
    assert len(call_ids) == 5 and first.headers["x-litellm-call-id"] not in call_ids


def test_a_revoked_key_is_refused_at_once_despite_a_remembered_setup(defaults: FastClient) -> None:
    body = chat_body(unique("What is a write-allocate cache?"), temperature=0)
    defaults.warm(REUSE_2, body)
    defaults.chat(REUSE_2, body)
    setups = defaults.setups_reused()
    assert defaults.chat(REUSE_2, body).headers["x-cache"] == "HIT"
    assert defaults.setups_reused() == setups + 1
    defaults.revoke(REUSE_2)
    refused = defaults.chat(REUSE_2, body)
    assert refused.status_code == 401 and "revoked key" in refused.text
    assert defaults.setups_reused() == setups + 1


def test_a_request_that_differs_runs_its_own_setup(defaults: FastClient) -> None:
    body = chat_body(unique("What is a cache set?"), temperature=0)
    other = chat_body(unique("What is a cache tag array?"), temperature=0)
    defaults.warm(REUSE, body)
    noted = {"x-client-note": "warm-up"}
    first = defaults.chat(REUSE, other, headers=noted)
    assert first.status_code == 200
    assert defaults.wait_for(lambda: defaults.chat(REUSE, other, headers=noted).headers["x-cache"] == "HIT")
    defaults.chat(REUSE, body)
    assert defaults.chat(REUSE, body).headers["x-cache"] == "HIT"
    setups = defaults.setups_reused()
    traced = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    served = defaults.fast_hits()
    for response in (
        defaults.chat(REUSE, other),  # another body
        defaults.chat(REUSE, body, headers=traced),  # another header (setup copies trace headers)
        defaults.chat(REUSE, body, headers={"x-client-note": "a"}),  # any other header
    ):
        assert response.status_code == 200 and response.headers["x-cache"] == "HIT"
    assert defaults.fast_hits() == served + 3  # all three on the fast path...
    assert defaults.setups_reused() == setups  # ...each with its own setup (then remembered)
    assert defaults.chat(REUSE, body).headers["x-cache"] == "HIT"
    assert defaults.setups_reused() == setups + 1


def test_another_credential_runs_its_own_setup(defaults: FastClient) -> None:
    body = chat_body(unique("What is a cache bank conflict?"), temperature=0)
    defaults.warm(OK, body)
    defaults.chat(OK, body)
    setups = defaults.setups_reused()
    # Same body, same team: the other key's hits run their own setup (the first is noted, the second
    # kept), the third reuses the second's.
    for expected in (setups, setups, setups + 1):
        hit = defaults.chat(OK_2, body)
        assert hit.status_code == 200 and hit.headers["x-cache"] == "HIT"
        assert defaults.setups_reused() == expected
