"""LiteLLM call arguments -> the region's :class:`RequestContext` (the one place that reads them).

Eligibility is decided here once, with :func:`policy.eligibility.judge`; every path (carrier, hooks,
fast path, edge) reads the verdict from the context.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from litellm_cache_plugin.policy.controls import effective_ttl, parse_litellm_cache_field
from litellm_cache_plugin.policy.eligibility import judge
from litellm_cache_plugin.policy.keys import CacheRequest, Identity, RequestKind, Tenant, tenant_for
from litellm_cache_plugin.policy.tags import TagError, parse_tags
from litellm_cache_plugin.region import IdentitySigner, RequestContext
from litellm_cache_plugin.settings import EffectiveSettings, PluginSettings
from litellm_cache_plugin.versions import OLLAMA_PROVIDERS, OllamaVersions

IDENTITY_FIELD = "lcp_identity"
# Metadata flag of the plugin's own stale-while-revalidate calls (not counted as client lookups).
REFRESH_FIELD = "lcp_refresh"
# Metadata flag of the plugin's own calls to a judge model (verified semantic matches): never cached,
# never counted, never verified.
JUDGE_FIELD = "lcp_judge"


def metadata_of(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    for name in ("metadata", "litellm_metadata"):
        value = kwargs.get(name)
        if isinstance(value, dict):
            return value
    return {}


def provider_of(kwargs: Mapping[str, Any]) -> str | None:
    provider = kwargs.get("custom_llm_provider")
    if isinstance(provider, str) and provider:
        return provider
    model = kwargs.get("model")
    if isinstance(model, str) and "/" in model:
        return model.split("/", 1)[0]
    return None


def request_kind(kwargs: Mapping[str, Any]) -> RequestKind | None:
    if "messages" in kwargs:
        return "chat"
    if "input" in kwargs:
        return "embedding"
    if "prompt" in kwargs:
        return "text"
    return None


def parent_span(kwargs: Mapping[str, Any]) -> Any:
    """LiteLLM's span for this request (set when its OpenTelemetry integration is on), if any."""
    metadata = metadata_of(kwargs)
    for source in (kwargs, metadata):
        span = source.get("litellm_parent_otel_span")
        if span is not None and hasattr(span, "get_span_context"):
            return span
    return None


def text_or_none(value: object) -> str | None:
    if value is None:
        return None
    text = str(value)
    return text or None


class ContextBuilder:
    """Builds the region's view of one SDK-level call from LiteLLM's kwargs."""

    def __init__(
        self,
        settings: Callable[[], PluginSettings],
        effective: Callable[[str | None], EffectiveSettings],
        signer: IdentitySigner,
        versions: OllamaVersions,
        *,
        proxy_mode: bool,
    ) -> None:
        self._settings = settings
        self._effective = effective
        self.signer = signer
        self.versions = versions
        self.proxy_mode = proxy_mode

    def identity_from(self, kwargs: Mapping[str, Any]) -> Identity | None:
        metadata = metadata_of(kwargs)
        token = metadata.get(IDENTITY_FIELD)
        if token is not None:
            return self.signer.verify(token)
        if self.proxy_mode:
            # Behind the proxy every cacheable call passes our pre-call hook; a call without a stamp
            # cannot be attributed safely, so it is not cached at all.
            return None
        # SDK/Router mode: the application is the authenticator and says who the caller is.
        return Identity(
            api_key_hash=text_or_none(metadata.get("user_api_key_hash")),
            team_id=text_or_none(metadata.get("user_api_key_team_id")),
            user_id=text_or_none(metadata.get("user_api_key_user_id")),
            org_id=text_or_none(metadata.get("user_api_key_org_id")),
        )

    def context(self, kwargs: Mapping[str, Any]) -> RequestContext | None:
        kind = request_kind(kwargs)
        if kind is None:
            return None
        metadata = metadata_of(kwargs)
        model_group = str(metadata.get("model_group") or kwargs.get("model") or "")
        effective = self._effective(model_group)
        provider = provider_of(kwargs)
        request = CacheRequest(
            kind=kind,
            model_group=model_group,
            provider=provider,
            model_version=self.model_version(kwargs, provider, effective.version),
            params={k: v for k, v in kwargs.items() if k not in ("messages", "prompt", "input")},
            messages=kwargs.get("messages"),
            prompt=kwargs.get("prompt"),
        )
        controls = parse_litellm_cache_field(kwargs.get("cache"))
        identity = self.identity_from(kwargs)
        call_id = kwargs.get("litellm_call_id")
        layers = effective.layers
        layer_on = layers.embedding.enabled if kind == "embedding" else layers.exact.enabled
        try:
            tags = parse_tags(None, metadata.get("cache_tags"))
        except TagError:
            tags = ()
            identity = None if self.proxy_mode else identity
            layer_on = False
        deterministic = False
        judge_call = metadata.get(JUDGE_FIELD) is True
        if judge_call:
            verdict_ok, reason = False, "judge_call"
            tenant = Tenant("anonymous", "-")
        elif identity is None:
            verdict_ok, reason = False, "unauthenticated"
            tenant = Tenant("anonymous", "-")
        else:
            tenant = tenant_for(identity, effective.scope)
            verdict = judge(effective.eligibility, kind, provider, request.params)
            verdict_ok, reason, deterministic = verdict.cacheable, verdict.reason, verdict.deterministic
            if not layer_on:
                verdict_ok, reason, deterministic = False, "layer_disabled", False
        return RequestContext(
            request=request,
            tenant=tenant,
            cacheable=verdict_ok,
            reason=reason,
            controls=controls,
            ttl=effective_ttl(effective.ttl, controls.ttl),
            stale_for=effective.stale_while_revalidate,
            call_id=call_id if isinstance(call_id, str) else None,
            stream=kwargs.get("stream") is True,
            tags=tags,
            encrypt=effective.encrypt,
            max_entry_bytes=effective.max_entry_bytes,
            semantic=effective.layers.semantic.enabled and kind != "embedding",
            deterministic=deterministic,
            refresh=metadata.get(REFRESH_FIELD) is True,
            judge=judge_call,
            parent_span=parent_span(kwargs),
            source=kwargs,
        )

    def model_version(self, kwargs: Mapping[str, Any], provider: str | None, configured: str | None) -> str:
        """Configured version (``models.<group>.version``, then the deployment's ``model_info.version``),
        else for Ollama deployments the served model's digest, else "0"."""
        if configured:
            return configured
        metadata = metadata_of(kwargs)
        model_info = kwargs.get("model_info") or metadata.get("model_info") or {}
        if isinstance(model_info, Mapping) and model_info.get("version"):
            return str(model_info["version"])
        api_base, model = kwargs.get("api_base"), kwargs.get("model")
        if (
            self._settings().versions.ollama_digest
            and provider in OLLAMA_PROVIDERS
            and isinstance(api_base, str)
            and isinstance(model, str)
        ):
            return self.versions.current(api_base, model) or "unknown"
        return "0"
