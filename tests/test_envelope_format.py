"""Envelope format 3 (binary header, compact counters) and reading format 1 (JSON header)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from litellm_cache_plugin.engine import CacheEngine
from litellm_cache_plugin.envelope import (
    FORMAT_VERSION,
    LEGACY_JSON_VERSION,
    Entry,
    decode_entry,
    encode_entry,
    encode_entry_v1,
)
from litellm_cache_plugin.policy.controls import RequestControls
from litellm_cache_plugin.policy.keys import Tenant
from litellm_cache_plugin.policy.tags import counters_for
from litellm_cache_plugin.store.memory import MemoryStore

TENANT = Tenant("team", "a").fingerprint
DIGEST = "0123456789abcdef" * 4


def engine_entry(tags: tuple[str, ...] = (), **overrides: object) -> Entry:
    names = counters_for("lcp", "llama", TENANT, tags)
    fields: dict[str, object] = {
        "payload": b'{"choices":[]}',
        "created_at": 1_763_800_000.123,
        "fresh_for": 3600,
        "stale_for": 0,
        "tenant": TENANT,
        "counters": {name: index * 300 for index, name in enumerate(names)},
        "model_version": DIGEST,
        "kind": "response",
        "upstream_ms": 935.6183,
        "tags": tags,
    }
    fields.update(overrides)
    return Entry(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("tags", [(), ("docs-v2",), ("ab", "faq", "x:y/z")])
def test_engine_entries_round_trip_with_compact_counters(tags: tuple[str, ...]) -> None:
    entry = engine_entry(tags)
    raw = encode_entry(entry)
    assert raw[0] == FORMAT_VERSION
    assert decode_entry(raw) == entry
    # Counter names are rebuilt, not stored: the header stays small whatever the namespace length.
    assert b"gen:tenant" not in raw and TENANT.encode() not in raw


def test_header_is_a_fraction_of_the_json_one() -> None:
    entry = engine_entry()
    binary = len(encode_entry(entry)) - len(entry.payload)
    json_header = len(encode_entry_v1(entry)) - len(entry.payload)
    assert binary <= 110 < 250 <= json_header


@pytest.mark.parametrize(
    "entry",
    [
        engine_entry(upstream_ms=None, fresh_for=0.1, stale_for=2.5),
        engine_entry(kind="embedding", extra={"enc": "key-1"}),
        engine_entry(kind="something-else", model_version="0", tenant="not-hex"),
        # Counters that do not follow the engine's layout (an extra one, another order) keep their names.
        engine_entry(counters={"lcp:gen:model:x": 3, "other": 0}),
        engine_entry(counters={}),
        engine_entry(("t",), counters=dict(reversed(engine_entry(("t",)).counters.items()))),
        engine_entry(counters={name: -1 for name in engine_entry().counters}),
    ],
)
def test_every_entry_round_trips(entry: Entry) -> None:
    assert decode_entry(encode_entry(entry)) == entry


def test_format_1_entries_still_decode() -> None:
    for entry in (engine_entry(), engine_entry(("docs",), extra={"enc": "k"}, upstream_ms=None)):
        raw = encode_entry_v1(entry)
        assert raw[0] == LEGACY_JSON_VERSION
        assert decode_entry(raw) == entry


async def test_engine_serves_an_entry_written_in_format_1() -> None:
    store = MemoryStore()
    engine = CacheEngine(store, namespace="lcp")
    tenant = Tenant("team", "a")
    counters = dict(zip(counters_for("lcp", "llama", tenant.fingerprint, ()), [0, 0], strict=True))
    old = engine_entry(counters=counters, created_at=engine.clock(), model_version="1")
    await store.set("lcp:x:k", encode_entry_v1(old), 60)
    found = await engine.lookup(
        "lcp:x:k", tenant=tenant, model_group="llama", model_version="1", controls=RequestControls()
    )
    assert (found.outcome, found.entry) == ("HIT", old)
    await engine.invalidate_model("llama")
    found = await engine.lookup(
        "lcp:x:k", tenant=tenant, model_group="llama", model_version="1", controls=RequestControls()
    )
    assert (found.outcome, found.reason) == ("MISS", "invalidated")


def test_every_corruption_or_truncation_is_a_miss() -> None:
    entry = engine_entry(("docs",), extra={"enc": "k"})
    raw = encode_entry(entry)
    for cut in range(len(raw)):
        assert decode_entry(raw[:cut]) is None
    for position in range(len(raw)):
        for bit in (0x01, 0x80):
            flipped = bytearray(raw)
            flipped[position] ^= bit
            decoded = decode_entry(bytes(flipped))
            # Never raises; a flip in the payload, its length or its checksum is always caught.
            assert decoded is None or decoded.payload == entry.payload


@given(st.binary(max_size=300))
def test_garbage_in_format_3_never_raises(tail: bytes) -> None:
    decode_entry(bytes([FORMAT_VERSION]) + tail)
