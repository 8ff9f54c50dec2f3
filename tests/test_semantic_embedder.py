"""The built-in embedder loads the real int8 ONNX MiniLM offline and produces sensible unit vectors.

Skipped (with the reason) only when the ``[semantic]`` extra is missing outside CI; under CI (env
``CI`` set) a missing extra is a failure.
"""

from __future__ import annotations

import asyncio
import os
import threading

import pytest

from litellm_cache_plugin.semantic import SemanticUnavailable, build_embedder
from litellm_cache_plugin.semantic.embedder import OnnxMiniLMEmbedder
from litellm_cache_plugin.settings import SemanticLayer


def _extra_missing() -> str | None:
    try:
        OnnxMiniLMEmbedder().load()
    except SemanticUnavailable as error:
        return str(error)
    return None


_EMBEDDER: OnnxMiniLMEmbedder | None = None


@pytest.fixture(scope="module")
def embedder() -> OnnxMiniLMEmbedder:
    global _EMBEDDER
    if _EMBEDDER is None:
        reason = _extra_missing()
        if reason is not None:
            if os.environ.get("CI"):
                pytest.fail(f"the [semantic] extra must be installed in CI: {reason}")
            pytest.skip(f"the [semantic] extra is not installed: {reason}")
        _EMBEDDER = OnnxMiniLMEmbedder(threads=1)
        _EMBEDDER.load()
    return _EMBEDDER


def test_vectors_are_unit_384d_and_batch_equals_single(embedder: OnnxMiniLMEmbedder) -> None:
    import numpy as np

    texts = ["How far is Paris from Lyon?", "What's the distance between Paris and Lyon?", "hi"]
    batch = embedder.embed_sync(texts)
    assert batch.shape == (3, 384) and batch.dtype == np.float32
    assert np.allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-5)
    # Padding to the longest prompt of a batch must not change a prompt's vector.
    single = embedder.embed_sync([texts[2]])[0]
    assert float(single @ batch[2]) > 0.9999
    assert embedder.embed_sync([]).shape == (0, 384)


def test_similarity_orders_paraphrase_above_unrelated(embedder: OnnxMiniLMEmbedder) -> None:
    a, para, other = embedder.embed_sync(
        [
            "How do I cook rice in a pressure cooker?",
            "What's the method for pressure-cooking rice?",
            "Who won the 2014 World Cup?",
        ]
    )
    assert float(a @ para) > 0.8
    assert float(a @ other) < 0.3


def test_long_text_is_truncated_not_rejected(embedder: OnnxMiniLMEmbedder) -> None:
    long = "word " * 2000
    assert embedder.token_count(long) > 256
    assert embedder.embed_sync([long]).shape == (1, 384)


async def test_async_embed_runs_off_the_event_loop(embedder: OnnxMiniLMEmbedder) -> None:
    seen: list[str] = []
    original = embedder.embed_sync

    def spy(texts: list[str]) -> object:
        seen.append(threading.current_thread().name)
        return original(texts)

    embedder.embed_sync = spy  # type: ignore[method-assign]
    try:
        (vector,) = await embedder.embed(["hello"])
    finally:
        del embedder.embed_sync
    assert vector.shape == (384,)
    assert seen and seen[0] != threading.main_thread().name
    assert asyncio.get_running_loop().is_running()


def test_build_embedder_from_settings() -> None:
    assert build_embedder(SemanticLayer(enabled=True)).model_id == "all-MiniLM-L6-v2-onnx-int8"

    async def fn(texts: object) -> list[list[float]]:
        return [[1.0, 0.0]]

    custom = build_embedder(SemanticLayer(enabled=True, embedder="litellm:emb-group"), litellm_embed=fn)
    assert custom.model_id == "litellm:emb-group"
    with pytest.raises(SemanticUnavailable):
        build_embedder(SemanticLayer(enabled=True, embedder="litellm:emb-group"))
