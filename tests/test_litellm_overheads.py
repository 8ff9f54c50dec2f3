"""The "cache" markers ``Cache.__init__`` registers are dropped where they are inert, so that LiteLLM
does not run a second, sync success handler in a thread for every call because of the plugin."""

from __future__ import annotations

import importlib
import types
from collections.abc import Callable, Iterator
from typing import Any

import litellm
import pytest
from hypothesis import given
from hypothesis import strategies as st
from litellm.caching.caching import Cache, LiteLLMCacheType
from litellm.litellm_core_utils.litellm_logging import Logging

from litellm_cache_plugin.integrations import compat
from litellm_cache_plugin.integrations.litellm import CachePlugin
from litellm_cache_plugin.integrations.litellm.overheads import (
    CACHE_MARKER,
    drop_inert_cache_markers,
    memoize_argument_names,
    positional_to_keywords,
    replaced,
)
from litellm_cache_plugin.settings import settings_from_mapping

_LISTS = ("input_callback", "success_callback", "_async_success_callback")


@pytest.fixture(autouse=True)
def restore_litellm_lists() -> Iterator[None]:
    saved = {name: list(getattr(litellm, name)) for name in _LISTS}
    saved_cache = litellm.cache
    yield
    for name, value in saved.items():
        getattr(litellm, name)[:] = value
    litellm.cache = saved_cache


def _logging() -> Logging:
    import datetime

    return Logging(
        model="llama3",
        messages=[{"role": "user", "content": "hi"}],
        stream=False,
        call_type="acompletion",
        start_time=datetime.datetime.now(),
        litellm_call_id="call-1",
        function_id="fn-1",
    )


def _markers() -> dict[str, bool]:
    return {name: CACHE_MARKER in getattr(litellm, name) for name in _LISTS}


def test_litellms_own_cache_registers_the_markers_and_forces_the_sync_handler_on_this_release() -> None:
    # The behaviour the plugin works around, shown on LiteLLM itself (fails if a release changes it).
    for name in _LISTS:
        getattr(litellm, name)[:] = [c for c in getattr(litellm, name) if c != CACHE_MARKER]
    litellm.cache = Cache(type=LiteLLMCacheType.LOCAL)
    assert all(_markers().values())
    forced = _logging()._should_run_sync_callbacks_for_async_calls()
    release = compat.parse_release(compat.litellm_version())
    assert forced is (release is not None and release < (1, 108))  # 1.108 lists "cache" as internal


def test_the_plugins_carrier_leaves_no_marker_and_no_sync_handler() -> None:
    plugin = CachePlugin(settings_from_mapping({"backend": "memory://"}))
    plugin.install()
    assert litellm.cache is plugin.carrier
    assert _markers() == dict.fromkeys(_LISTS, False)
    assert _logging()._should_run_sync_callbacks_for_async_calls() is False


def test_a_sync_callback_of_the_users_still_gets_the_sync_handler() -> None:
    def user_callback(*args: Any, **kwargs: Any) -> None:
        pass

    litellm.success_callback.append(user_callback)
    plugin = CachePlugin(settings_from_mapping({"backend": "memory://"}))
    plugin.install()
    assert user_callback in litellm.success_callback
    assert _logging()._should_run_sync_callbacks_for_async_calls() is True


@pytest.mark.parametrize("version", ["1.105.3", "1.109.0", "2.0.0", None, "garbage"])
def test_on_a_release_nobody_read_the_markers_stay(version: str | None) -> None:
    litellm.success_callback.append(CACHE_MARKER)
    assert drop_inert_cache_markers(version) is False
    assert CACHE_MARKER in litellm.success_callback


@pytest.mark.parametrize("version", ["1.106.0", "1.107.2", "1.108.0"])
def test_on_a_read_release_every_copy_goes(version: str) -> None:
    for name in _LISTS:
        getattr(litellm, name).extend([CACHE_MARKER, CACHE_MARKER])
    assert drop_inert_cache_markers(version) is True
    assert _markers() == dict.fromkeys(_LISTS, False)


# --- the caching handler's argument names, looked up once per function ---------------------------

_HANDLER = importlib.import_module("litellm.caching.caching_handler")


def _litellms_own() -> Callable[..., dict[str, object]]:
    current = _HANDLER.convert_args_to_kwargs
    return replaced.get("convert_args_to_kwargs", current) if current is positional_to_keywords else current


def _sample(a: int, b: str = "x", *rest: Any, c: float = 0.0, **more: Any) -> None: ...


@given(st.lists(st.one_of(st.integers(), st.text(), st.none()), max_size=60))
def test_the_memo_answers_what_litellms_function_answers(args: list[Any]) -> None:
    assert _litellms_own() is not positional_to_keywords
    for function in (litellm.acompletion, litellm.aembedding, litellm.atext_completion, _sample):
        assert positional_to_keywords(function, tuple(args)) == _litellms_own()(function, tuple(args))
    assert positional_to_keywords(_sample, None) == _litellms_own()(_sample, None) == {}


def test_installing_the_carrier_puts_the_memo_in_litellms_caching_handler() -> None:
    CachePlugin(settings_from_mapping({"backend": "memory://"})).install()
    assert _HANDLER.convert_args_to_kwargs is positional_to_keywords


def test_a_function_not_shaped_as_read_is_left_alone() -> None:
    module = types.ModuleType("fake_handler")

    def convert_args_to_kwargs(function: Any, args: Any, extra: Any) -> dict[str, object]:
        return {}

    module.convert_args_to_kwargs = convert_args_to_kwargs  # type: ignore[attr-defined]
    assert memoize_argument_names("1.106.0", module) is False
    assert module.convert_args_to_kwargs is convert_args_to_kwargs
    assert memoize_argument_names("1.109.0", _HANDLER) is False  # a release nobody read
