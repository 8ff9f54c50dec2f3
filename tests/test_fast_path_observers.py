"""Issue 15: which of LiteLLM's success callbacks would see a fast-path hit (``fast_path/observers``).

A hit nobody would see is not logged at all; these tests pin the decision on real LiteLLM callback
objects (constructed, not mocked) and on the releases whose source the conditions were read from."""

from __future__ import annotations

from typing import Any

import pytest
from litellm.integrations.custom_logger import CustomLogger

from litellm_cache_plugin.integrations.compat import is_verified
from litellm_cache_plugin.integrations.fast_path.observers import (
    HitFacts,
    candidate_callbacks,
    hit_observers,
    possible_observers,
    sees_hit,
)


def _facts(metadata: dict[str, Any] | None = None, **changes: Any) -> HitFacts:
    values: dict[str, Any] = {
        "metadata": metadata or {"user_api_key_team_id": "team-a"},
        "service_callbacks": [],
        "apply_rate_limits": False,
        "verified": True,
    }
    values.update(changes)
    return HitFacts(**values)


class _Recorder(CustomLogger):
    async def async_log_success_event(self, kwargs: Any, response_obj: Any, start: Any, end: Any) -> None:
        return None


class _Quiet(CustomLogger):
    async def async_pre_call_hook(self, *args: Any, **kwargs: Any) -> None:
        return None


def _service_logging() -> Any:
    from litellm._service_logger import ServiceLogging

    return ServiceLogging()


def _session_budget() -> Any:
    from litellm.proxy.hooks.max_budget_per_session_limiter import _PROXY_MaxBudgetPerSessionHandler

    return _PROXY_MaxBudgetPerSessionHandler.__new__(_PROXY_MaxBudgetPerSessionHandler)


def _model_budget() -> Any:
    from litellm.proxy.hooks.model_max_budget_limiter import _PROXY_VirtualKeyModelMaxBudgetLimiter

    return _PROXY_VirtualKeyModelMaxBudgetLimiter.__new__(_PROXY_VirtualKeyModelMaxBudgetLimiter)


def _prompt_cache_observer() -> Any:
    from litellm.proxy.hooks.prompt_cache_prediction import PromptCacheObserver

    return PromptCacheObserver.__new__(PromptCacheObserver)


def _router_callback() -> Any:
    from litellm.router import Router

    return Router(model_list=[]).deployment_callback_on_success


def _rate_limiter() -> Any:
    from litellm.proxy.hooks.parallel_request_limiter_v3 import _PROXY_MaxParallelRequestsHandler_v3

    return _PROXY_MaxParallelRequestsHandler_v3.__new__(_PROXY_MaxParallelRequestsHandler_v3)


def test_a_plain_proxy_has_no_observer_of_a_hit() -> None:
    # What LiteLLM 1.106/1.108 registers in a proxy without any logging integration (measured there).
    plain = [
        "cache",
        _router_callback(),
        _model_budget(),
        _Quiet(),
        _rate_limiter(),
        _session_budget(),
        _prompt_cache_observer(),
        _service_logging(),
    ]
    assert hit_observers(plain, _facts()) == []


def test_a_logging_integration_sees_every_hit() -> None:
    recorder = _Recorder()
    assert hit_observers(["cache", _service_logging(), recorder], _facts()) == [recorder]
    assert hit_observers(["langfuse"], _facts()) == ["langfuse"]  # string integrations: always

    async def custom(*args: Any) -> None:
        return None

    assert hit_observers([custom], _facts()) == [custom]  # functions: always


def test_each_callback_is_returned_once_in_order() -> None:
    first, second = _Recorder(), _Recorder()
    assert hit_observers([first, second, first, "x", second], _facts()) == [first, second, "x"]


def test_a_model_budget_makes_the_budget_limiter_an_observer() -> None:
    limiter = _model_budget()
    assert not sees_hit(limiter, _facts({"user_api_key_model_max_budget": {}}))
    for field in (
        "user_api_key_model_max_budget",
        "user_api_key_team_model_max_budget",
        "user_api_key_user_model_max_budget",
        "user_api_key_end_user_model_max_budget",
        "user_api_key_team_member_model_max_budget",
    ):
        budget = {"llama3.2": {"budget_limit": 1.0, "time_period": "1d"}}
        assert sees_hit(limiter, _facts({field: budget})), field


def test_service_logging_observes_only_with_service_callbacks() -> None:
    service = _service_logging()
    assert not sees_hit(service, _facts())
    assert sees_hit(service, _facts(service_callbacks=["prometheus_system"]))
    service.mock_testing = True
    assert sees_hit(service, _facts())


def test_rate_limiters_observe_only_when_hits_consume_limits() -> None:
    limiter = _rate_limiter()
    assert not sees_hit(limiter, _facts())
    assert sees_hit(limiter, _facts(apply_rate_limits=True))


@pytest.mark.parametrize(
    "make", [_service_logging, _session_budget, _model_budget, _prompt_cache_observer, _router_callback]
)
def test_another_litellm_release_logs_every_hit(make: Any) -> None:
    # The table was read from 1.106-1.108's source; on another release those callbacks see hits.
    assert sees_hit(make(), _facts(verified=False))
    assert sees_hit("cache", _facts(verified=False))
    assert not sees_hit(_Quiet(), _facts(verified=False))  # no success method: release-independent


@pytest.mark.parametrize(
    ("version", "verified"),
    [
        ("1.106.0", True),
        ("1.107.3", True),
        ("1.108.0", True),
        ("1.108.9", True),
        ("1.105.9", False),
        ("1.109.0", False),
        ("2.0.0", False),
        ("dev", False),
        (None, False),
    ],
)
def test_verified_releases(version: str | None, verified: bool) -> None:
    assert is_verified(version) is verified


def test_candidates_include_what_call_setup_would_register_and_the_request_s_own() -> None:
    recorder, extra = _Recorder(), _Recorder()

    async def async_function(*args: Any) -> None:
        return None

    def sync_function(*args: Any) -> None:
        return None

    found = candidate_callbacks(
        ["cache"],
        [recorder],
        ["langfuse", async_function, sync_function],
        {"success_callback": [extra], "callbacks": "s3"},
    )
    # A sync function only runs in LiteLLM's sync success handler, which a fast-path hit never ran.
    assert found == ["cache", recorder, "langfuse", async_function, "s3", extra]
    assert hit_observers(found, _facts()) == [recorder, "langfuse", async_function, "s3", extra]


def test_possible_observers_keep_every_callback_some_hit_could_reach() -> None:
    recorder, service, budget = _Recorder(), _service_logging(), _model_budget()
    plain = [
        "cache",
        _router_callback(),
        _session_budget(),
        _prompt_cache_observer(),
        _Quiet(),
        _rate_limiter(),
    ]
    possible = possible_observers([*plain, recorder, service, budget], apply_rate_limits=False, verified=True)
    # Kept: what a request's metadata or the service callbacks could make an observer; dropped: what
    # ignores every hit. Asking the kept ones per hit gives the same answer as asking all of them.
    assert possible == [recorder, service, budget]
    for facts in (
        _facts(),
        _facts({"user_api_key_model_max_budget": {"m": {"budget_limit": 1}}}),
        _facts(service_callbacks=["datadog"]),
    ):
        assert hit_observers(possible, facts) == hit_observers([*plain, recorder, service, budget], facts)
    limiter = _rate_limiter()
    assert possible_observers([limiter], apply_rate_limits=True, verified=True) == [limiter]


def test_the_kept_plan_follows_the_registered_callbacks() -> None:
    from litellm_cache_plugin.integrations.fast_path import hit_log

    async_success: list[Any] = ["cache", _Quiet(), _service_logging()]
    callbacks: list[Any] = []
    success: list[Any] = []
    registered = (async_success, callbacks, success)
    service = async_success[2]
    assert hit_log._VERIFIED  # the LiteLLM these tests run on is one the table was read from
    assert hit_log._possible(registered, False) == [service]  # service callbacks may make it observe
    recorder = _Recorder()
    async_success.append(recorder)  # the proxy registers a logger: the next hit sees it
    assert recorder in hit_log._possible(registered, False)
    async_success.remove(recorder)
    assert recorder not in hit_log._possible(registered, False)
