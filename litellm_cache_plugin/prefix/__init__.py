"""The KV-prefix layer: make the model server's own prefix cache hit, and measure that it does.

- :mod:`.canonical`: equivalent system prompts become byte-identical; the affinity key of a request.
- :mod:`.affinity`: consistent hashing with bounded loads over a model group's deployments.
- :mod:`.reuse`: reuse measured from what the server reports (``cached_tokens``, ``prompt_eval_count``).

All pure; the LiteLLM glue is :mod:`litellm_cache_plugin.integrations.prefix`.
"""

from __future__ import annotations

from litellm_cache_plugin.prefix.affinity import (
    FailureMemory,
    InflightTracker,
    choose_deployment,
    load_cap,
    rendezvous_order,
)
from litellm_cache_plugin.prefix.canonical import (
    CanonicalPrompts,
    affinity_key,
    canonical_table,
    canonicalize_messages,
)
from litellm_cache_plugin.prefix.reuse import EvalRate, PrefixReuse, TokenRatio, ollama_reuse, openai_reuse

__all__ = [
    "CanonicalPrompts",
    "EvalRate",
    "FailureMemory",
    "InflightTracker",
    "PrefixReuse",
    "TokenRatio",
    "affinity_key",
    "canonical_table",
    "canonicalize_messages",
    "choose_deployment",
    "load_cap",
    "ollama_reuse",
    "openai_reuse",
    "rendezvous_order",
]
