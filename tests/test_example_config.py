"""examples/config.yaml is valid for the plugin and lists it the way the proxy expects."""

from __future__ import annotations

from pathlib import Path

import yaml

from litellm_cache_plugin.settings import load_settings

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "config.yaml"


def test_example_config_is_valid() -> None:
    settings = load_settings(EXAMPLE, environ={})
    assert settings.for_model("llama3.2").ttl == 600
    assert settings.telemetry.prometheus.enabled
    override = settings.models["llama3.2"]
    assert override.prices is not None and override.prices.gpu_cost_per_hour == 2.0
    document = yaml.safe_load(EXAMPLE.read_text())
    assert "litellm_cache_plugin.proxy_plugin" in document["litellm_settings"]["callbacks"]
    assert document["litellm_settings"]["drop_params"] is True
