"""Single flight: one upstream call per key across the workers and replicas sharing a store.

Concurrent misses of one key are coalesced (:meth:`SingleFlight.claim`: one leader goes upstream, the
others wait for its entry; :meth:`SingleFlight.finish` shares it and frees the fill lock), and one
replica refreshes a stale entry at a time (the refresh lock). Locks live in the shared backend; every
backend failure fails open (the caller goes upstream itself).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import secrets
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from litellm_cache_plugin.engine.stats import EngineStats
from litellm_cache_plugin.envelope import Entry
from litellm_cache_plugin.observe import Observer
from litellm_cache_plugin.store.base import Store, StoreError

__all__ = ["FlightRole", "SingleFlight", "SingleFlightSettings"]

_HELD_SWEEP_AT = 1024  # held locks kept before the expired ones are swept out


@dataclass
class _Flight:
    future: asyncio.Future[Entry | None]
    owner: str
    model_group: str  # the key's model group: what the flight's counts are counted under
    layer: str = "exact"  # ... and the layer
    call_id: str | None = None
    lock_key: str | None = None
    handle: asyncio.TimerHandle | None = None
    waiters: int = 0
    # "claiming": asking the backend for the fill lock; "leading": a request of this process goes
    # upstream; "polling": this process waits for another holder of the lock.
    state: Literal["claiming", "leading", "polling"] = "leading"


def _followed(entry: Entry | None, started: float) -> FlightRole:
    """The role of a request that waited on another's flight since ``started`` (``perf_counter``)."""
    return FlightRole(False, entry, (time.perf_counter() - started) * 1000)


def _leading(flight: _Flight) -> bool:
    """Whether a request of this process leads ``flight`` now. Read after an await: another request
    may have changed it meanwhile (a function, so that no type checker narrows it across the await)."""
    return flight.state == "leading"


@dataclass(frozen=True)
class _HeldLock:
    """A fill lock taken by a read ahead of its request's claim (:meth:`SingleFlight.hold`)."""

    lock_key: str
    owner: str
    expires_at: float  # time.monotonic(): the backend drops the lock then


@dataclass(frozen=True)
class FlightRole:
    """``leader``: go upstream and store. Otherwise ``entry`` is what the leader produced (None: the
    leader failed or the wait timed out — go upstream yourself)."""

    leader: bool
    entry: Entry | None = None
    waited_ms: float = 0.0


@dataclass
class SingleFlightSettings:
    timeout: float = 30.0
    poll_initial: float = 0.01
    poll_max: float = 0.1


class _Engine(Protocol):
    """What the single flight uses of its engine, read at each call (the engine's store and observer
    may be replaced after it was built)."""

    store: Store
    namespace: str
    stats: EngineStats
    telemetry: Observer | None

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None: ...


class SingleFlight:
    """The engine's single flight and refresh locks (``CacheEngine.flights``)."""

    def __init__(self, engine: _Engine, settings: SingleFlightSettings | None = None) -> None:
        self._engine = engine
        self.settings = settings or SingleFlightSettings()
        self._flights: dict[str, _Flight] = {}
        self._owner = secrets.token_hex(8)
        # Lock owners are this process's token and a serial (unique here; no syscall per claim).
        self._serial = itertools.count(1)
        self._held: dict[str, _HeldLock] = {}
        self._sweep_at = _HELD_SWEEP_AT

    def fill_lock(self, key: str) -> tuple[str, str]:
        """The fill lock of ``key`` and a fresh owner token for it."""
        return f"{self._engine.namespace}:lock:fill:{key.rsplit(':', 1)[-1]}", self._new_owner()

    def _new_owner(self) -> str:
        return f"{self._owner}:{next(self._serial)}"

    def hold(self, key: str, lock_key: str, owner: str, asked_at: float) -> None:
        """A read took the fill lock of ``key`` ahead of its request's claim (one round trip for
        both; asked for at ``asked_at``, ``time.monotonic()``, for the single-flight timeout): the
        next flight of ``key`` in this process leads with it, without taking it again. Whoever took
        it calls :meth:`drop_held` once its request is over (nothing left to do if a flight took it)."""
        self._held[key] = _HeldLock(lock_key, owner, asked_at + self.settings.timeout)
        if len(self._held) > self._sweep_at:
            # Locks no flight took and no request gave back (its read failed, then it never
            # claimed): the backend has dropped them by now. The next sweep waits until the live
            # ones have doubled, so many live locks do not make every hold a scan.
            now = time.monotonic()
            for stale in [k for k, lock in self._held.items() if lock.expires_at <= now]:
                del self._held[stale]
            self._sweep_at = max(_HELD_SWEEP_AT, 2 * len(self._held))

    def drop_held(self, key: str, owner: str) -> None:
        """Release the fill lock ``owner`` took ahead for ``key`` unless a flight took it over."""
        held = self._held.get(key)
        if held is None or held.owner != owner:
            return
        del self._held[key]
        if held.expires_at > time.monotonic():
            self._engine.spawn(self._release_quietly(held.lock_key, owner))

    async def claim(
        self,
        key: str,
        *,
        poll: Callable[[], Coroutine[Any, Any, Entry | None]],
        model_group: str,
        call_id: str | None = None,
        layer: str = "exact",
        absent: bool = False,
    ) -> FlightRole:
        """Coalesce concurrent misses of ``key`` (of ``model_group`` in ``layer``, under which the
        flight's own events are counted: ``flight_polled``, ``flight_waited``).

        ``absent``: the caller's lookup found no entry at all. The lock is then asked for only if
        the key still holds nothing, in the same round trip (atomic on Redis): a flight that ended
        between that lookup and this claim has stored its answer, which is served instead of a
        second upstream call.

        Within this process the first caller leads and the others wait on an in-memory future (no
        backend round trip per waiter). Across processes the leader holds a lock in the shared backend;
        a process that finds the lock taken lets one local caller ``poll`` the backend for the result
        (bounded backoff) and shares it with its local waiters; when the other process lets go of the
        lock with no answer stored (its call failed or ended without one), the poller takes the lock
        and leads. Every wait ends after the single-flight timeout: the caller then goes upstream
        itself. Backend errors make the caller a leader (fail open).
        """
        started = time.perf_counter()
        timeout = self.settings.timeout
        flight = self._flights.get(key)
        if flight is not None and call_id is not None and flight.call_id == call_id:
            return FlightRole(True)  # a retry of the leading request must not wait for itself
        if flight is not None:
            if self._lead_with_held_lock(key, flight, call_id):
                return FlightRole(True)
            flight.waiters += 1
            entry = await self._wait(flight.future, timeout)
            return _followed(entry, started)

        loop = asyncio.get_running_loop()
        # A lock this process's read of the entry took moments ago: lead with it, no round trip.
        ahead = self._take_held(key)
        lock_key, owner = (ahead.lock_key, ahead.owner) if ahead is not None else self.fill_lock(key)
        flight = _Flight(
            future=loop.create_future(),
            owner=owner,
            call_id=call_id,
            model_group=model_group,
            layer=layer,
            lock_key=lock_key if ahead is not None else None,
            state="leading" if ahead is not None else "claiming",
        )
        self._flights[key] = flight
        limit = timeout if ahead is None else min(timeout, ahead.expires_at - time.monotonic())
        flight.handle = loop.call_later(limit, self.finish, key, None)
        if ahead is not None:
            return FlightRole(True)
        stored = False
        try:
            if absent:
                raw, _, acquired = await self._engine.store.get_with_counters_or_lock(
                    key, (), lock_key, owner, timeout
                )
                stored = raw is not None
            else:
                acquired = await self._engine.store.acquire_lock(lock_key, owner, timeout)
        except StoreError:
            acquired = True  # cannot coordinate: behave as if alone
            lock_key = ""
        deadline = time.monotonic() + timeout
        if _leading(flight):
            # While this claim asked, a request of this process led the flight with the lock its
            # read had taken (_lead_with_held_lock): wait for it like any local waiter.
            if acquired and lock_key:  # the read's lock had expired: do not keep a second one
                self._engine.spawn(self._release_quietly(lock_key, owner))
            flight.waiters += 1
            entry = await self._wait(flight.future, max(0.0, deadline - time.monotonic()))
            return _followed(entry, started)
        if stored:
            # Written since the caller's lookup: the flight it would have joined has ended.
            entry = await self._poll_quietly(poll)
            if entry is not None:
                if self._flights.get(key) is flight and not _leading(flight):
                    self.finish(key, entry)
                return _followed(entry, started)
        if acquired:
            flight.state = "leading"
            flight.lock_key = lock_key or None
            return FlightRole(True)

        # Another holder of the lock leads: poll for its result on behalf of every local waiter.
        flight.state = "polling"
        delay = self.settings.poll_initial
        entry = None
        while (left := deadline - time.monotonic()) > 0 and self._still_polling(flight):
            # Wakes early when a request of this process takes the flight over and finishes it.
            await asyncio.wait((flight.future,), timeout=min(delay, left))
            delay = min(delay * 2, self.settings.poll_max)
            if not self._still_polling(flight):
                break
            entry = await self._poll_quietly(poll)
            if entry is not None or not self._still_polling(flight):
                break
            if await self._took_over(flight, lock_key, deadline):
                # The leader let go without an answer (it failed, or its request ended with none):
                # this process leads now instead of waiting out the timeout. One more look first:
                # the answer may have been stored just before the lock was released.
                entry = await self._poll_quietly(poll)
                if entry is None:
                    flight.state = "leading"
                    self._engine.stats.bump(flight.layer, flight.model_group, "flight_polled")
                    return FlightRole(True)
                break
        self._engine.stats.bump(flight.layer, flight.model_group, "flight_polled")
        if _leading(flight):
            # A request of this process leads the flight now (_lead_with_held_lock): it finishes
            # it; this poller waits for it like any local waiter.
            if entry is None:
                entry = await self._wait(flight.future, max(0.0, deadline - time.monotonic()))
            return _followed(entry, started)
        if self._flights.get(key) is flight:  # not already ended by its timeout
            self.finish(key, entry)
        return _followed(entry, started)

    def _lead_with_held_lock(self, key: str, flight: _Flight, call_id: str | None) -> bool:
        """This request's read took the fill lock of ``key``, but the reply reached it only after
        another request of this process had begun the key's flight: that flight is asking for the
        lock or polling for its holder, which is this request. It leads the flight with that lock
        (were it to wait on the flight instead, each would wait for the other until the timeout).
        Returns whether it does. A flight that leads already (it took the lock, or the backend
        failed and it leads without one) is waited on as usual."""
        if flight.state == "leading":
            return False
        held = self._take_held(key)
        if held is None:
            return False
        flight.state = "leading"
        flight.owner, flight.lock_key, flight.call_id = held.owner, held.lock_key, call_id
        return True

    def _take_held(self, key: str) -> _HeldLock | None:
        """The fill lock a read of this process took ahead for ``key``, if it has not expired; taken
        out of the held locks either way (an expired one has nothing left to give back)."""
        held = self._held.pop(key, None)
        return held if held is not None and held.expires_at > time.monotonic() else None

    @staticmethod
    def _still_polling(flight: _Flight) -> bool:
        return flight.state == "polling" and not flight.future.done()

    @staticmethod
    async def _poll_quietly(poll: Callable[[], Coroutine[Any, Any, Entry | None]]) -> Entry | None:
        try:
            return await poll()
        except StoreError:
            return None

    async def _took_over(self, flight: _Flight, lock_key: str, deadline: float) -> bool:
        """Take the fill lock the other process held, if it is free now (until ``deadline``)."""
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        try:
            if not await self._engine.store.acquire_lock(lock_key, flight.owner, left):
                return False
        except StoreError:
            return False
        flight.lock_key = lock_key  # released by finish(), like a leader's own
        return True

    def waiting(self, key: str) -> int:
        """How many requests of this process wait on the flight of ``key`` (0: none, or no flight)."""
        flight = self._flights.get(key)
        return flight.waiters if flight is not None else 0

    def finish(self, key: str, entry: Entry | None) -> None:
        """The leader's result (or None: failed/not cacheable). Wakes local waiters, frees the lock."""
        flight = self._flights.pop(key, None)
        if flight is None:
            return
        if flight.handle is not None:
            flight.handle.cancel()
        if not flight.future.done():
            flight.future.set_result(entry)
        if flight.waiters:
            # Requests that waited on this flight, in its model group. Not "coalesced": each waiter
            # counts its own result once (coalesced when the leader stored an answer, else the miss
            # it then became) through account(), like every other request.
            self._engine.stats.bump(flight.layer, flight.model_group, "flight_waited", flight.waiters)
            if self._engine.telemetry is not None:
                self._engine.telemetry.record_coalesced(flight.model_group, flight.waiters)
        if flight.lock_key:
            self._engine.spawn(self._release_quietly(flight.lock_key, flight.owner))

    def in_flight(self, key: str) -> bool:
        return key in self._flights

    @staticmethod
    async def _wait(future: asyncio.Future[Entry | None], timeout: float) -> Entry | None:
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except asyncio.TimeoutError:
            return None

    # -- the refresh lock of stale-while-revalidate ------------------------------------------------

    async def try_refresh_lock(self, key: str, ttl: float, generation: float) -> str | None:
        """Take the refresh lock of the entry at ``key`` written at ``generation`` (its
        ``created_at``), across replicas, for ``ttl`` seconds. Returns the owner token or None.

        The lock is per written entry and is never released early: a request that read the stale
        entry just before its refresh stored the new one, and asks for the lock after that refresh
        ended, still finds it taken (a lock per key, released when the refresh ended, let it refresh
        the same entry a second time). The next entry, once stale, has a lock of its own."""
        owner = self._new_owner()
        lock_key = f"{self._engine.namespace}:lock:refresh:{key.rsplit(':', 1)[-1]}:{int(generation * 1000)}"
        try:
            if await self._engine.store.acquire_lock(lock_key, owner, ttl):
                return owner
        except StoreError:
            return None
        return None

    async def _release_quietly(self, lock_key: str, owner: str) -> None:
        with contextlib.suppress(StoreError):
            await self._engine.store.release_lock(lock_key, owner)
