"""Lookup latency of the semantic layer: one scope filled with synthetic unit vectors, lookups of real
prompts with the query embedding always computed (built-in embedder), p50/p99 of the whole
``SemanticIndex.lookup`` call. Planted near neighbours check that the sign-bit prefilter finds them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any


async def latency(
    prompts: Sequence[str], sizes: Sequence[int], threads: int, queries: int, seed: int = 3
) -> list[dict[str, Any]]:
    import numpy as np

    from litellm_cache_plugin.semantic.embedder import OnnxMiniLMEmbedder
    from litellm_cache_plugin.semantic.index import unit
    from litellm_cache_plugin.semantic.layer import SemanticIndex
    from litellm_cache_plugin.settings import SemanticLayer
    from litellm_cache_plugin.store.memory import MemoryStore

    rng = np.random.default_rng(seed)
    embedder = OnnxMiniLMEmbedder(threads=threads)
    embedder.load()
    results: list[dict[str, Any]] = []
    for size in sizes:
        settings = SemanticLayer(enabled=True, max_entries_per_scope=size, max_entries=size)
        store = MemoryStore()
        index = SemanticIndex(store, namespace="lat", embedder=embedder, settings=settings)
        skey = index._skey("bench")
        matrix = rng.standard_normal((size, 384)).astype(np.float32)
        matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
        for row in range(size):
            index._index.add(
                skey, f"k{row}", f"synthetic prompt {row}", matrix[row], expires_at=time.time() + 3600
            )
        # Plant near neighbours of real queries: the sign-bit prefilter must find them.
        asked = list(prompts[:queries])
        planted = embedder.embed_sync(asked[:50])
        for i, vector in enumerate(planted):
            noisy = unit(vector + rng.standard_normal(384).astype(np.float32) * 0.012)
            index._index.add(skey, f"planted{i}", asked[i], noisy, expires_at=time.time() + 3600)
        timings: list[float] = []
        found = 0
        for i, text in enumerate(asked):
            index._vectors.clear()  # the query embedding is always computed
            start = time.perf_counter()
            match = await index.lookup("bench", text)
            timings.append((time.perf_counter() - start) * 1000)
            if i < 50 and match is not None and match.entry_key == f"planted{i}":
                found += 1
        await store.close()
        results.append(
            {
                "entries": size,
                "lookups": len(timings),
                "p50_ms": float(np.percentile(timings, 50)),
                "p99_ms": float(np.percentile(timings, 99)),
                "planted_found": found,
                "planted": min(50, len(asked)),
            }
        )
    return results
