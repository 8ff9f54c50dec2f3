"""Admin endpoints added to the LiteLLM proxy app (there is no plugin API for routes).

- ``DELETE /v1/cache/{model}``: invalidate every entry of a model group (all tenants, all layers);
  404 listing the known groups (the router's model names and ``cache_plugin.models``) for any other
  name, so that a typo does not pass for an invalidation.
- ``DELETE /v1/cache/tags/{tag}``: an admin invalidates the tag for every tenant; any other caller
  invalidates it for its own entries only (team, user and key scopes of its identity).
- ``GET /v1/cache/stats``: per-layer, per-model counters of the worker that answers (``"scope":
  "worker"``, ``worker: {pid, workers}``) plus backend stats.
- ``POST /v1/cache/versions/refresh``: re-read model digests from Ollama servers now.
- ``GET /v1/cache/metrics`` (``telemetry.prometheus``): the OpenTelemetry metrics in the Prometheus
  text format; open like LiteLLM's own ``/metrics`` unless ``require_auth`` (aggregates per model
  group only: no prompt, key or tenant appears in a label). With several workers every sample carries
  ``worker_pid``: the answer is that worker's counters.

Both require the proxy-admin role, checked with the proxy's own authentication dependency. Neither
can read an entry. Stats are per worker process (each uvicorn worker loads its own plugin copy).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import os
import re
from collections.abc import Callable, Iterable
from typing import Any

from litellm_cache_plugin.integrations import compat
from litellm_cache_plugin.integrations.host import CacheHost
from litellm_cache_plugin.policy.keys import tenant_for
from litellm_cache_plugin.policy.tags import TagError, validate_tag
from litellm_cache_plugin.region import identity_of

_MODEL_NAME = re.compile(r"^[\w.:/@+-]{1,256}$")
_registered_for: set[int] = set()


def known_model_groups(plugin: CacheHost) -> list[str]:
    """The model groups this proxy knows now: every deployment's ``model_name`` in the proxy's
    router (read at call time: models added at runtime count) and every ``cache_plugin.models``
    key. Sorted, without duplicates."""
    names = set(plugin.settings.models)
    router = getattr(compat.loaded_proxy_server(), "llm_router", None)
    if router is not None:
        for deployment in router.get_model_list() or []:
            name = deployment.get("model_name")
            if isinstance(name, str) and name:
                names.add(name)
    return sorted(names)


def is_known_group(model: str, known: Iterable[str]) -> bool:
    """``model`` is one of ``known``, or matches a wildcard deployment such as ``openai/*`` (its
    requests are cached under the model they name)."""
    return any(model == name or ("*" in name and fnmatch.fnmatchcase(model, name)) for name in known)


def worker_info() -> dict[str, Any]:
    """Which process answered: ``layers`` counts only this worker's requests (each uvicorn worker
    loads its own plugin); ``backend`` figures are the backend's, shared by every worker on Redis."""
    return {"pid": os.getpid(), "workers": compat.proxy_workers(os.environ), "counters": "this worker only"}


def register(plugin: CacheHost) -> None:
    try:
        from fastapi import Depends, HTTPException
    except ImportError:  # SDK use without the proxy extra: no routes to add
        return
    lit = compat.routes_internals()
    if lit is None:  # no proxy here, or this LiteLLM lacks what the routes need (logged once)
        return
    app, user_api_key_auth, roles = lit.app, lit.user_api_key_auth, lit.LitellmUserRoles
    if id(app) in _registered_for:
        return
    _registered_for.add(id(app))

    def _is_admin(auth: Any) -> bool:
        role = getattr(auth, "user_role", None)
        return bool(role == roles.PROXY_ADMIN or role == roles.PROXY_ADMIN.value)

    def require_admin(auth: Any) -> None:
        if not _is_admin(auth):
            raise HTTPException(status_code=403, detail="cache administration requires the proxy admin role")

    async def cache_stats(auth: Any = Depends(user_api_key_auth)) -> dict[str, Any]:  # noqa: B008
        require_admin(auth)
        backend = await plugin.engine.backend_stats()
        return {
            "scope": "worker",
            "worker": worker_info(),
            "layers": plugin.engine.stats.snapshot(),
            "backend": dataclasses.asdict(backend) if backend is not None else None,
        }

    async def invalidate_model(
        model: str,
        auth: Any = Depends(user_api_key_auth),  # noqa: B008
    ) -> dict[str, Any]:
        require_admin(auth)
        if not _MODEL_NAME.match(model):
            raise HTTPException(status_code=400, detail="invalid model group name")
        known = known_model_groups(plugin)
        if not is_known_group(model, known):
            raise HTTPException(
                status_code=404,
                detail={"error": f"unknown model group {model!r}", "known_groups": known},
            )
        try:
            generation = await plugin.engine.invalidate_model(model)
        except Exception as error:  # the backend is down: say so, do not pretend it worked
            raise HTTPException(status_code=503, detail=f"cache backend unavailable: {error}") from None
        return {"invalidated": model, "generation": generation}

    async def invalidate_tag(tag: str, auth: Any = Depends(user_api_key_auth)) -> dict[str, Any]:  # noqa: B008
        try:
            validate_tag(tag)
        except TagError as error:
            raise HTTPException(status_code=400, detail=str(error)) from None
        try:
            if _is_admin(auth):
                await plugin.engine.invalidate_tag(tag)
                return {"invalidated_tag": tag, "scope": "all_tenants"}
            # A tenant may invalidate its own entries only: the tenant-scoped counters of every tenant
            # its identity can be (team, user, key), never a global counter.
            identity = identity_of(auth)
            fingerprints = {tenant_for(identity, scope).fingerprint for scope in ("team", "user", "key")}
            await plugin.engine.invalidate_tenant_tag(fingerprints, tag)
            return {"invalidated_tag": tag, "scope": "own_entries"}
        except HTTPException:
            raise
        except Exception as error:
            raise HTTPException(status_code=503, detail=f"cache backend unavailable: {error}") from None

    async def refresh_versions(auth: Any = Depends(user_api_key_auth)) -> dict[str, Any]:  # noqa: B008
        require_admin(auth)
        await plugin.versions.refresh_all()
        return {"refreshed": True}

    # Registered ahead of the proxy's own routes so that no catch-all route shadows them; the tag
    # route before the model route, whose path parameter would otherwise swallow "tags/...".
    added: list[tuple[str, Callable[..., Any], str]] = [
        ("/v1/cache/stats", cache_stats, "GET"),
        ("/v1/cache/versions/refresh", refresh_versions, "POST"),
        ("/v1/cache/tags/{tag}", invalidate_tag, "DELETE"),
        ("/v1/cache/{model:path}", invalidate_model, "DELETE"),
    ]
    runtime = plugin.telemetry_runtime
    prometheus = plugin.settings.telemetry.prometheus
    if runtime is not None and prometheus.enabled:
        from fastapi import Response

        async def scrape() -> Response:
            workers = compat.proxy_workers(os.environ)
            labels = {"worker_pid": str(os.getpid())} if workers > 1 else None
            body, content_type = runtime.prometheus_text(labels)
            return Response(content=body, media_type=content_type)

        async def scrape_as_admin(auth: Any = Depends(user_api_key_auth)) -> Response:  # noqa: B008
            require_admin(auth)
            return await scrape()

        added.insert(0, (prometheus.path, scrape_as_admin if prometheus.require_auth else scrape, "GET"))
    for path, endpoint, method in added:
        app.add_api_route(path, endpoint, methods=[method], tags=["cache plugin"])
    routes = app.router.routes
    ours = routes[-len(added) :]
    del routes[-len(added) :]
    routes[0:0] = ours
