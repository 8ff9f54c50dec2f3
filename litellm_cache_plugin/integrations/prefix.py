"""LiteLLM glue of the KV-prefix layer: canonical system prompts, prefix-affinity routing, reuse.

:class:`PrefixRouting` is a LiteLLM ``CustomLogger`` of its own, registered next to the cache plugin
in ``litellm.callbacks`` (``CachePlugin.install()`` does it when ``layers.prefix.enabled`` is set
globally or for any model group). Its hooks:

- ``async_pre_call_hook`` (proxy, before routing) and ``async_pre_call_deployment_hook`` (SDK level,
  before the cache lookup and the provider call): canonicalize the leading system prompts
  (:mod:`litellm_cache_plugin.prefix.canonical`).
- ``async_filter_deployments``: LiteLLM's Router calls it with the model group's deployments that
  passed its own health and cooldown filters, on the proxy and in plain ``litellm.Router`` alike.
  It returns the one deployment consistent hashing with bounded loads chooses
  (:mod:`litellm_cache_plugin.prefix.affinity`); the Router's strategy then has a single candidate.
  Deployments this request already failed on, or that failed in the last ``failure_cooldown``
  seconds, are passed over, so a retry (LiteLLM's ``num_retries``) goes to the prefix's next choice.
- ``async_log_success_event`` / ``async_log_failure_event``: end the in-flight count of the request
  and measure the prefix reuse the server reports (:mod:`litellm_cache_plugin.prefix.reuse`), counted
  as layer ``prefix`` in the plugin's stats (``hit``/``miss``, ``prompt_tokens``, ``reused_tokens``,
  ``latency_saved_ms`` = prompt-evaluation time saved) and in its OpenTelemetry instruments.

Requests are followed through retries by a random route token in the request metadata
(``lcp_prefix_route``): LiteLLM passes the same metadata dict to every attempt and to the logging
callbacks. A token sent by a proxy client is dropped.
"""

from __future__ import annotations

import logging
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import orjson

from litellm_cache_plugin.integrations.compat import CustomLogger
from litellm_cache_plugin.prefix.affinity import FailureMemory, InflightTracker, choose_deployment
from litellm_cache_plugin.prefix.canonical import CanonicalPrompts, affinity_key, canonicalize_messages
from litellm_cache_plugin.prefix.reuse import EvalRate, PrefixReuse, TokenRatio, ollama_reuse, openai_reuse
from litellm_cache_plugin.savings import Savings
from litellm_cache_plugin.settings import PluginSettings, PrefixLayer
from litellm_cache_plugin.versions import OLLAMA_PROVIDERS

log = logging.getLogger("litellm_cache_plugin")

ROUTE_FIELD = "lcp_prefix_route"
LAYER = "prefix"
# LiteLLM routes file, batch and vector-store calls with a placeholder user message ending like this:
# those must keep every deployment.
_PLACEHOLDER_SUFFIX = "-api-fake-text"
_MEASURED_CALL_TYPES = frozenset({"acompletion", "completion", "atext_completion", "text_completion"})
_MAX_TRIED = 20_000


def _metadata_of(kwargs: Mapping[str, Any]) -> dict[str, Any] | None:
    for name in ("metadata", "litellm_metadata"):
        value = kwargs.get(name)
        if isinstance(value, dict):
            return value
    return None


def _deployment_id(deployment: Mapping[str, Any]) -> str | None:
    info = deployment.get("model_info")
    value = info.get("id") if isinstance(info, Mapping) else None
    return str(value) if value else None


def _is_placeholder(messages: list[Any]) -> bool:
    if len(messages) != 1 or not isinstance(messages[0], Mapping):
        return False
    content = messages[0].get("content")
    return isinstance(content, str) and content.endswith(_PLACEHOLDER_SUFFIX)


def _ids(value: object) -> set[str]:
    if isinstance(value, (list, tuple, set, frozenset)):
        return {str(v) for v in value}
    return set()


class _GroupMeters:
    """Per model group: what the reuse estimate learns from the server's reports."""

    __slots__ = ("rate", "ratio")

    def __init__(self, tokens_per_second: float | None) -> None:
        self.ratio = TokenRatio()
        self.rate = EvalRate(tokens_per_second)


class PrefixRouting(CustomLogger):
    """The prefix layer's hooks (see the module docstring). One per plugin instance.

    ``owner`` is the :class:`~litellm_cache_plugin.integrations.litellm.CachePlugin` whose engine
    (``owner.engine``: per-worker stats and OpenTelemetry) receives the measurements.
    """

    def __init__(self, settings: PluginSettings, *, owner: Any = None, proxy_mode: bool = False) -> None:
        super().__init__()
        self.settings = settings
        self.owner = owner
        self.proxy_mode = proxy_mode
        self.inflight = InflightTracker(max_age=settings.layers.prefix.affinity.inflight_timeout)
        self.failures = FailureMemory(cooldown=settings.layers.prefix.affinity.failure_cooldown)
        self._tried: OrderedDict[str, set[str]] = OrderedDict()
        self._layers: dict[str, PrefixLayer] = {}
        self._canonical: dict[int, CanonicalPrompts] = {}
        self._meters: dict[str, _GroupMeters] = {}

    @staticmethod
    def wanted(settings: PluginSettings) -> bool:
        """Whether any model group has the prefix layer on."""
        if settings.layers.prefix.enabled:
            return True
        return any(m.layers is not None and m.layers.prefix.enabled for m in settings.models.values())

    # -- settings per model group -------------------------------------------------------------------

    def layer(self, model_group: str) -> PrefixLayer:
        layer = self._layers.get(model_group)
        if layer is None:
            layer = self.settings.for_model(model_group).layers.prefix
            if len(self._layers) < 10_000:  # groups come from the config; bounded all the same
                self._layers[model_group] = layer
        return layer

    def canonical(self, layer: PrefixLayer) -> CanonicalPrompts:
        prompts = self._canonical.get(id(layer))
        if prompts is None:
            prompts = CanonicalPrompts(
                layer.canonical_system_prompts, stable_rendering=layer.stable_rendering
            )
            self._canonical[id(layer)] = prompts  # layers are kept alive by self._layers / settings
        return prompts

    def canonicalize(self, data: dict[str, Any], model_group: object) -> None:
        """Rewrite ``data["messages"]`` in place (a new list) when the group's layer is on."""
        if not isinstance(model_group, str) or not isinstance(data.get("messages"), list):
            return
        layer = self.layer(model_group)
        if not layer.enabled:
            return
        rewritten = canonicalize_messages(data["messages"], self.canonical(layer))
        if rewritten is not None:
            data["messages"] = rewritten

    # -- request path -------------------------------------------------------------------------------

    async def async_pre_call_hook(
        self, user_api_key_dict: Any, cache: Any, data: dict[str, Any], call_type: Any
    ) -> dict[str, Any]:
        metadata = _metadata_of(data)
        if metadata is not None:
            metadata.pop(ROUTE_FIELD, None)  # only the router side of this process may set it
        try:
            self.canonicalize(data, data.get("model"))
        except Exception:
            log.exception("prefix canonicalization failed open")
        return data

    async def async_pre_call_deployment_hook(self, kwargs: dict[str, Any], call_type: Any) -> dict[str, Any]:
        metadata = _metadata_of(kwargs) or {}
        try:
            self.canonicalize(kwargs, metadata.get("model_group") or kwargs.get("model"))
        except Exception:
            log.exception("prefix canonicalization failed open")
        return kwargs

    async def async_filter_deployments(
        self,
        model: str,
        healthy_deployments: list[Any],
        messages: Any,
        request_kwargs: dict[str, Any] | None = None,
        parent_otel_span: Any = None,
    ) -> list[Any]:
        try:
            chosen = self.route(model, healthy_deployments, messages, request_kwargs)
        except Exception:  # routing must never fail because of affinity: let the Router decide
            log.exception("prefix affinity failed open")
            return healthy_deployments
        return healthy_deployments if chosen is None else [chosen]

    def route(
        self,
        model_group: str,
        deployments: list[Any],
        messages: Any,
        request_kwargs: dict[str, Any] | None,
    ) -> Any:
        """The deployment affinity picks for this request, or None to leave the choice to the Router."""
        if len(deployments) < 2 or request_kwargs is None or not isinstance(messages, list):
            return None
        if _is_placeholder(messages):
            return None
        layer = self.layer(model_group)
        if not (layer.enabled and layer.affinity.enabled):
            return None
        key = affinity_key(messages, layer.affinity.prefix_chars)
        if key is None:
            return None
        by_id: dict[str, Any] = {}
        for deployment in deployments:
            deployment_id = _deployment_id(deployment) if isinstance(deployment, Mapping) else None
            if deployment_id is None:
                return None  # not a Router deployment list we understand
            by_id.setdefault(deployment_id, deployment)
        # What LiteLLM filters out after this hook, filtered out before choosing (so that the choice
        # survives): deployments this request must not use again, then the lowest "order" tier.
        excluded = _ids(request_kwargs.get("_excluded_deployment_ids")) | _ids(
            request_kwargs.get("_retry_skipped_deployment_ids")
        )
        candidates = [d for d in by_id.values() if _deployment_id(d) not in excluded] or list(by_id.values())
        candidates = _lowest_order(candidates)

        metadata = _metadata_of(request_kwargs)
        if metadata is None:
            metadata = request_kwargs.setdefault("metadata", {})
        token = metadata.get(ROUTE_FIELD)
        if not isinstance(token, str):
            token = uuid.uuid4().hex
            metadata[ROUTE_FIELD] = token
        # A retry arrives here with the same token: the deployment failure hook has already ended its
        # failed attempt and noted the deployment in ``_tried``. Were the attempt still counted (a report
        # that never came, or an application passing one metadata dict to concurrent calls), its count
        # ends here; it is not taken for a failure.
        self.inflight.finish(token)
        tried = self._tried.get(token, set())
        ids = [str(_deployment_id(d)) for d in candidates]
        affinity = layer.affinity
        chosen = choose_deployment(
            key,
            ids,
            self.inflight.loads(),
            affinity.load_factor,
            self.failures.suspects() | tried,
            floor=affinity.min_inflight_cap,
        )
        self.inflight.start(token, chosen)
        self._bump(model_group, "routed")
        return by_id[chosen]

    def _remember_tried(self, token: str, tried: set[str]) -> None:
        self._tried[token] = tried
        self._tried.move_to_end(token)
        while len(self._tried) > _MAX_TRIED:
            self._tried.popitem(last=False)

    # -- outcomes -------------------------------------------------------------------------------------
    #
    # An attempt ends in whichever of these LiteLLM calls first (each end is idempotent and only ends
    # the attempt on the deployment reported, never a retry that already replaced it): the deployment
    # hooks run in line with the request (before a retry is routed), the logging events in background
    # tasks (and for streams only once the stream is complete).

    async def async_post_call_success_deployment_hook(
        self, request_data: dict[str, Any], response: Any, call_type: Any
    ) -> Any:
        if request_data.get("stream") is not True:  # a stream is still running: its log event ends it
            self._succeeded(request_data)
        return None

    async def async_post_call_failure_deployment_hook(
        self,
        request_data: Mapping[str, Any],
        exception: Exception,
        call_type: Any,
        fallback_depth: int | None = None,
    ) -> None:
        self._failed(request_data)

    async def async_log_success_event(
        self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        if not isinstance(kwargs, Mapping):
            return
        try:
            self._succeeded(kwargs.get("litellm_params") or {})
            self.measure(kwargs, response_obj)
        except Exception:
            log.exception("prefix measurement failed (ignored)")

    async def async_log_failure_event(
        self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        if isinstance(kwargs, Mapping):
            self._failed(kwargs.get("litellm_params") or {})

    def _succeeded(self, params: Mapping[str, Any]) -> None:
        try:
            token, deployment = _route_of(params)
            if token is not None and deployment is not None:
                if self.inflight.finish(token, deployment) is not None:
                    self._tried.pop(token, None)
                self.failures.clear(deployment)
        except Exception:
            log.exception("prefix bookkeeping failed (ignored)")

    def _failed(self, params: Mapping[str, Any]) -> None:
        try:
            token, deployment = _route_of(params)
            if deployment is None:
                return
            self.failures.mark(deployment)
            if token is not None:
                self.inflight.finish(token, deployment)
                self._remember_tried(token, self._tried.get(token, set()) | {deployment})
        except Exception:
            log.exception("prefix bookkeeping failed (ignored)")

    # -- measured reuse -------------------------------------------------------------------------------

    def measure(self, kwargs: Mapping[str, Any], response: Any) -> PrefixReuse | None:
        """Measure and record the reuse one successful upstream response reports."""
        if kwargs.get("cache_hit") or str(kwargs.get("call_type") or "") not in _MEASURED_CALL_TYPES:
            return None
        params = kwargs.get("litellm_params") or {}
        metadata = params.get("metadata") if isinstance(params, Mapping) else None
        group = (metadata or {}).get("model_group") or kwargs.get("model")
        if not isinstance(group, str) or not group:
            return None
        layer = self.layer(group)
        if not (layer.enabled and layer.measure):
            return None
        usage = getattr(response, "usage", None)
        if usage is None and isinstance(response, Mapping):
            usage = response.get("usage")
        if usage is None:
            return None
        provider = kwargs.get("custom_llm_provider") or (
            params.get("custom_llm_provider") if params else None
        )
        meters = self._meters.get(group)
        if meters is None:
            meters = self._meters[group] = _GroupMeters(layer.prompt_tokens_per_second)
        if provider in OLLAMA_PROVIDERS:
            reuse = self._ollama(kwargs, usage, meters)
        else:
            reuse = openai_reuse(usage, tokens_per_second=meters.rate.tokens_per_second)
        if reuse is not None:
            self.record_reuse(group, reuse, provider=provider if isinstance(provider, str) else None)
        return reuse

    def _ollama(self, kwargs: Mapping[str, Any], usage: Any, meters: _GroupMeters) -> PrefixReuse | None:
        evaluated = getattr(usage, "prompt_tokens", None)
        if evaluated is None and isinstance(usage, Mapping):
            evaluated = usage.get("prompt_tokens")
        if not isinstance(evaluated, int) or evaluated <= 0:
            return None
        raw = _ollama_body(kwargs.get("original_response"))
        duration = raw.get("prompt_eval_duration") if raw else None
        if isinstance(duration, (int, float)) and raw and raw.get("prompt_eval_count") == evaluated:
            meters.rate.observe(evaluated, duration / 1e9)
        estimate = _token_estimate(kwargs)
        if estimate is None:
            return None
        meters.ratio.observe(estimate, evaluated)
        total = meters.ratio.prompt_tokens(estimate, evaluated)
        return ollama_reuse(evaluated, total, tokens_per_second=meters.rate.tokens_per_second)

    def record_reuse(self, model_group: str, reuse: PrefixReuse, *, provider: str | None = None) -> None:
        """Count one measured response as a ``prefix`` lookup (``hit`` when the server reused any of
        the prompt) in the plugin's stats and telemetry, with the reused tokens and the estimated
        prompt-evaluation time as its savings; ``prompt_tokens`` is counted too, for the reuse share."""
        engine = getattr(self.owner, "engine", None)
        if engine is None:
            return
        seconds = reuse.eval_seconds_saved_estimate
        engine.account(
            LAYER,
            model_group,
            "hit" if reuse.hit else "miss",
            reuse.source,
            savings=Savings(
                latency_ms=seconds * 1000.0 if seconds is not None else None,
                input_tokens=reuse.reused_tokens,
                output_tokens=0,
                gpu_seconds=seconds,
            ),
            operation="chat",
            provider=provider,
        )
        self._bump(model_group, "prompt_tokens", reuse.prompt_tokens)

    def _stats(self) -> Any:
        engine = getattr(self.owner, "engine", None)
        return getattr(engine, "stats", None)

    def _bump(self, model_group: str, what: str, amount: int = 1) -> None:
        stats = self._stats()
        if stats is not None and amount:
            stats.bump(LAYER, model_group, what, amount)


def _route_of(params: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(route token, deployment id) of an attempt, from its request kwargs or logged litellm_params."""
    metadata = _metadata_of(params) if isinstance(params, Mapping) else None
    token = metadata.get(ROUTE_FIELD) if metadata is not None else None
    info = params.get("model_info") if isinstance(params, Mapping) else None
    deployment = info.get("id") if isinstance(info, Mapping) else None
    return (token if isinstance(token, str) else None, str(deployment) if deployment else None)


def _lowest_order(deployments: list[Any]) -> list[Any]:
    """Deployments of the lowest ``order`` tier (LiteLLM only uses those while they are healthy)."""
    orders = {id(d): _order(d) for d in deployments}
    present = [o for o in orders.values() if o is not None]
    if not present:
        return deployments
    lowest = min(present)
    return [d for d in deployments if orders[id(d)] == lowest]


def _order(deployment: Mapping[str, Any]) -> int | None:
    params = deployment.get("litellm_params")
    value = params.get("order") if isinstance(params, Mapping) else None
    if value is None:
        info = deployment.get("model_info")
        value = info.get("order") if isinstance(info, Mapping) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _ollama_body(original: object) -> dict[str, Any] | None:
    """Ollama's final JSON (non-streamed responses keep it as LiteLLM's ``original_response``)."""
    if not isinstance(original, (str, bytes)) or original[:1] not in ("{", b"{"):
        return None
    try:
        body = orjson.loads(original)
    except orjson.JSONDecodeError:
        return None
    return body if isinstance(body, dict) else None


def _token_estimate(kwargs: Mapping[str, Any]) -> int | None:
    """Tokens of the prompt by LiteLLM's default (tiktoken) tokenizer: no model-specific tokenizer,
    which could mean a download; :class:`TokenRatio` scales it to the server's tokens."""
    import litellm

    messages = kwargs.get("messages")
    try:
        if isinstance(messages, list) and messages:
            return int(litellm.token_counter(messages=messages))
        prompt = kwargs.get("prompt") or kwargs.get("input")
        if isinstance(prompt, str) and prompt:
            return int(litellm.token_counter(text=prompt))
    except Exception:
        log.debug("prefix: token estimate failed", exc_info=True)
    return None
