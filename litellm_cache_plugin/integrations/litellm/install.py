"""Building the proxy's plugin from its config file and installing every part of it."""

from __future__ import annotations

import logging
import os
import sys

from litellm_cache_plugin.integrations import compat
from litellm_cache_plugin.integrations.edge import install_conditional_responses
from litellm_cache_plugin.integrations.litellm.plugin import CachePlugin
from litellm_cache_plugin.settings import PluginSettings, SettingsError, load_settings

log = logging.getLogger("litellm_cache_plugin")

_plugin: CachePlugin | None = None


def _proxy_config_path() -> str | None:
    proxy_server = compat.loaded_proxy_server()
    path = getattr(proxy_server, "user_config_file_path", None) if proxy_server else None
    return path or os.environ.get("CONFIG_FILE_PATH")


def create_proxy_plugin() -> CachePlugin:
    """Build the proxy instance from the ``cache_plugin:`` section of the proxy's own config file.

    A bad setting stops the proxy with one line naming the key.
    """
    global _plugin
    if _plugin is not None:
        return _plugin
    config_path = _proxy_config_path()
    try:
        settings = load_settings(config_path)
        plugin = CachePlugin(settings, proxy_mode=True)
    except SettingsError as error:
        message = f"litellm_cache_plugin: invalid configuration: {error}"
        print(message, file=sys.stderr, flush=True)
        # Exit here rather than raise: uvicorn would bury the line under a 300-line traceback.
        os._exit(2)
    plugin.install()
    from litellm_cache_plugin.integrations import proxy_routes

    proxy_routes.register(plugin)
    if settings.fast_path.enabled:
        from litellm_cache_plugin.integrations.fast_path import install_fast_path

        install_fast_path(plugin)
    # After the fast path: the 304 wrapper then sits around it (edge layer only).
    install_conditional_responses(plugin)
    _plugin = plugin
    log.info("litellm_cache_plugin ready: backend=%s scope=%s", redact(settings.backend), settings.scope)
    note = per_worker_cache_note(settings.backend, compat.proxy_workers(os.environ), os.getpid())
    if note is not None:
        log.warning(note)
    note = unverified_conversations_note(settings)
    if note is not None:
        log.warning(note)
    return plugin


def per_worker_cache_note(backend: str, workers: int, pid: int) -> str | None:
    """The start-up line of each worker when workers do not share one cache (``memory://``)."""
    if workers <= 1 or not backend.startswith("memory://"):
        return None
    return (
        f"litellm_cache_plugin: backend memory:// with {workers} proxy workers: each worker (this one: "
        f"pid {pid}) has its own cache, so a request is a hit only in a worker that stored it, and "
        "DELETE /v1/cache/... and single-flight reach one worker; use redis:// to share one cache"
    )


def unverified_conversations_note(settings: PluginSettings) -> str | None:
    """The start-up line when conversations are matched by meaning and nothing verifies the matches:
    the rules alone answer some unseen conversation traps wrongly (README, "Semantic layer:
    conversations"), which an operator who turned them on should hear once, not read about."""
    layered = [("every model group", settings.layers)]
    layered += [(name, model.layers) for name, model in settings.models.items() if model.layers is not None]
    unverified = [
        name
        for name, layers in layered
        if layers.semantic.enabled
        and layers.semantic.conversations == "by_meaning"
        and layers.semantic.verify.mode == "off"
    ]
    if not unverified:
        return None
    return (
        "litellm_cache_plugin: layers.semantic.conversations: by_meaning without layers.semantic.verify "
        f"({', '.join(unverified)}): its rules answered 1.2-4.2% of conversation traps wrongly on "
        "conversations nobody tuned them on; set verify.mode (judge, agreement or both) so that no "
        "unverified conversation match is served"
    )


def redact(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.split("@", 1)[1]
    return scheme + sep + rest
