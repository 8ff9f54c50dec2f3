"""A deadline and a circuit breaker around any :class:`Store`.

The cache must never make a request slower or fail it: the engine catches :class:`StoreError` and
goes upstream. :class:`GuardedStore` makes that contract hold for any backend: every call either
returns within ``timeout`` seconds or raises ``StoreError``; after ``failure_threshold`` consecutive
failures the breaker opens and calls fail at once (no network, no waiting) until ``reset_after``
seconds have passed, then a single probe call decides whether to close it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Literal, ParamSpec, TypeVar

from litellm_cache_plugin.store.base import Store, StoreError, StoreStats
from litellm_cache_plugin.store.deadline import stall_tolerant_timeout

__all__ = ["BreakerState", "CircuitBreaker", "CircuitOpenError", "GuardedStore"]

P = ParamSpec("P")
T = TypeVar("T")

BreakerState = Literal["closed", "open", "half_open"]


class CircuitOpenError(StoreError):
    """Raised without calling the backend while the circuit is open."""


class CircuitBreaker:
    """Consecutive-failure circuit breaker; pure logic, time comes from ``clock``.

    * closed: calls pass; ``failure_threshold`` failures in a row open the circuit.
    * open: :meth:`allow` refuses every call until ``reset_after`` seconds have passed.
    * half_open: the first call after that is the single probe (others are still refused while it
      runs); its success closes the circuit, its failure opens it for another ``reset_after``.

    Any success closes the circuit and resets the count (a reply from the backend is evidence that it
    is up, even from a call that started before the circuit opened). A call that ends by
    cancellation calls :meth:`on_abandon`, which frees the probe slot without deciding anything.
    """

    def __init__(
        self,
        failure_threshold: int = 5,
        reset_after: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(failure_threshold, bool) or failure_threshold < 1:
            raise ValueError(f"failure_threshold must be >= 1, got {failure_threshold!r}")
        if not (math.isfinite(reset_after) and reset_after >= 0):
            raise ValueError(f"reset_after must be a finite number >= 0, got {reset_after!r}")
        self.failure_threshold = failure_threshold
        self.reset_after = reset_after
        self._clock = clock
        self._consecutive_failures = 0
        self._opened_at: float | None = None
        self._probing = False

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at < self.reset_after:
            return "open"
        return "half_open"

    @property
    def consecutive_failures(self) -> int:
        return self._consecutive_failures

    def allow(self) -> bool:
        """Whether a call may go to the backend now. A True in half-open state makes it the probe."""
        if self._opened_at is None:
            return True
        if self._probing or self._clock() - self._opened_at < self.reset_after:
            return False
        self._probing = True
        return True

    def on_success(self) -> None:
        self._consecutive_failures = 0
        self._opened_at = None
        self._probing = False

    def on_failure(self) -> None:
        self._consecutive_failures += 1
        if self._opened_at is not None:
            # A failed probe (or a late failure while open) restarts the wait.
            self._probing = False
            self._opened_at = self._clock()
        elif self._consecutive_failures >= self.failure_threshold:
            self._opened_at = self._clock()

    def on_abandon(self) -> None:
        self._probing = False


class GuardedStore:
    """Wraps ``inner`` so that every call returns within ``timeout`` seconds or raises ``StoreError``.

    Timeouts, ``StoreError`` and any other exception from the backend count as failures for the
    breaker and reach the caller as ``StoreError`` (with the original as ``__cause__``); while the
    circuit is open calls raise :class:`CircuitOpenError` (a ``StoreError``) at once. Cancellation
    of the caller is passed through untouched and is not a failure.

    The deadline cancels the backend call; the caller gets control back once the backend has handled
    the cancellation (redis-py drops the connection without waiting), so a backend must not shield
    itself from cancellation.

    ``close()`` always reaches the backend, whatever the breaker says, under the same deadline.

    A backend whose class declares ``never_suspends = True`` (the memory store) gets no timer: its
    calls return before the loop could run one.
    """

    def __init__(
        self,
        inner: Store,
        timeout: float,
        breaker: CircuitBreaker | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not (math.isfinite(timeout) and timeout > 0):
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        self._inner = inner
        self.timeout = timeout
        # A backend whose calls never suspend (declared on its own class, not inherited) finishes
        # before the loop could run a deadline's timer: arming one would only cost the call.
        self._untimed = vars(type(inner)).get("never_suspends") is True
        self.breaker = breaker if breaker is not None else CircuitBreaker(clock=clock)
        self.name = inner.name
        # Telemetry counters; monotonic for the life of the wrapper.
        self.failures = 0  # every failed call, timeouts included
        self.timeouts = 0
        self.short_circuits = 0
        # Told about every failed or refused call: (operation, "timeout" | "error" | "circuit_open").
        # Runs on the request path: must be cheap and must not raise (telemetry counters).
        self.on_error: Callable[[str, str], None] | None = None

    @property
    def inner(self) -> Store:
        return self._inner

    @property
    def state(self) -> BreakerState:
        return self.breaker.state

    def counters(self) -> dict[str, int]:
        return {"failures": self.failures, "timeouts": self.timeouts, "short_circuits": self.short_circuits}

    async def _call(self, fn: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs) -> T:
        # The breaker is asked before the coroutine is created, so a refused call leaves nothing
        # un-awaited behind.
        if not self.breaker.allow():
            self.short_circuits += 1
            self._report(fn.__name__, "circuit_open")
            raise CircuitOpenError("circuit open")
        return await self._run(fn.__name__, lambda: fn(*args, **kwargs), record=True)

    async def _run(self, op: str, start: Callable[[], Awaitable[T]], *, record: bool) -> T:
        try:
            # Only arms a timer (a few µs), and a loop stall (a full garbage collection) does not
            # turn an answer that arrived meanwhile into a timeout (store.deadline). Not
            # within_deadline's task per call: on Redis hits under 16 clients that measured ~0.3
            # CPU-ms more per hit (results/2026-12-03-hit-path-misses/README.md). redis-py unwinds a
            # cancelled command without waiting, so the deadline holds here.
            if self._untimed:
                result = await start()
            else:
                async with stall_tolerant_timeout(self.timeout):
                    result = await start()
        except (asyncio.TimeoutError, TimeoutError) as exc:
            self.timeouts += 1
            self._failed(record)
            self._report(op, "timeout")
            raise StoreError(f"{self.name} store: {op} timed out after {self.timeout:g}s") from exc
        except StoreError:
            self._failed(record)
            self._report(op, "error")
            raise
        except Exception as exc:
            self._failed(record)
            self._report(op, "error")
            raise StoreError(f"{self.name} store: {op} failed: {type(exc).__name__}: {exc}") from exc
        except BaseException:
            # Cancelled (or interpreter exit): says nothing about the backend's health.
            if record:
                self.breaker.on_abandon()
            raise
        if record:
            self.breaker.on_success()
        return result

    def _report(self, op: str, kind: str) -> None:
        if self.on_error is not None:
            # An observer must never turn a fail-open into a failure.
            with contextlib.suppress(Exception):
                self.on_error(op, kind)

    def _failed(self, record: bool) -> None:
        self.failures += 1
        if record:
            self.breaker.on_failure()

    async def get(self, key: str) -> bytes | None:
        return await self._call(self._inner.get, key)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return await self._call(self._inner.get_many, keys)

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        await self._call(self._inner.set, key, value, ttl)

    async def set_many(self, items: Sequence[tuple[str, bytes]], ttl: float) -> None:
        await self._call(self._inner.set_many, items, ttl)

    async def delete(self, key: str) -> bool:
        return await self._call(self._inner.delete, key)

    async def incr(self, key: str, amount: int = 1) -> int:
        return await self._call(self._inner.incr, key, amount)

    async def get_with_counters(
        self, key: str, counter_keys: Sequence[str]
    ) -> tuple[bytes | None, list[int]]:
        return await self._call(self._inner.get_with_counters, key, counter_keys)

    async def get_with_counters_or_lock(
        self, key: str, counter_keys: Sequence[str], lock_key: str, owner: str, ttl: float
    ) -> tuple[bytes | None, list[int], bool]:
        return await self._call(
            self._inner.get_with_counters_or_lock, key, counter_keys, lock_key, owner, ttl
        )

    async def get_counters(self, keys: Sequence[str]) -> list[int]:
        return await self._call(self._inner.get_counters, keys)

    async def acquire_lock(self, key: str, owner: str, ttl: float) -> bool:
        return await self._call(self._inner.acquire_lock, key, owner, ttl)

    async def release_lock(self, key: str, owner: str) -> bool:
        return await self._call(self._inner.release_lock, key, owner)

    async def stats(self) -> StoreStats:
        return await self._call(self._inner.stats)

    async def ping(self) -> bool:
        return await self._call(self._inner.ping)

    async def close(self) -> None:
        await self._run("close", self._inner.close, record=False)
