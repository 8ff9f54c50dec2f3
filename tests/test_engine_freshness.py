"""Engine behaviour on a real in-process store with an injected clock: tags, counters recorded at
request start, stale-while-revalidate states, single-flight within and across engines (replicas)."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import pytest

from litellm_cache_plugin.engine import CacheEngine, SingleFlightSettings, flights
from litellm_cache_plugin.envelope import Entry
from litellm_cache_plugin.policy.controls import RequestControls
from litellm_cache_plugin.policy.keys import Tenant
from litellm_cache_plugin.policy.tags import TagError, parse_tags
from litellm_cache_plugin.store.base import StoreError
from litellm_cache_plugin.store.memory import MemoryStore
from tests.fake_clock import FakeClock

A = Tenant("team", "a")
B = Tenant("team", "b")
NONE = RequestControls()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_000_000.0)


@pytest.fixture
def engine(clock: FakeClock) -> CacheEngine:
    return CacheEngine(MemoryStore(clock=clock), namespace="t", clock=clock)


async def put(
    engine: CacheEngine, key: str, tenant: Tenant = A, tags: tuple[str, ...] = (), **kw: float
) -> None:
    stored = await engine.store_entry(
        key, b'{"v":1}', tenant=tenant, model_group="m", model_version="1", ttl=kw.get("ttl", 60),
        stale_for=kw.get("stale", 0), tags=tags,
    )  # fmt: skip
    assert stored is not None


async def get(engine: CacheEngine, key: str, tenant: Tenant = A, tags: tuple[str, ...] = ()) -> str:
    found = await engine.lookup(
        key, tenant=tenant, model_group="m", model_version="1", controls=NONE, tags=tags
    )
    return found.outcome if found.entry is not None else f"MISS:{found.reason}"


async def entry_at(engine: CacheEngine, key: str = "k") -> Entry | None:
    """What a lookup of ``key`` (tenant A, model group m, version 1) would serve, if anything."""
    found = await engine.lookup(key, tenant=A, model_group="m", model_version="1", controls=NONE)
    return found.entry


async def test_tag_invalidation_hits_only_tagged_entries(engine: CacheEngine) -> None:
    await put(engine, "k1", tags=("docs",))
    await put(engine, "k2", tags=("other",))
    await put(engine, "k3", tenant=B, tags=("docs",))
    await engine.invalidate_tag("docs")
    assert await get(engine, "k1") == "MISS:invalidated"
    # the reader did not send the tag: the entry's own tags are checked all the same
    assert await get(engine, "k1", tags=()) == "MISS:invalidated"
    assert await get(engine, "k2") == "HIT"
    assert await get(engine, "k3", tenant=B) == "MISS:invalidated"


async def test_tenant_tag_invalidation_never_touches_other_tenants(engine: CacheEngine) -> None:
    await put(engine, "a", tags=("docs",))
    await put(engine, "b", tenant=B, tags=("docs",))
    await engine.invalidate_tenant_tag([A.fingerprint], "docs")
    assert await get(engine, "a") == "MISS:invalidated"
    assert await get(engine, "b", tenant=B) == "HIT"


async def test_model_and_tenant_invalidation(engine: CacheEngine) -> None:
    await put(engine, "a")
    await put(engine, "b", tenant=B)
    await engine.invalidate_tenant(A.fingerprint)
    assert await get(engine, "a") == "MISS:invalidated"
    assert await get(engine, "b", tenant=B) == "HIT"
    await engine.invalidate_model("m")
    assert await get(engine, "b", tenant=B) == "MISS:invalidated"


async def test_invalidation_during_the_upstream_call_kills_its_answer(engine: CacheEngine) -> None:
    started = await engine.lookup(
        "k", tenant=A, model_group="m", model_version="1", controls=NONE, tags=("t",)
    )
    await engine.invalidate_tag("t")  # while the request is upstream
    await engine.store_entry(
        "k",
        b"{}",
        tenant=A,
        model_group="m",
        model_version="1",
        ttl=60,
        counters=started.counters,
        tags=("t",),
    )
    assert await get(engine, "k", tags=("t",)) == "MISS:invalidated"


class CountingStore:
    """A real MemoryStore that counts the calls made to it."""

    def __init__(self, inner: MemoryStore) -> None:
        self.inner = inner
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> object:
        attribute = getattr(self.inner, name)
        if callable(attribute):

            def counted(*args: object, **kwargs: object) -> object:
                self.calls.append(name)
                return attribute(*args, **kwargs)

            return counted
        return attribute


@pytest.mark.parametrize("entries", [10, 10_000])
async def test_invalidation_is_one_counter_increment_whatever_the_number_of_entries(
    clock: FakeClock, entries: int
) -> None:
    store = CountingStore(MemoryStore(clock=clock))
    engine = CacheEngine(store, namespace="t", clock=clock)  # type: ignore[arg-type]
    for i in range(entries):
        await put(engine, f"k{i}", tags=("bulk",))
    store.calls.clear()
    await engine.invalidate_tag("bulk")
    assert store.calls == ["incr"]
    assert await get(engine, f"k{entries - 1}") == "MISS:invalidated"
    assert await get(engine, "k0") == "MISS:invalidated"


async def test_fresh_stale_expired(engine: CacheEngine, clock: FakeClock) -> None:
    await put(engine, "k", ttl=10, stale=20)
    assert await get(engine, "k") == "HIT"
    clock.now += 15
    assert await get(engine, "k") == "STALE"
    clock.now += 20
    assert await get(engine, "k") == "MISS:expired"


async def test_max_age_and_model_version(engine: CacheEngine, clock: FakeClock) -> None:
    await put(engine, "k", ttl=100)
    clock.now += 30
    found = await engine.lookup(
        "k", tenant=A, model_group="m", model_version="1", controls=RequestControls(max_age=10)
    )
    assert found.reason == "expired"
    other_version = await engine.lookup("k", tenant=A, model_group="m", model_version="2", controls=NONE)
    assert other_version.reason == "model_version_changed"


async def test_single_flight_in_one_process(engine: CacheEngine) -> None:
    async def never() -> Entry | None:
        return None

    leader = await engine.claim("k", poll=never, model_group="m", call_id="leader")
    assert leader.leader
    waiters = [
        asyncio.ensure_future(engine.claim("k", poll=never, model_group="m", call_id=f"w{i}"))
        for i in range(100)
    ]
    await asyncio.sleep(0)
    retry = await engine.claim("k", poll=never, model_group="m", call_id="leader")
    assert retry.leader  # a retry of the leading request never waits for itself
    entry = await engine.store_entry("k", b"{}", tenant=A, model_group="m", model_version="1", ttl=60)
    engine.finish("k", entry)
    roles = await asyncio.gather(*waiters)
    assert all(not r.leader and r.entry == entry for r in roles)


async def test_single_flight_wait_is_bounded(clock: FakeClock) -> None:
    engine = CacheEngine(
        MemoryStore(clock=clock), namespace="t", clock=clock, single_flight=SingleFlightSettings(timeout=0.05)
    )

    async def never() -> Entry | None:
        return None

    assert (await engine.claim("k", poll=never, model_group="m")).leader
    follower = await engine.claim("k", poll=never, model_group="m")
    assert not follower.leader and follower.entry is None  # timed out: goes upstream itself


async def test_single_flight_across_replicas_sharing_a_store(clock: FakeClock) -> None:
    shared = MemoryStore(clock=clock)
    replica_1 = CacheEngine(shared, namespace="t", clock=clock)
    replica_2 = CacheEngine(shared, namespace="t", clock=clock)

    async def poll() -> Entry | None:
        return await entry_at(replica_2)

    assert (await replica_1.claim("k", poll=poll, model_group="m")).leader
    followers = [asyncio.ensure_future(replica_2.claim("k", poll=poll, model_group="m")) for _ in range(20)]
    await asyncio.sleep(0.05)
    entry = await replica_1.store_entry("k", b"{}", tenant=A, model_group="m", model_version="1", ttl=60)
    replica_1.finish("k", entry)
    roles = await asyncio.gather(*followers)
    assert [r.leader for r in roles] == [False] * 20
    assert all(r.entry is not None for r in roles)


async def test_a_poller_leads_once_the_other_replicas_leader_lets_go_without_an_answer(
    clock: FakeClock,
) -> None:
    """Replica 2 waits on replica 1's flight through the backend; replica 1's call fails (no entry):
    replica 2 takes the lock and leads at once, not after the single-flight timeout (30 s here)."""
    shared = MemoryStore(clock=clock)
    replica_1 = CacheEngine(shared, namespace="t", clock=clock)
    replica_2 = CacheEngine(shared, namespace="t", clock=clock)

    async def poll() -> Entry | None:
        return (
            await replica_2.lookup("k", tenant=A, model_group="m", model_version="1", controls=NONE)
        ).entry

    assert (await replica_1.claim("k", poll=poll, model_group="m")).leader
    follower = asyncio.ensure_future(replica_2.claim("k", poll=poll, model_group="m"))
    local_waiter = asyncio.ensure_future(replica_2.claim("k", poll=poll, model_group="m"))
    await asyncio.sleep(0.05)
    assert not follower.done()
    replica_1.finish("k", None)  # failed: no answer, the lock is released
    role = await asyncio.wait_for(follower, timeout=5)
    assert role.leader  # replica 2 goes upstream for everyone waiting on it
    assert not await shared.acquire_lock("t:lock:fill:k", "someone", 30)  # ... holding the lock
    entry = await replica_2.store_entry("k", b"{}", tenant=A, model_group="m", model_version="1", ttl=60)
    replica_2.finish("k", entry)
    waited = await local_waiter
    assert not waited.leader and waited.entry == entry
    await asyncio.sleep(0)
    assert await shared.acquire_lock("t:lock:fill:k", "someone", 30)  # released by its finish


async def test_a_poller_that_takes_over_serves_an_answer_stored_just_before_the_release(
    clock: FakeClock,
) -> None:
    shared = MemoryStore(clock=clock)
    replica_1 = CacheEngine(shared, namespace="t", clock=clock)
    replica_2 = CacheEngine(shared, namespace="t", clock=clock)
    polls = 0

    async def poll() -> Entry | None:
        nonlocal polls
        polls += 1
        if polls == 1:  # the leader stores and releases between this poll and the lock attempt
            entry = await replica_1.store_entry(
                "k", b"{}", tenant=A, model_group="m", model_version="1", ttl=60
            )
            replica_1.finish("k", entry)
            await asyncio.sleep(0)
            return None
        return (
            await replica_2.lookup("k", tenant=A, model_group="m", model_version="1", controls=NONE)
        ).entry

    assert (await replica_1.claim("k", poll=poll, model_group="m")).leader
    role = await asyncio.wait_for(replica_2.claim("k", poll=poll, model_group="m"), timeout=5)
    assert not role.leader and role.entry is not None  # no second upstream call
    await asyncio.sleep(0)
    assert await shared.acquire_lock("t:lock:fill:k", "someone", 30)  # not left held


async def test_a_read_that_finds_nothing_takes_the_fill_lock_its_flight_then_leads_with(
    clock: FakeClock,
) -> None:
    """``read(lock=True)`` takes the fill lock in the read's round trip; this process's claim of
    the key then leads with it (no second lock call) and another replica waits on it."""
    shared = MemoryStore(clock=clock)
    counted = CountingStore(shared)
    replica_1 = CacheEngine(counted, namespace="t", clock=clock)  # type: ignore[arg-type]
    replica_2 = CacheEngine(shared, namespace="t", clock=clock)

    async def poll() -> Entry | None:
        return (
            await replica_2.lookup("k", tenant=A, model_group="m", model_version="1", controls=NONE)
        ).entry

    read = await replica_1.read("k", tenant=A, model_group="m", lock=True)
    assert read.raw is None and read.lock_owner is not None
    assert counted.calls == ["get_with_counters_or_lock"]
    assert (await replica_1.claim("k", poll=poll, model_group="m")).leader
    assert "acquire_lock" not in counted.calls  # led with the lock the read took
    follower = asyncio.ensure_future(replica_2.claim("k", poll=poll, model_group="m"))
    await asyncio.sleep(0.05)
    assert not follower.done()  # the other replica sees the lock: it waits for the entry
    replica_1.drop_read_lock(read)  # the request is over: its flight holds the lock, nothing to give back
    assert not await shared.acquire_lock("t:lock:fill:k", "someone", 30)
    entry = await replica_1.store_entry("k", b"{}", tenant=A, model_group="m", model_version="1", ttl=60)
    replica_1.finish("k", entry)
    role = await follower
    assert not role.leader and role.entry is not None
    await asyncio.sleep(0)  # the flight's release of the lock runs in the background
    assert await shared.acquire_lock("t:lock:fill:k", "someone", 30)


class LateReadStore(CountingStore):
    """A MemoryStore whose read-and-lock answers only when ``answer`` is set: the lock is taken at
    once (the script ran on the server) but the reply reaches its caller late."""

    def __init__(self, inner: MemoryStore) -> None:
        super().__init__(inner)
        self.answer = asyncio.Event()

    async def get_with_counters_or_lock(self, *args: object, **kwargs: object) -> object:
        result = await self.inner.get_with_counters_or_lock(*args, **kwargs)  # type: ignore[arg-type]
        await self.answer.wait()
        return result


async def test_a_request_whose_read_took_the_lock_leads_even_when_another_request_claimed_first(
    clock: FakeClock,
) -> None:
    """Two requests of one process miss the same key. The first's read takes the fill lock, but its
    reply comes back after the second request has already claimed the key and found the lock taken
    (it polls for another holder's answer). The first must then lead with its lock: were it to wait
    on the second's flight, each would wait for the other until the single-flight timeout (CI at
    7b9ef70: 50 upstream calls after 30 s instead of one)."""
    shared = MemoryStore(clock=clock)
    late = LateReadStore(shared)
    engine = CacheEngine(late, namespace="t", clock=clock)  # type: ignore[arg-type]

    async def poll() -> Entry | None:
        return await entry_at(engine)

    first_read = asyncio.ensure_future(engine.read("k", tenant=A, model_group="m", lock=True))
    await asyncio.sleep(0)
    assert not await shared.acquire_lock("t:lock:fill:k", "someone", 30)  # the first read took it
    second = asyncio.ensure_future(engine.claim("k", poll=poll, model_group="m", call_id="second"))
    await asyncio.sleep(0.05)
    assert not second.done()  # polling: it saw the lock taken
    late.answer.set()
    read = await first_read
    assert read.lock_owner is not None
    first = await asyncio.wait_for(engine.claim("k", poll=poll, model_group="m", call_id="first"), 1)
    assert first.leader
    entry = await engine.store_entry("k", b"{}", tenant=A, model_group="m", model_version="1", ttl=60)
    engine.finish("k", entry)
    role = await asyncio.wait_for(second, 1)
    assert not role.leader and role.entry is not None  # one upstream call for both
    engine.drop_read_lock(read)
    await asyncio.sleep(0)  # the flight's release of the lock runs in the background
    assert await shared.acquire_lock("t:lock:fill:k", "someone", 30)


class LostReplyStore(CountingStore):
    """A MemoryStore whose read-and-lock runs (the lock is taken) but whose reply is lost, as when
    the store's deadline cuts off a slow backend's answer."""

    async def get_with_counters_or_lock(self, *args: object, **kwargs: object) -> object:
        await self.inner.get_with_counters_or_lock(*args, **kwargs)  # type: ignore[arg-type]
        raise StoreError("deadline passed")


async def test_a_read_whose_reply_was_lost_does_not_leave_its_request_waiting_on_its_own_lock(
    clock: FakeClock,
) -> None:
    shared = MemoryStore(clock=clock)
    engine = CacheEngine(LostReplyStore(shared), namespace="t", clock=clock)  # type: ignore[arg-type]

    async def never() -> Entry | None:
        return None

    with pytest.raises(StoreError):
        await engine.read("k", tenant=A, model_group="m", lock=True)
    assert not await shared.acquire_lock("t:lock:fill:k", "someone", 30)  # taken all the same
    # Its request goes on (fail open) and claims the key: it leads at once instead of polling for
    # the lock it took itself until the single-flight timeout.
    role = await asyncio.wait_for(engine.claim("k", poll=never, model_group="m"), 1)
    assert role.leader
    engine.finish("k", None)
    await asyncio.sleep(0)  # the release runs in the background
    assert await shared.acquire_lock("t:lock:fill:k", "someone", 30)


def test_held_locks_nobody_claimed_or_gave_back_are_swept_once_expired(engine: CacheEngine) -> None:
    long_ago = time.monotonic() - 3600
    for i in range(1100):
        engine.flights.hold(f"k{i}", f"t:lock:fill:k{i}", f"o{i}", long_ago)
    engine.flights.hold("fresh", "t:lock:fill:fresh", "o", time.monotonic())
    held = engine.flights._held
    assert "fresh" in held and len(held) <= 1100 + 1 - 1024  # swept when the 1025th came in


async def test_a_claim_after_a_lookup_that_found_nothing_is_served_what_was_stored_since(
    clock: FakeClock,
) -> None:
    """The lookup found nothing; before the claim, another replica's flight stored its answer and
    let go of the lock. The claim is served that answer, not a second upstream call; a claim that
    was not told the key was absent (its lookup found an entry it could not use) takes the lock."""
    shared = MemoryStore(clock=clock)
    replica_1 = CacheEngine(shared, namespace="t", clock=clock)
    replica_2 = CacheEngine(shared, namespace="t", clock=clock)

    async def poll() -> Entry | None:
        return await entry_at(replica_1)

    assert (
        await replica_1.lookup("k", tenant=A, model_group="m", model_version="1", controls=NONE)
    ).reason == ("absent")
    assert (await replica_2.claim("k", poll=poll, model_group="m")).leader
    entry = await replica_2.store_entry("k", b"{}", tenant=A, model_group="m", model_version="1", ttl=60)
    replica_2.finish("k", entry)
    await asyncio.sleep(0)  # the lock is released in the background
    role = await replica_1.claim("k", poll=poll, model_group="m", absent=True)
    assert not role.leader and role.entry is not None
    assert not replica_1.flights.in_flight("k")
    assert (await replica_1.claim("k", poll=poll, model_group="m")).leader


async def test_a_fill_lock_read_ahead_but_never_claimed_is_given_back(clock: FakeClock) -> None:
    shared = MemoryStore(clock=clock)
    short = SingleFlightSettings(timeout=0.05)
    replica_1 = CacheEngine(shared, namespace="t", clock=clock, single_flight=short)
    replica_2 = CacheEngine(shared, namespace="t", clock=clock)

    async def never() -> Entry | None:
        return None

    read = await replica_1.read("k", tenant=A, model_group="m", lock=True)
    assert read.lock_owner is not None
    other = await replica_2.read("k", tenant=A, model_group="m", lock=True)
    assert other.raw is None and other.lock_owner is None  # held by replica 1
    replica_2.drop_read_lock(other)  # took nothing: gives nothing back
    replica_1.drop_read_lock(read)  # e.g. auth refused the request, or its key differed after auth
    await asyncio.sleep(0)
    assert (await replica_2.claim("k", poll=never, model_group="m")).leader
    assert not await shared.acquire_lock("t:lock:fill:k", "someone", 30)  # replica 2 holds it now
    # Given back for good: a later flight of replica 1 does not lead with the lock it returned.
    follower = await replica_1.claim("k", poll=never, model_group="m")
    assert not follower.leader


async def test_a_read_that_finds_an_entry_takes_no_lock(clock: FakeClock) -> None:
    shared = MemoryStore(clock=clock)
    engine = CacheEngine(shared, namespace="t", clock=clock)
    await put(engine, "k")
    read = await engine.read("k", tenant=A, model_group="m", lock=True)
    assert read.raw is not None and read.lock_owner is None
    assert await shared.acquire_lock("t:lock:fill:k", "someone", 30)


async def test_a_flight_does_not_lead_with_a_fill_lock_read_ahead_that_has_expired(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = MemoryStore(clock=clock)
    counted = CountingStore(shared)
    engine = CacheEngine(counted, namespace="t", clock=clock, single_flight=SingleFlightSettings(timeout=5))  # type: ignore[arg-type]

    async def never() -> Entry | None:
        return None

    read = await engine.read("k", tenant=A, model_group="m", lock=True)
    assert read.lock_owner is not None
    later = time.monotonic() + 6  # the single flight's own clock (not the event loop's)
    monkeypatch.setattr(
        flights, "time", SimpleNamespace(monotonic=lambda: later, perf_counter=time.perf_counter)
    )
    clock.now += 6  # the store dropped the lock too
    assert (await engine.claim("k", poll=never, model_group="m")).leader
    assert counted.calls.count("acquire_lock") == 1  # took the lock again


async def test_single_flight_counts_its_events_under_the_model_group(clock: FakeClock) -> None:
    shared = MemoryStore(clock=clock)
    replica_1 = CacheEngine(shared, namespace="t", clock=clock)
    replica_2 = CacheEngine(shared, namespace="t", clock=clock)

    async def poll() -> Entry | None:
        return await entry_at(replica_2)

    assert (await replica_1.claim("k", poll=poll, model_group="m")).leader
    local_leader = await replica_1.claim("k2", poll=poll, model_group="m")
    assert local_leader.leader
    local_waiters = [
        asyncio.ensure_future(replica_1.claim("k2", poll=poll, model_group="m")) for _ in range(4)
    ]
    followers = [asyncio.ensure_future(replica_2.claim("k", poll=poll, model_group="m")) for _ in range(5)]
    await asyncio.sleep(0.05)
    entry = await replica_1.store_entry("k", b"{}", tenant=A, model_group="m", model_version="1", ttl=60)
    replica_1.finish("k", entry)
    replica_1.finish("k2", None)
    await asyncio.gather(*followers, *local_waiters)
    # replica 2: one request polled the backend for the other replica's answer, four waited on it.
    row = replica_2.stats.snapshot()["exact"]["m"]
    assert (row["flight_polled"], row["flight_waited"]) == (1, 4)
    assert set(replica_2.stats.snapshot()["exact"]) == {"m"}
    # replica 1: four requests waited on a local leader. The results themselves (coalesced, miss)
    # are counted by whoever serves the requests (CacheEngine.account), not here.
    assert replica_1.stats.snapshot()["exact"]["m"]["flight_waited"] == 4
    assert "-" not in replica_1.stats.snapshot()["exact"]


async def test_single_flight_counts_under_the_layer_it_is_given(engine: CacheEngine) -> None:
    async def never() -> Entry | None:
        return None

    assert (await engine.claim("k", poll=never, model_group="m", layer="semantic")).leader
    waiter = asyncio.ensure_future(engine.claim("k", poll=never, model_group="m", layer="semantic"))
    await asyncio.sleep(0)
    engine.finish("k", None)
    await waiter
    snapshot = engine.stats.snapshot()
    assert snapshot["semantic"]["m"]["flight_waited"] == 1
    assert "exact" not in snapshot


def test_unrated_layers_get_no_hit_ratio(clock: FakeClock) -> None:
    default = CacheEngine(MemoryStore(clock=clock), namespace="t", clock=clock)
    named = CacheEngine(MemoryStore(clock=clock), namespace="t", clock=clock, unrated_layers=("path",))
    for engine in (default, named):
        for layer in ("exact", "fast_path", "path", "admin"):
            engine.stats.bump(layer, "m", "hit")
    # Default: the proxy glue's "fast_path" rows and the engine's own "admin" rows are not layers.
    rated = {layer for layer, rows in default.stats.snapshot().items() if "hit_ratio" in rows["m"]}
    assert rated == {"exact", "path"}
    rated = {layer for layer, rows in named.stats.snapshot().items() if "hit_ratio" in rows["m"]}
    assert rated == {"exact", "fast_path"}


async def test_refresh_lock_is_exclusive_across_replicas(clock: FakeClock) -> None:
    shared = MemoryStore(clock=clock)
    one, two = CacheEngine(shared, namespace="t"), CacheEngine(shared, namespace="t")
    owners = await asyncio.gather(*(e.flights.try_refresh_lock("k", 30, 5.0) for e in [one, two, one, two]))
    assert sum(owner is not None for owner in owners) == 1
    # The lock is per written entry: the next one (written at another time) has its own.
    assert await one.flights.try_refresh_lock("k", 30, 6.0) is not None
    assert await two.flights.try_refresh_lock("k", 30, 5.0) is None


def test_tags_parsing() -> None:
    assert parse_tags("b, a ,a", ["c"]) == ("a", "b", "c")
    assert parse_tags(None, "x,y") == ("x", "y")
    assert parse_tags(None, None) == ()
    for bad in ("has space", "", "-lead", "x" * 65):
        with pytest.raises(TagError):
            parse_tags(None, [bad])
    with pytest.raises(TagError):
        parse_tags(",".join(f"t{i}" for i in range(17)), None)
    with pytest.raises(TagError):
        parse_tags(None, {"not": "a list"})
