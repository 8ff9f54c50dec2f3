"""Cache keys: tenant-scoped, versioned, normalized. Pure functions, no I/O.

A key is ``<namespace>:<layer>:<sha256 of canonical material>``. The material always holds the key
schema version, the tenant, the model group, the model version, the normalized prompt and every
parameter that changes the output. Never in the key: metadata, user-facing ids (``user``), the
``stream`` flag, timeouts, credentials, client-sent cache keys.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Any, Literal

from litellm_cache_plugin.policy.normalize import (
    canonical_json,
    canonical_messages,
    canonical_value,
    fold_text,
)

# Bump when the key material changes shape: old entries then simply miss.
KEY_SCHEMA = 1

RequestKind = Literal["chat", "text", "embedding"]

# Parameters that change what a model answers. Anything else in the request (ids, metadata, timeouts,
# routing, credentials, stream flags) is not part of the key. Provider-specific sampling options are
# listed too, because LiteLLM passes them through to Ollama/vLLM.
OUTPUT_PARAMS: frozenset[str] = frozenset(
    {
        # OpenAI chat/completions
        "temperature", "top_p", "n", "max_tokens", "max_completion_tokens", "stop", "presence_penalty",
        "frequency_penalty", "logit_bias", "logprobs", "top_logprobs", "seed", "response_format", "tools",
        "tool_choice", "parallel_tool_calls", "functions", "function_call", "reasoning_effort", "thinking",
        "modalities", "audio", "prediction", "web_search_options", "verbosity", "suffix", "echo",
        "best_of", "extra_body",
        # Ollama / llama.cpp / vLLM sampling options
        "top_k", "min_p", "typical_p", "tfs_z", "repeat_penalty", "repeat_last_n", "mirostat",
        "mirostat_eta", "mirostat_tau", "num_predict", "num_ctx", "num_keep", "penalize_newline",
        "format", "options", "think", "repetition_penalty", "min_tokens", "guided_json", "guided_regex",
        "guided_choice", "guided_grammar",
        # embeddings
        "dimensions", "encoding_format", "input_type", "truncate",
    }
)  # fmt: skip

# Values equal to these are the same as leaving the parameter out, so they are folded away.
_COMMON_DEFAULTS: Mapping[str, Any] = {
    "n": 1,
    "presence_penalty": 0,
    "frequency_penalty": 0,
    "logprobs": False,
    "echo": False,
    "parallel_tool_calls": True,
}
PROVIDER_DEFAULTS: Mapping[str, Mapping[str, Any]] = {
    # Ollama's documented defaults (modelfile parameters without overrides).
    "ollama": {**_COMMON_DEFAULTS, "temperature": 0.8, "top_p": 0.9, "top_k": 40, "repeat_penalty": 1.1,
               "min_p": 0, "repeat_last_n": 64, "mirostat": 0},
    "openai": {**_COMMON_DEFAULTS, "temperature": 1, "top_p": 1},
}  # fmt: skip
PROVIDER_ALIASES: Mapping[str, str] = {
    "ollama_chat": "ollama",
    "ollama": "ollama",
    "openai": "openai",
    "azure": "openai",
    "text-completion-openai": "openai",
}


def provider_family(provider: str | None) -> str:
    return PROVIDER_ALIASES.get(provider or "", provider or "unknown")


def provider_defaults(provider: str | None) -> Mapping[str, Any]:
    return PROVIDER_DEFAULTS.get(provider_family(provider), _COMMON_DEFAULTS)


def output_params(params: Mapping[str, Any], provider: str | None) -> dict[str, Any]:
    """The output-affecting parameters of a request, canonical, with provider defaults folded away."""
    defaults = provider_defaults(provider)
    kept: dict[str, Any] = {}
    for name, raw in params.items():
        if name not in OUTPUT_PARAMS or raw is None:
            continue
        value = canonical_value(raw)
        if name == "stop" and isinstance(value, str):
            value = [value]  # OpenAI accepts a string or a list of strings; they mean the same
        if name in ("options", "extra_body") and isinstance(value, dict):
            value = {k: v for k, v in value.items() if not (k in defaults and defaults[k] == v)}
            if not value:
                continue
        if name in defaults and defaults[name] == value:
            continue
        kept[name] = value
    return kept


@dataclass(frozen=True)
class Tenant:
    """Who an entry belongs to. Built only from the authenticated identity, never from request fields."""

    scope: Literal["team", "user", "key", "global", "anonymous"]
    ident: str

    @cached_property
    def fingerprint(self) -> str:
        """Stable, non-reversible id used in keys, envelopes and generation counters (computed once:
        a request needs it for its key, its counters and the envelope check)."""
        return _fingerprint(self.scope, self.ident)


@lru_cache(maxsize=4096)
def _fingerprint(scope: str, ident: str) -> str:
    # Memoized across requests too: the same few tenants come back all the time.
    return hashlib.sha256(f"{scope}\x00{ident}".encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Identity:
    """The authenticated caller as the proxy (or the application, in SDK mode) established it."""

    api_key_hash: str | None = None
    team_id: str | None = None
    user_id: str | None = None
    org_id: str | None = None


def tenant_for(identity: Identity, scope: str) -> Tenant:
    """The tenant a request belongs to under ``scope``.

    When the identity lacks the field the scope asks for (a key without a team under ``scope: team``),
    the narrower identity is used (the key), never a broader one: a missing team must not merge callers.
    """
    if scope == "global":
        return Tenant("global", "*")
    if scope == "team" and identity.team_id:
        return Tenant("team", identity.team_id)
    if scope == "user" and identity.user_id:
        return Tenant("user", identity.user_id)
    if identity.api_key_hash:
        return Tenant("key", identity.api_key_hash)
    if identity.user_id:
        return Tenant("user", identity.user_id)
    return Tenant("anonymous", "-")


@dataclass(frozen=True)
class CacheRequest:
    """A request reduced to what matters for caching (built by the LiteLLM glue)."""

    kind: RequestKind
    model_group: str
    provider: str | None
    model_version: str
    params: Mapping[str, Any]
    messages: Any = None
    prompt: Any = None


def _digest(material: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_json(material).encode("utf-8")).hexdigest()


def request_material(request: CacheRequest, tenant: Tenant) -> dict[str, Any]:
    material: dict[str, Any] = {
        "schema": KEY_SCHEMA,
        "kind": request.kind,
        "tenant": tenant.fingerprint,
        "model": request.model_group,
        "version": request.model_version,
        "params": output_params(request.params, request.provider),
    }
    if request.kind == "chat":
        material["messages"] = canonical_messages(request.messages)
    else:
        prompt = request.prompt
        material["prompt"] = fold_text(prompt) if isinstance(prompt, str) else canonical_value(prompt)
    return material


def exact_key(namespace: str, request: CacheRequest, tenant: Tenant) -> str:
    return f"{namespace}:x:{_digest(request_material(request, tenant))}"


def embedding_key(
    namespace: str,
    *,
    model_group: str,
    model_version: str,
    item: Any,
    params: Mapping[str, Any],
    provider: str | None,
    tenant: Tenant,
) -> str:
    """Key of one embeddings input item. The item is hashed exactly as sent: no text folding, since
    embeddings of differently spaced text differ. ``encoding_format`` is not in the key: float and
    base64 are two encodings of one vector, stored once and encoded per request (``payloads``)."""
    material = {
        "schema": KEY_SCHEMA,
        "kind": "embedding",
        "tenant": tenant.fingerprint,
        "model": model_group,
        "version": model_version,
        "params": {k: v for k, v in output_params(params, provider).items() if k != "encoding_format"},
        "input": canonical_value(item),
    }
    return f"{namespace}:e:{_digest(material)}"


def model_generation_key(namespace: str, model_group: str) -> str:
    """Counter bumped by ``DELETE /v1/cache/{model}``: entries written under an older value are dead."""
    return f"{namespace}:gen:model:{hashlib.sha256(model_group.encode()).hexdigest()[:32]}"
