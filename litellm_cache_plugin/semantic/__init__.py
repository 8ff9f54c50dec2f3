"""Layer 2, semantic: serve a cached answer to a paraphrase of a cached prompt, refuse near-misses.

Importing this package needs no optional dependency; building a :class:`SemanticIndex` or the
built-in embedder needs the ``[semantic]`` extra (numpy, onnxruntime, tokenizers and the model
packages) and raises :class:`SemanticUnavailable` with the install hint otherwise.

- :func:`semantic_scope` — pure: ``(scope id, text)`` of a request, or ``None`` when not eligible;
  :func:`semantic_prompt` also carries a conversation's earlier turns when
  ``layers.semantic.conversations`` is ``by_meaning`` (checked turn by turn: ``conversation``).
- :class:`SemanticIndex` — ``lookup``/``add``/``forget`` over a ``Store`` (shared by replicas);
  ``resolve`` returns a :class:`SemanticLookup`: the match, or why there is none (a guard refusal
  carries its rule and the differing tokens, :class:`SemanticRefusal`).
- :func:`build_embedder` — the embedder named by the settings.
- ``guard`` — the near-miss check (pure; ``guard.check`` returns a ``guard.Refusal``);
  ``calibrate`` — pick a threshold on your own labelled pairs. The quality benchmark lives in
  ``benchmarks/semantic/`` (not in the runtime package).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from litellm_cache_plugin.semantic.embedder import (
    INSTALL_HINT,
    CallableEmbedder,
    Embedder,
    OnnxMiniLMEmbedder,
    SemanticUnavailable,
    require_semantic_extra,
)
from litellm_cache_plugin.semantic.layer import (
    SemanticIndex,
    SemanticLookup,
    SemanticMatch,
    SemanticRefusal,
)
from litellm_cache_plugin.semantic.scope import SemanticPrompt, semantic_prompt, semantic_scope
from litellm_cache_plugin.settings import SemanticLayer

__all__ = [
    "INSTALL_HINT",
    "CallableEmbedder",
    "Embedder",
    "OnnxMiniLMEmbedder",
    "SemanticIndex",
    "SemanticLookup",
    "SemanticMatch",
    "SemanticPrompt",
    "SemanticRefusal",
    "SemanticUnavailable",
    "build_embedder",
    "require_semantic_extra",
    "semantic_prompt",
    "semantic_scope",
]

EmbedFunction = Callable[[Sequence[str]], Awaitable[Sequence[Sequence[float]]]]


def build_embedder(settings: SemanticLayer, *, litellm_embed: EmbedFunction | None = None) -> Embedder:
    """The embedder ``settings.embedder`` names.

    ``"builtin"``: the int8 ONNX MiniLM (loads lazily; call ``SemanticIndex.start()`` to load it at
    startup). ``"litellm:<group>"``: ``litellm_embed`` must embed through that model group; the group
    name is the vector space's id (change the group name when its model changes).
    """
    if settings.embedder == "builtin":
        require_semantic_extra()
        return OnnxMiniLMEmbedder(threads=settings.embedder_threads)
    if litellm_embed is None:
        raise SemanticUnavailable(f"embedder {settings.embedder!r} needs an embedding function from the glue")
    return CallableEmbedder(settings.embedder, litellm_embed)
