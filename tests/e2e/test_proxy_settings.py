"""A wrong setting stops the real proxy at startup with one clear line naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.runner import DEMO_AUTH_MODULE, ProxyProcess, proxy_config

pytestmark = pytest.mark.e2e


def test_bad_setting_stops_the_proxy_with_one_clear_line(tmp_path: Path) -> None:
    config = proxy_config("http://127.0.0.1:9", {"scope": "planet", "ttl": 60})
    process = ProxyProcess(
        config, tmp_path, extra_files={"demo_auth.py": DEMO_AUTH_MODULE}, name="bad"
    ).start()
    try:
        with pytest.raises(RuntimeError, match="exited with"):
            process.wait_ready(timeout=120)
    finally:
        process.stop()
    log = process.log_path.read_text()
    expected = (
        "litellm_cache_plugin: invalid configuration: "
        "cache_plugin.scope: must be one of 'team', 'user', 'key' or 'global' (got 'planet')"
    )
    assert expected in log.splitlines()
