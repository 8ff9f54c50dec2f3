"""Envelope format 3 (binary header, compact counters, compressed payloads) and reading format 1."""

from __future__ import annotations

import dataclasses
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from litellm_cache_plugin.engine import CacheEngine
from litellm_cache_plugin.envelope import (
    FORMAT_VERSION,
    LEGACY_JSON_VERSION,
    Corrupt,
    Entry,
    UnknownFormat,
    compress_payload,
    decode_entry,
    decompress_payload,
    encode_entry,
    encode_entry_v1,
    read_entry,
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


# -- compressed payloads (flag 0x20) ------------------------------------------------------------------

LONG_ANSWER = b'{"choices":[{"message":{"content":"' + b"the runbook explains each step " * 800 + b'"}}]}'


def test_compressed_entries_round_trip_and_old_readers_reject_the_flag() -> None:
    packed = compress_payload(LONG_ANSWER, 16 * 1024)
    assert packed is not None and len(packed) < len(LONG_ANSWER) // 10
    entry = engine_entry(payload=packed, compressed=True)
    raw = encode_entry(entry)
    decoded = decode_entry(raw)
    assert decoded == entry and decoded is not None and decoded.compressed
    assert decompress_payload(decoded.payload) == LONG_ANSWER
    # Uncompressed entries are unchanged (no flag), so entries written before still decode as they were.
    assert decode_entry(encode_entry(engine_entry())) == engine_entry()
    # A flag nobody knows stays a miss.
    unknown = bytearray(raw)
    unknown[1 + 8 + 4 + 4] |= 0x40
    assert decode_entry(bytes(unknown)) is None


@pytest.mark.parametrize(
    ("payload", "threshold", "compressed"),
    [
        (LONG_ANSWER, 16 * 1024, True),
        (LONG_ANSWER, len(LONG_ANSWER), True),
        (LONG_ANSWER, len(LONG_ANSWER) + 1, False),  # below the threshold
        (LONG_ANSWER, 0, False),  # off
        (LONG_ANSWER, None, False),
        (random.Random(1).randbytes(20_000), 1024, False),  # saves too little: stored as is
    ],
)
def test_compression_threshold(payload: bytes, threshold: int | None, compressed: bool) -> None:
    assert (compress_payload(payload, threshold) is not None) is compressed
    # Never compressed past what could be read back.
    assert compress_payload(payload, 1, max_bytes=len(payload) - 1) is None


def test_corrupt_or_oversized_compressed_payloads_are_none() -> None:
    import zstandard

    packed = compress_payload(LONG_ANSWER, 1)
    assert packed is not None
    assert decompress_payload(packed, max_bytes=len(LONG_ANSWER)) == LONG_ANSWER
    # A bomb: the frame declares more than the cap (or nothing at all: streamed frames).
    assert decompress_payload(packed, max_bytes=len(LONG_ANSWER) - 1) is None
    bomb = zstandard.ZstdCompressor().compress(b"\0" * (65 * 1024 * 1024))
    assert len(bomb) < 10_000 and decompress_payload(bomb) is None
    unsized = zstandard.ZstdCompressor(write_content_size=False).compress(LONG_ANSWER)
    assert decompress_payload(unsized) is None
    for bad in (b"", b"\x00" * 10, packed[:-3], packed[:20], b"{not zstd}"):
        assert decompress_payload(bad) is None
    for position in range(0, len(packed), 7):
        flipped = bytearray(packed)
        flipped[position] ^= 0x5A
        result = decompress_payload(bytes(flipped), max_bytes=len(LONG_ANSWER))
        assert result is None or len(result) == len(LONG_ANSWER)


async def test_engine_compresses_large_payloads_and_serves_them_plain() -> None:
    store = MemoryStore()
    engine = CacheEngine(store, namespace="lcp", compress_min_bytes=16 * 1024, max_payload_bytes=1 << 20)
    tenant = Tenant("team", "a")
    small = b'{"choices":[]}'
    for key, payload in (("big", LONG_ANSWER), ("small", small)):
        stored = await engine.store_entry(
            key, payload, tenant=tenant, model_group="llama", model_version="1", ttl=60
        )
        assert stored is not None and stored.payload == payload and not stored.compressed
    raw_big, raw_small = await store.get("big"), await store.get("small")
    assert raw_big is not None and raw_small is not None
    assert len(raw_big) < len(LONG_ANSWER) // 10
    big, small_entry = decode_entry(raw_big), decode_entry(raw_small)
    assert big is not None and big.compressed and small_entry is not None and not small_entry.compressed
    for key, payload in (("big", LONG_ANSWER), ("small", small)):
        found = await engine.lookup(
            key, tenant=tenant, model_group="llama", model_version="1", controls=RequestControls()
        )
        assert found.outcome == "HIT" and found.entry is not None
        assert found.entry.payload == payload and not found.entry.compressed
    # An engine with compression off still reads compressed entries (a setting change keeps the cache).
    reader = CacheEngine(store, namespace="lcp")
    found = await reader.lookup(
        "big", tenant=tenant, model_group="llama", model_version="1", controls=RequestControls()
    )
    assert found.entry is not None and found.entry.payload == LONG_ANSWER
    # A compressed payload that does not inflate (valid checksum, bad frame) is a miss, never an error.
    entry = decode_entry(raw_big)
    assert entry is not None
    bad = dataclasses.replace(entry, payload=b"\x28\xb5\x2f\xfd garbage")
    await store.set("big", encode_entry(bad), 60)
    found = await engine.lookup(
        "big", tenant=tenant, model_group="llama", model_version="1", controls=RequestControls()
    )
    assert (found.outcome, found.reason) == ("MISS", "undecodable")


async def test_engine_compresses_embedding_items_above_the_threshold() -> None:
    store = MemoryStore()
    engine = CacheEngine(store, namespace="lcp", compress_min_bytes=16 * 1024)
    tenant = Tenant("team", "a")
    items = [("a", LONG_ANSWER), ("b", b'{"embedding":[0.5]}')]
    await engine.store_many(items, tenant=tenant, model_group="emb", model_version="1", ttl=60)
    flags = [decode_entry(await store.get(key) or b"") for key, _ in items]
    assert [entry.compressed for entry in flags if entry is not None] == [True, False]
    found, _ = await engine.lookup_many(
        ["a", "b"], tenant=tenant, model_group="emb", model_version="1", controls=RequestControls()
    )
    assert [entry.payload if entry else None for entry in found] == [payload for _, payload in items]


async def test_encrypted_entries_are_compressed_before_encryption() -> None:
    import base64

    from litellm_cache_plugin.crypto import PayloadCipher

    cipher = PayloadCipher([base64.b64encode(bytes(range(32))).decode()])
    store = MemoryStore()
    engine = CacheEngine(store, namespace="lcp", cipher=cipher, compress_min_bytes=16 * 1024)
    tenant = Tenant("user", "u")
    await engine.store_entry(
        "k", LONG_ANSWER, tenant=tenant, model_group="m", model_version="1", ttl=60, encrypt=True
    )
    entry = decode_entry(await store.get("k") or b"")
    assert entry is not None and entry.compressed and "enc" in entry.extra
    assert len(entry.payload) < len(LONG_ANSWER) // 10  # ciphertext of the compressed bytes
    found = await engine.lookup(
        "k", tenant=tenant, model_group="m", model_version="1", controls=RequestControls()
    )
    assert found.outcome == "HIT" and found.entry is not None and found.entry.payload == LONG_ANSWER


# -- what the bytes are: read_entry's tagged result -----------------------------------------------------


def future_format_entry(entry: Entry) -> bytes:
    """An entry as a newer writer would store it: the next format number, then its own header (here
    a JSON one with fields this code has never seen) and the payload."""
    header = b'{"created":1763800000.5,"ttl":3600,"columns":["tenant","model","vector"],"v":4}'
    return bytes([FORMAT_VERSION + 1]) + len(header).to_bytes(2, "big") + header + entry.payload


def test_read_entry_tells_a_newer_writer_from_corruption() -> None:
    entry = engine_entry(("docs",), extra={"enc": "k"})
    raw = encode_entry(entry)
    assert read_entry(raw) == entry
    assert read_entry(encode_entry_v1(entry)) == entry
    # Newer writers: a higher format number, whatever follows; a flag or an entry kind of format 3
    # that this code does not know.
    for version in (FORMAT_VERSION + 1, 0x80, 0xFF):
        assert read_entry(bytes([version]) + raw[1:]) == UnknownFormat(version, "format")
        assert read_entry(bytes([version])) == UnknownFormat(version, "format")
    assert read_entry(future_format_entry(entry)) == UnknownFormat(FORMAT_VERSION + 1, "format")
    flagged = bytearray(raw)
    flagged[1 + 8 + 4 + 4] |= 0x40
    assert read_entry(bytes(flagged)) == UnknownFormat(FORMAT_VERSION, "flags")
    kinded = bytearray(raw)
    kinded[1 + 8 + 4 + 4 + 2] = 7
    assert read_entry(bytes(kinded)) == UnknownFormat(FORMAT_VERSION, "kind")
    # Corrupt: undecodable bytes of a format this code reads, or a format number nobody writes.
    damaged = bytearray(raw)
    damaged[-1] ^= 0x01
    for bad in (b"", raw[:-1], raw[:5], bytes(damaged), b"\x00" + raw[1:], b"\x02" + raw[1:]):
        assert isinstance(read_entry(bad), Corrupt), bad[:8]
    v1 = encode_entry_v1(entry)
    for bad in (v1[:-1], v1[:3], v1[:9] + b"#" + v1[10:]):
        assert isinstance(read_entry(bad), Corrupt)


@given(st.binary(max_size=300))
def test_read_entry_never_raises_and_agrees_with_decode_entry(raw: bytes) -> None:
    decoded = read_entry(raw)
    assert isinstance(decoded, (Entry, UnknownFormat, Corrupt))
    assert decode_entry(raw) == (decoded if isinstance(decoded, Entry) else None)
    if raw and raw[0] > FORMAT_VERSION:
        assert decoded == UnknownFormat(raw[0], "format")
