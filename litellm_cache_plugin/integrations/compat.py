"""Every LiteLLM internal the plugin uses, resolved in one place and checked once at start-up.

The hook path uses LiteLLM's documented plugin surface (``CustomLogger``, ``litellm.cache``, the
top-level ``litellm`` functions). The fast hit path and the admin routes go further: they call
proxy internals (auth, request setup, model access, the callback capabilities, the rate limiter,
budget reservation, the logging worker, ``function_setup``...), which LiteLLM may move or change in
any release. Nothing else in the package imports them: they are named here, with the modules they
may live in and the way the plugin calls them, and :func:`fast_path_support` checks, before the
fast path is installed, that each one exists and accepts those calls. When one does not, the fast
path stays off with one log line naming what is missing, and every request takes the hook path,
which needs none of them. Admin routes are likewise skipped with one line (:func:`routes_internals`).

Which LiteLLM layouts this resolves (read in the published wheels; function signatures compared
with ``ast``, not by running them):

* **Classic** (1.106.0, 1.108.0; tested): the proxy ships inside the ``litellm`` distribution as
  ``litellm.proxy``. Every name below exists there with the parameters the plugin passes. Between
  them only optional parameters were added (``get_model_cost_information``: ``router_model_id``).
* **1.110** (1.110.2 wheel read; not installable here): ``litellm[proxy]`` now requires a separate
  ``litellm-proxy==1.110.2`` distribution (and ``litellm-proxy-extras==0.4.114.post1``,
  ``litellm-enterprise==0.1.83.post1``), and the console scripts moved to a new top-level
  ``litellm_cli`` package (``litellm_cli.main:proxy_server``; each worker loads
  ``litellm.proxy.proxy_server.app`` through ``proxy_worker_app``). The ``litellm`` wheel itself
  still contains ``litellm/proxy/`` with every module and name below at the same paths and with the
  same required parameters (new optional ones: ``get_model_cost_information(custom_model_info=)``,
  ``response_cost_calculator(ignore_stamped_cost=)``). One name moved:
  ``TextCompletionStreamWrapper`` now lives in ``litellm.text_completions.streaming_iterator``
  (``litellm.utils`` keeps an alias); both are candidates below.
* The ``litellm-proxy`` distribution itself is neither on the package index here nor in the code
  search, so its contents are unread. Should it provide the proxy as a top-level ``litellm_proxy``
  package, every proxy module is looked up there as the second candidate
  (``litellm_proxy.auth.user_api_key_auth``...), and callbacks from it count as LiteLLM's own
  (:data:`LITELLM_MODULE_PREFIXES`).

Tests simulate a missing internal with the environment variable ``LCP_TEST_HIDE_LITELLM_INTERNALS``
(comma-separated names of :data:`REQUIREMENTS`), which only ever makes the check fail.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import logging
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from types import ModuleType
from typing import Any, Literal

from litellm.caching.caching import Cache
from litellm.integrations.custom_logger import CustomLogger

log = logging.getLogger("litellm_cache_plugin")

HIDE_ENV = "LCP_TEST_HIDE_LITELLM_INTERNALS"

# Callbacks whose class lives under one of these modules are LiteLLM's own.
LITELLM_MODULE_PREFIXES: tuple[str, ...] = ("litellm.", "litellm_proxy.")

Group = Literal["fast_path", "routes", "hook"]


def proxy_modules(name: str) -> tuple[str, ...]:
    """Where a proxy module may live: the classic ``litellm.proxy.<name>``, then a top-level
    ``litellm_proxy.<name>`` (a separately distributed proxy)."""
    return (f"litellm.proxy.{name}", f"litellm_proxy.{name}")


@dataclass(frozen=True)
class Call:
    """How the plugin calls an internal: ``positional`` arguments, then ``keywords``. ``method``:
    the attribute is looked up on a class and called on an instance (one more positional)."""

    positional: int = 0
    keywords: tuple[str, ...] = ()
    method: bool = False


@dataclass(frozen=True)
class Internal:
    """One LiteLLM internal: where it may be (first candidate module that has it wins), how it is
    called, and which attributes or fields it must have."""

    name: str
    group: Group
    modules: tuple[str, ...]
    attribute: str = ""  # dotted path inside the module; "" = the module itself
    call: Call | None = None
    has: tuple[str, ...] = ()
    is_async: bool = False
    required: bool = True  # False: a missing one only turns off an optimization


_AUTH_HEADERS = (
    "api_key_header",
    "azure_api_key_header",
    "anthropic_api_key_header",
    "google_ai_studio_api_key_header",
    "azure_apim_header",
    "custom_litellm_key_header",
)
_LOGGING = ("litellm.litellm_core_utils.litellm_logging",)

REQUIREMENTS: tuple[Internal, ...] = (
    # --- fast path: auth, exactly as the route's own dependency runs it --------------------------
    Internal(
        "user_api_key_auth",
        "fast_path",
        proxy_modules("auth.user_api_key_auth"),
        "user_api_key_auth",
        Call(keywords=("request", "api_key", *_AUTH_HEADERS[1:])),
        is_async=True,
    ),
    *(
        Internal(header, "fast_path", proxy_modules("auth.user_api_key_auth"), header, Call(positional=1))
        for header in _AUTH_HEADERS
    ),
    Internal(
        "can_key_call_model",
        "fast_path",
        proxy_modules("auth.auth_checks"),
        "can_key_call_model",
        Call(keywords=("model", "llm_model_list", "valid_token", "llm_router")),
        is_async=True,
    ),
    Internal(
        "release_unbound_budget_reservation",
        "fast_path",
        proxy_modules("spend_tracking.budget_reservation"),
        "release_unbound_budget_reservation",
        Call(positional=1),
        is_async=True,
    ),
    # --- fast path: the route's request setup and the proxy's state ------------------------------
    Internal(
        "add_litellm_data_to_request",
        "fast_path",
        proxy_modules("litellm_pre_call_utils"),
        "add_litellm_data_to_request",
        Call(
            keywords=("data", "request", "general_settings", "user_api_key_dict", "version", "proxy_config")
        ),
        is_async=True,
    ),
    Internal(
        "resolve_litellm_call_id",
        "fast_path",
        proxy_modules("common_request_processing"),
        "resolve_litellm_call_id",
        Call(positional=1),
    ),
    Internal(
        "should_return_raw_model_name",
        "fast_path",
        proxy_modules("common_request_processing"),
        "should_return_raw_model_name",
        Call(positional=1),
    ),
    Internal(
        "proxy_server",
        "fast_path",
        proxy_modules("proxy_server"),
        has=(
            "app",
            "general_settings",
            "proxy_config",
            "prisma_client",
            "proxy_logging_obj",
            "llm_router",
            "llm_model_list",
            "version",
        ),
    ),
    Internal(
        "router_settings_check",
        "fast_path",
        proxy_modules("proxy_server"),
        "ProxyConfig._get_hierarchical_router_settings",
        Call(keywords=("user_api_key_dict", "prisma_client", "proxy_logging_obj"), method=True),
        is_async=True,
    ),
    # --- fast path: which callbacks run (guardrails, third-party hooks, rate limiters) ------------
    Internal(
        "ProxyLogging", "fast_path", proxy_modules("utils"), "ProxyLogging", has=("callback_capabilities",)
    ),
    Internal(
        "callback_capabilities",
        "fast_path",
        proxy_modules("utils"),
        "ProxyLogging.callback_capabilities",
        Call(),
    ),
    Internal(
        "callback_capabilities_fields",
        "fast_path",
        proxy_modules("utils"),
        "_CallbackCapabilities",
        has=("resolved_callbacks", "has_guardrail", "has_content_enforcer"),
    ),
    Internal(
        "rate_limiter_v3",
        "fast_path",
        proxy_modules("hooks.parallel_request_limiter_v3"),
        "PROXY_MaxParallelRequestsHandler_v3",
    ),
    Internal(
        "rate_limiter_v3_hook",
        "fast_path",
        proxy_modules("hooks.parallel_request_limiter_v3"),
        "PROXY_MaxParallelRequestsHandler_v3.async_pre_call_hook",
        Call(keywords=("user_api_key_dict", "cache", "data", "call_type", "endpoint_type"), method=True),
        is_async=True,
    ),
    Internal(
        "EndpointType",
        "fast_path",
        ("litellm.types.passthrough_endpoints.pass_through_endpoints",),
        "EndpointType",
        has=("GENERIC",),
    ),
    Internal(
        "CustomLogger",
        "fast_path",
        ("litellm.integrations.custom_logger",),
        "CustomLogger",
        has=("async_pre_call_hook",),
    ),
    # --- fast path: a hit logged as a LiteLLM cache hit -------------------------------------------
    Internal(
        "logging_worker",
        "fast_path",
        ("litellm.litellm_core_utils.logging_worker",),
        "GLOBAL_LOGGING_WORKER",
        has=("ensure_initialized_and_enqueue",),
    ),
    Internal(
        "logging_worker_enqueue",
        "fast_path",
        ("litellm.litellm_core_utils.logging_worker",),
        "GLOBAL_LOGGING_WORKER.ensure_initialized_and_enqueue",
        Call(keywords=("async_coroutine",)),
    ),
    Internal(
        "function_setup",
        "fast_path",
        ("litellm.utils",),
        "function_setup",
        Call(positional=3, keywords=("model", "messages", "metadata")),
    ),
    Internal("Rules", "fast_path", ("litellm.litellm_core_utils.rules",), "Rules", Call()),
    Internal(
        "logging_update_environment_variables",
        "fast_path",
        _LOGGING,
        "Logging.update_environment_variables",
        Call(
            keywords=(
                "model",
                "user",
                "optional_params",
                "litellm_params",
                "input",
                "api_key",
                "original_response",
                "additional_args",
                "stream",
                "custom_llm_provider",
            ),
            method=True,
        ),
    ),
    Internal(
        "logging_callback_list",
        "fast_path",
        _LOGGING,
        "Logging.get_combined_callback_list",
        Call(keywords=("dynamic_success_callbacks", "global_callbacks"), method=True),
    ),
    Internal(
        "logging_cost_calculator",
        "fast_path",
        _LOGGING,
        "Logging.response_cost_calculator",
        Call(keywords=("result", "cache_hit"), method=True),
    ),
    Internal(
        "logging_success_handler",
        "fast_path",
        _LOGGING,
        "Logging.async_success_handler",
        Call(keywords=("result", "start_time", "end_time", "cache_hit"), method=True),
        is_async=True,
    ),
    Internal(
        "convert_to_model_response_object",
        "fast_path",
        ("litellm.litellm_core_utils.llm_response_utils.convert_dict_to_response",),
        "convert_to_model_response_object",
        Call(keywords=("response_object", "model_response_object")),
    ),
    Internal(
        "token_counter",
        "fast_path",
        ("litellm.utils",),
        "token_counter",
        Call(keywords=("text", "count_response_tokens")),
    ),
    # Only a memo of the cost-map lookup while hits are logged: without it hits are logged all the same.
    Internal(
        "StandardLoggingPayloadSetup",
        "fast_path",
        _LOGGING,
        "StandardLoggingPayloadSetup",
        has=("get_model_cost_information",),
        required=False,
    ),
    # --- admin routes ---------------------------------------------------------------------------
    Internal("routes_app", "routes", proxy_modules("proxy_server"), "app", has=("add_api_route", "router")),
    Internal(
        "routes_auth",
        "routes",
        proxy_modules("auth.user_api_key_auth"),
        "user_api_key_auth",
        is_async=True,
    ),
    Internal("UserAPIKeyAuth", "routes", proxy_modules("_types"), "UserAPIKeyAuth"),
    Internal("LitellmUserRoles", "routes", proxy_modules("_types"), "LitellmUserRoles", has=("PROXY_ADMIN",)),
    # --- hook path: streamed text completions replayed from a hit ---------------------------------
    Internal(
        "TextCompletionStreamWrapper",
        "hook",
        ("litellm.utils", "litellm.text_completions.streaming_iterator"),
        "TextCompletionStreamWrapper",
        Call(keywords=("completion_stream", "model", "stream_options")),
        has=("convert_to_text_completion_object",),
    ),
    # --- hook path: LiteLLM's detached cache-write tasks (a miss is stored after its response) -----
    Internal(
        "pending_cache_writes",
        "hook",
        ("litellm.caching.caching_handler",),
        "_PENDING_CACHE_WRITES",
        has=("add", "discard"),
        required=False,
    ),
)


# --- the check (pure: objects in, verdict out) ---------------------------------------------------


def _has(obj: object, name: str) -> bool:
    if hasattr(obj, name):
        return True
    if isinstance(obj, type):  # a field without a default (dataclass, pydantic, NamedTuple)
        return any(name in getattr(klass, "__annotations__", {}) for klass in obj.__mro__)
    return False


def signature_problem(internal: Internal, obj: object) -> str | None:
    """Why ``obj`` cannot be used the way the plugin uses ``internal``, or None."""
    missing = [name for name in internal.has if not _has(obj, name)]
    if missing:
        return f"has no {', '.join(missing)}"
    if internal.is_async and not inspect.iscoroutinefunction(obj):
        return "is no longer a coroutine function"
    call = internal.call
    if call is None:
        return None
    if not callable(obj):
        return "is not callable"
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):
        return None  # a builtin without a signature: nothing to compare
    positional = call.positional + (1 if call.method else 0)
    try:
        signature.bind(*([None] * positional), **dict.fromkeys(call.keywords))
    except TypeError as error:
        return f"signature {signature} does not take what the plugin passes ({error})"
    return None


Importer = Callable[[str], ModuleType]


@dataclass(frozen=True)
class Found:
    obj: Any
    where: str  # module:attribute it was found at


def resolve(internal: Internal, importer: Importer, hidden: Iterable[str] = ()) -> Found | str:
    """The object, or why it is unusable (one line). The first candidate module that imports and has
    the attribute is used, and its object must then pass :func:`signature_problem`."""
    if internal.name in set(hidden):
        return f"{internal.modules[0]}:{internal.attribute or '*'} (hidden by {HIDE_ENV})"
    reasons: list[str] = []
    for module_name in internal.modules:
        try:
            obj: Any = importer(module_name)
        except ImportError as error:
            reasons.append(f"{module_name}: {type(error).__name__}")
            continue
        except Exception as error:  # a module that fails while importing is unusable too
            reasons.append(f"{module_name}: {type(error).__name__}: {error}")
            continue
        try:
            for part in filter(None, internal.attribute.split(".")):
                obj = getattr(obj, part)
        except AttributeError:
            reasons.append(f"{module_name} has no {internal.attribute}")
            continue
        where = f"{module_name}:{internal.attribute}" if internal.attribute else module_name
        problem = signature_problem(internal, obj)
        if problem is not None:
            return f"{where} {problem}"
        return Found(obj, where)
    return f"{internal.attribute or internal.modules[0]} not found ({'; '.join(reasons)})"


@dataclass(frozen=True)
class Survey:
    """What a group of internals resolved to: ``found`` by name, ``problems`` by name (required
    ones only; a missing optional one is simply absent from ``found``)."""

    found: Mapping[str, Any]
    problems: Mapping[str, str]
    optional_missing: Mapping[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems


def survey(
    group: Group,
    importer: Importer,
    hidden: Iterable[str] = (),
    requirements: Iterable[Internal] = REQUIREMENTS,
) -> Survey:
    hidden = frozenset(hidden)
    found: dict[str, Any] = {}
    problems: dict[str, str] = {}
    optional: dict[str, str] = {}
    for internal in requirements:
        if internal.group != group:
            continue
        result = resolve(internal, importer, hidden)
        if isinstance(result, Found):
            found[internal.name] = result.obj
        elif internal.required:
            problems[internal.name] = result
        else:
            optional[internal.name] = result
    return Survey(found, problems, optional)


def off_line(what: str, problems: Mapping[str, str], version: str | None, consequence: str) -> str:
    """The one log line saying that a part is off, naming every missing internal."""
    listed = "; ".join(problems.values())
    on = f"LiteLLM {version}" if version else "this LiteLLM"
    return f"litellm_cache_plugin: {what} off on {on}: {listed}. {consequence}"


# --- the resolved objects, as the fast path and the routes use them ------------------------------


@dataclass(frozen=True)
class FastPathInternals:
    """Everything the fast path calls, resolved (see :data:`REQUIREMENTS` for where each comes from)."""

    user_api_key_auth: Any
    api_key_header: Any
    azure_api_key_header: Any
    anthropic_api_key_header: Any
    google_ai_studio_api_key_header: Any
    azure_apim_header: Any
    custom_litellm_key_header: Any
    can_key_call_model: Any
    release_unbound_budget_reservation: Any
    add_litellm_data_to_request: Any
    resolve_litellm_call_id: Any
    should_return_raw_model_name: Any
    proxy_server: Any
    ProxyLogging: Any
    rate_limiter_v3: Any
    EndpointType: Any
    CustomLogger: Any
    logging_worker: Any
    function_setup: Any
    Rules: Any
    convert_to_model_response_object: Any
    token_counter: Any
    StandardLoggingPayloadSetup: Any = None  # optional: None when this LiteLLM has none


@dataclass(frozen=True)
class RoutesInternals:
    app: Any
    user_api_key_auth: Any
    UserAPIKeyAuth: Any
    LitellmUserRoles: Any


@dataclass(frozen=True)
class FastPathSupport:
    ok: bool
    problems: Mapping[str, str]
    internals: FastPathInternals | None


def _build_fast_path(found: Mapping[str, Any]) -> FastPathInternals:
    names = {f.name for f in fields(FastPathInternals)}
    return FastPathInternals(**{name: value for name, value in found.items() if name in names})


# --- I/O: imports, the environment, the log line, once per process --------------------------------


def _import(name: str) -> ModuleType:
    return importlib.import_module(name)


def _hidden() -> frozenset[str]:
    return frozenset(n.strip() for n in os.environ.get(HIDE_ENV, "").split(",") if n.strip())


def litellm_version() -> str | None:
    try:
        return importlib.metadata.version("litellm")
    except importlib.metadata.PackageNotFoundError:
        return None


# The releases whose source the plugin's readings of LiteLLM's behaviour (which callbacks ignore a hit,
# which callback markers are inert) were made from: 1.106.0 (the lowest pyproject accepts) through
# 1.108.x (CI runs the fast-path suites on 1.108.0). On any other release those readings are not used.
VERIFIED_RELEASES: tuple[tuple[int, int], tuple[int, int]] = ((1, 106), (1, 108))


def parse_release(version: str | None) -> tuple[int, int] | None:
    if not version:
        return None
    parts = version.split(".")
    try:
        return int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        return None


def is_verified(version: str | None) -> bool:
    release = parse_release(version)
    low, high = VERIFIED_RELEASES
    return release is not None and low <= release <= high


_fast_path_support: FastPathSupport | None = None
_routes: RoutesInternals | Literal[False] | None = False  # False: not checked yet
_single: dict[str, Any] = {}


def fast_path_support() -> FastPathSupport:
    """Checked once per process; a failed check is logged once, as one line."""
    global _fast_path_support
    if _fast_path_support is None:
        result = survey("fast_path", _import, _hidden())
        if result.ok:
            _fast_path_support = FastPathSupport(True, {}, _build_fast_path(result.found))
        else:
            _fast_path_support = FastPathSupport(False, result.problems, None)
            log.warning(
                off_line(
                    "fast path", result.problems, litellm_version(),
                    "Every request takes the hook path (all cache layers still work).",
                )
            )  # fmt: skip
    return _fast_path_support


def fast_path_internals() -> FastPathInternals:
    """The fast path's internals; only called by an installed fast path (the check passed)."""
    support = _fast_path_support if _fast_path_support is not None else fast_path_support()
    if support.internals is None:
        raise RuntimeError("the fast path needs LiteLLM internals this version lacks")
    return support.internals


def routes_internals() -> RoutesInternals | None:
    """What the admin routes need, or None (logged once) when this LiteLLM lacks any of it or runs
    without the proxy."""
    global _routes
    if _routes is False:
        result = survey("routes", _import, _hidden())
        if result.ok:
            found = result.found
            _routes = RoutesInternals(
                app=found["routes_app"],
                user_api_key_auth=found["routes_auth"],
                UserAPIKeyAuth=found["UserAPIKeyAuth"],
                LitellmUserRoles=found["LitellmUserRoles"],
            )
        else:
            _routes = None
            if loaded_proxy_server() is not None:  # SDK use without the proxy: nothing to say
                log.warning(
                    off_line("admin routes (/v1/cache/...)", result.problems, litellm_version(),
                             "Caching works; the cache cannot be administered over HTTP.")
                )  # fmt: skip
    return _routes


def internal(name: str) -> Any:
    """One internal of :data:`REQUIREMENTS` on its own (without the group's check), or None when
    this LiteLLM lacks it. Resolved once per process."""
    if name not in _single:
        spec = next(r for r in REQUIREMENTS if r.name == name)
        result = resolve(spec, _import, _hidden())
        _single[name] = result.obj if isinstance(result, Found) else None
    return _single[name]


def text_completion_stream_wrapper() -> Any:
    """LiteLLM's ``TextCompletionStreamWrapper`` (``litellm.utils`` up to 1.108,
    ``litellm.text_completions.streaming_iterator`` from 1.110)."""
    wrapper = internal("TextCompletionStreamWrapper")
    if wrapper is None:
        raise RuntimeError("litellm_cache_plugin: this LiteLLM has no usable TextCompletionStreamWrapper")
    return wrapper


def loaded_proxy_server() -> ModuleType | None:
    """The proxy's ``proxy_server`` module if this process has imported it (never imports it)."""
    for name in proxy_modules("proxy_server"):
        module = sys.modules.get(name)
        if module is not None:
            return module
    return None


def proxy_app() -> Any:
    """The proxy's FastAPI app, or None outside a proxy installation."""
    for name in proxy_modules("proxy_server"):
        try:
            return _import(name).app
        except (ImportError, AttributeError):
            continue
    return None


def proxy_workers(environ: Mapping[str, str]) -> int:
    """How many worker processes the proxy runs: ``litellm --num_workers N`` (or env ``NUM_WORKERS``)
    sets ``NUM_WORKERS`` in its own environment before it starts them (uvicorn, gunicorn, granian),
    so every worker inherits it (``proxy_cli.run_server``, 1.106-1.110)."""
    try:
        return max(1, int(environ.get("NUM_WORKERS", "1")))
    except ValueError:
        return 1


def is_litellm_module(module: str) -> bool:
    return module.startswith(LITELLM_MODULE_PREFIXES)


def reset_for_tests() -> None:
    """Forget every check (tests that change the environment or the importer)."""
    global _fast_path_support, _routes
    _fast_path_support, _routes = None, False
    _single.clear()


__all__ = [
    "HIDE_ENV",
    "LITELLM_MODULE_PREFIXES",
    "REQUIREMENTS",
    "Cache",
    "Call",
    "CustomLogger",
    "FastPathInternals",
    "FastPathSupport",
    "Found",
    "Internal",
    "RoutesInternals",
    "Survey",
    "fast_path_internals",
    "fast_path_support",
    "internal",
    "is_litellm_module",
    "litellm_version",
    "loaded_proxy_server",
    "off_line",
    "proxy_app",
    "proxy_modules",
    "proxy_workers",
    "reset_for_tests",
    "resolve",
    "routes_internals",
    "signature_problem",
    "survey",
    "text_completion_stream_wrapper",
]
