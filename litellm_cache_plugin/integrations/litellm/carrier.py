"""``litellm.cache`` replacement that carries LiteLLM's lookups and writes into the region.

LiteLLM keeps the short-circuit, stream replay and per-item embedding logic; the region owns keys,
eligibility, tenants, storage and freshness. Sync calls (``litellm.completion``) are not cached.
"""

from __future__ import annotations

import datetime
import logging
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from litellm_cache_plugin.integrations import compat
from litellm_cache_plugin.integrations.after_response import after_response
from litellm_cache_plugin.integrations.compat import Cache
from litellm_cache_plugin.integrations.litellm.context import IDENTITY_FIELD, metadata_of
from litellm_cache_plugin.integrations.litellm.overheads import (
    drop_inert_cache_markers,
    memoize_argument_names,
)
from litellm_cache_plugin.payloads import response_for_reader, stored_vector
from litellm_cache_plugin.region import CacheRegion, EmbeddingItems, RequestContext
from litellm_cache_plugin.savings import upstream_facts
from litellm_cache_plugin.settings import PluginSettings
from litellm_cache_plugin.store.base import Store

log = logging.getLogger("litellm_cache_plugin")

BYPASS_KEY_PREFIX = "lcp-bypass:"
CACHED_CALL_TYPES = ["acompletion", "atext_completion", "aembedding"]
# Contexts of looked-up misses kept for their write (at most this many calls in flight at once).
MISS_CONTEXTS = 256


class CarrierCache(Cache):
    def __init__(
        self,
        region: CacheRegion,
        context: Callable[[Mapping[str, Any]], RequestContext | None],
        settings: Callable[[], PluginSettings],
        *,
        proxy_mode: bool,
        raw_store: Store,
    ) -> None:
        super().__init__(type="local", supported_call_types=list(CACHED_CALL_TYPES), max_messages=None)  # type: ignore[arg-type]
        # Work LiteLLM does on every call because a litellm.cache is set, for nothing (see overheads).
        release = compat.litellm_version()
        drop_inert_cache_markers(release)
        memoize_argument_names(release)
        self.region = region
        self.context = context
        self._settings = settings
        self.proxy_mode = proxy_mode
        self.raw_store = raw_store  # LiteLLM's /cache/ping and shutdown reach the backend itself
        self.embedding_items = EmbeddingItems(region)
        # The context get_cache_key built for a chat/text call, for the async_get_cache LiteLLM makes
        # right after it with that key (same kwargs): not built, nor its key computed, twice per call.
        self._keyed: tuple[str, str, RequestContext] | None = None
        # The context a miss was looked up with, by call id, for the write LiteLLM makes of its answer
        # with the same call's kwargs (taken once; see _same_call).
        self._missed: OrderedDict[str, RequestContext] = OrderedDict()

    # Keys -----------------------------------------------------------------------------------------

    def get_cache_key(self, **kwargs: Any) -> str:
        ctx = self.context(kwargs)
        if ctx is None or not ctx.cacheable:
            if ctx is not None and ctx.request.kind == "embedding":
                # Chat bypasses are counted by lookup_response; embedding items never get that far.
                self.region.engine.account("embedding", ctx.request.model_group, "bypass", ctx.reason)
            return BYPASS_KEY_PREFIX + uuid.uuid4().hex
        if ctx.request.kind == "embedding":
            key = self.region.key_for(ctx, kwargs.get("input"))
            return self.embedding_items.expect(key, ctx)
        key = self.region.key_for(ctx)
        self._keyed = (ctx.call_id, key, ctx) if ctx.call_id is not None else None
        return key

    def _keyed_context(self, kwargs: Mapping[str, Any]) -> RequestContext | None:
        """The context get_cache_key built for this call, taken once: only for the same call id, the
        key it returned, the same signed identity and the very same messages (or prompt) object
        (LiteLLM passes one shallow copy of its kwargs to both); anything else builds its own."""
        keyed, self._keyed = self._keyed, None
        if keyed is None:
            return None
        call_id, key, ctx = keyed
        if kwargs.get("cache_key") != key or not _same_call(kwargs, call_id, ctx):
            return None
        return ctx

    def forget(self, call_id: object) -> None:
        """The call ended without an answer to write (it failed): drop its kept context."""
        if isinstance(call_id, str) and self._missed:
            self._missed.pop(call_id, None)

    def _missed_context(self, kwargs: Mapping[str, Any]) -> RequestContext | None:
        """The context this call's miss was looked up with, taken once, for its write: only for the
        same call id, signed identity and messages (or prompt) object; anything else builds its own."""
        call_id = kwargs.get("litellm_call_id")
        if not isinstance(call_id, str) or not self._missed:
            return None
        ctx = self._missed.pop(call_id, None)
        if ctx is None or not _same_call(kwargs, call_id, ctx):
            return None
        return ctx

    def should_use_cache(self, **kwargs: Any) -> bool:
        return True

    # Sync API: not cached (the request path is async).
    def get_cache(self, dynamic_cache_object: Any = None, **kwargs: Any) -> None:
        return None

    def add_cache(self, result: Any, **kwargs: Any) -> None:
        return None

    # Lookups ----------------------------------------------------------------------------------------

    async def async_get_cache(self, dynamic_cache_object: Any = None, **kwargs: Any) -> Any:
        try:
            if "messages" not in kwargs and "prompt" not in kwargs and "input" not in kwargs:
                return await self._get_embedding_item(kwargs.get("cache_key"))
            return await self._get_response(kwargs)
        except Exception:  # the cache never fails a request
            log.exception("cache lookup failed open")
            return None

    async def _get_response(self, kwargs: dict[str, Any]) -> Any:
        ctx = self._keyed_context(kwargs) or self.context(kwargs)
        if ctx is None:
            return None
        lookup = await self.region.lookup_response(ctx)
        if lookup.entry is None:
            if ctx.call_id is not None and ctx.cacheable and not ctx.controls.no_store:
                self._missed[ctx.call_id] = ctx  # its answer's write needs the same context
                while len(self._missed) > MISS_CONTEXTS:
                    self._missed.popitem(last=False)
            return None
        response = response_for_reader(
            ctx.request.kind, orjson.loads(lookup.entry.payload), stream=ctx.stream
        )
        if self._settings().body_marker and not ctx.stream and isinstance(response, dict):
            response["cached"] = True
        return response

    async def _get_embedding_item(self, cache_key: object) -> Any:
        # LiteLLM looks embedding items up one by one with only the key we computed in get_cache_key.
        if not isinstance(cache_key, str) or cache_key.startswith(BYPASS_KEY_PREFIX):
            return None
        return await self.embedding_items.get(cache_key)

    # Writes ------------------------------------------------------------------------------------------

    async def async_add_cache(self, result: Any, dynamic_cache_object: Any = None, **kwargs: Any) -> None:
        try:
            # Behind the proxy: once the client has this response, unless requests of this process
            # wait for this answer (its single flight's waiters): they are woken by this write.
            if not self.region.awaited(kwargs.get("litellm_call_id")):
                await after_response()
            await self._add_response(result, kwargs)
        except Exception:
            log.exception("cache write failed (ignored)")

    async def _add_response(self, result: Any, kwargs: dict[str, Any]) -> None:
        ctx = self._missed_context(kwargs) or self.context(kwargs)
        if ctx is None or not ctx.cacheable or ctx.controls.no_store:
            return
        if isinstance(result, str):
            body = orjson.loads(result)
        elif hasattr(result, "model_dump_json"):  # text completions arrive as objects, not JSON
            body = orjson.loads(result.model_dump_json())
        else:
            body = orjson.loads(orjson.dumps(result, default=str))
        upstream_ms: float | None = None
        facts: Callable[[dict[str, Any]], Mapping[str, Any]] | None = None
        if isinstance(body, dict):
            upstream_ms = _upstream_ms(body.get("_hidden_params")) or _api_call_ms(kwargs)
            if self.region.observer is not None or self.proxy_mode:
                original = _original_response(kwargs)
                provider = ctx.request.provider

                def facts(stored: dict[str, Any]) -> Mapping[str, Any]:
                    return upstream_facts(stored, original, provider)

        await self.region.store_response(ctx, body, upstream_ms=upstream_ms, facts=facts)

    async def async_add_cache_pipeline(
        self, result: Any, dynamic_cache_object: Any = None, **kwargs: Any
    ) -> None:
        try:
            await after_response()
            await self._store_embeddings(result, kwargs)
        except Exception:
            log.exception("embedding cache write failed (ignored)")

    async def _store_embeddings(self, result: Any, kwargs: dict[str, Any]) -> None:
        ctx = self.context(kwargs)
        if ctx is None or not ctx.cacheable or ctx.controls.no_store:
            return
        inputs = kwargs.get("input")
        items = inputs if isinstance(inputs, list) else [inputs]
        data = getattr(result, "data", None)
        if not isinstance(data, list) or len(data) != len(items):
            return  # a response that does not line up with its inputs is never stored
        writes: list[tuple[Any, bytes]] = []
        for index, item in enumerate(items):
            cached = self._convert_to_cached_embedding(
                data[index],
                getattr(result, "model", None),
                prompt_tokens=self._get_per_item_prompt_tokens(result=result, idx_in_result_data=index),
                prompt_tokens_details=self._get_per_item_prompt_tokens_details(
                    result=result, idx_in_result_data=index
                ),
            )
            vector = stored_vector(cached.get("embedding"))
            if vector is None:
                return
            # stored once as floats, encoded per request when served
            writes.append((item, orjson.dumps({**cached, "embedding": vector})))
        await self.region.store_embedding_items(ctx, writes)

    async def ping(self) -> bool:
        return await self.raw_store.ping()

    async def disconnect(self) -> None:
        await self.raw_store.close()


def _same_call(kwargs: Mapping[str, Any], call_id: str, ctx: RequestContext) -> bool:
    """Are ``kwargs`` those ``ctx`` was built from, as LiteLLM hands them on within one call (shallow
    copies of one dict): the same call id, signed identity, and messages (or prompt) object?"""
    source = ctx.source
    return (
        kwargs.get("litellm_call_id") == call_id
        and metadata_of(kwargs).get(IDENTITY_FIELD) == metadata_of(source).get(IDENTITY_FIELD)
        and kwargs.get("messages") is source.get("messages")
        and kwargs.get("prompt") is source.get("prompt")
        and kwargs.get("cache") is source.get("cache")
    )


def _original_response(kwargs: Mapping[str, Any]) -> Any:
    """The provider's raw response as LiteLLM logged it (Ollama's carries its durations)."""
    logging_obj = kwargs.get("litellm_logging_obj")
    details = getattr(logging_obj, "model_call_details", None)
    return details.get("original_response") if isinstance(details, dict) else None


def _api_call_ms(kwargs: Mapping[str, Any]) -> float | None:
    """Milliseconds since LiteLLM handed this call to the provider: the write is started the moment
    the response is back (LiteLLM sets ``_response_ms`` only after it has queued the write)."""
    logging_obj = kwargs.get("litellm_logging_obj")
    details = getattr(logging_obj, "model_call_details", None)
    started = details.get("api_call_start_time") if isinstance(details, dict) else None
    if not isinstance(started, datetime.datetime):
        return None
    elapsed = (datetime.datetime.now() - started).total_seconds() * 1000  # naive local, like LiteLLM
    return elapsed if elapsed >= 0 else None


def _upstream_ms(hidden: Any) -> float | None:
    if isinstance(hidden, dict):
        value = hidden.get("_response_ms")
        if isinstance(value, (int, float)):
            return float(value)
    return None
