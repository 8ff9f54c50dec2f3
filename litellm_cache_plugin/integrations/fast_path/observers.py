"""Which of LiteLLM's success callbacks would see a fast-path hit, decided before its logging is built.

LiteLLM logs every cache hit the same way: a logging object, the standard logging payload (cost-map
lookups, metadata copies, redaction) and then each callback. For a hit that is about 2 CPU-ms of the
3.5 a fast-path hit costs (``benchmarks/hit_path.py --ceiling``), and in a proxy without a logging
integration (no DB spend logs, no Prometheus, no Langfuse, no custom logger) every callback that
receives it does nothing with it. Those hits are not logged: the work would reach nobody.

A callback sees a hit unless one of these is true of it:

- it is a ``CustomLogger`` whose class inherits every success method from ``CustomLogger`` (no-ops);
- it is a rate limiter and ``fast_path.apply_rate_limits`` is off (hits consume no limits then);
- it is one of LiteLLM's own callbacks listed in ``_IGNORES_HITS``, under the condition listed there,
  and this LiteLLM is one whose source those conditions were read from (``compat.VERIFIED_RELEASES``);
  another release logs every hit, as before.

Anything else (a string integration such as ``"langfuse"``, a function, an unknown class, a callback of
the request itself) sees the hit, and so does every callback when LiteLLM is asked to print the standard
logging payload. Pure: the callers pass the lists and facts in.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from litellm.integrations.custom_logger import CustomLogger

from litellm_cache_plugin.integrations.fast_path.pipeline import is_rate_limiter


@dataclass(frozen=True)
class HitFacts:
    """What the conditions depend on, for one hit."""

    metadata: Mapping[str, Any]  # the request's metadata (``litellm_params["metadata"]`` in the log)
    service_callbacks: Sequence[Any]  # ``litellm.service_callback``
    apply_rate_limits: bool
    verified: bool  # this LiteLLM is in compat.VERIFIED_RELEASES


def _never(facts: HitFacts) -> bool:
    return True


def _no_service_callback(facts: HitFacts) -> bool:
    return not facts.service_callbacks


# Where LiteLLM's request setup puts the model budgets the limiter charges (1.108 added team_member).
_MODEL_BUDGET_FIELDS: Final = tuple(
    f"user_api_key_{entity}model_max_budget" for entity in ("", "team_", "user_", "end_user_", "team_member_")
)


def _no_model_budget(facts: HitFacts) -> bool:
    # A hit charges 0 to a budget, but the limiter may still open a budget window: with a budget
    # configured the hit is logged as before.
    metadata = facts.metadata
    return not any(metadata.get(name) for name in _MODEL_BUDGET_FIELDS)


# LiteLLM callback classes (module.qualname) that do nothing with a fast-path hit when the condition
# holds. A hit is logged with cache_hit True, response_cost 0 and no deployment id.
_IGNORES_HITS: Final[dict[str, Callable[[HitFacts], bool]]] = {
    # Forwards request latency to litellm.service_callback (prometheus_system, datadog, otel) only.
    "litellm._service_logger.ServiceLogging": _no_service_callback,
    # Returns at once for a cache hit (it learns provider prompt caching from upstream responses).
    "litellm.proxy.hooks.prompt_cache_prediction.PromptCacheObserver": _never,
    # Returns at once when response_cost <= 0.
    "litellm.proxy.hooks.max_budget_per_session_limiter._PROXY_MaxBudgetPerSessionHandler": _never,
    # Returns at once unless a key/team/user/end-user/team-member model_max_budget covers the model.
    "litellm.proxy.hooks.model_max_budget_limiter._PROXY_VirtualKeyModelMaxBudgetLimiter": _no_model_budget,
}
# Router.deployment_callback_on_success returns at once for a call without a deployment id; a hit is
# logged without one (hit_log strips it, so that the router does not count it as that deployment's).
_ROUTER_CALLBACK: Final = ("litellm.router", "Router.deployment_callback_on_success")
# LiteLLM's own "cache" callback writes answers to litellm.cache; a cache hit is never written back.
_CACHE_WRITER: Final = "cache"

# What LiteLLM's async success handler calls on a CustomLogger (besides redaction helpers whose result
# only goes to these): a logger whose class overrides none of them cannot see a hit.
_SUCCESS_METHODS: Final = ("async_logging_hook", "async_log_success_event", "async_log_stream_event")
_OBSERVING_CLASSES: dict[type, bool] = {}  # per class (the registered callbacks' classes are few)


def observes_success(callback: object) -> bool:
    """False for a CustomLogger that inherits every success method from CustomLogger itself (no-ops:
    the plugin, most of the proxy's built-in hooks). Anything else (strings, functions, other objects)
    is kept."""
    if not isinstance(callback, CustomLogger):
        return True
    kind = type(callback)
    known = _OBSERVING_CLASSES.get(kind)
    if known is None:
        known = any(getattr(kind, name, None) is not getattr(CustomLogger, name) for name in _SUCCESS_METHODS)
        _OBSERVING_CLASSES[kind] = known
    return known


def sees_hit(callback: object, facts: HitFacts) -> bool:
    """Would ``callback`` do anything with this hit's success logging?"""
    if isinstance(callback, str):
        return not (facts.verified and callback == _CACHE_WRITER)
    if not observes_success(callback):
        return False
    if not facts.apply_rate_limits and is_rate_limiter(callback):
        return False
    if not facts.verified:
        return True
    if isinstance(callback, CustomLogger):
        if getattr(callback, "mock_testing", False):
            return True  # LiteLLM's test counters
        kind = type(callback)
        ignores = _IGNORES_HITS.get(f"{kind.__module__}.{kind.__qualname__}")
        return ignores is None or not ignores(facts)
    function = getattr(callback, "__func__", None)
    return function is None or (function.__module__, function.__qualname__) != _ROUTER_CALLBACK


def hit_observers(callbacks: Iterable[Any], facts: HitFacts) -> list[Any]:
    """The callbacks of ``callbacks`` (in order, each once) that would see this hit."""
    seen: set[int] = set()
    found: list[Any] = []
    for callback in callbacks:
        if id(callback) in seen:
            continue
        seen.add(id(callback))
        if sees_hit(callback, facts):
            found.append(callback)
    return found


def possible_observers(callbacks: Iterable[Any], *, apply_rate_limits: bool, verified: bool) -> list[Any]:
    """The callbacks of ``callbacks`` that would see some hit (those a request's metadata or the
    service callbacks could make observers included): what is left to ask per hit. Depends on the
    registered callbacks only, so it can be kept while they stay the same."""
    any_hit = HitFacts(
        metadata=dict.fromkeys(_MODEL_BUDGET_FIELDS, True),
        service_callbacks=("any",),
        apply_rate_limits=apply_rate_limits,
        verified=verified,
    )
    return hit_observers(callbacks, any_hit)


def candidate_callbacks(
    async_success: Sequence[Any],
    callbacks: Sequence[Any],
    success: Sequence[Any],
    kwargs: Mapping[str, Any],
) -> list[Any]:
    """Every callback LiteLLM's async success handler could call for this hit: its global list, the
    callbacks its call setup would add to it (``litellm.callbacks``; strings and async functions of
    ``litellm.success_callback``), and the request's own (``callbacks``, ``success_callback``)."""
    found = [*async_success, *callbacks]
    # A CustomLogger only in success_callback is called by LiteLLM's sync handler alone.
    found += [
        c
        for c in success
        if isinstance(c, str) or (not isinstance(c, CustomLogger) and inspect.iscoroutinefunction(c))
    ]
    for name in ("callbacks", "success_callback"):
        extra = kwargs.get(name)
        if isinstance(extra, list):
            found += extra
        elif extra:
            found.append(extra)
    return found
