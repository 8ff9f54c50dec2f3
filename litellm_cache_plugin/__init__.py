"""litellm-cache-plugin: a layered, tenant-safe response cache for the LiteLLM proxy and Router.

Proxy: list ``litellm_cache_plugin.proxy_plugin`` under ``litellm_settings: callbacks`` and put the
settings in a top-level ``cache_plugin:`` section of the same config.yaml.

SDK / Router::

    import litellm_cache_plugin
    plugin = litellm_cache_plugin.attach({"backend": "redis://localhost:6379/0"}, router=router)

Importing this package has no side effects: the proxy instance is created on first access of
``proxy_plugin`` and LiteLLM is only imported then.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from litellm_cache_plugin.settings import PluginSettings, SettingsError, load_settings, settings_from_mapping

if TYPE_CHECKING:
    from litellm_cache_plugin.integrations.litellm import CachePlugin

__version__ = "0.1.0"
__all__ = ["PluginSettings", "SettingsError", "__version__", "attach", "load_settings", "proxy_plugin"]


def attach(settings: PluginSettings | Mapping[str, Any] | None = None, *, router: Any = None) -> CachePlugin:
    """Attach the cache to plain ``litellm.acompletion``/``aembedding`` calls and, if given, a Router.

    In SDK mode your application is the authenticator: the tenant comes from the
    ``metadata.user_api_key_team_id`` / ``user_api_key_user_id`` / ``user_api_key_hash`` you pass
    with each call (absent = one shared anonymous tenant).
    """
    from litellm_cache_plugin.integrations.litellm import CachePlugin

    if not isinstance(settings, PluginSettings):
        settings = settings_from_mapping(settings or {})
    plugin = CachePlugin(settings, proxy_mode=False)
    plugin.install()
    if router is not None:
        # The Router only consults litellm.cache when asked to.
        router.cache_responses = True
        plugin.judge.router = router  # layers.semantic.verify: the judge is one of its model groups
    return plugin


def __getattr__(name: str) -> Any:
    if name == "proxy_plugin":
        from litellm_cache_plugin.integrations.litellm import create_proxy_plugin

        try:
            return create_proxy_plugin()
        except AttributeError as error:
            # An AttributeError escaping __getattr__ would read as "no attribute proxy_plugin".
            raise RuntimeError(f"litellm_cache_plugin failed to start: {error!r}") from error
    raise AttributeError(f"module 'litellm_cache_plugin' has no attribute {name!r}")
