"""The LiteLLM compatibility module: where each internal is looked up (both layouts), how a missing or
changed one is reported, and that a missing one turns the fast path off with one log line.

No proxy is imported here: lookups run against fake modules, and the resolver is monkeypatched where
the whole fast-path check runs (``tests/e2e/test_compat_proxy.py`` does it with a real proxy)."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

from litellm_cache_plugin.integrations import compat
from litellm_cache_plugin.integrations.compat import Call, Found, Internal


def _module(name: str, **attrs: Any) -> ModuleType:
    module = ModuleType(name)
    for key, value in attrs.items():
        setattr(module, key, value)
    return module


def _importer(*modules: ModuleType) -> Any:
    table = {m.__name__: m for m in modules}

    def load(name: str) -> ModuleType:
        if name not in table:
            raise ModuleNotFoundError(f"No module named {name!r}")
        return table[name]

    return load


@pytest.fixture(autouse=True)
def _fresh(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.delenv(compat.HIDE_ENV, raising=False)
    compat.reset_for_tests()
    yield
    compat.reset_for_tests()


# --- where an internal is found -------------------------------------------------------------------


async def _auth(request: Any, api_key: str | None = None) -> str:
    return "ok"


AUTH = Internal(
    "user_api_key_auth", "fast_path", compat.proxy_modules("auth.user_api_key_auth"), "user_api_key_auth",
    Call(keywords=("request", "api_key")), is_async=True,
)  # fmt: skip


def test_the_classic_layout_is_tried_first() -> None:
    classic = _module("litellm.proxy.auth.user_api_key_auth", user_api_key_auth=_auth)
    separate = _module("litellm_proxy.auth.user_api_key_auth", user_api_key_auth=lambda: None)
    found = compat.resolve(AUTH, _importer(classic, separate))
    assert isinstance(found, Found)
    assert found.obj is _auth
    assert found.where == "litellm.proxy.auth.user_api_key_auth:user_api_key_auth"


def test_a_proxy_in_its_own_top_level_package_is_found_second() -> None:
    separate = _module("litellm_proxy.auth.user_api_key_auth", user_api_key_auth=_auth)
    found = compat.resolve(AUTH, _importer(separate))
    assert isinstance(found, Found)
    assert found.where == "litellm_proxy.auth.user_api_key_auth:user_api_key_auth"


def test_a_module_that_lacks_the_name_falls_back_to_the_next_candidate() -> None:
    classic = _module("litellm.proxy.auth.user_api_key_auth")  # moved away
    separate = _module("litellm_proxy.auth.user_api_key_auth", user_api_key_auth=_auth)
    found = compat.resolve(AUTH, _importer(classic, separate))
    assert isinstance(found, Found) and found.obj is _auth


def test_a_name_moved_to_another_module_in_1_110_is_found_there() -> None:
    """``TextCompletionStreamWrapper``: ``litellm.utils`` up to 1.108,
    ``litellm.text_completions.streaming_iterator`` from 1.110."""

    class TextCompletionStreamWrapper:
        def __init__(self, completion_stream: Any, model: str, stream_options: Any = None) -> None: ...

        def convert_to_text_completion_object(self, chunk: Any) -> Any: ...

    spec = next(r for r in compat.REQUIREMENTS if r.name == "TextCompletionStreamWrapper")
    new = _module(
        "litellm.text_completions.streaming_iterator", TextCompletionStreamWrapper=TextCompletionStreamWrapper
    )
    found = compat.resolve(spec, _importer(_module("litellm.utils"), new))
    assert isinstance(found, Found) and found.obj is TextCompletionStreamWrapper


def test_nothing_found_says_where_it_looked() -> None:
    problem = compat.resolve(AUTH, _importer(_module("litellm.proxy.auth.user_api_key_auth")))
    assert isinstance(problem, str)
    assert "user_api_key_auth not found" in problem
    assert "litellm.proxy.auth.user_api_key_auth has no user_api_key_auth" in problem
    assert "litellm_proxy.auth.user_api_key_auth: ModuleNotFoundError" in problem
    assert "\n" not in problem


def test_a_module_that_raises_while_importing_is_unusable() -> None:
    def load(name: str) -> ModuleType:
        raise RuntimeError("broken install")

    problem = compat.resolve(AUTH, load)
    assert isinstance(problem, str) and "RuntimeError: broken install" in problem


def test_a_hidden_name_is_missing_whatever_is_installed() -> None:
    classic = _module("litellm.proxy.auth.user_api_key_auth", user_api_key_auth=_auth)
    problem = compat.resolve(AUTH, _importer(classic), hidden={"user_api_key_auth"})
    assert isinstance(problem, str) and compat.HIDE_ENV in problem


def test_dotted_attributes_are_followed() -> None:
    class ProxyLogging:
        @staticmethod
        def callback_capabilities() -> str:
            return "caps"

    spec = next(r for r in compat.REQUIREMENTS if r.name == "callback_capabilities")
    found = compat.resolve(spec, _importer(_module("litellm.proxy.utils", ProxyLogging=ProxyLogging)))
    assert isinstance(found, Found) and found.obj() == "caps"


# --- signatures ---------------------------------------------------------------------------------


def test_an_added_optional_parameter_is_compatible() -> None:
    async def newer(request: Any, api_key: str | None = None, *, trace: bool = False) -> str:
        return "ok"

    assert compat.signature_problem(AUTH, newer) is None


def test_a_new_required_parameter_is_a_problem() -> None:
    async def newer(request: Any, api_key: str | None, route: str) -> str:
        return "ok"

    problem = compat.signature_problem(AUTH, newer)
    assert problem is not None and "route" in problem


def test_a_renamed_keyword_is_a_problem() -> None:
    async def renamed(request: Any, key: str | None = None) -> str:
        return "ok"

    problem = compat.signature_problem(AUTH, renamed)
    assert problem is not None and "api_key" in problem


def test_a_coroutine_that_became_a_plain_function_is_a_problem() -> None:
    def plain(request: Any, api_key: str | None = None) -> str:
        return "ok"

    assert compat.signature_problem(AUTH, plain) == "is no longer a coroutine function"


def test_keywords_go_through_var_keyword() -> None:
    spec = Internal("function_setup", "fast_path", ("litellm.utils",), "function_setup",
                    Call(positional=3, keywords=("model", "messages")))  # fmt: skip

    def function_setup(
        original_function: Any, rules_obj: Any, start_time: Any, *args: Any, **kwargs: Any
    ) -> Any:
        return None

    def too_strict(original_function: Any, rules_obj: Any, start_time: Any) -> Any:
        return None

    assert compat.signature_problem(spec, function_setup) is None
    assert compat.signature_problem(spec, too_strict) is not None


def test_methods_are_checked_as_called_on_an_instance() -> None:
    spec = Internal("m", "fast_path", ("x",), "Logging.async_success_handler",
                    Call(keywords=("result", "cache_hit"), method=True), is_async=True)  # fmt: skip

    class Logging:
        async def async_success_handler(
            self, result: Any, cache_hit: bool | None = None, **kw: Any
        ) -> None: ...

    assert compat.signature_problem(spec, Logging.async_success_handler) is None


def test_required_fields_and_attributes() -> None:
    @dataclass(frozen=True)
    class Capabilities:
        resolved_callbacks: tuple[Any, ...]  # no default: only in the annotations
        has_guardrail: bool = False

    spec = Internal("caps", "fast_path", ("x",), "C", has=("resolved_callbacks", "has_guardrail"))
    assert compat.signature_problem(spec, Capabilities) is None
    lacking = Internal("caps", "fast_path", ("x",), "C", has=("has_content_enforcer",))
    assert compat.signature_problem(lacking, Capabilities) == "has no has_content_enforcer"


def test_every_internal_outside_the_proxy_resolves_on_the_installed_litellm() -> None:
    """The installed LiteLLM (1.106.0 here, 1.108.0 in the second CI venv) has every non-proxy name
    with the parameters the plugin passes. The proxy's names are checked by the e2e tests, which
    run a proxy (importing it here would leave its global state in this test process)."""
    import importlib

    outside = [
        r
        for r in compat.REQUIREMENTS
        if not any(".proxy." in m or m.startswith("litellm_proxy") for m in r.modules)
    ]
    assert {r.name for r in outside} >= {"function_setup", "token_counter", "logging_success_handler"}
    for spec in outside:
        found = compat.resolve(spec, importlib.import_module)
        assert isinstance(found, Found), found


# --- the fast path's check ------------------------------------------------------------------------


def test_every_field_of_the_fast_path_internals_is_a_requirement() -> None:
    required = {r.name for r in compat.REQUIREMENTS if r.group == "fast_path"}
    assert {f.name for f in dataclasses.fields(compat.FastPathInternals)} <= required


def _resolver_missing(*missing: str) -> Any:
    def resolve(internal: Internal, importer: Any, hidden: Any = ()) -> Found | str:
        if internal.name in missing:
            return f"{internal.modules[0]}:{internal.attribute} not found (simulated)"
        return Found(SimpleNamespace(name=internal.name), f"{internal.modules[0]}:{internal.attribute}")

    return resolve


def test_a_missing_internal_turns_the_fast_path_off_with_one_log_line(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(compat, "resolve", _resolver_missing("can_key_call_model"))
    caplog.set_level(logging.WARNING, logger="litellm_cache_plugin")
    support = compat.fast_path_support()
    assert not support.ok and support.internals is None
    assert list(support.problems) == ["can_key_call_model"]
    compat.fast_path_support()  # checked once per process: no second line
    lines = [r.getMessage() for r in caplog.records if r.name == "litellm_cache_plugin"]
    assert len(lines) == 1, lines
    assert "fast path off" in lines[0] and "can_key_call_model" in lines[0]
    assert "hook path" in lines[0] and "\n" not in lines[0]
    with pytest.raises(RuntimeError):
        compat.fast_path_internals()


def test_a_missing_optional_internal_keeps_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compat, "resolve", _resolver_missing("StandardLoggingPayloadSetup"))
    support = compat.fast_path_support()
    assert support.ok and support.internals is not None
    assert support.internals.StandardLoggingPayloadSetup is None
    assert support.internals.can_key_call_model.name == "can_key_call_model"


def test_install_fast_path_installs_nothing_when_an_internal_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from litellm_cache_plugin.integrations.fast_path import app as fast_path_app
    from litellm_cache_plugin.settings import PluginSettings

    installs: list[str] = []
    monkeypatch.setattr(fast_path_app, "install_in_proxy_app", lambda *a: installs.append("x") or "installed")
    plugin: Any = SimpleNamespace(settings=PluginSettings(), proxy_mode=True)
    monkeypatch.setattr(compat, "resolve", _resolver_missing("add_litellm_data_to_request"))
    fast_path_app.install_fast_path(plugin)
    assert installs == []
    compat.reset_for_tests()
    monkeypatch.setattr(compat, "resolve", _resolver_missing())
    fast_path_app.install_fast_path(plugin)
    assert installs == ["x"]


def test_the_environment_variable_hides_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(compat.HIDE_ENV, " resolve_litellm_call_id , token_counter")
    seen: list[frozenset[str]] = []

    def resolve(internal: Internal, importer: Any, hidden: Any = ()) -> Found | str:
        seen.append(frozenset(hidden))
        return "no" if internal.name in hidden else Found(object(), "x")

    monkeypatch.setattr(compat, "resolve", resolve)
    support = compat.fast_path_support()
    assert set(support.problems) == {"resolve_litellm_call_id", "token_counter"}
    assert seen[0] == {"resolve_litellm_call_id", "token_counter"}


# --- workers ------------------------------------------------------------------------------------


def test_worker_count_comes_from_litellms_num_workers_variable() -> None:
    assert compat.proxy_workers({}) == 1
    assert compat.proxy_workers({"NUM_WORKERS": "4"}) == 4
    assert compat.proxy_workers({"NUM_WORKERS": "zero"}) == 1
    assert compat.proxy_workers({"NUM_WORKERS": "0"}) == 1


def test_memory_backend_with_several_workers_says_each_has_its_own_cache() -> None:
    from litellm_cache_plugin.integrations.litellm.install import per_worker_cache_note

    note = per_worker_cache_note("memory://?max_bytes=1000", 2, 4242)
    assert note is not None and "each worker" in note and "pid 4242" in note and "redis://" in note
    assert "\n" not in note
    assert per_worker_cache_note("memory://", 1, 1) is None
    assert per_worker_cache_note("redis://localhost:6379/0", 4, 1) is None


def test_conversations_by_meaning_without_verification_are_named_at_start_up() -> None:
    from litellm_cache_plugin.integrations.litellm.install import unverified_conversations_note
    from litellm_cache_plugin.settings import settings_from_mapping

    def note(config: dict[str, object]) -> str | None:
        return unverified_conversations_note(settings_from_mapping(config, environ={}))

    by_meaning = {"semantic": {"enabled": True, "conversations": "by_meaning"}}
    found = note({"layers": by_meaning})
    assert found is not None and "every model group" in found and "verify.mode" in found and "\n" not in found
    assert note({}) is None  # conversations: exact, the default
    verified = {"semantic": {**by_meaning["semantic"], "verify": {"mode": "agreement"}}}
    assert note({"layers": verified}) is None
    assert note({"layers": {"semantic": {"enabled": False, "conversations": "by_meaning"}}}) is None
    per_model = note({"layers": verified, "models": {"chat": {"layers": by_meaning}}})
    assert per_model is not None and "(chat)" in per_model
