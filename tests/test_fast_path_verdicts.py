"""When a remembered auth verdict may stand in for LiteLLM's auth (``fast_path.auth_reuse_seconds``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from litellm_cache_plugin.integrations.fast_path.verdicts import expiry_of, verdict_reusable
from litellm_cache_plugin.settings import SettingsError, settings_from_mapping

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=timezone.utc)


@dataclass
class Auth:
    expires: Any = None
    blocked: Any = None


def test_within_the_window_only() -> None:
    assert verdict_reusable(Auth(), age=0.0, window=2.0, now=NOW)
    assert verdict_reusable(Auth(), age=1.99, window=2.0, now=NOW)
    assert not verdict_reusable(Auth(), age=2.0, window=2.0, now=NOW)
    assert not verdict_reusable(Auth(), age=-1.0, window=2.0, now=NOW)  # a clock that went back
    assert not verdict_reusable(Auth(), age=0.0, window=0.0, now=NOW)  # off


def test_never_a_blocked_key() -> None:
    assert not verdict_reusable(Auth(blocked=True), age=0.0, window=2.0, now=NOW)
    assert verdict_reusable(Auth(blocked=False), age=0.0, window=2.0, now=NOW)


@pytest.mark.parametrize(
    ("expires", "reusable"),
    [
        (NOW + timedelta(seconds=1), True),
        (NOW - timedelta(seconds=1), False),
        (NOW, False),
        ((NOW + timedelta(hours=1)).isoformat(), True),
        ((NOW - timedelta(hours=1)).isoformat(), False),
        ("2026-12-02T13:00:00Z", True),
        (datetime(2026, 12, 2, 13, 0), True),  # naive: read as UTC
        (datetime(2026, 12, 2, 11, 0), False),
        ("next tuesday", False),  # unreadable: never reused
        (12345, False),
    ],
)
def test_an_expired_or_unreadable_expiry_is_never_reused(expires: Any, reusable: bool) -> None:
    assert verdict_reusable(Auth(expires=expires), age=0.0, window=2.0, now=NOW) is reusable


def test_expiry_of() -> None:
    assert expiry_of(Auth()) is None
    assert expiry_of(Auth(expires="bad")) is False
    assert expiry_of(Auth(expires="2026-12-02T13:00:00+00:00")) == datetime(
        2026, 12, 2, 13, tzinfo=timezone.utc
    )


def test_setting_bounds() -> None:
    assert settings_from_mapping({}, environ={}).fast_path.auth_reuse_seconds == 0
    assert (
        settings_from_mapping(
            {"fast_path": {"auth_reuse_seconds": 1.5}}, environ={}
        ).fast_path.auth_reuse_seconds
        == 1.5
    )
    for bad in (-1, 61, "soon"):
        with pytest.raises(SettingsError, match="auth_reuse_seconds"):
            settings_from_mapping({"fast_path": {"auth_reuse_seconds": bad}}, environ={})
