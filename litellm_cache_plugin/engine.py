"""The cache engine: policy decisions applied to a store. Knows nothing about LiteLLM.

Every backend call is bounded (the store is wrapped in :class:`GuardedStore` by the caller) and every
failure is a miss or a skipped write: the cache never fails a request.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import secrets
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from litellm_cache_plugin.crypto import PayloadCipher
from litellm_cache_plugin.envelope import (
    HARD_MAX_PAYLOAD,
    Corrupt,
    Decoded,
    Entry,
    UnknownFormat,
    compress_payload,
    decompress_payload,
    encode_entry,
    read_entry,
)
from litellm_cache_plugin.observe import INVALIDATION_KIND, Observer
from litellm_cache_plugin.policy.controls import Outcome, RequestControls
from litellm_cache_plugin.policy.freshness import age_seconds, backend_ttl, classify
from litellm_cache_plugin.policy.keys import Tenant
from litellm_cache_plugin.policy.tags import (
    counters_for,
    is_invalidated,
    model_counter,
    tag_counter,
    tenant_counter,
    tenant_tag_counter,
)
from litellm_cache_plugin.savings import Savings
from litellm_cache_plugin.store.base import Store, StoreError, StoreStats
from litellm_cache_plugin.store.own_entries import OwnEntries

log = logging.getLogger("litellm_cache_plugin")


@dataclass(frozen=True)
class Lookup:
    outcome: Outcome
    reason: str
    entry: Entry | None = None
    age: int | None = None
    # Invalidation counters read when the request started; a write for this request records them.
    counters: Mapping[str, int] | None = None


@dataclass(frozen=True)
class Prefetched:
    """One backend read of an entry with a request's invalidation counters (:meth:`CacheEngine.read`).
    A later :meth:`CacheEngine.lookup` of the same key and counters judges it instead of reading
    again (the fast path reads before auth, then looks up after it: one round trip, not two)."""

    key: str
    counter_keys: tuple[str, ...]
    raw: bytes | None
    values: tuple[int, ...]


# Results that served a cached answer (see telemetry.SERVED_RESULTS).
_SERVED = ("hit", "stale", "coalesced")
# Stats rows that count events of a path or of the admin API, not lookups of a cache layer: they get
# no hit ratio. The glue may name its own (``CacheEngine(unrated_layers=...)``); the default keeps the
# rows the proxy glue has always written ("fast_path").
UNRATED_LAYERS: frozenset[str] = frozenset({"admin", "fast_path"})
# Saving totals kept per (layer, model group), in the order the stats show them.
SAVING_FIELDS = (
    "latency_saved_ms",
    "input_tokens_saved",
    "output_tokens_saved",
    "cost_saved_usd",
    "gpu_seconds_saved",
)


@dataclass
class EngineStats:
    """In-process counters (per worker). Keys: (layer, model_group, outcome-or-event).

    Lookup results (hit, stale, coalesced, miss, bypass) are counted once per request and layer by
    :meth:`CacheEngine.account`, which feeds OpenTelemetry the same numbers."""

    counts: Counter[tuple[str, str, str]]
    saved: dict[tuple[str, str], dict[str, float]] = field(default_factory=dict)
    # Rows without a hit ratio (see UNRATED_LAYERS).
    unrated_layers: frozenset[str] = UNRATED_LAYERS

    def bump(self, layer: str, model_group: str, what: str, amount: int = 1) -> None:
        self.counts[(layer, model_group, what)] += amount

    def get(self, layer: str, model_group: str, what: str) -> int:
        return self.counts.get((layer, model_group, what), 0)

    def add_savings(self, layer: str, model_group: str, savings: Savings) -> None:
        totals = self.saved.setdefault((layer, model_group), dict.fromkeys(SAVING_FIELDS, 0.0))
        for name, value in zip(
            SAVING_FIELDS,
            (
                savings.latency_ms,
                savings.input_tokens,
                savings.output_tokens,
                savings.cost_usd,
                savings.gpu_seconds,
            ),
            strict=True,
        ):
            if value is not None:
                totals[name] += value

    def snapshot(self) -> dict[str, dict[str, dict[str, float]]]:
        out: dict[str, dict[str, dict[str, float]]] = {}
        for (layer, model, what), count in sorted(self.counts.items()):
            out.setdefault(layer, {}).setdefault(model, {})[what] = count
        for (layer, model), totals in sorted(self.saved.items()):
            row = out.setdefault(layer, {}).setdefault(model, {})
            for name, value in totals.items():
                row[name] = round(value, 9 if name == "cost_saved_usd" else 3)
        for layer_name, models in out.items():
            if layer_name in self.unrated_layers:
                continue
            for row in models.values():
                served = sum(row.get(result, 0) for result in _SERVED)
                looked = served + row.get("miss", 0) + row.get("refused", 0)  # a refusal is not served
                row["hit_ratio"] = round(served / looked, 4) if looked else 0.0
        return out


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


@dataclass
class _Background:
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)


class CacheEngine:
    def __init__(
        self,
        store: Store,
        *,
        namespace: str,
        clock: Callable[[], float] = time.time,
        single_flight: SingleFlightSettings | None = None,
        cipher: PayloadCipher | None = None,
        telemetry: Observer | None = None,
        compress_min_bytes: int | None = None,
        max_payload_bytes: int = HARD_MAX_PAYLOAD,
        unrated_layers: Iterable[str] = UNRATED_LAYERS,
    ) -> None:
        self.store = store
        self.cipher = cipher
        # Payloads of at least this many bytes are stored zstd-compressed (None/0: never); none is
        # ever inflated past max_payload_bytes (no larger payload is stored, so more means tampering).
        self.compress_min_bytes = compress_min_bytes
        self.max_payload_bytes = max_payload_bytes
        # None: telemetry off (no instrument exists, nothing is recorded).
        self.telemetry = telemetry
        self.namespace = namespace
        self.clock = clock
        self.stats = EngineStats(Counter(), unrated_layers=frozenset(unrated_layers) | {"admin"})
        self.single_flight = single_flight or SingleFlightSettings()
        self._flights: dict[str, _Flight] = {}
        self._background = _Background()
        # Every key the engine writes starts with "<namespace>:".
        self.own_entries = OwnEntries(store, f"{namespace}:")
        self._owner = secrets.token_hex(8)

    # -- lookups -----------------------------------------------------------------------------------

    async def lookup(
        self,
        key: str,
        *,
        tenant: Tenant,
        model_group: str,
        model_version: str,
        controls: RequestControls,
        tags: Sequence[str] = (),
        layer: str = "exact",
        record: bool = True,
        prefetched: Prefetched | None = None,
    ) -> Lookup:
        """The entry at ``key`` judged for this request. Results are not counted here (a request may
        look up several times: fast path, single-flight polling); the caller counts its final result
        with :meth:`account`. ``record=False`` also leaves events (corrupt entries...) uncounted.
        ``prefetched``: a :meth:`read` made moments ago for this request, used when it is of the same
        key and counters."""
        counter_keys = counters_for(self.namespace, model_group, tenant.fingerprint, tags)
        try:
            if controls.no_cache:
                # Not served from the cache, but the answer will be stored: record the counters as of now.
                values = await self.store.get_counters(counter_keys)
                return Lookup("BYPASS", "no_cache", counters=dict(zip(counter_keys, values, strict=True)))
            if (
                prefetched is not None
                and prefetched.key == key
                and prefetched.counter_keys == tuple(counter_keys)
            ):
                raw, values = prefetched.raw, list(prefetched.values)
            else:
                raw, values = await self.store.get_with_counters(key, counter_keys)
            current = dict(zip(counter_keys, values, strict=True))
            decoded = read_entry(raw) if raw is not None else None
            if isinstance(decoded, Entry):
                # An entry may carry tags this request did not send: read those counters too.
                missing = [k for k in decoded.counters if k not in current]
                if missing:
                    current.update(zip(missing, await self.store.get_counters(missing), strict=True))
        except StoreError as error:
            self._failed_open(layer, model_group, error)
            return Lookup("MISS", "backend_error")
        return self._judge(decoded, key, tenant, model_group, model_version, controls, current, layer, record)

    async def read(
        self, key: str, *, tenant: Tenant, model_group: str, tags: Sequence[str] = ()
    ) -> Prefetched:
        """The raw entry at ``key`` and the counters a lookup for this tenant, model group and tags
        needs, in one round trip, unjudged. Raises :class:`StoreError`."""
        counter_keys = tuple(counters_for(self.namespace, model_group, tenant.fingerprint, tags))
        raw, values = await self.store.get_with_counters(key, counter_keys)
        return Prefetched(key, counter_keys, raw, tuple(values))

    def _judge(
        self,
        decoded: Decoded | None,
        key: str,
        tenant: Tenant,
        model_group: str,
        model_version: str,
        controls: RequestControls,
        current: dict[str, int],
        layer: str,
        record: bool = True,
    ) -> Lookup:
        stats = self.stats if record else EngineStats(Counter())

        def miss(reason: str) -> Lookup:
            return Lookup("MISS", reason, counters=current)

        # What the bytes are was decided by envelope.read_entry; here it is only acted on.
        if decoded is None:
            return miss("absent")
        if isinstance(decoded, UnknownFormat):
            # A newer replica's entry (rolling upgrade): not ours to serve, nor to delete.
            stats.bump(layer, model_group, "unknown_format")
            return miss("unknown_format")
        if isinstance(decoded, Corrupt):
            stats.bump(layer, model_group, "corrupt")
            self._spawn(self._delete_quietly(key))
            return miss("undecodable")
        entry: Entry = decoded
        # Defence in depth: the tenant is already in the key; an entry of another tenant can only appear
        # here through a hash collision or a bug, and is never served.
        if entry.tenant != tenant.fingerprint or entry.kind != layer_kind(layer):
            stats.bump(layer, model_group, "tenant_mismatch")
            return miss("tenant_mismatch")
        if is_invalidated(entry.counters, current):
            return miss("invalidated")
        encrypted_with = entry.extra.get("enc")
        if encrypted_with is not None:
            plaintext = (
                self.cipher.decrypt(str(encrypted_with), entry.payload, _associated(key, entry.tenant))
                if self.cipher is not None
                else None
            )
            if plaintext is None:  # rotated-out key or tampered entry: a miss, never an error
                stats.bump(layer, model_group, "decrypt_failed")
                return miss("undecryptable")
            entry = dataclasses.replace(entry, payload=plaintext)
        if entry.compressed:
            plain = decompress_payload(entry.payload, self.max_payload_bytes)
            if plain is None:  # a bad frame or a decompression bomb: a miss, never an error
                stats.bump(layer, model_group, "corrupt")
                self._spawn(self._delete_quietly(key))
                return miss("undecodable")
            entry = dataclasses.replace(entry, payload=plain, compressed=False)
        if entry.model_version != model_version:
            return miss("model_version_changed")
        now = self.clock()
        state = classify(entry.created_at, entry.fresh_for, entry.stale_for, now, controls.max_age)
        if state == "expired":
            return miss("expired")
        outcome: Outcome = "HIT" if state == "fresh" else "STALE"
        return Lookup(outcome, state, entry=entry, age=age_seconds(entry.created_at, now), counters=current)

    def account(
        self,
        layer: str,
        model_group: str,
        result: str,
        reason: str | None = None,
        *,
        savings: Savings | None = None,
        lookup_ms: float | None = None,
        operation: str | None = None,
        provider: str | None = None,
        count: int = 1,
    ) -> None:
        """Count the final result of one request's lookup in one layer (``count``: items of an
        embedding batch with the same result, no savings). The per-worker stats and OpenTelemetry
        get the same numbers from here."""
        self.stats.bump(layer, model_group, result, count)
        served = result in _SERVED and savings is not None
        if served:
            assert savings is not None
            self.stats.add_savings(layer, model_group, savings)
        if self.telemetry is None:
            return
        tokens = None
        if savings is not None and savings.input_tokens is not None:
            tokens = (savings.input_tokens, savings.output_tokens or 0)
        self.telemetry.record_lookup(
            layer,
            model_group,
            result,
            reason,
            latency_ms=lookup_ms,
            latency_saved_ms=savings.latency_ms if served and savings else None,
            tokens_saved=tokens if served else None,
            cost_saved_usd=savings.cost_usd if served and savings else None,
            gpu_seconds_saved=savings.gpu_seconds if served and savings else None,
            operation=operation,
            provider=provider,
            count=count,
        )

    def _failed_open(self, layer: str, model_group: str, error: StoreError) -> None:
        self.stats.bump(layer, model_group, "backend_error")
        if self.telemetry is not None:
            reason = "circuit_open" if "circuit open" in str(error) else "backend_error"
            self.telemetry.record_fail_open(layer, model_group, reason)
        log.warning("cache lookup failed open: %s", error)

    async def lookup_many(
        self,
        keys: Sequence[str],
        *,
        tenant: Tenant,
        model_group: str,
        model_version: str,
        controls: RequestControls,
        tags: Sequence[str] = (),
        record: bool = True,
        savings_for: Callable[[Entry], Savings] | None = None,
    ) -> tuple[list[Entry | None], Mapping[str, int] | None]:
        """Embedding items: the fresh entries (None where missing or invalid). ``record``: count each
        item's result with :meth:`account` (hits with ``savings_for(entry)``)."""
        layer = "embedding"
        started = time.perf_counter()
        counter_keys = counters_for(self.namespace, model_group, tenant.fingerprint, tags)
        try:
            raws, values = await asyncio.gather(
                self.store.get_many(list(keys)), self.store.get_counters(counter_keys)
            )
        except StoreError as error:
            self._failed_open(layer, model_group, error)
            if record:
                self.account(layer, model_group, "miss", "backend_error", count=len(keys))
            return [None] * len(keys), None
        current = dict(zip(counter_keys, values, strict=True))
        if controls.no_cache:
            if record:
                self.account(layer, model_group, "bypass", "no_cache", count=len(keys))
            return [None] * len(keys), current
        entries = [read_entry(raw) if raw is not None else None for raw in raws]
        missing = sorted({k for e in entries if isinstance(e, Entry) for k in e.counters if k not in current})
        if missing:
            try:
                current.update(zip(missing, await self.store.get_counters(missing), strict=True))
            except StoreError as error:
                self._failed_open(layer, model_group, error)
                if record:
                    self.account(layer, model_group, "miss", "backend_error", count=len(keys))
                return [None] * len(keys), None
        found: list[Entry | None] = []
        misses: Counter[str] = Counter()
        for key, decoded in zip(keys, entries, strict=True):
            result = self._judge(
                decoded, key, tenant, model_group, model_version, controls, current, layer, record
            )
            hit = result.entry if result.outcome == "HIT" else None
            found.append(hit)
            if hit is None:
                misses[result.reason] += 1
        if record:
            elapsed_ms = (time.perf_counter() - started) * 1000
            for hit in found:
                if hit is not None:
                    savings = savings_for(hit) if savings_for is not None else None
                    self.account(layer, model_group, "hit", "fresh", savings=savings, lookup_ms=elapsed_ms)
            for reason, count in misses.items():
                self.account(layer, model_group, "miss", reason, lookup_ms=elapsed_ms, count=count)
        return found, current

    # -- writes ------------------------------------------------------------------------------------

    async def _counters_now(self, model_group: str, tenant: Tenant, tags: Sequence[str]) -> dict[str, int]:
        keys = counters_for(self.namespace, model_group, tenant.fingerprint, tags)
        return dict(zip(keys, await self.store.get_counters(keys), strict=True))

    async def store_entry(
        self,
        key: str,
        payload: bytes,
        *,
        tenant: Tenant,
        model_group: str,
        model_version: str,
        ttl: float,
        stale_for: float = 0.0,
        upstream_ms: float | None = None,
        counters: Mapping[str, int] | None = None,
        tags: Sequence[str] = (),
        layer: str = "exact",
        max_bytes: int | None = None,
        extra: dict[str, Any] | None = None,
        encrypt: bool = False,
    ) -> Entry | None:
        """Write an entry; returns it (with the plaintext payload), or None (logged) when it was not
        stored. ``encrypt`` without a configured cipher stores nothing: personal data is never
        written in clear because a key is missing."""
        if max_bytes is not None and len(payload) > max_bytes:
            self.stats.bump(layer, model_group, "too_large")
            return None
        extra = dict(extra or {})
        if encrypt and self.cipher is None:
            self.stats.bump(layer, model_group, "not_stored_no_key")
            return None
        packed = compress_payload(payload, self.compress_min_bytes, self.max_payload_bytes)
        stored_payload = payload if packed is None else packed
        if encrypt and self.cipher is not None:  # compressed first: ciphertext does not compress
            associated = _associated(key, tenant.fingerprint)
            extra["enc"], stored_payload = self.cipher.encrypt(stored_payload, associated)
        try:
            recorded = (
                dict(counters)
                if counters is not None
                else await self._counters_now(model_group, tenant, tags)
            )
            entry = Entry(
                payload=stored_payload,
                created_at=self.clock(),
                fresh_for=ttl,
                stale_for=stale_for,
                tenant=tenant.fingerprint,
                counters=recorded,
                model_version=model_version,
                kind=layer_kind(layer),
                upstream_ms=upstream_ms,
                tags=tuple(tags),
                extra=extra,
                compressed=packed is not None,
            )
            encoded = encode_entry(entry)
            await self.store.set(key, encoded, backend_ttl(ttl, stale_for))
        except StoreError as error:
            self.stats.bump(layer, model_group, "backend_error")
            log.warning("cache write skipped: %s", error)
            return None
        self.stats.bump(layer, model_group, "store")
        if self.telemetry is not None:
            self.telemetry.record_store(layer, model_group, len(encoded))
        return dataclasses.replace(entry, payload=payload, compressed=False)

    async def store_many(
        self,
        items: Sequence[tuple[str, bytes]],
        *,
        tenant: Tenant,
        model_group: str,
        model_version: str,
        ttl: float,
        counters: Mapping[str, int] | None = None,
        tags: Sequence[str] = (),
        encrypt: bool = False,
    ) -> int:
        layer = "embedding"
        if encrypt and self.cipher is None:
            self.stats.bump(layer, model_group, "not_stored_no_key", len(items))
            return 0
        try:
            recorded = (
                dict(counters)
                if counters is not None
                else await self._counters_now(model_group, tenant, tags)
            )
            now = self.clock()
            sealed = []
            for key, payload in items:
                packed = compress_payload(payload, self.compress_min_bytes, self.max_payload_bytes)
                stored = payload if packed is None else packed  # compressed before it is encrypted
                seal = self._seal(key, stored, tenant) if encrypt else None
                sealed.append((key, stored, packed is not None, seal))
            encoded = [
                (
                    key,
                    encode_entry(
                        Entry(
                            payload=seal[1] if seal else payload,
                            created_at=now,
                            fresh_for=ttl,
                            stale_for=0.0,
                            tenant=tenant.fingerprint,
                            counters=recorded,
                            model_version=model_version,
                            kind="embedding",
                            tags=tuple(tags),
                            extra={"enc": seal[0]} if seal else {},
                            compressed=zipped,
                        )
                    ),
                )
                for key, payload, zipped, seal in sealed
            ]
            await self.store.set_many(encoded, backend_ttl(ttl, 0.0))
        except StoreError as error:
            self.stats.bump(layer, model_group, "backend_error")
            log.warning("cache write skipped: %s", error)
            return 0
        self.stats.bump(layer, model_group, "store", len(items))
        if self.telemetry is not None:
            size = sum(len(value) for _, value in encoded)
            self.telemetry.record_store(layer, model_group, size, count=len(items))
        return len(items)

    def _seal(self, key: str, payload: bytes, tenant: Tenant) -> tuple[str, bytes]:
        assert self.cipher is not None
        return self.cipher.encrypt(payload, _associated(key, tenant.fingerprint))

    # -- single-flight -------------------------------------------------------------------------------

    async def claim(
        self,
        key: str,
        *,
        poll: Callable[[], Coroutine[Any, Any, Entry | None]],
        model_group: str,
        call_id: str | None = None,
        layer: str = "exact",
    ) -> FlightRole:
        """Coalesce concurrent misses of ``key`` (of ``model_group`` in ``layer``, under which the
        flight's own events are counted: ``flight_polled``, ``flight_waited``).

        Within this process the first caller leads and the others wait on an in-memory future (no
        backend round trip per waiter). Across processes the leader holds a lock in the shared backend;
        a process that finds the lock taken lets one local caller ``poll`` the backend for the result
        (bounded backoff) and shares it with its local waiters. Every wait ends after the single-flight
        timeout: the caller then goes upstream itself. Backend errors make the caller a leader (fail open).
        """
        started = time.perf_counter()
        timeout = self.single_flight.timeout
        flight = self._flights.get(key)
        if flight is not None and call_id is not None and flight.call_id == call_id:
            return FlightRole(True)  # a retry of the leading request must not wait for itself
        if flight is not None:
            flight.waiters += 1
            entry = await self._wait(flight.future, timeout)
            return FlightRole(False, entry, (time.perf_counter() - started) * 1000)

        loop = asyncio.get_running_loop()
        flight = _Flight(
            future=loop.create_future(),
            owner=f"{self._owner}:{secrets.token_hex(4)}",
            call_id=call_id,
            model_group=model_group,
            layer=layer,
        )
        self._flights[key] = flight
        flight.handle = loop.call_later(timeout, self.finish, key, None)
        lock_key = f"{self.namespace}:lock:fill:{key.rsplit(':', 1)[-1]}"
        try:
            acquired = await self.store.acquire_lock(lock_key, flight.owner, timeout)
        except StoreError:
            acquired = True  # cannot coordinate: behave as if alone
            lock_key = ""
        if acquired:
            flight.lock_key = lock_key or None
            return FlightRole(True)

        # Another process leads: poll for its result on behalf of every local waiter.
        delay = self.single_flight.poll_initial
        deadline = time.monotonic() + timeout
        entry = None
        while time.monotonic() < deadline and not flight.future.done():
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.single_flight.poll_max)
            try:
                entry = await poll()
            except StoreError:
                entry = None
            if entry is not None:
                break
        self.stats.bump(flight.layer, flight.model_group, "flight_polled")
        self.finish(key, entry)
        return FlightRole(False, entry, (time.perf_counter() - started) * 1000)

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
            self.stats.bump(flight.layer, flight.model_group, "flight_waited", flight.waiters)
            if self.telemetry is not None:
                self.telemetry.record_coalesced(flight.model_group, flight.waiters)
        if flight.lock_key:
            self._spawn(self._release_quietly(flight.lock_key, flight.owner))

    def in_flight(self, key: str) -> bool:
        return key in self._flights

    @staticmethod
    async def _wait(future: asyncio.Future[Entry | None], timeout: float) -> Entry | None:
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except asyncio.TimeoutError:
            return None

    # -- stale-while-revalidate ----------------------------------------------------------------------

    async def try_refresh_lock(self, key: str, ttl: float) -> str | None:
        """Take the refresh lock for ``key`` (across replicas). Returns the owner token or None."""
        owner = f"{self._owner}:{secrets.token_hex(4)}"
        try:
            if await self.store.acquire_lock(self._refresh_lock_key(key), owner, ttl):
                return owner
        except StoreError:
            return None
        return None

    async def release_refresh_lock(self, key: str, owner: str) -> None:
        await self._release_quietly(self._refresh_lock_key(key), owner)

    def _refresh_lock_key(self, key: str) -> str:
        return f"{self.namespace}:lock:refresh:{key.rsplit(':', 1)[-1]}"

    # -- invalidation and admin ----------------------------------------------------------------------

    async def invalidate_model(self, model_group: str) -> int:
        """Constant time: bump the model group's counter. Every entry of the group (every tenant,
        every layer) misses from now on and is cleaned up by its TTL."""
        with self._invalidation_span("model"):
            value = await self.store.incr(model_counter(self.namespace, model_group))
        self.stats.bump("admin", model_group, "invalidate_model")
        return value

    async def invalidate_tag(self, tag: str) -> int:
        """Admin: every entry carrying ``tag``, whatever its tenant. Constant time."""
        with self._invalidation_span("tag"):
            value = await self.store.incr(tag_counter(self.namespace, tag))
        self.stats.bump("admin", "-", "invalidate_tag")
        return value

    async def invalidate_tenant_tag(self, tenant_fingerprints: Iterable[str], tag: str) -> int:
        """A tenant's own entries carrying ``tag`` (the caller's tenants only). Constant time."""
        fingerprints = sorted(set(tenant_fingerprints))
        with self._invalidation_span("tenant_tag"):
            for fingerprint in fingerprints:
                await self.store.incr(tenant_tag_counter(self.namespace, fingerprint, tag))
        self.stats.bump("admin", "-", "invalidate_tenant_tag")
        return len(fingerprints)

    async def invalidate_tenant(self, tenant_fingerprint: str) -> int:
        with self._invalidation_span("tenant"):
            return await self.store.incr(tenant_counter(self.namespace, tenant_fingerprint))

    @contextlib.contextmanager
    def _invalidation_span(self, kind: str) -> Iterator[None]:
        """Span and counter of one invalidation (counted when it succeeded)."""
        if self.telemetry is None:
            yield
            return
        with self.telemetry.span("llm_cache.invalidate", {INVALIDATION_KIND: kind}):
            yield
        self.telemetry.record_invalidation(kind)

    async def backend_stats(self) -> StoreStats | None:
        """The backend's figures, ``entries`` being the count of this cache's own keys where the
        backend is shared with other data (Redis; see :class:`OwnEntries`)."""
        try:
            stats = await self.store.stats()
        except StoreError:
            return None
        return await self.own_entries.apply(stats)

    # -- helpers -------------------------------------------------------------------------------------

    async def _delete_quietly(self, key: str) -> None:
        with contextlib.suppress(StoreError):
            await self.store.delete(key)

    async def _release_quietly(self, lock_key: str, owner: str) -> None:
        with contextlib.suppress(StoreError):
            await self.store.release_lock(lock_key, owner)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` in the background, keeping a strong reference until it ends."""
        self._spawn(coro)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        try:
            task = asyncio.ensure_future(coro)
        except RuntimeError:
            coro.close()
            return
        self._background.tasks.add(task)
        task.add_done_callback(self._background.tasks.discard)


def _associated(key: str, tenant_fingerprint: str) -> bytes:
    return f"{key}\x00{tenant_fingerprint}".encode()


def layer_kind(layer: str) -> str:
    return "embedding" if layer == "embedding" else "response"
