"""When a remembered auth verdict may stand in for LiteLLM's auth (``fast_path.auth_reuse_seconds``), and
when the request setup done with it may be reused."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from litellm_cache_plugin.integrations.fast_path.verdicts import (
    expiry_of,
    headers_digest,
    refresh_setup,
    setup_key,
    setup_reusable_with,
    verdict_reusable,
)
from litellm_cache_plugin.settings import SettingsError, settings_from_mapping
from tests.fake_clock import FakeClock

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=timezone.utc)


@dataclass
class Auth:
    expires: Any = None
    blocked: Any = None


def test_within_the_window_only() -> None:
    assert verdict_reusable(Auth(), age=0.0, window=2.0, now=NOW)
    assert verdict_reusable(Auth(), age=1.99, window=2.0, now=NOW)
    assert not verdict_reusable(Auth(), age=2.0, window=2.0, now=NOW)
    assert not verdict_reusable(Auth(), age=-1.0, window=2.0, now=NOW)  # a clock that went back
    assert not verdict_reusable(Auth(), age=0.0, window=0.0, now=NOW)  # off


def test_never_a_blocked_key() -> None:
    assert not verdict_reusable(Auth(blocked=True), age=0.0, window=2.0, now=NOW)
    assert verdict_reusable(Auth(blocked=False), age=0.0, window=2.0, now=NOW)


@pytest.mark.parametrize(
    ("expires", "reusable"),
    [
        (NOW + timedelta(seconds=1), True),
        (NOW - timedelta(seconds=1), False),
        (NOW, False),
        ((NOW + timedelta(hours=1)).isoformat(), True),
        ((NOW - timedelta(hours=1)).isoformat(), False),
        ("2026-12-02T13:00:00Z", True),
        (datetime(2026, 12, 2, 13, 0), True),  # naive: read as UTC
        (datetime(2026, 12, 2, 11, 0), False),
        ("next tuesday", False),  # unreadable: never reused
        (12345, False),
    ],
)
def test_an_expired_or_unreadable_expiry_is_never_reused(expires: Any, reusable: bool) -> None:
    assert verdict_reusable(Auth(expires=expires), age=0.0, window=2.0, now=NOW) is reusable


def test_expiry_of() -> None:
    assert expiry_of(Auth()) is None
    assert expiry_of(Auth(expires="bad")) is False
    assert expiry_of(Auth(expires="2026-12-02T13:00:00+00:00")) == datetime(
        2026, 12, 2, 13, tzinfo=timezone.utc
    )


@pytest.mark.parametrize(
    ("name", "default", "valid"), [("auth_reuse_seconds", 0, 1.5), ("setup_reuse_seconds", 5, 0)]
)
def test_setting_bounds(name: str, default: float, valid: float) -> None:
    assert getattr(settings_from_mapping({}, environ={}).fast_path, name) == default
    assert getattr(settings_from_mapping({"fast_path": {name: valid}}, environ={}).fast_path, name) == valid
    for bad in (-1, 61, "soon"):
        with pytest.raises(SettingsError, match=name):
            settings_from_mapping({"fast_path": {name: bad}}, environ={})


def test_the_header_digest_ignores_only_per_request_headers() -> None:
    base = [(b"authorization", b"Bearer sk-1"), (b"content-type", b"application/json")]
    same = headers_digest(base)
    assert headers_digest(list(reversed(base))) == same  # order does not matter
    assert headers_digest([*base, (b"Content-Length", b"120"), (b"traceparent", b"00-ab-cd-01")]) == same
    assert headers_digest([*base, (b"x-stainless-retry-count", b"1")]) == same
    # Anything else is a different verdict key: LiteLLM's auth runs again.
    assert headers_digest([*base, (b"x-litellm-disable-callbacks", b"langfuse")]) != same
    assert headers_digest([*base, (b"x-agent-caller", b"a")]) != headers_digest(
        [*base, (b"x-agent-caller", b"b")]
    )
    # A repeated header counts with every occurrence, and names and values cannot run together.
    assert headers_digest([*base, (b"x-a", b"1"), (b"x-a", b"2")]) != headers_digest([*base, (b"x-a", b"1")])
    assert headers_digest([(b"x-ab", b"c")]) != headers_digest([(b"x-a", b"bc")])


def _reused_auth(memory: Any, fingerprint: str, path: str, headers: list[tuple[bytes, bytes]]) -> Any:
    """What a hit would be handed: a copy of the verdict ``reusable_verdict`` finds, or None."""
    found = memory.reusable_verdict(fingerprint, path, headers)
    return None if found is None else found[1].copy_auth()


async def test_a_remembered_verdict_carries_no_budget_reservation() -> None:
    from litellm.proxy._types import UserAPIKeyAuth

    from litellm_cache_plugin.integrations.fast_path.reuse import ReuseMemory

    settings = settings_from_mapping({"fast_path": {"auth_reuse_seconds": 5}}, environ={})
    owner = ReuseMemory(settings.fast_path)
    auth = UserAPIKeyAuth(api_key="h", team_id="t", budget_reservation={"reserved": 1.0})
    headers = [(b"authorization", b"Bearer sk-1")]
    owner.remember_verdict("fp", "/v1/chat/completions", headers, auth)
    reused = _reused_auth(owner, "fp", "/v1/chat/completions", headers)
    assert reused is not None and reused is not auth
    assert reused.team_id == "t" and reused.budget_reservation is None
    assert auth.budget_reservation == {"reserved": 1.0}  # the original request's own is untouched
    # Nested state edited by one request never reaches the next through the verdict.
    reused.metadata["edited"] = True
    auth.metadata["edited_too"] = True
    again = _reused_auth(owner, "fp", "/v1/chat/completions", headers)
    assert again is not None and "edited" not in again.metadata and "edited_too" not in again.metadata
    # Another route or another header set is another verdict.
    assert _reused_auth(owner, "fp", "/v1/embeddings", headers) is None
    assert _reused_auth(owner, "fp", "/v1/chat/completions", [*headers, (b"x-other", b"1")]) is None
    # A blocked key is never remembered into a reuse.
    owner.remember_verdict("fp2", "/v1/chat/completions", headers, UserAPIKeyAuth(api_key="h", blocked=True))
    assert _reused_auth(owner, "fp2", "/v1/chat/completions", headers) is None


def test_a_remembered_verdict_carries_no_trace_span() -> None:
    from litellm.proxy._types import UserAPIKeyAuth

    from litellm_cache_plugin.integrations.fast_path.reuse import ReuseMemory

    settings = settings_from_mapping({"fast_path": {"auth_reuse_seconds": 5}}, environ={})
    owner = ReuseMemory(settings.fast_path)
    span = object()  # the first request's span: never handed to a later request
    auth = UserAPIKeyAuth(api_key="h", team_id="t", parent_otel_span=span)
    headers = [(b"authorization", b"Bearer sk-1")]
    owner.remember_verdict("fp", "/v1/chat/completions", headers, auth)
    reused = _reused_auth(owner, "fp", "/v1/chat/completions", headers)
    assert reused is not None and reused.parent_otel_span is None
    assert auth.parent_otel_span is span


def test_the_setup_key_covers_everything_setup_reads_of_a_request() -> None:
    headers = [(b"authorization", b"Bearer sk-1"), (b"content-type", b"application/json")]
    body = b'{"model": "m", "messages": []}'
    same = setup_key(headers, "127.0.0.1", b"", body)
    assert setup_key([(b"Authorization", b"Bearer sk-1"), headers[1]], "127.0.0.1", b"", body) == same
    # Unlike the verdict key, trace and request-id headers count: setup copies them into the request.
    assert setup_key([*headers, (b"traceparent", b"00-ab-cd-01")], "127.0.0.1", b"", body) != same
    assert setup_key([*headers, (b"x-request-id", b"r1")], "127.0.0.1", b"", body) != same
    assert setup_key(headers, "127.0.0.2", b"", body) != same  # requester_ip_address
    assert setup_key(headers, None, b"", body) != same
    assert setup_key(headers, "127.0.0.1", b"api-version=1", body) != same
    assert setup_key(headers, "127.0.0.1", b"", body + b" ") != same  # the body's bytes, as sent
    # Parts cannot run together.
    assert setup_key(headers, "127.0.0.1", b"ab", b"c") != setup_key(headers, "127.0.0.1", b"a", b"bc")


def test_refresh_setup_sets_the_request_s_own_time() -> None:
    from datetime import datetime, timezone

    first = datetime(2026, 1, 1, tzinfo=timezone.utc)
    data = {
        "proxy_server_request": {"arrival_time": first.timestamp(), "url": "u"},
        "metadata": {"litellm_received_at": first, "other": 1},
    }
    later = datetime(2026, 1, 2, tzinfo=timezone.utc)
    refresh_setup(data, received_at=later, now=5.0)
    assert data["proxy_server_request"] == {"arrival_time": later.timestamp(), "url": "u"}
    assert data["metadata"] == {"litellm_received_at": later, "other": 1}
    refresh_setup(data, received_at=None, now=5.0)  # a reused hit: auth did not stamp the request
    assert data["proxy_server_request"]["arrival_time"] == 5.0
    assert data["metadata"]["litellm_received_at"] is None
    empty: dict[str, object] = {}
    refresh_setup(empty, received_at=None, now=5.0)  # nothing to refresh: nothing added
    assert empty == {}


def test_a_remembered_setup_is_a_fresh_copy_tied_to_its_verdict() -> None:
    from litellm.proxy._types import UserAPIKeyAuth

    from litellm_cache_plugin.integrations.fast_path.reuse import ReuseMemory

    settings = settings_from_mapping({"fast_path": {"auth_reuse_seconds": 5}}, environ={})
    owner = ReuseMemory(settings.fast_path)
    headers = [(b"authorization", b"Bearer sk-1")]
    owner.remember_verdict("fp", "/v1/chat/completions", headers, UserAPIKeyAuth(api_key="h", team_id="t"))
    found = owner.reusable_verdict("fp", "/v1/chat/completions", headers)
    assert found is not None
    verdict_key, verdict = found
    auth = verdict.copy_auth()
    data = {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "metadata": {"user_api_key_auth": auth},
    }
    assert owner.remembered_setup(verdict_key, verdict, "k") is None
    owner.remember_setup(verdict_key, verdict, "k", data, auth)
    data["messages"][0]["content"] = "edited by a hook"  # after setup: never reaches the memo
    copy = owner.remembered_setup(verdict_key, verdict, "k")
    assert copy is not None
    again_data, again_auth = copy
    assert again_data["messages"][0]["content"] == "hi"
    assert again_data["metadata"]["user_api_key_auth"] is again_auth  # one object, as setup left it
    assert again_auth is not auth and again_auth.team_id == "t"
    again_data["metadata"]["x"] = 1
    third = owner.remembered_setup(verdict_key, verdict, "k")
    assert third is not None and "x" not in third[0]["metadata"]
    assert owner.remembered_setup(verdict_key, verdict, "other key") is None
    # A newer verdict for the same key does not inherit the older one's setups.
    owner.remember_verdict("fp", "/v1/chat/completions", headers, UserAPIKeyAuth(api_key="h", team_id="t"))
    newer = owner.reusable_verdict("fp", "/v1/chat/completions", headers)
    assert newer is not None and newer[1] is not verdict
    assert owner.remembered_setup(newer[0], newer[1], "k") is None
    # What cannot be pickled (a live trace span, a lock) is not kept: setup runs every time.
    import threading

    owner.remember_setup(newer[0], newer[1], "k", {"lock": threading.Lock()}, auth)
    assert owner.remembered_setup(newer[0], newer[1], "k") is None


# --------------------------------------------------------------------------- setup_reuse_seconds


def test_a_setup_is_kept_only_under_a_verdict_of_this_request_alone() -> None:
    from litellm.proxy._types import UserAPIKeyAuth

    assert setup_reusable_with(UserAPIKeyAuth(api_key="h"))
    # Auth reserved budget for this request, or opened its trace span: setup copies both into it.
    assert not setup_reusable_with(UserAPIKeyAuth(api_key="h", budget_reservation={"reserved": 1.0}))
    assert not setup_reusable_with(UserAPIKeyAuth(api_key="h", parent_otel_span=object()))
    assert not setup_reusable_with(Auth())  # not LiteLLM's auth object


def _fresh_memory(seconds: float = 5) -> tuple[Any, FakeClock]:
    from litellm_cache_plugin.integrations.fast_path.reuse import ReuseMemory

    clock = FakeClock(100.0)
    settings = settings_from_mapping({"fast_path": {"setup_reuse_seconds": seconds}}, environ={})
    return ReuseMemory(settings.fast_path, clock=clock), clock


def _setup_done(auth: Any) -> dict[str, Any]:
    """What setup leaves: request data holding the auth object, which setup also edits."""
    auth.end_user_id = "end-user"
    return {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "metadata": {"user_api_key_auth": auth},
    }


KEY = ("fp", "/v1/chat/completions", "setup-key")


def _kept(memory: Any, auth: Any, key: tuple[str, str, str] = KEY) -> bytes:
    """Run one request's setup through the memory as the fast path does: seen once, then kept."""
    assert memory.verdict_to_keep(key, auth) is None  # the first sighting is only noted
    verdict = memory.verdict_to_keep(key, auth)
    assert verdict is not None
    memory.remember_setup_for_verdict(key, verdict, _setup_done(auth), auth, at=memory.clock())
    return verdict  # type: ignore[no-any-return]


def test_only_a_request_seen_again_within_the_window_has_its_setup_kept() -> None:
    from litellm.proxy._types import UserAPIKeyAuth

    memory, clock = _fresh_memory(seconds=2)
    auth = UserAPIKeyAuth(api_key="h")
    assert memory.verdict_to_keep(KEY, auth) is None
    clock.now += 2.0  # seen again only after the window: still only noted
    assert memory.verdict_to_keep(KEY, auth) is None
    clock.now += 1.0
    assert memory.verdict_to_keep(KEY, auth) is not None
    other = ("fp", "/v1/chat/completions", "other")
    assert memory.verdict_to_keep(other, auth) is None
    reserved = UserAPIKeyAuth(api_key="h", budget_reservation={"reserved": 1.0})
    assert memory.verdict_to_keep(other, reserved) is None  # never kept, however often seen
    assert memory.verdict_to_keep(other, reserved) is None


def test_a_setup_stands_in_for_an_identical_request_under_an_equal_verdict() -> None:
    from litellm.proxy._types import UserAPIKeyAuth

    memory, clock = _fresh_memory()
    auth = UserAPIKeyAuth(api_key="h", team_id="t", spend=1.0)
    assert memory.setup_for_verdict(KEY, auth) is None
    verdict = memory.verdict_to_keep(KEY, auth)
    assert verdict is None
    verdict = memory.verdict_to_keep(KEY, auth)
    assert verdict is not None
    data = _setup_done(auth)
    memory.remember_setup_for_verdict(KEY, verdict, data, auth, at=clock.now)
    data["messages"][0]["content"] = "edited by a hook"  # after setup: never reaches the memo

    # The next request's auth returns an equal verdict (a new object): setup as it was, a fresh copy.
    clock.now += 4.9
    found = memory.setup_for_verdict(KEY, UserAPIKeyAuth(api_key="h", team_id="t", spend=1.0))
    assert found is not None
    again, again_auth = found
    assert again["messages"][0]["content"] == "hi"
    assert again["metadata"]["user_api_key_auth"] is again_auth and again_auth.end_user_id == "end-user"
    again["metadata"]["x"] = 1
    third = memory.setup_for_verdict(KEY, UserAPIKeyAuth(api_key="h", team_id="t", spend=1.0))
    assert third is not None and "x" not in third[0]["metadata"]

    # Another request, or another credential or route: nothing.
    fresh = UserAPIKeyAuth(api_key="h", team_id="t", spend=1.0)
    assert memory.setup_for_verdict(("fp", "/v1/chat/completions", "other"), fresh) is None
    assert memory.setup_for_verdict(("fp2", "/v1/chat/completions", "setup-key"), fresh) is None
    assert memory.setup_for_verdict(("fp", "/chat/completions", "setup-key"), fresh) is None


@pytest.mark.parametrize(
    "changed",
    [
        {"spend": 2.0},  # the key spent since
        {"team_id": "other"},
        {"metadata": {"logging": [{"callback_name": "langfuse"}]}},  # key-level callbacks
        {"team_metadata": {"guardrails": ["g"]}},
        {"blocked": True},
        {"user_id": "u"},
        {"budget_reservation": {"reserved": 1.0}},  # this request reserved budget: never from the memo
    ],
)
def test_a_changed_verdict_runs_setup_again(changed: dict[str, Any]) -> None:
    from litellm.proxy._types import UserAPIKeyAuth

    memory, _ = _fresh_memory()
    _kept(memory, UserAPIKeyAuth(api_key="h", team_id="t", spend=1.0))
    fields = {"api_key": "h", "team_id": "t", "spend": 1.0, **changed}
    assert memory.setup_for_verdict(KEY, UserAPIKeyAuth(**fields)) is None
    # ...while the unchanged verdict still finds it.
    assert memory.setup_for_verdict(KEY, UserAPIKeyAuth(api_key="h", team_id="t", spend=1.0)) is not None


def test_a_setup_is_forgotten_when_its_window_ends_and_never_kept_when_off() -> None:
    from litellm.proxy._types import UserAPIKeyAuth

    memory, clock = _fresh_memory(seconds=2)
    auth = UserAPIKeyAuth(api_key="h")
    memory.verdict_to_keep(KEY, auth)
    verdict = memory.verdict_to_keep(KEY, auth)
    assert verdict is not None
    began = clock.now
    clock.now += 0.5  # setup took half a second: its age counts from when it began
    memory.remember_setup_for_verdict(KEY, verdict, _setup_done(auth), auth, at=began)
    clock.now = began + 1.99
    assert memory.setup_for_verdict(KEY, UserAPIKeyAuth(api_key="h")) is not None
    clock.now = began + 2.0
    assert memory.setup_for_verdict(KEY, UserAPIKeyAuth(api_key="h")) is None
    clock.now = began - 1  # a clock that went back: not trusted
    memory.remember_setup_for_verdict(KEY, verdict, _setup_done(auth), auth, at=began)
    assert memory.setup_for_verdict(KEY, UserAPIKeyAuth(api_key="h")) is None

    off, _ = _fresh_memory(seconds=0)
    for _ in range(3):
        assert off.verdict_to_keep(KEY, auth) is None
    assert off.setup_for_verdict(KEY, UserAPIKeyAuth(api_key="h")) is None


def test_what_cannot_be_pickled_is_not_kept() -> None:
    import threading

    from litellm.proxy._types import UserAPIKeyAuth

    memory, clock = _fresh_memory()
    auth = UserAPIKeyAuth(api_key="h")
    memory.verdict_to_keep(KEY, auth)
    verdict = memory.verdict_to_keep(KEY, auth)
    assert verdict is not None
    memory.remember_setup_for_verdict(KEY, verdict, {"lock": threading.Lock()}, auth, at=clock.now)
    assert memory.setup_for_verdict(KEY, UserAPIKeyAuth(api_key="h")) is None
