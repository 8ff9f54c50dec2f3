"""Payload encoding: size and speed of JSON (stdlib, orjson) vs msgpack, raw and compressed (zlib 1/6,
zstd 1/3), on the payloads the cache stores: chat answers of ~1.5, ~16 and ~128 KB and embedding items
(768 and 1536 floats). Decode is what a hit needs (stored bytes -> Python dict); "hit" adds what the
client needs on top (the dict re-encoded as JSON with orjson, as the fast path does). Medians of
several rounds of many iterations, time.perf_counter. Offline, well under a minute.

    python -m benchmarks.encoding [--rounds 5] [--budget-ms 25] [--out results/<dir>/encoding.txt]

Chat text: contiguous passages of English prose (the docstrings of stdlib modules, so the run needs
no data files), which compresses like real answers do (~2.5-3x). ``benchmarks.run``'s filler (30
words repeated at random) compresses ~2x better than real text; one row shows it, for reference.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import struct
import time
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import orjson

from benchmarks.run import FILLER, chat_completion_skeleton

try:
    import msgpack
except ImportError:  # pragma: no cover - reported in the output
    msgpack = None
try:
    import zstandard
except ImportError:  # pragma: no cover - reported in the output
    zstandard = None

DEFAULT_OUT = Path("results/2026-11-23-2cpu-24gb-intel/encoding.txt")
ENVELOPE_HEADER = 100  # format 3 header of an engine entry (tests/test_envelope_format.py: <= 110)


def _corpus() -> list[str]:
    """English prose: paragraphs of stdlib docstrings (deterministic, offline)."""
    import argparse as m1
    import asyncio as m2
    import collections as m3
    import decimal as m4
    import email as m5
    import http.client as m6
    import logging as m7
    import pathlib as m8
    import subprocess as m9
    import threading as m10
    import typing as m11
    import unittest as m12

    paragraphs: list[str] = []
    warnings.simplefilter("ignore", DeprecationWarning)  # typing.io, typing.re
    for module in (m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12):
        docs = [module.__doc__ or ""]
        for name in sorted(dir(module)):
            doc = getattr(getattr(module, name, None), "__doc__", None)
            if isinstance(doc, str) and not name.startswith("_"):
                docs.append(doc)
        for doc in docs:
            for paragraph in doc.split("\n\n"):
                text = " ".join(paragraph.split())
                if len(text) > 80:
                    paragraphs.append(text)
    return list(dict.fromkeys(paragraphs))


def chat_payload(rng: random.Random, target: int, corpus: list[str] | None) -> dict[str, Any]:
    """A chat completion as LiteLLM returns it (the shape of ``benchmarks.run.realistic_payload``),
    content from ``corpus`` paragraphs (or, with None, run.py's filler words) up to ``target`` bytes."""
    body = chat_completion_skeleton(rng, "ollama_chat/llama3.2")
    skeleton = len(orjson.dumps(body))
    parts: list[str] = []
    length = 0
    words = FILLER.split()
    start = rng.randrange(len(corpus)) if corpus else 0
    while skeleton + length < target:
        if corpus:
            part = corpus[start % len(corpus)]
            start += 1
            sep = "\n\n"
        else:
            part, sep = rng.choice(words), " "
        parts.append(part)
        length += len(part) + len(sep)
    text = ("\n\n" if corpus else " ").join(parts)
    text = text[: max(0, target - skeleton)]
    body["choices"][0]["message"]["content"] = text
    tokens = max(1, len(text) // 4)
    body["usage"].update(completion_tokens=tokens, total_tokens=96 + tokens)
    return body


def embedding_item(rng: random.Random, dims: int) -> dict[str, Any]:
    """One cached embedding item as LiteLLM's ``_convert_to_cached_embedding`` builds it; values are
    float32 read as float64, as providers send them (~20 characters each in JSON)."""
    f32 = struct.Struct("<f")
    vector = [f32.unpack(f32.pack(rng.gauss(0.0, 0.04)))[0] for _ in range(dims)]
    return {
        "embedding": vector,
        "index": 0,
        "object": "embedding",
        "model": "text-embedding-3-small",
        "prompt_tokens": 12,
        "prompt_tokens_details": None,
        "format_version": 1,
    }


Codec = tuple[Callable[[Any], bytes], Callable[[bytes], Any]]


def serializers() -> dict[str, Codec]:
    out: dict[str, Codec] = {
        "json": (lambda obj: json.dumps(obj, separators=(",", ":")).encode(), json.loads),
        "orjson": (orjson.dumps, orjson.loads),
    }
    if msgpack is not None:
        packer = msgpack.Packer()
        out["msgpack"] = (packer.pack, lambda raw: msgpack.unpackb(raw, raw=False))
    return out


def compressors() -> dict[str, Codec]:
    out: dict[str, Codec] = {
        "raw": (lambda raw: raw, lambda raw: raw),
        "zlib-1": (lambda raw: zlib.compress(raw, 1), zlib.decompress),
        "zlib-6": (lambda raw: zlib.compress(raw, 6), zlib.decompress),
    }
    if zstandard is not None:
        for level in (1, 3):
            compressor = zstandard.ZstdCompressor(level=level)
            decompressor = zstandard.ZstdDecompressor()
            out[f"zstd-{level}"] = (compressor.compress, decompressor.decompress)
    return out


def timed(fn: Callable[[], Any], rounds: int, budget_s: float) -> float:
    """Median µs per call over ``rounds`` rounds of ~``budget_s`` each."""
    fn()
    started = time.perf_counter()
    calls = 0
    while time.perf_counter() - started < budget_s / 5:
        fn()
        calls += 1
    per_call = (time.perf_counter() - started) / max(1, calls)
    iterations = max(5, int(budget_s / max(per_call, 1e-7)))
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(iterations):
            fn()
        samples.append((time.perf_counter() - started) / iterations * 1e6)
    return statistics.median(samples)


async def engine_hit(obj: dict[str, Any], rounds: int, budget_s: float) -> tuple[float, float, int, int]:
    """µs per hit through ``CacheEngine.lookup`` + what the fast path does with the payload, and the
    stored entry's bytes, with compression off and with the default threshold."""
    from litellm_cache_plugin.engine import CacheEngine
    from litellm_cache_plugin.policy.controls import RequestControls
    from litellm_cache_plugin.policy.keys import Tenant
    from litellm_cache_plugin.store.memory import MemoryStore

    tenant, controls = Tenant("team", "bench"), RequestControls()
    payload = orjson.dumps(obj)
    results: list[float] = []
    sizes: list[int] = []
    for threshold in (None, 16 * 1024):
        store = MemoryStore()
        engine = CacheEngine(store, namespace="bench", compress_min_bytes=threshold)
        await engine.store_entry("k", payload, tenant=tenant, model_group="m", model_version="1", ttl=3600)
        raw = await store.get("k")
        sizes.append(len(raw or b""))

        async def hit(engine: CacheEngine = engine) -> None:
            found = await engine.lookup(
                "k", tenant=tenant, model_group="m", model_version="1", controls=controls
            )
            assert found.entry is not None
            orjson.dumps(orjson.loads(found.entry.payload))

        await hit()
        started = time.perf_counter()
        calls = 0
        while time.perf_counter() - started < budget_s / 5:
            await hit()
            calls += 1
        iterations = max(5, int(budget_s / ((time.perf_counter() - started) / calls)))
        samples = []
        for _ in range(rounds):
            started = time.perf_counter()
            for _ in range(iterations):
                await hit()
            samples.append((time.perf_counter() - started) / iterations * 1e6)
        results.append(statistics.median(samples))
    return results[0], results[1], sizes[0], sizes[1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--budget-ms", type=float, default=25.0, help="time per round of one measure")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    budget = args.budget_ms / 1000

    rng = random.Random(6)
    corpus = _corpus()
    payloads: dict[str, dict[str, Any]] = {
        "chat 1.5KB": chat_payload(rng, 1536, corpus),
        "chat 16KB": chat_payload(rng, 16 * 1024, corpus),
        "chat 128KB": chat_payload(rng, 128 * 1024, corpus),
        "chat 16KB run.py filler": chat_payload(rng, 16 * 1024, None),
        "embedding 768": embedding_item(rng, 768),
        "embedding 1536": embedding_item(rng, 1536),
    }
    lines: list[str] = []

    def say(line: str = "") -> None:
        print(line, flush=True)
        lines.append(line)

    say(
        f"payload encoding, {platform.python_implementation()} {platform.python_version()}, "
        f"{platform.machine()}, {os.cpu_count()} CPUs; "
        f"median of {args.rounds} rounds x ~{args.budget_ms:g} ms"
    )
    say(
        f"orjson {orjson.__version__}, msgpack {getattr(msgpack, 'version', 'MISSING')}, "
        f"zstandard {getattr(zstandard, '__version__', 'MISSING')}, zlib {zlib.ZLIB_RUNTIME_VERSION}"
    )
    say("size: payload bytes stored (entry = + ~100 B envelope header); enc: dict -> stored bytes;")
    say("dec: stored bytes -> dict (what a hit needs); hit: dec + orjson.dumps for the client body;")
    say("today = orjson raw (hit = orjson.loads + orjson.dumps, as fast_path._response_hit)")
    sers, comps = serializers(), compressors()
    summary: dict[str, dict[str, tuple[int, float, float, float]]] = {}
    for name, obj in payloads.items():
        say()
        say(f"{name}: orjson {len(orjson.dumps(obj))} B")
        say(
            f"  {'format':<16}{'size B':>9}{'ratio':>7}{'enc us':>9}{'dec us':>9}{'hit us':>9}{'vs today':>9}"
        )
        rows: dict[str, tuple[int, float, float, float]] = {}
        for ser_name, (dumps, loads) in sers.items():
            for comp_name, (compress, decompress) in comps.items():
                if ser_name == "json" and comp_name not in ("raw",):
                    continue  # stdlib json only as the baseline: it loses to orjson raw already
                stored = compress(dumps(obj))
                assert loads(decompress(stored)) == obj
                enc = timed(lambda o=obj, d=dumps, c=compress: c(d(o)), args.rounds, budget)
                dec = timed(lambda ld=loads, d=decompress, s=stored: ld(d(s)), args.rounds, budget)
                hit = timed(
                    lambda ld=loads, d=decompress, s=stored: orjson.dumps(ld(d(s))), args.rounds, budget
                )
                rows[f"{ser_name} {comp_name}"] = (len(stored), enc, dec, hit)
        base_size, _, _, base_hit = rows["orjson raw"]
        for label, (size, enc, dec, hit) in rows.items():
            say(
                f"  {label:<16}{size:>9}{base_size / size:>7.2f}{enc:>9.1f}{dec:>9.1f}{hit:>9.1f}"
                f"{hit / base_hit:>8.2f}x"
            )
        summary[name] = rows

    # A bounded decompression (what the envelope would do: cap at the entry's max) costs the same.
    say()
    say("bounded zlib decompression (decompressobj, max_length) vs zlib.decompress, chat 128KB level 1:")
    blob = zlib.compress(orjson.dumps(payloads["chat 128KB"]), 1)

    def bounded() -> bytes:
        d = zlib.decompressobj()
        return d.decompress(blob, 4 * 1024 * 1024)

    say(
        f"  zlib.decompress {timed(lambda: zlib.decompress(blob), args.rounds, budget):.1f} us, "
        f"bounded {timed(bounded, args.rounds, budget):.1f} us"
    )

    say()
    say("memory per entry (payload + ~100 B header), orjson raw vs orjson zlib-1 / zstd-1:")
    for name, rows in summary.items():
        raw_size = rows["orjson raw"][0] + ENVELOPE_HEADER
        z1 = rows["orjson zlib-1"][0] + ENVELOPE_HEADER
        zs = rows.get("orjson zstd-1", (0,))[0] + ENVELOPE_HEADER
        say(
            f"  {name:<26} raw {raw_size:>7} B   zlib-1 {z1:>7} B ({z1 / raw_size:.0%})"
            + (f"   zstd-1 {zs:>7} B ({zs / raw_size:.0%})" if zstandard is not None else "")
        )
    say()
    say("end to end, chosen option (compress_min_bytes=16384, zstd-1) vs today (off): CacheEngine.lookup")
    say("on memory:// (envelope decode, checks, decompression) + orjson.loads + orjson.dumps, us per hit:")
    for name in ("chat 1.5KB", "chat 16KB", "chat 128KB", "embedding 768", "embedding 1536"):
        off, on, stored_off, stored_on = asyncio.run(engine_hit(payloads[name], args.rounds, budget))
        say(
            f"  {name:<16} today {off:>7.1f} us {stored_off:>7} B   chosen {on:>7.1f} us {stored_on:>7} B"
            f"   ({on / off:.2f}x time, {stored_on / stored_off:.0%} bytes)"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
