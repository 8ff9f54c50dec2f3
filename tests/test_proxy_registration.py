"""The proxy registers the plugin once: its hooks run once per request.

LiteLLM's proxy imports ``callbacks: [litellm_cache_plugin.proxy_plugin]`` (building and installing
the plugin, which registers itself for SDK use) and then extends ``litellm.callbacks`` with the
imported object without looking for it, so the plugin sat in the list twice and every hook (pre-call,
deployment, response headers, the stream wrapper) ran twice per request. These tests drive LiteLLM's
own loader (``initialize_callbacks_on_proxy``) and its own pre-call hook runner.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import litellm
import pytest
from litellm.caching.dual_cache import DualCache
from litellm.proxy._types import UserAPIKeyAuth
from litellm.proxy.common_utils.callback_utils import initialize_callbacks_on_proxy
from litellm.proxy.utils import ProxyLogging

from litellm_cache_plugin.integrations.litellm import CachePlugin
from litellm_cache_plugin.settings import settings_from_mapping

PROBE_MODULE = """
from litellm_cache_plugin.integrations.litellm import CachePlugin
from litellm_cache_plugin.settings import settings_from_mapping

hook = CachePlugin(settings_from_mapping({settings!r}, environ={{}}), proxy_mode=True)
hook.install()
"""


@pytest.fixture(autouse=True)
def restore_litellm() -> Iterator[None]:
    saved_callbacks, saved_cache = list(litellm.callbacks), litellm.cache
    yield
    litellm.callbacks[:] = saved_callbacks
    litellm.cache = saved_cache


def _load(tmp_path: Path, settings: dict[str, Any]) -> CachePlugin:
    """Load a plugin the way the proxy loads ``callbacks: [module.hook]`` from its config."""
    (tmp_path / "lcp_registration_probe.py").write_text(PROBE_MODULE.format(settings=settings))
    initialize_callbacks_on_proxy(
        value=["lcp_registration_probe.hook"],
        premium_user=False,
        config_file_path=str(tmp_path / "config.yaml"),
        litellm_settings={},
    )
    plugins = [c for c in litellm.callbacks if isinstance(c, CachePlugin)]
    assert plugins, "LiteLLM's loader did not register the plugin"
    return plugins[-1]


def _copies(item: object) -> int:
    return sum(callback is item for callback in litellm.callbacks)


async def test_loaded_by_the_proxy_the_plugin_is_registered_once(tmp_path: Path) -> None:
    plugin = _load(tmp_path, {"backend": "memory://", "telemetry": {"enabled": False}})
    # What LiteLLM's loader leaves: the plugin twice (the defect this guards against).
    assert _copies(plugin) == 2
    await asyncio.sleep(0)  # the loader's synchronous extend is done; the plugin's check has run
    assert _copies(plugin) == 1


async def test_the_prefix_layer_is_registered_once_too_and_order_is_kept(tmp_path: Path) -> None:
    plugin = _load(
        tmp_path,
        {"backend": "memory://", "telemetry": {"enabled": False}, "layers": {"prefix": {"enabled": True}}},
    )
    assert plugin.prefix is not None
    before = [c for c in litellm.callbacks if c is not plugin and c is not plugin.prefix]
    await asyncio.sleep(0)
    assert _copies(plugin) == 1
    assert _copies(plugin.prefix) == 1
    assert [c for c in litellm.callbacks if c is not plugin and c is not plugin.prefix] == before
    assert litellm.callbacks.index(plugin) < litellm.callbacks.index(plugin.prefix)


async def test_the_proxys_pre_call_hook_runner_calls_the_plugin_once_per_request(tmp_path: Path) -> None:
    plugin = _load(tmp_path, {"backend": "memory://", "telemetry": {"enabled": False}})
    await asyncio.sleep(0)
    calls: list[dict[str, Any]] = []
    original = CachePlugin.async_pre_call_hook

    async def counted(self: CachePlugin, *args: Any, **kwargs: Any) -> Any:
        calls.append(args[2] if len(args) > 2 else kwargs["data"])
        return await original(self, *args, **kwargs)

    plugin.async_pre_call_hook = counted.__get__(plugin)  # type: ignore[method-assign]
    try:
        data = {"model": "llama3", "messages": [{"role": "user", "content": "hi"}]}
        await ProxyLogging(user_api_key_cache=DualCache()).pre_call_hook(  # type: ignore[arg-type]
            user_api_key_dict=UserAPIKeyAuth(api_key="sk-test"), data=data, call_type="completion"
        )
    finally:
        del plugin.async_pre_call_hook
    assert len(calls) == 1


async def test_outside_a_running_loop_install_does_not_fail_and_changes_nothing_later() -> None:
    plugin = CachePlugin(settings_from_mapping({"backend": "memory://", "telemetry": {"enabled": False}}))
    plugin.install()  # SDK mode: registered once, no deferred check needed
    assert _copies(plugin) == 1
    plugin.registered_once()
    assert _copies(plugin) == 1
