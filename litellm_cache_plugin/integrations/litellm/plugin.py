"""The LiteLLM plugin: composition root and the proxy/SDK hooks.

How a request flows through the proxy:

1. ``async_pre_call_hook`` (after the proxy authenticated the caller): drops any client-sent
   ``cache_key``, maps the ``Cache-Control`` request header to LiteLLM's ``cache`` controls, applies
   ``force_zero``, and stamps the authenticated identity into the request metadata, signed with a
   per-process secret so that nothing a client sends can pose as an identity.
2. LiteLLM's SDK wrapper consults ``litellm.cache``, which is our carrier (``carrier.py``): it builds
   the region's request context (``context.py``) and asks the region (``litellm_cache_plugin.region``),
   which returns a stored response on a hit. LiteLLM then short-circuits the provider call and, for
   ``stream=True``, replays the stored response as SSE chunks. Embedding batches are looked up per
   item; only missing items go upstream.
3. On a miss LiteLLM calls the provider and hands the complete response (streams only once finished)
   back to the carrier, which hands it to the region's write (stored if complete and cacheable).
4. ``async_post_call_response_headers_hook`` adds ``x-cache``/``x-cache-layer``/``Age`` from the
   decision the region recorded for that call id, and with the edge layer ``Cache-Control``/``ETag``/
   ``Vary`` (``integrations/edge.py``, which also answers ``If-None-Match`` with 304).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Mapping
from typing import Any

import litellm

from litellm_cache_plugin.crypto import CipherConfigError, PayloadCipher
from litellm_cache_plugin.engine import CacheEngine, SingleFlightSettings
from litellm_cache_plugin.integrations.compat import CustomLogger, text_completion_stream_wrapper
from litellm_cache_plugin.integrations.edge import hook_edge_headers
from litellm_cache_plugin.integrations.litellm.carrier import CarrierCache
from litellm_cache_plugin.integrations.litellm.context import (
    IDENTITY_FIELD,
    ContextBuilder,
    metadata_of,
    provider_of,
)
from litellm_cache_plugin.integrations.litellm.upstream import (
    LiteLLMCosts,
    LiteLLMJudge,
    LiteLLMUpstream,
    litellm_embed,
)
from litellm_cache_plugin.integrations.prefix import PrefixRouting
from litellm_cache_plugin.policy.controls import (
    RequestControls,
    merge_controls,
    parse_cache_control,
    parse_litellm_cache_field,
    response_headers,
)
from litellm_cache_plugin.policy.keys import Identity
from litellm_cache_plugin.policy.tags import TagError, parse_tags
from litellm_cache_plugin.region import CacheRegion, IdentitySigner, RequestContext, identity_of
from litellm_cache_plugin.settings import EffectiveSettings, PluginSettings, SettingsError
from litellm_cache_plugin.store import GuardedStore, open_store
from litellm_cache_plugin.telemetry_setup import TelemetryUnavailable, build_telemetry
from litellm_cache_plugin.versions import OLLAMA_PROVIDERS, OllamaVersions

log = logging.getLogger("litellm_cache_plugin")


class CachePlugin(CustomLogger):
    """The plugin: one instance per process, shared by the proxy hooks and the carrier cache.

    Proxy: listed as ``litellm_settings: callbacks: ["litellm_cache_plugin.proxy_plugin"]``.
    SDK/Router: see :func:`litellm_cache_plugin.attach`.
    """

    def __init__(self, settings: PluginSettings, *, proxy_mode: bool = False) -> None:
        super().__init__()
        self.settings = settings
        self.proxy_mode = proxy_mode
        self.signer = IdentitySigner()
        try:
            store = open_store(settings.backend, timeout=None)
        except ValueError as error:
            raise SettingsError(f"cache_plugin.backend: {error}") from None
        self.raw_store = store
        try:
            cipher = PayloadCipher(settings.encryption.keys) if settings.encryption.keys else None
        except CipherConfigError as error:
            raise SettingsError(f"cache_plugin.{error}") from None
        try:
            self.telemetry_runtime = build_telemetry(settings.telemetry, backend=settings.backend)
        except TelemetryUnavailable as error:
            raise SettingsError(f"cache_plugin.telemetry: {error}") from None
        telemetry = self.telemetry_runtime.telemetry if self.telemetry_runtime is not None else None
        guarded = GuardedStore(store, timeout=settings.backend_timeout_ms / 1000.0)
        if telemetry is not None:
            scheme = settings.backend.split("://", 1)[0]
            guarded.on_error = lambda op, kind: telemetry.record_backend_error(scheme, op, kind)
        engine = CacheEngine(
            guarded,
            namespace=settings.namespace,
            single_flight=SingleFlightSettings(timeout=settings.single_flight.timeout),
            cipher=cipher,
            telemetry=telemetry,
            compress_min_bytes=settings.compress_min_bytes,
            max_payload_bytes=settings.max_entry_bytes,
        )
        self.versions = OllamaVersions(
            refresh_interval=settings.versions.refresh_interval, fetch_timeout=settings.versions.fetch_timeout
        )
        runtime = self.telemetry_runtime
        # Verified semantic matches ask a model group of this proxy (or of the attached Router).
        self.judge = LiteLLMJudge()
        self.region = CacheRegion(
            engine,
            settings,
            upstream=LiteLLMUpstream(),
            costs=LiteLLMCosts(),
            semantic=self._build_semantic(settings, engine),
            start_sampler=(lambda: runtime.ensure_sampler(engine.backend_stats))
            if runtime is not None
            else None,
            judge=self.judge,
        )
        self.contexts = ContextBuilder(
            lambda: self.settings, self.region.effective, self.signer, self.versions, proxy_mode=proxy_mode
        )
        self.carrier = CarrierCache(
            self.region, self.contexts.context, lambda: self.settings, proxy_mode=proxy_mode, raw_store=store
        )
        # --- prefix layer (KV-cache reuse): its own CustomLogger, see integrations/prefix.py ---
        self.prefix: PrefixRouting | None = None
        if PrefixRouting.wanted(settings):
            self.prefix = PrefixRouting(settings, owner=self, proxy_mode=proxy_mode)

    @property
    def engine(self) -> CacheEngine:
        return self.region.engine

    def _build_semantic(self, settings: PluginSettings, engine: CacheEngine) -> Any:
        wanted = [settings.layers.semantic] + [
            m.layers.semantic for m in settings.models.values() if m.layers is not None and not m.pii
        ]
        enabled = [layer for layer in wanted if layer.enabled]
        if not enabled:
            return None
        try:
            from litellm_cache_plugin.semantic import SemanticIndex, SemanticUnavailable, build_embedder
        except ImportError as error:
            raise SettingsError(
                f"cache_plugin.layers.semantic.enabled needs the [semantic] extra: {error}"
            ) from None
        layer = enabled[0]
        try:
            embedder = build_embedder(layer, litellm_embed=litellm_embed(layer.embedder))
            return SemanticIndex(
                engine.store,
                namespace=settings.namespace,
                embedder=embedder,
                settings=layer,
                # A shared vector index (layers.semantic.index) has the same deadline as the backend.
                index_timeout=settings.backend_timeout_ms / 1000.0,
            )
        except SemanticUnavailable as error:
            raise SettingsError(f"cache_plugin.layers.semantic: {error}") from None
        except ValueError as error:  # a malformed layers.semantic.index URL or option
            raise SettingsError(f"cache_plugin.layers.semantic.index: {error}") from None

    # -- installation ------------------------------------------------------------------------------

    def install(self) -> None:
        """Make LiteLLM consult this plugin's cache (replaces any ``litellm.cache``)."""
        if litellm.cache is not None and litellm.cache is not self.carrier:
            log.warning("litellm_cache_plugin replaces the previously configured litellm.cache")
        litellm.cache = self.carrier
        if self not in litellm.callbacks:
            litellm.callbacks.append(self)
        # --- prefix layer: canonical system prompts, affinity routing, measured reuse ---
        if self.prefix is not None and self.prefix not in litellm.callbacks:
            litellm.callbacks.append(self.prefix)
        if self.proxy_mode:
            # The proxy builds this plugin while importing `callbacks: [litellm_cache_plugin.proxy_plugin]`
            # and then extends litellm.callbacks with it without checking for it: registered twice,
            # every hook (pre-call, deployment, headers, stream wrapper) would run twice per request.
            # The extend follows the import in the same synchronous call, so the next loop turn sees it.
            with contextlib.suppress(RuntimeError):  # no running loop: nothing will extend the list
                asyncio.get_running_loop().call_soon(self.registered_once)

    def registered_once(self) -> None:
        """Keep only the first registration of this plugin (and of its prefix layer) in
        ``litellm.callbacks``, in place and in order."""
        if not isinstance(litellm.callbacks, list):
            return
        mine = [self] if self.prefix is None else [self, self.prefix]
        seen: set[int] = set()
        kept: list[Any] = []
        for callback in litellm.callbacks:
            if any(callback is own for own in mine):
                if id(callback) in seen:
                    continue
                seen.add(id(callback))
            kept.append(callback)
        if len(kept) != len(litellm.callbacks):
            litellm.callbacks[:] = kept

    # -- the region's view of a call -----------------------------------------------------------------

    def context(self, kwargs: Mapping[str, Any]) -> RequestContext | None:
        return self.contexts.context(kwargs)

    def identity_from(self, kwargs: Mapping[str, Any]) -> Identity | None:
        return self.contexts.identity_from(kwargs)

    def model_version(self, kwargs: Mapping[str, Any], provider: str | None, configured: str | None) -> str:
        return self.contexts.model_version(kwargs, provider, configured)

    def effective(self, model_group: str | None) -> EffectiveSettings:
        return self.region.effective(model_group)

    # -- proxy hooks (each defined on this class: the proxy skips inherited hooks) -----------------

    async def async_pre_call_hook(
        self, user_api_key_dict: Any, cache: Any, data: dict[str, Any], call_type: Any
    ) -> dict[str, Any]:
        # A client must never pick the cache entry: LiteLLM's own cache honours a body `cache_key`.
        data.pop("cache_key", None)
        metadata = data.get("metadata")
        if not isinstance(metadata, dict):
            metadata = {}
            data["metadata"] = metadata
        metadata[IDENTITY_FIELD] = self.signer.sign(identity_of(user_api_key_dict))
        headers = _request_headers(data)
        try:
            tags = parse_tags(headers.get("x-cache-tags"), metadata.get("cache_tags"))
        except TagError as error:
            return f"litellm_cache_plugin: {error}"  # type: ignore[return-value]
        if tags:
            metadata["cache_tags"] = list(tags)
        else:
            metadata.pop("cache_tags", None)
        header_controls = parse_cache_control(headers.get("cache-control"))
        if header_controls != RequestControls():
            merged = merge_controls(header_controls, parse_litellm_cache_field(data.get("cache")))
            controls: dict[str, Any] = dict(data["cache"]) if isinstance(data.get("cache"), dict) else {}
            if merged.no_cache:
                controls["no-cache"] = True
            if merged.no_store:
                controls["no-store"] = True
            if merged.max_age is not None:
                controls["s-maxage"] = merged.max_age
            data["cache"] = controls
        model_group = data.get("model")
        if isinstance(model_group, str) and self.settings.for_model(model_group).eligibility == "force_zero":
            data["temperature"] = 0
        return data

    async def async_pre_call_deployment_hook(self, kwargs: dict[str, Any], call_type: Any) -> dict[str, Any]:
        kwargs.pop("cache_key", None)
        provider, api_base, model = provider_of(kwargs), kwargs.get("api_base"), kwargs.get("model")
        if (
            self.settings.versions.ollama_digest
            and provider in OLLAMA_PROVIDERS
            and isinstance(api_base, str)
            and isinstance(model, str)
        ):
            await self.versions.ensure(api_base, model)
        if not self.proxy_mode:
            model_group = metadata_of(kwargs).get("model_group") or kwargs.get("model")
            if (
                isinstance(model_group, str)
                and self.settings.for_model(model_group).eligibility == "force_zero"
            ):
                kwargs["temperature"] = 0
        return kwargs

    async def async_post_call_response_headers_hook(
        self,
        data: dict[str, Any],
        user_api_key_dict: Any,
        response: Any,
        request_headers: dict[str, str] | None = None,
        litellm_call_info: dict[str, Any] | None = None,
    ) -> dict[str, str] | None:
        # Not popped: the proxy may call this hook more than once per request; the map is bounded.
        decision = self.region.decision_for(data.get("litellm_call_id"))
        if decision is None:
            return {"x-cache": "BYPASS", **hook_edge_headers(self.settings, data, None, response)}
        headers = response_headers(decision.outcome, decision.layer, decision.age)
        if decision.similarity is not None:
            headers["x-cache-similarity"] = f"{decision.similarity:.4f}"
        if decision.items is not None:
            headers["x-cache-items"] = f"{decision.items[0]}/{decision.items[1]}"
        headers.update(hook_edge_headers(self.settings, data, decision, response))
        return headers

    def release_flight(self, call_id: object) -> None:
        """The call leading a single flight ended without a stored answer: wake its waiters now."""
        self.region.release_flight(call_id)
        self.carrier.forget(call_id)

    async def async_log_failure_event(
        self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        if isinstance(kwargs, Mapping):
            self.release_flight(kwargs.get("litellm_call_id"))

    async def async_post_call_failure_hook(
        self,
        request_data: dict[str, Any],
        original_exception: Exception,
        user_api_key_dict: Any,
        traceback_str: str | None = None,
    ) -> Any:
        self.release_flight(request_data.get("litellm_call_id"))
        return None

    async def async_post_call_streaming_iterator_hook(
        self, user_api_key_dict: Any, response: Any, request_data: dict[str, Any]
    ) -> AsyncGenerator[Any, None]:
        # A stream that is cut off or abandoned by its client stores nothing: release its waiters.
        finished = False
        as_text = _text_completion_request(request_data)
        try:
            async for chunk in response:
                choices = getattr(chunk, "choices", None) or []
                if any(getattr(choice, "finish_reason", None) for choice in choices):
                    finished = True
                yield _as_text_chunk(chunk, request_data) if as_text else chunk
        finally:
            if not finished:
                self.release_flight(request_data.get("litellm_call_id"))


def _text_completion_request(request_data: Mapping[str, Any]) -> bool:
    return "prompt" in request_data and "messages" not in request_data


def _as_text_chunk(chunk: Any, request_data: Mapping[str, Any]) -> Any:
    """A chat chunk of a streamed ``/v1/completions`` answer as the text chunk a miss sends.

    LiteLLM replays a cached text completion through its chat replay and returns the chat chunks
    as they are (its ``atext_completion`` hands a cache hit back before its text stream wrapper),
    so the client would see ``choices[].delta`` and no ``text``. Chunks already in the text shape
    (every miss) pass unchanged."""
    if getattr(chunk, "object", None) != "chat.completion.chunk":
        return chunk
    from litellm import TextCompletionResponse

    if not getattr(chunk, "choices", None):  # the usage chunk of ``stream_options.include_usage``
        return TextCompletionResponse(
            id=chunk.id, object="text_completion", created=chunk.created, model=chunk.model,
            choices=[], usage=getattr(chunk, "usage", None),
        )  # fmt: skip
    options = request_data.get("stream_options")
    converter = text_completion_stream_wrapper()(
        completion_stream=None,
        model=chunk.model,
        stream_options=options if isinstance(options, dict) else None,
    )
    text_chunk = converter.convert_to_text_completion_object(chunk)
    for choice in text_chunk.choices:
        if choice.text is None:
            choice.text = ""  # the OpenAI shape: ``text`` is always a string
    return text_chunk


def _request_headers(data: Mapping[str, Any]) -> dict[str, str]:
    request = data.get("proxy_server_request")
    headers = request.get("headers") if isinstance(request, Mapping) else None
    if not isinstance(headers, Mapping):
        return {}
    return {str(k).lower(): str(v) for k, v in headers.items()}
