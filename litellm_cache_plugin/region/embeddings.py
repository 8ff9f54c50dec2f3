"""Per-item embedding lookups for an adapter that asks item by item (LiteLLM's caching handler).

LiteLLM asks for each input item separately (a key, then a lookup with only that key). ``expect``
hands the adapter a lookup token (the storage key, plus ``#base64`` when the hit must be answered
base64-encoded) and remembers which request context it belongs to; lookups issued in the same
event-loop turn are batched into one ``get_many``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from typing import Any

import orjson

from litellm_cache_plugin.payloads import answer_encoding, encode_vector, requested_encoding
from litellm_cache_plugin.policy.controls import Outcome, RequestControls
from litellm_cache_plugin.region.context import Decision, RequestContext
from litellm_cache_plugin.region.pipeline import CacheRegion

log = logging.getLogger("litellm_cache_plugin")


class EmbeddingItems:
    def __init__(self, region: CacheRegion) -> None:
        self.region = region
        self._expected: OrderedDict[str, RequestContext] = OrderedDict()
        self._pending: dict[str, list[tuple[asyncio.Future[Any], RequestContext]]] = {}
        self._flush_scheduled = False

    def expect(self, key: str, ctx: RequestContext) -> str:
        requested = requested_encoding(ctx.request.params.get("encoding_format")) or "float"
        encoding = answer_encoding(requested, ctx.request.provider)
        token = key if encoding == "float" else f"{key}#{encoding}"
        self._expected[token] = ctx
        self._expected.move_to_end(token)
        while len(self._expected) > 50_000:
            self._expected.popitem(last=False)
        return token

    async def get(self, token: str) -> Any:
        ctx = self._expected.get(token)
        if ctx is None:
            return None  # not a key we computed for this process: never trusted
        key, _, encoding = token.partition("#")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.setdefault(key, []).append((future, ctx))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(lambda: self.region.engine.spawn(self._flush()))
        entry = await future
        self._tally(ctx, entry is not None)
        if isinstance(entry, dict) and encoding == "base64":
            entry = {**entry, "embedding": encode_vector(entry.get("embedding"), "base64")}
        return entry

    def _tally(self, ctx: RequestContext, hit: bool) -> None:
        previous = self.region.decision_for(ctx.call_id)
        hits, total = previous.items if previous and previous.items else (0, 0)
        hits, total = hits + int(hit), total + 1
        outcome: Outcome = "HIT" if hits == total else "MISS"
        self.region.record(
            ctx.call_id,
            Decision(outcome, "embedding" if outcome == "HIT" else None, 0, "items", (hits, total)),
        )

    async def _flush(self) -> None:
        self._flush_scheduled = False
        pending, self._pending = self._pending, {}
        groups: dict[tuple[str, str, str, RequestControls, tuple[str, ...]], list[str]] = {}
        contexts: dict[str, RequestContext] = {}
        for key, waiters in pending.items():
            ctx = waiters[0][1]  # same key: same tenant, model, version and item
            contexts[key] = ctx
            group = (
                ctx.tenant.fingerprint,
                ctx.request.model_group,
                ctx.request.model_version,
                ctx.controls,
                ctx.tags,
            )
            groups.setdefault(group, []).append(key)
        for keys in groups.values():
            ctx = contexts[keys[0]]
            try:
                entries, _ = await self.region.engine.lookup_many(
                    keys,
                    tenant=ctx.tenant,
                    model_group=ctx.request.model_group,
                    model_version=ctx.request.model_version,
                    controls=ctx.controls,
                    tags=ctx.tags,
                    savings_for=self.region.accounting.embedding_savings(ctx),
                )
            except Exception:
                log.exception("embedding lookup failed open")
                entries = [None] * len(keys)
            for key, entry in zip(keys, entries, strict=True):
                value = orjson.loads(entry.payload) if entry is not None else None
                for future, _ in pending[key]:
                    if not future.done():
                        future.set_result(value)
