"""Admin endpoints added to the LiteLLM proxy app (there is no plugin API for routes).

- ``DELETE /v1/cache/{model}``: invalidate every entry of a model group (all tenants, all layers).
- ``GET /v1/cache/stats``: per-layer, per-model counters of this worker plus backend stats.

Both require the proxy-admin role, checked with the proxy's own authentication dependency. Neither
can read an entry. Stats are per worker process (each uvicorn worker loads its own plugin copy).
"""

from __future__ import annotations

import dataclasses
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from litellm_cache_plugin.integrations.litellm import CachePlugin

_MODEL_NAME = re.compile(r"^[\w.:/@+-]{1,256}$")
_registered_for: set[int] = set()


def register(plugin: CachePlugin) -> None:
    try:
        from fastapi import Depends, HTTPException
        from litellm.proxy._types import LitellmUserRoles, UserAPIKeyAuth
        from litellm.proxy.auth.user_api_key_auth import user_api_key_auth
        from litellm.proxy.proxy_server import app
    except ImportError:  # SDK use without the proxy extra: no routes to add
        return
    if id(app) in _registered_for:
        return
    _registered_for.add(id(app))

    def require_admin(auth: UserAPIKeyAuth) -> None:
        role = getattr(auth, "user_role", None)
        if role != LitellmUserRoles.PROXY_ADMIN and role != LitellmUserRoles.PROXY_ADMIN.value:
            raise HTTPException(status_code=403, detail="cache administration requires the proxy admin role")

    async def cache_stats(auth: UserAPIKeyAuth = Depends(user_api_key_auth)) -> dict[str, Any]:  # noqa: B008
        require_admin(auth)
        backend = await plugin.engine.backend_stats()
        return {
            "scope": "worker",
            "layers": plugin.engine.stats.snapshot(),
            "backend": dataclasses.asdict(backend) if backend is not None else None,
        }

    async def invalidate_model(
        model: str,
        auth: UserAPIKeyAuth = Depends(user_api_key_auth),  # noqa: B008
    ) -> dict[str, Any]:
        require_admin(auth)
        if not _MODEL_NAME.match(model):
            raise HTTPException(status_code=400, detail="invalid model group name")
        try:
            generation = await plugin.engine.invalidate_model(model)
        except Exception as error:  # the backend is down: say so, do not pretend it worked
            raise HTTPException(status_code=503, detail=f"cache backend unavailable: {error}") from None
        return {"invalidated": model, "generation": generation}

    # Registered ahead of the proxy's own routes so that no catch-all route shadows them.
    app.add_api_route("/v1/cache/stats", cache_stats, methods=["GET"], tags=["cache plugin"])
    app.add_api_route("/v1/cache/{model:path}", invalidate_model, methods=["DELETE"], tags=["cache plugin"])
    routes = app.router.routes
    ours = routes[-2:]
    del routes[-2:]
    routes[0:0] = ours
