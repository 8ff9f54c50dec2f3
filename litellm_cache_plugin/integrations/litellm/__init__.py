"""LiteLLM glue: the plugin and its hooks (``plugin.py``), the ``litellm.cache`` carrier
(``carrier.py``), LiteLLM kwargs -> the region's request context (``context.py``), the region's
ports implemented with LiteLLM (``upstream.py``) and the proxy installation (``install.py``)."""

from litellm_cache_plugin.integrations.litellm.carrier import CarrierCache
from litellm_cache_plugin.integrations.litellm.context import IDENTITY_FIELD, REFRESH_FIELD
from litellm_cache_plugin.integrations.litellm.install import create_proxy_plugin
from litellm_cache_plugin.integrations.litellm.plugin import CachePlugin
from litellm_cache_plugin.integrations.litellm.upstream import refresh_call

__all__ = [
    "IDENTITY_FIELD",
    "REFRESH_FIELD",
    "CachePlugin",
    "CarrierCache",
    "create_proxy_plugin",
    "refresh_call",
]
