""":class:`CacheEngine`: lookups (the envelope, the tenant, the invalidation counters, decryption and
freshness judged per entry), writes, the count of every result, background tasks. Single flight and
invalidation are its collaborators (``flights.py``, ``invalidation.py``)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from litellm_cache_plugin.crypto import PayloadCipher
from litellm_cache_plugin.engine.flights import FlightRole, SingleFlight, SingleFlightSettings
from litellm_cache_plugin.engine.invalidation import Invalidation
from litellm_cache_plugin.engine.stats import SERVED, UNRATED_LAYERS, EngineStats
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
from litellm_cache_plugin.observe import Observer
from litellm_cache_plugin.policy.controls import Outcome, RequestControls
from litellm_cache_plugin.policy.freshness import age_seconds, backend_ttl, classify
from litellm_cache_plugin.policy.keys import Tenant
from litellm_cache_plugin.policy.tags import counters_for, is_invalidated
from litellm_cache_plugin.policy.verify import ALIAS_KIND
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
    # An alias (verified semantic match) found at the key, alive as far as its own metadata says
    # (tenant, counters, version): outcome MISS, reason "alias"; the region follows it.
    alias: Entry | None = None


@dataclass(frozen=True)
class Prefetched:
    """One backend read of an entry with a request's invalidation counters (:meth:`CacheEngine.read`).
    A later :meth:`CacheEngine.lookup` of the same key and counters judges it instead of reading
    again (the fast path reads before auth, then looks up after it: one round trip, not two)."""

    key: str
    counter_keys: tuple[str, ...]
    raw: bytes | None
    values: tuple[int, ...]
    # The owner token of the fill lock this read took for a miss (``read(lock=True)``), else None.
    lock_owner: str | None = None


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
        self.flights = SingleFlight(self, single_flight)
        self.invalidation = Invalidation(self)
        self._background = _Background()
        # Every key the engine writes starts with "<namespace>:".
        self.own_entries = OwnEntries(store, f"{namespace}:")

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
        self, key: str, *, tenant: Tenant, model_group: str, tags: Sequence[str] = (), lock: bool = False
    ) -> Prefetched:
        """The raw entry at ``key`` and the counters a lookup for this tenant, model group and tags
        needs, in one round trip, unjudged. Raises :class:`StoreError`.

        ``lock``: when there is no entry, also take the key's fill lock in that round trip, for the
        single flight this miss will lead (:meth:`SingleFlight.hold`); the caller gives it back with
        :meth:`drop_read_lock` once its request is over."""
        counter_keys = tuple(counters_for(self.namespace, model_group, tenant.fingerprint, tags))
        if not lock:
            raw, values = await self.store.get_with_counters(key, counter_keys)
            return Prefetched(key, counter_keys, raw, tuple(values))
        lock_key, owner = self.flights.fill_lock(key)
        asked_at = time.monotonic()
        try:
            raw, values, locked = await self.store.get_with_counters_or_lock(
                key, counter_keys, lock_key, owner, self.flights.settings.timeout
            )
        except StoreError:
            # The backend may have taken the lock before the deadline cut the reply off. This
            # process's next flight of the key leads with it (a lock it does not hold costs nothing:
            # it is released by owner), rather than find its own lock taken and wait out the timeout.
            self.flights.hold(key, lock_key, owner, asked_at)
            raise
        if not locked:
            return Prefetched(key, counter_keys, raw, tuple(values))
        self.flights.hold(key, lock_key, owner, asked_at)
        return Prefetched(key, counter_keys, raw, tuple(values), lock_owner=owner)

    def drop_read_lock(self, read: Prefetched) -> None:
        """Give back the fill lock ``read`` took, unless a single flight took it over."""
        if read.lock_owner is not None:
            self.flights.drop_held(read.key, read.lock_owner)

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
        alias = entry.kind == ALIAS_KIND and layer == "exact"
        if entry.tenant != tenant.fingerprint or (entry.kind != layer_kind(layer) and not alias):
            stats.bump(layer, model_group, "tenant_mismatch")
            return miss("tenant_mismatch")
        if is_invalidated(entry.counters, current):
            return miss("invalidated")
        if alias:
            # Verified semantic match: not an answer itself. The region resolves it to its canonical
            # entry and decides (policy/verify.py); a dead or foreign one was refused just above.
            if entry.model_version != model_version:
                return miss("model_version_changed")
            return Lookup("MISS", "alias", counters=current, alias=entry)
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
        served = result in SERVED and savings is not None
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

    async def store_alias(
        self, key: str, payload: bytes, canonical: Entry, *, ttl: float, model_group: str
    ) -> bool:
        """Write an alias at ``key`` to the canonical entry ``canonical`` (``payload``: its target, see
        ``policy.verify.encode_alias``). The alias carries the canonical entry's tenant, version, tags,
        invalidation counters and lifetime, so whatever kills the canonical entry kills it too.
        ``ttl``: backend seconds (the canonical entry's remaining life). False when not written."""
        alias = Entry(
            payload=payload,
            created_at=canonical.created_at,
            fresh_for=canonical.fresh_for,
            stale_for=canonical.stale_for,
            tenant=canonical.tenant,
            counters=dict(canonical.counters),
            model_version=canonical.model_version,
            kind=ALIAS_KIND,
            tags=tuple(canonical.tags),
        )
        try:
            encoded = encode_entry(alias)
            await self.store.set(key, encoded, ttl)
        except StoreError as error:
            self.stats.bump("semantic", model_group, "backend_error")
            log.warning("alias write skipped: %s", error)
            return False
        if self.telemetry is not None:
            self.telemetry.record_store("semantic", model_group, len(encoded))
        return True

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

    # -- single flight and invalidation, called through the engine by the region and the admin routes

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
        """:meth:`SingleFlight.claim`."""
        return await self.flights.claim(
            key, poll=poll, model_group=model_group, call_id=call_id, layer=layer, absent=absent
        )

    def finish(self, key: str, entry: Entry | None) -> None:
        """:meth:`SingleFlight.finish`."""
        self.flights.finish(key, entry)

    async def invalidate_model(self, model_group: str) -> int:
        """:meth:`Invalidation.invalidate_model`."""
        return await self.invalidation.invalidate_model(model_group)

    async def invalidate_tag(self, tag: str) -> int:
        """:meth:`Invalidation.invalidate_tag`."""
        return await self.invalidation.invalidate_tag(tag)

    async def invalidate_tenant_tag(self, tenant_fingerprints: Iterable[str], tag: str) -> int:
        """:meth:`Invalidation.invalidate_tenant_tag`."""
        return await self.invalidation.invalidate_tenant_tag(tenant_fingerprints, tag)

    async def invalidate_tenant(self, tenant_fingerprint: str) -> int:
        """:meth:`Invalidation.invalidate_tenant`."""
        return await self.invalidation.invalidate_tenant(tenant_fingerprint)

    # -- admin ---------------------------------------------------------------------------------------

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
