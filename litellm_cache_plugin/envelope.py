"""How an entry is laid out in a backend: a version byte, a small JSON header, then the payload bytes.

``\\x01 | header length (4 bytes, big endian) | header (JSON) | payload (JSON bytes as received)``

The payload is kept as the raw JSON bytes of the response so a hit can be sent on without re-encoding.
Anything that fails to decode — another format version, a bad checksum, a truncated value, a header
of the wrong shape — is a miss, never an error.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any

import orjson

FORMAT_VERSION = 1
_HEADER_LEN = 4


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

    def payload_json(self) -> Any:
        return orjson.loads(self.payload)


def encode_entry(entry: Entry) -> bytes:
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
    return bytes([FORMAT_VERSION]) + len(header).to_bytes(_HEADER_LEN, "big") + header + entry.payload


def decode_entry(raw: bytes) -> Entry | None:
    """The entry in ``raw``, or ``None`` when it cannot be trusted."""
    try:
        if len(raw) < 1 + _HEADER_LEN or raw[0] != FORMAT_VERSION:
            return None
        size = int.from_bytes(raw[1 : 1 + _HEADER_LEN], "big")
        start = 1 + _HEADER_LEN
        header = orjson.loads(raw[start : start + size])
        payload = raw[start + size :]
        if not isinstance(header, dict) or header.get("n") != len(payload):
            return None
        if header.get("crc") != zlib.crc32(payload):
            return None
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
        return None
