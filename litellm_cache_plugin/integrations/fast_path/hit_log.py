"""A fast-path hit logged as a LiteLLM cache hit (zero cost, ``cache_hit`` True) through LiteLLM's
success callbacks, on its logging worker, off the request path; not at all when no callback would see
it (``observers``)."""

from __future__ import annotations

import contextvars
import inspect
import logging
import os
from collections import OrderedDict
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import orjson

from litellm_cache_plugin.integrations import compat
from litellm_cache_plugin.integrations.fast_path.observers import (
    HitFacts,
    candidate_callbacks,
    hit_observers,
    possible_observers,
)
from litellm_cache_plugin.integrations.fast_path.wire import CALL_TYPES
from litellm_cache_plugin.policy.keys import RequestKind

log = logging.getLogger("litellm_cache_plugin")


def _count_tokens(text: str) -> int:
    return int(compat.fast_path_internals().token_counter(text=text, count_response_tokens=True))


def _log_hit(
    *,
    kind: RequestKind,
    kwargs: dict[str, Any],
    response: Any,
    start: float,
    end: float,
    apply_rate_limits: bool,
) -> bool:
    """Queue the hit's success logging on LiteLLM's logging worker (off the request path). False: not
    logged, because no callback would see it (``observers``)."""
    try:
        import litellm

        facts = _facts(kwargs, apply_rate_limits)
        registered = (litellm._async_success_callback, litellm.callbacks, litellm.success_callback)
        if kwargs.get("callbacks") or kwargs.get("success_callback"):
            candidates = candidate_callbacks(*registered, kwargs)  # the request's own: asked every time
        else:
            candidates = _possible(registered, apply_rate_limits)
        if not hit_observers(candidates, facts) and not os.getenv("LITELLM_PRINT_STANDARD_LOGGING_PAYLOAD"):
            return False
        compat.fast_path_internals().logging_worker.ensure_initialized_and_enqueue(
            async_coroutine=_log_hit_now(kind, kwargs, response, start, end, facts)
        )
    except Exception:
        log.warning("fast path hit not logged", exc_info=True)
    return True


def _facts(kwargs: dict[str, Any], apply_rate_limits: bool) -> HitFacts:
    import litellm

    metadata = kwargs.get("metadata")
    return HitFacts(
        metadata=metadata if isinstance(metadata, dict) else {},
        service_callbacks=list(getattr(litellm, "service_callback", None) or []),
        apply_rate_limits=apply_rate_limits,
        verified=_VERIFIED,
    )


_VERIFIED: bool = compat.is_verified(compat.litellm_version())
# The registered callbacks that could see some hit, per (apply_rate_limits, the callback lists' members):
# the lists change when the proxy's config does, not per request. Each entry keeps every member it was
# worked out from alive, so no id in its key can be reused by another object while it is kept.
_POSSIBLE: dict[tuple[Any, ...], tuple[tuple[Any, ...], list[Any]]] = {}


def _possible(registered: tuple[list[Any], list[Any], list[Any]], apply_rate_limits: bool) -> list[Any]:
    key = (apply_rate_limits, *(tuple(map(id, members)) for members in registered))
    found = _POSSIBLE.get(key)
    if found is None:
        members = tuple(member for listed in registered for member in listed)
        candidates = candidate_callbacks(*registered, {})
        found = (
            members,
            possible_observers(candidates, apply_rate_limits=apply_rate_limits, verified=_VERIFIED),
        )
        if len(_POSSIBLE) > 64:
            _POSSIBLE.clear()
        _POSSIBLE[key] = found
    return found[1]


async def _log_hit_now(
    kind: RequestKind,
    kwargs: dict[str, Any],
    response: Any,
    start: float,
    end: float,
    facts: HitFacts,
) -> None:
    try:
        import litellm

        lit = compat.fast_path_internals()
        start_dt, end_dt = datetime.fromtimestamp(start), datetime.fromtimestamp(end)
        call_type = CALL_TYPES[kind]
        # No deployment served the hit: without a deployment id the router does not count it as that
        # deployment's traffic (usage-based routing, cooldowns), which it would otherwise distort.
        model_info = {k: v for k, v in (kwargs.get("model_info") or {}).items() if k != "id"}
        metadata = {**(kwargs.get("metadata") or {}), "model_info": model_info}
        logged = {k: v for k, v in kwargs.items() if k != "stream"}
        logged.update(model_info=model_info, metadata=metadata)
        logging_obj, _ = lit.function_setup(call_type, lit.Rules(), start_dt, **logged)
        provider = kwargs.get("custom_llm_provider")
        model = str(kwargs.get("model") or "")
        if isinstance(provider, str) and model.startswith(provider + "/"):
            model = model[len(provider) + 1 :]
        logging_obj.update_environment_variables(
            model=model,
            user=kwargs.get("user"),
            optional_params={},
            litellm_params={
                "logger_fn": None,
                "acompletion": True,
                "api_base": kwargs.get("api_base"),
                "metadata": metadata,
                "model_info": model_info,
                "proxy_server_request": kwargs.get("proxy_server_request"),
                "stream_response": {},
                "custom_llm_provider": provider,
                "preset_cache_key": None,
                "litellm_call_id": kwargs.get("litellm_call_id"),
            },
            input=kwargs.get("input")
            if kind == "embedding"
            else kwargs.get("messages", kwargs.get("prompt")),
            api_key=None,
            original_response=str(response),
            additional_args=None,
            stream=False,
            custom_llm_provider=provider,
        )
        combine = logging_obj.get_combined_callback_list

        def observers(dynamic_success_callbacks: Any, global_callbacks: Any) -> list[Any]:
            return hit_observers(combine(dynamic_success_callbacks, global_callbacks), facts)

        # Per call: the hit's logging object only, never LiteLLM's global callback list.
        setattr(logging_obj, "get_combined_callback_list", observers)  # noqa: B010
        _memoize_saved_cost(logging_obj, call_type, kwargs, response)
        # The provider's own name for the model (as upstream answered it): LiteLLM resolves cost-map
        # entries for it quickly, while the prefixed name takes a slow path for Ollama on every call.
        logged_response = {**response, "model": model} if isinstance(response, dict) and model else response
        result = _response_object(kind, logged_response, litellm, lit.convert_to_model_response_object)
        _install_model_cost_memo()
        logging_hit = _LOGGING_HIT.set(True)
        try:
            await logging_obj.async_success_handler(
                result=result, start_time=start_dt, end_time=end_dt, cache_hit=True
            )
        finally:
            _LOGGING_HIT.reset(logging_hit)
    except Exception:
        log.warning("fast path hit not logged", exc_info=True)


# True while this module logs a hit (and in tasks that logging starts): see _install_model_cost_memo.
_LOGGING_HIT: contextvars.ContextVar[bool] = contextvars.ContextVar("lcp_logging_hit", default=False)
_MODEL_COST_INFO: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
_MEMO_MARK = "_lcp_hit_memo"


def _install_model_cost_memo() -> None:
    """Memoize LiteLLM's model cost-map lookup for the standard logging payload of the hits logged here.

    Every payload LiteLLM builds looks the model up (``StandardLoggingPayloadSetup.
    get_model_cost_information``); for an Ollama deployment that builds a set of all ~4,500 cost-map
    names and, for a model not in the map, asks the server (``/api/show``, synchronously): ~0.4 ms, a
    ninth of a fast-path hit's CPU. For one (model, provider, API base, response model) the answer
    does not change between hits. The memo answers only while a hit is being logged here (a context
    variable); every other call goes to LiteLLM's function unchanged. Installed once, idempotent."""
    setup = compat.internal("StandardLoggingPayloadSetup")
    if setup is None:
        return
    current = setup.__dict__.get("get_model_cost_information")
    original = current.__func__ if isinstance(current, staticmethod) else None
    if original is None or getattr(original, _MEMO_MARK, False):
        return
    try:
        signature = inspect.signature(original)
    except (TypeError, ValueError):
        return
    if "init_response_obj" not in signature.parameters:
        return  # another LiteLLM: leave it alone

    def get_model_cost_information(*args: Any, **kwargs: Any) -> Any:
        if not _LOGGING_HIT.get():
            return original(*args, **kwargs)
        try:
            arguments = signature.bind(*args, **kwargs).arguments
            key = _cost_info_key(arguments)
            hash(key)
        except TypeError:
            return original(*args, **kwargs)
        if key in _MODEL_COST_INFO:
            _MODEL_COST_INFO.move_to_end(key)
            info = _MODEL_COST_INFO[key]
        else:
            info = original(*args, **kwargs)
            _MODEL_COST_INFO[key] = info
            while len(_MODEL_COST_INFO) > 1024:
                _MODEL_COST_INFO.popitem(last=False)
        # A copy per payload: callbacks may edit the payload they are given.
        if isinstance(info, dict):
            value = info.get("model_map_value")
            return {**info, "model_map_value": dict(value) if isinstance(value, dict) else value}
        return info

    setattr(get_model_cost_information, _MEMO_MARK, True)
    setup.get_model_cost_information = staticmethod(get_model_cost_information)


def _cost_info_key(arguments: Mapping[str, Any]) -> tuple[Any, ...]:
    """Everything the cost-map lookup depends on: the arguments, and of the response its model names
    (LiteLLM picks the name to look up from them)."""
    response = arguments.get("init_response_obj")
    hidden = getattr(response, "_hidden_params", None)
    hidden = hidden if isinstance(hidden, dict) else {}
    model = response.get("model") if isinstance(response, dict) else getattr(response, "model", None)
    facts = (
        type(response).__name__,
        model,
        hidden.get("provider_response_model"),
        hidden.get("model"),
        hidden.get("region_name"),
    )
    return (*((k, v) for k, v in arguments.items() if k != "init_response_obj"), facts)


_SAVED_COSTS: OrderedDict[tuple[str, ...], float | None] = OrderedDict()


def _memoize_saved_cost(logging_obj: Any, call_type: str, kwargs: Mapping[str, Any], payload: Any) -> None:
    """LiteLLM prices every cache hit as if it had gone upstream (``saved_cache_cost``); for an Ollama
    model that scans the whole cost map and may ask the server, milliseconds per hit. The price of one
    stored answer does not change, so it is computed once per (model, usage) and reused."""
    usage = payload.get("usage") if isinstance(payload, dict) else None
    try:
        usage_key = orjson.dumps(usage, option=orjson.OPT_SORT_KEYS).decode()
    except TypeError:
        return
    key = (
        call_type,
        str(kwargs.get("model")),
        str(kwargs.get("custom_llm_provider")),
        str(kwargs.get("api_base")),
        usage_key,
    )
    original = logging_obj.response_cost_calculator

    def response_cost_calculator(*args: Any, **options: Any) -> float | None:
        if options.get("cache_hit") is not False or args:
            return original(*args, **options)  # type: ignore[no-any-return]
        if key in _SAVED_COSTS:
            _SAVED_COSTS.move_to_end(key)
            return _SAVED_COSTS[key]
        cost = original(**options)
        _SAVED_COSTS[key] = cost
        while len(_SAVED_COSTS) > 4096:
            _SAVED_COSTS.popitem(last=False)
        return cost  # type: ignore[no-any-return]

    setattr(logging_obj, "response_cost_calculator", response_cost_calculator)  # noqa: B010


def _response_object(kind: RequestKind, payload: Any, litellm: Any, convert: Any) -> Any:
    if kind == "embedding":
        result = litellm.EmbeddingResponse(**payload)
    elif kind == "text":
        result = litellm.TextCompletionResponse(**payload)
    else:
        result = convert(response_object=dict(payload), model_response_object=litellm.ModelResponse())
    hidden = getattr(result, "_hidden_params", None)
    if isinstance(hidden, dict):
        hidden["cache_hit"] = True
    return result
