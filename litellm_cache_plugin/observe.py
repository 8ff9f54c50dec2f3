"""What the cache reports, without OpenTelemetry: attribute names and the observer port.

The core (engine, region, savings) calls an :class:`Observer`; :mod:`litellm_cache_plugin.telemetry`
implements it with OpenTelemetry. Nothing here imports a telemetry library, so the core runs and is
tested without one, and an observer can never take part in a decision (its methods return nothing
the core reads, except the span handle it writes attributes to).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator, Mapping
from typing import Any, Literal, Protocol

# Attribute keys (constants so callers and tests do not spell them twice).
LAYER = "llm_cache.layer"
RESULT = "llm_cache.result"
REASON = "llm_cache.reason"
KEY_FINGERPRINT = "llm_cache.key.fingerprint"
BACKEND = "llm_cache.backend"
OP = "llm_cache.op"
OUTCOME = "llm_cache.outcome"
INVALIDATION_KIND = "llm_cache.invalidation.kind"
COVERAGE = "llm_cache.coverage"
AGE = "llm_cache.age_s"
ENTRY_BYTES = "llm_cache.entry.bytes"
MODEL = "gen_ai.request.model"
OPERATION = "gen_ai.operation.name"
PROVIDER = "gen_ai.provider.name"
TOKEN_TYPE = "gen_ai.token.type"
INPUT_TOKENS = "gen_ai.usage.input_tokens"
OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
LATENCY_SAVED = "llm_cache.latency_saved_ms"
COST_SAVED = "llm_cache.cost_saved_usd"
GPU_TIME_SAVED = "llm_cache.gpu_time_saved_s"

SpanName = Literal["llm_cache.lookup", "llm_cache.store", "llm_cache.refresh", "llm_cache.invalidate"]


def key_fingerprint(key: str) -> str:
    """First 16 hex chars of sha256(key): correlates spans of one entry without exposing the key."""
    return hashlib.sha256(key.encode()).hexdigest()[:16]


class SpanHandle(Protocol):
    """The span of one cache decision, as the core writes to it."""

    def set(self, key: str, value: Any) -> None: ...

    def set_attributes(self, attributes: Mapping[str, Any]) -> None: ...


class _NoSpan:
    def set(self, key: str, value: Any) -> None:
        return None

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        return None


NO_SPAN: SpanHandle = _NoSpan()


class Observer(Protocol):
    """What the core tells an observer (OpenTelemetry in :mod:`litellm_cache_plugin.telemetry`)."""

    def tracing(self) -> bool: ...

    def span(
        self,
        name: SpanName,
        attributes: Mapping[str, Any] | None = None,
        *,
        parent: Any = None,
        start_time: int | None = None,
    ) -> contextlib.AbstractContextManager[SpanHandle]: ...

    def record_lookup(
        self,
        layer: str,
        model_group: str,
        result: str,
        reason: str | None = None,
        *,
        latency_ms: float | None = None,
        latency_saved_ms: float | None = None,
        tokens_saved: tuple[int, int] | None = None,
        cost_saved_usd: float | None = None,
        gpu_seconds_saved: float | None = None,
        operation: str | None = None,
        provider: str | None = None,
        count: int = 1,
    ) -> None: ...

    def record_store(self, layer: str, model_group: str, size_bytes: int, count: int = 1) -> None: ...

    def record_backend_error(self, backend: str, op: str, reason: str | None = None) -> None: ...

    def record_fail_open(self, layer: str, model_group: str, reason: str) -> None: ...

    def record_refresh(self, model_group: str, outcome: str) -> None: ...

    def record_coalesced(self, model_group: str, n: int) -> None: ...

    def record_invalidation(self, kind: str) -> None: ...


@contextlib.contextmanager
def no_span() -> Iterator[SpanHandle]:
    yield NO_SPAN
