"""Deployment facts of a model group, and the SDK-level call the router would make for a request."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from litellm_cache_plugin.integrations import compat
from litellm_cache_plugin.integrations.host import CacheHost
from litellm_cache_plugin.policy.keys import OUTPUT_PARAMS


@dataclass(frozen=True)
class Deployment:
    model: str
    api_base: str | None


@dataclass(frozen=True)
class GroupInfo:
    """What every deployment of a model group agrees on (else the group is not served here)."""

    provider: str
    model_info: Mapping[str, Any]
    params: Mapping[str, Any]  # output-changing litellm_params of the deployments
    deployments: tuple[Deployment, ...]


def group_info(deployments: Iterable[Mapping[str, Any]]) -> GroupInfo | None:
    """The shared facts of a group's deployments, or None when they differ in anything that is part of
    a cache key (provider, configured version, output parameters) or when routing depends on the team.
    A version that is discovered at run time (an Ollama digest) is compared per request."""
    signature: tuple[str, Any, bytes] | None = None
    found: list[Deployment] = []
    model_info: Mapping[str, Any] = {}
    output: dict[str, Any] = {}
    for deployment in deployments:
        params = deployment.get("litellm_params") or {}
        model = params.get("model")
        if not isinstance(model, str) or not model:
            return None
        info = deployment.get("model_info") or {}
        if info.get("team_id") or info.get("team_public_model_name"):
            return None  # team-routed deployments: the router decides per caller
        provider = params.get("custom_llm_provider") or (model.split("/", 1)[0] if "/" in model else None)
        if not isinstance(provider, str) or not provider:
            return None
        these = {k: v for k, v in params.items() if k in OUTPUT_PARAMS and v is not None}
        try:
            this = (provider, info.get("version"), orjson.dumps(these, option=orjson.OPT_SORT_KEYS))
        except TypeError:
            return None
        if signature is None:
            signature, model_info, output = this, dict(info), these
        elif this != signature:
            return None
        api_base = params.get("api_base")
        found.append(Deployment(model=model, api_base=api_base if isinstance(api_base, str) else None))
    if signature is None:
        return None
    return GroupInfo(provider=signature[0], model_info=model_info, params=output, deployments=tuple(found))


def sdk_kwargs(
    data: Mapping[str, Any], info: GroupInfo, model_group: str, deployment: Deployment | None = None
) -> dict[str, Any]:
    """The kwargs the Router hands to the SDK call (and so to the carrier) for this request."""
    target = deployment or info.deployments[0]
    kwargs: dict[str, Any] = {**info.params, **data}
    kwargs.pop("litellm_call_id", None)  # decisions are not recorded for fast-path lookups
    metadata = dict(kwargs.get("metadata") or {})
    metadata["model_group"] = model_group
    metadata["model_info"] = info.model_info
    kwargs["metadata"] = metadata
    kwargs["model"] = target.model
    if target.api_base is not None:
        kwargs["api_base"] = target.api_base
    kwargs["custom_llm_provider"] = info.provider
    kwargs["model_info"] = info.model_info
    return kwargs


async def deployment_hooks(
    plugin: CacheHost, kwargs: Mapping[str, Any], info: GroupInfo, call_type: str
) -> None:
    """The plugin's SDK-level pre-call hook, as the router runs it for the deployment it picks (it keeps
    run-time model versions such as Ollama digests current); here for every deployment it could pick."""
    for deployment in info.deployments:
        candidate = {**kwargs, "model": deployment.model}
        candidate.pop("api_base", None)
        if deployment.api_base is not None:
            candidate["api_base"] = deployment.api_base
        await plugin.async_pre_call_deployment_hook(candidate, call_type)


def same_version(plugin: CacheHost, kwargs: Mapping[str, Any], info: GroupInfo, model_group: str) -> bool:
    """Every deployment the router could pick has one known model version (the same key)."""
    configured = plugin.settings.for_model(model_group).version
    versions = set()
    for deployment in info.deployments:
        candidate = {**kwargs, "model": deployment.model}
        candidate.pop("api_base", None)
        if deployment.api_base is not None:
            candidate["api_base"] = deployment.api_base
        versions.add(plugin.model_version(candidate, info.provider, configured))
    return len(versions) == 1 and "unknown" not in versions


def requested_model(request_data: Mapping[str, Any]) -> str | None:
    """The model name the proxy puts in responses: what the client asked for, unless the request's
    metadata asks for the raw deployment name (LiteLLM's ``return_raw_model_name``)."""
    if compat.fast_path_internals().should_return_raw_model_name(dict(request_data)):
        return None
    model = request_data.get("model")
    return model if isinstance(model, str) else None


def _aliased(model_group: str, router: Any) -> bool:
    import litellm

    if model_group in (litellm.model_alias_map or {}):
        return True
    aliases = getattr(router, "model_group_alias", None) or {}
    return model_group in aliases
