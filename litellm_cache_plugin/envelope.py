"""How an entry is laid out in a backend: a version byte, a small binary header, then the payload bytes.

Format 3 (written now)::

    \\x03 | fixed part (struct ``<dIIBBB``: created_at, crc32 and length of the payload, flags, number
          of tags, kind: 0 response, 1 embedding, 255 a text field follows)
        | fresh_for, stale_for (float32 where that is exact, else float64: see the flags),
          upstream_ms (likewise; NaN: none)
        | tenant, model version, [kind,] each tag (a length byte/short, then UTF-8, or raw bytes where
          the text was lower-case hex: tenants, hashes and digests take half the space)
        | invalidation counters: compact (namespace and model-group hash, then the values as varints,
          in the order ``counters_for`` gives their names) or, for any other set, their JSON
        | ``extra`` as JSON when not empty
        | payload (JSON bytes as received, or those bytes zstd-compressed: flag 0x20)

The counters are most of an entry's metadata and their names repeat what the entry already says
(tenant, tags): storing the names once per entry as JSON cost ~270 bytes per entry, the compact form
is ~110 in all. Format 1 (a JSON header) is still read, so entries written before stay valid.

The payload is kept as the JSON bytes of the response (orjson), not msgpack: clients receive JSON,
and ``benchmarks/encoding.py`` (results/2026-11-23-2cpu-24gb-intel/encoding.txt) finds msgpack slower
on a typical 1.5 KB answer (+0.5 us per hit, decode + JSON for the client) and faster by only ~4 us at
16 KB and ~40 us at 128 KB; it would shrink embedding items 2.3x, but so does compression, without a
second payload format for every reader. Payloads of at least ``compress_min_bytes`` (default 16 KiB)
are stored zstd-compressed (level 1, flag 0x20) when that saves at least 10%: long answers shrink
2.3-3.5x (memory per entry 28-43% of raw) for ~1-2 us of decode per KB saved (16 KB: decode + JSON
8 -> 24 us; 128 KB: 61 -> 143 us, a fraction of the ~0.8 ms the 95 KB saved take on a 1 Gbit/s link).
zlib decodes 2-4x slower than zstd for a smaller gain. Below the threshold (the usual 1-4 KB answers,
768-float embedding items) nothing changes: compression would cost 3-16 us per hit there. The engine
compresses before encrypting and decompresses after decrypting (``Entry.compressed``); decompression
is bounded (the frame must declare its size, at most ``max_entry_bytes``) and any failure is a miss.

Reading an entry never raises; :func:`read_entry` says what the bytes are, as a tagged result:

- an :class:`Entry`;
- :class:`UnknownFormat`: written by a newer version of this package — a format number above
  ``FORMAT_VERSION``, or format 3 with a flag or an entry kind code this code does not know. During
  a rolling upgrade old and new replicas share one backend: the old ones must neither serve nor
  delete what the new ones write. It is a miss left alone (the engine counts it as
  ``unknown_format``). An old replica that misses goes upstream and stores its own answer under the
  same key, in its own format; the new replicas read that format too, so the key keeps serving both
  until the old replicas are gone. A writer that changes the layout in a way older readers would
  misread must take a new format number (or a new flag).
- :class:`Corrupt`: bytes of a format this code reads (1 or 3) that do not decode — a bad checksum,
  a truncated value, a header of the wrong shape — or a format number no version ever wrote (0, 2).
  A miss; the engine deletes it.
"""

from __future__ import annotations

import math
import struct
import threading
import zlib
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import orjson
import zstandard

from litellm_cache_plugin.policy.tags import tag_counter, tenant_counter, tenant_tag_counter

FORMAT_VERSION = 3
LEGACY_JSON_VERSION = 1
_HEADER_LEN = 4  # format 1: length of its JSON header

_FIXED = struct.Struct("<dIIBBB")
_SHORT = struct.Struct("<H")
_F32 = struct.Struct("<f")
_F64 = struct.Struct("<d")
# flags of format 3
_COMPACT_COUNTERS = 0x01
_HAS_EXTRA = 0x02
_FRESH_F64 = 0x04
_STALE_F64 = 0x08
_UPSTREAM_F64 = 0x10
_ZSTD = 0x20  # the payload (decrypted, if encrypted) is one zstd frame that declares its size
_KNOWN_FLAGS = _COMPACT_COUNTERS | _HAS_EXTRA | _FRESH_F64 | _STALE_F64 | _UPSTREAM_F64 | _ZSTD
_KINDS = ("response", "embedding")
_TEXT_KIND = 0xFF
_MODEL_MARK = ":gen:model:"
# a text field: (length << 1 | is_hex) as one byte below 0xFF, else 0xFF + that as an unsigned short
_LONG_FIELD = 0xFF
_MAX_FIELD = 0x7FFF
# Compression: zstd level 1 (level 3 is ~2% smaller and 1.5x slower to write); kept only when it saves
# at least 10%. Never inflate past this, whatever a frame declares.
ZSTD_LEVEL = 1
HARD_MAX_PAYLOAD = 64 * 1024 * 1024
_MIN_SAVING = 0.9
_MAX_WINDOW = 8 * 1024 * 1024
_zstd_local = threading.local()


@dataclass(frozen=True)
class Entry:
    payload: bytes
    created_at: float
    fresh_for: float
    stale_for: float
    tenant: str
    # Invalidation counters (model group, tenant, tags) as they were when the request started: the
    # entry is dead as soon as any of them has moved on.
    counters: dict[str, int]
    model_version: str
    kind: str
    upstream_ms: float | None = None
    tags: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)
    # The payload is zstd-compressed (see compress_payload); the engine serves it decompressed.
    compressed: bool = False

    def payload_json(self) -> Any:
        return orjson.loads(self.payload)


@dataclass(frozen=True, slots=True)
class UnknownFormat:
    """Bytes written by a newer writer (see the module docstring): a miss to leave alone."""

    version: int
    # What this code does not know: "format" (the format number), "flags" or "kind".
    detail: str


@dataclass(frozen=True, slots=True)
class Corrupt:
    """Bytes that no writer could have produced as they are: a miss, safe to delete."""

    detail: str


# What a value in a backend is: read_entry's tagged result.
Decoded: TypeAlias = Entry | UnknownFormat | Corrupt

_EMPTY = Corrupt("empty value")
_NEVER_WRITTEN = Corrupt("a format number no version writes")
_MALFORMED = Corrupt("malformed header")
_BAD_CHECKSUM = Corrupt("payload checksum mismatch")
_LENGTHS = Corrupt("header and payload lengths disagree")


class _Malformed(ValueError):
    """Internal: a value that is not a well-formed entry."""


def _hex_bytes(text: str) -> bytes | None:
    """``text`` as raw bytes when it is lower-case hex of even length (it then decodes back exactly)."""
    if not text or len(text) % 2:
        return None
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        return None
    return raw if raw.hex() == text else None


def _put_text(out: bytearray, text: str) -> None:
    raw = _hex_bytes(text)
    is_hex = raw is not None
    if raw is None:
        raw = text.encode("utf-8")
    _put_bytes(out, raw, is_hex)


def _put_bytes(out: bytearray, raw: bytes, is_hex: bool = False) -> None:
    if len(raw) > _MAX_FIELD:
        raise ValueError("envelope field too long")
    marker = (len(raw) << 1) | is_hex
    if marker < _LONG_FIELD:
        out.append(marker)
    else:
        out.append(_LONG_FIELD)
        out += _SHORT.pack(marker)
    out += raw


def _put_varint(out: bytearray, value: int) -> None:
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def _compact_counters(entry: Entry) -> tuple[str, str] | None:
    """(namespace, model-group hash) when ``entry.counters`` are exactly the counters the engine
    derives for its model group, tenant and tags, in that order (so the names can be rebuilt)."""
    counters = entry.counters
    if not counters or any(type(v) is not int or v < 0 for v in counters.values()):
        return None
    first = next(iter(counters))
    at = first.rfind(_MODEL_MARK)
    if at < 0:
        return None
    namespace, model_hash = first[:at], first[at + len(_MODEL_MARK) :]
    if list(counters) != _counter_names(namespace, model_hash, entry.tenant, entry.tags):
        return None
    return namespace, model_hash


def _counter_names(namespace: str, model_hash: str, tenant: str, tags: tuple[str, ...]) -> list[str]:
    # The same names, in the same order, as policy.tags.counters_for.
    names = [f"{namespace}{_MODEL_MARK}{model_hash}", tenant_counter(namespace, tenant)]
    for tag in tags:
        names.append(tag_counter(namespace, tag))
        names.append(tenant_tag_counter(namespace, tenant, tag))
    return names


def _exact_f32(value: float) -> bool:
    # Most durations are whole seconds or short decimals of milliseconds: 4 bytes instead of 8.
    return math.isnan(value) or (math.isfinite(value) and _F32.unpack(_F32.pack(value))[0] == value)


def encode_entry(entry: Entry) -> bytes:
    if len(entry.tags) > 0xFF:
        raise ValueError("too many tags for one entry")
    compact = _compact_counters(entry)
    fresh, stale = float(entry.fresh_for), float(entry.stale_for)
    upstream = math.nan if entry.upstream_ms is None else float(entry.upstream_ms)
    flags = (
        (_COMPACT_COUNTERS if compact else 0)
        | (_HAS_EXTRA if entry.extra else 0)
        | (0 if _exact_f32(fresh) else _FRESH_F64)
        | (0 if _exact_f32(stale) else _STALE_F64)
        | (0 if _exact_f32(upstream) else _UPSTREAM_F64)
        | (_ZSTD if entry.compressed else 0)
    )
    kind = _KINDS.index(entry.kind) if entry.kind in _KINDS else _TEXT_KIND
    out = bytearray((FORMAT_VERSION,))
    out += _FIXED.pack(
        float(entry.created_at), zlib.crc32(entry.payload), len(entry.payload), flags, len(entry.tags), kind
    )
    out += _F64.pack(fresh) if flags & _FRESH_F64 else _F32.pack(fresh)
    out += _F64.pack(stale) if flags & _STALE_F64 else _F32.pack(stale)
    out += _F64.pack(upstream) if flags & _UPSTREAM_F64 else _F32.pack(upstream)
    _put_text(out, entry.tenant)
    _put_text(out, entry.model_version)
    if kind == _TEXT_KIND:
        _put_text(out, entry.kind)
    for tag in entry.tags:
        _put_text(out, tag)
    if compact is not None:
        _put_text(out, compact[0])
        _put_text(out, compact[1])
        for value in entry.counters.values():
            _put_varint(out, value)
    else:
        _put_bytes(out, orjson.dumps(entry.counters))
    if entry.extra:
        _put_bytes(out, orjson.dumps(entry.extra))
    out += entry.payload
    return bytes(out)


class _Reader:
    __slots__ = ("end", "pos", "raw")

    def __init__(self, raw: bytes, pos: int, end: int) -> None:
        self.raw, self.pos, self.end = raw, pos, end

    def field(self) -> tuple[bytes, bool]:
        raw, pos = self.raw, self.pos
        if pos >= self.end:
            raise _Malformed("truncated")
        marker = raw[pos]
        pos += 1
        if marker == _LONG_FIELD:
            if pos + 2 > self.end:
                raise _Malformed("truncated")
            (marker,) = _SHORT.unpack_from(raw, pos)
            pos += 2
        size = marker >> 1
        if pos + size > self.end:
            raise _Malformed("truncated")
        self.pos = pos + size
        return raw[pos : pos + size], bool(marker & 1)

    def text(self) -> str:
        value, is_hex = self.field()
        return value.hex() if is_hex else value.decode("utf-8")

    def varint(self) -> int:
        value = shift = 0
        while True:
            if self.pos >= self.end or shift > 63:
                raise _Malformed("bad varint")
            byte = self.raw[self.pos]
            self.pos += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value
            shift += 7


def read_entry(raw: bytes) -> Decoded:
    """What ``raw`` is: an :class:`Entry`, :class:`UnknownFormat` (a newer writer's: leave it alone) or
    :class:`Corrupt` (undecodable: safe to delete). Never raises."""
    if not raw:
        return _EMPTY
    version = raw[0]
    if version == FORMAT_VERSION:
        return _decode_binary(raw)
    if version == LEGACY_JSON_VERSION:
        return _decode_json(raw)
    if version > FORMAT_VERSION:
        return UnknownFormat(version, "format")
    return _NEVER_WRITTEN


def decode_entry(raw: bytes) -> Entry | None:
    """The entry in ``raw``, or ``None`` when it cannot be served (see :func:`read_entry` for why)."""
    decoded = read_entry(raw)
    return decoded if isinstance(decoded, Entry) else None


def _decode_binary(raw: bytes) -> Decoded:
    try:
        created, crc, size, flags, tag_count, kind_code = _FIXED.unpack_from(raw, 1)
        if flags & ~_KNOWN_FLAGS:
            return UnknownFormat(FORMAT_VERSION, "flags")
        if kind_code >= len(_KINDS) and kind_code != _TEXT_KIND:
            return UnknownFormat(FORMAT_VERSION, "kind")
        payload_at = len(raw) - size
        pos = 1 + _FIXED.size
        if payload_at < pos:
            return _LENGTHS
        payload = raw[payload_at:]
        if zlib.crc32(payload) != crc:
            return _BAD_CHECKSUM
        fresh_format = _F64 if flags & _FRESH_F64 else _F32
        (fresh,) = fresh_format.unpack_from(raw, pos)
        pos += fresh_format.size
        stale_format = _F64 if flags & _STALE_F64 else _F32
        (stale,) = stale_format.unpack_from(raw, pos)
        pos += stale_format.size
        upstream_format = _F64 if flags & _UPSTREAM_F64 else _F32
        (upstream,) = upstream_format.unpack_from(raw, pos)
        reader = _Reader(raw, pos + upstream_format.size, payload_at)
        tenant = reader.text()
        model_version = reader.text()
        kind = reader.text() if kind_code == _TEXT_KIND else _KINDS[kind_code]
        tags = tuple(reader.text() for _ in range(tag_count))
        counters: dict[str, int]
        if flags & _COMPACT_COUNTERS:
            names = _counter_names(reader.text(), reader.text(), tenant, tags)
            counters = {name: reader.varint() for name in names}
        else:
            loaded = orjson.loads(reader.field()[0])
            counters = {str(k): int(v) for k, v in dict(loaded).items()}
        extra = dict(orjson.loads(reader.field()[0])) if flags & _HAS_EXTRA else {}
        if reader.pos != payload_at:
            return _LENGTHS
        return Entry(
            payload=payload,
            created_at=created,
            fresh_for=fresh,
            stale_for=stale,
            tenant=tenant,
            counters=counters,
            model_version=model_version,
            kind=kind,
            upstream_ms=None if math.isnan(upstream) else upstream,
            tags=tags,
            extra=extra,
            compressed=bool(flags & _ZSTD),
        )
    except (struct.error, _Malformed, orjson.JSONDecodeError, IndexError, TypeError, ValueError):
        return _MALFORMED


def _decode_json(raw: bytes) -> Decoded:
    """Format 1: ``\\x01 | header length (4 bytes, big endian) | header (JSON) | payload``."""
    try:
        if len(raw) < 1 + _HEADER_LEN:
            return _MALFORMED
        size = int.from_bytes(raw[1 : 1 + _HEADER_LEN], "big")
        start = 1 + _HEADER_LEN
        header = orjson.loads(raw[start : start + size])
        payload = raw[start + size :]
        if not isinstance(header, dict) or header.get("n") != len(payload):
            return _LENGTHS
        if header.get("crc") != zlib.crc32(payload):
            return _BAD_CHECKSUM
        upstream = header.get("u")
        return Entry(
            payload=payload,
            created_at=float(header["c"]),
            fresh_for=float(header["f"]),
            stale_for=float(header["s"]),
            tenant=str(header["t"]),
            counters={str(k): int(v) for k, v in dict(header["g"]).items()},
            model_version=str(header["v"]),
            kind=str(header["k"]),
            upstream_ms=float(upstream) if upstream is not None else None,
            tags=tuple(str(tag) for tag in header.get("tg") or ()),
            extra=dict(header.get("x") or {}),
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
        return _MALFORMED


def _zstd() -> tuple[zstandard.ZstdCompressor, zstandard.ZstdDecompressor]:
    # One pair per thread: zstandard's contexts must not be used by two threads at once.
    pair = getattr(_zstd_local, "pair", None)
    if pair is None:
        pair = (
            zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_content_size=True),
            zstandard.ZstdDecompressor(max_window_size=_MAX_WINDOW),
        )
        _zstd_local.pair = pair
    return pair


def compress_payload(
    payload: bytes, min_bytes: int | None, max_bytes: int = HARD_MAX_PAYLOAD
) -> bytes | None:
    """``payload`` zstd-compressed, or None to store it as is: compression off (``min_bytes`` 0 or
    None), a payload shorter than ``min_bytes`` or longer than ``max_bytes`` (it could not be read
    back), or a saving under 10%."""
    if not min_bytes or len(payload) < min_bytes or len(payload) > min(max_bytes, HARD_MAX_PAYLOAD):
        return None
    packed = _zstd()[0].compress(payload)
    return packed if len(packed) <= len(payload) * _MIN_SAVING else None


def decompress_payload(packed: bytes, max_bytes: int = HARD_MAX_PAYLOAD) -> bytes | None:
    """The bytes ``compress_payload`` compressed, or None (never an error): not one well-formed zstd
    frame, no declared size, or a declared size above ``max_bytes`` (a decompression bomb)."""
    limit = min(max_bytes, HARD_MAX_PAYLOAD)
    try:
        size = zstandard.frame_content_size(packed)
        if size < 0 or size > limit:
            return None
        plain = _zstd()[1].decompress(packed, max_output_size=limit)
    except (zstandard.ZstdError, ValueError, TypeError, MemoryError):
        return None
    return plain if len(plain) == size else None


def encode_entry_v1(entry: Entry) -> bytes:
    """Format 1 (JSON header), no longer written; kept so tests and tools can make old entries."""
    header = orjson.dumps(
        {
            "c": entry.created_at,
            "f": entry.fresh_for,
            "s": entry.stale_for,
            "t": entry.tenant,
            "g": entry.counters,
            "v": entry.model_version,
            "k": entry.kind,
            "u": entry.upstream_ms,
            "tg": list(entry.tags),
            "x": entry.extra,
            "crc": zlib.crc32(entry.payload),
            "n": len(entry.payload),
        }
    )
    return bytes([LEGACY_JSON_VERSION]) + len(header).to_bytes(_HEADER_LEN, "big") + header + entry.payload
