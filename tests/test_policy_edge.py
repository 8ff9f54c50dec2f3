"""Edge layer policy (``policy/edge.py``) and its settings: pure, no I/O."""

from __future__ import annotations

from typing import Any

import pytest

from litellm_cache_plugin.policy.edge import (
    EdgeFacts,
    answer_etag,
    edge_headers,
    edge_in_use,
    etag_matches,
    not_modified_headers,
    payload_etag,
)
from litellm_cache_plugin.policy.eligibility import Verdict
from litellm_cache_plugin.settings import EffectiveSettings, SettingsError, settings_from_mapping

ETAG = '"0123456789abcdef0123456789abcdef"'


def effective(section: dict[str, Any], model: str = "m") -> EffectiveSettings:
    return settings_from_mapping(section, environ={}).for_model(model)


def facts(scope: str = "global", *, deterministic: bool = True, fresh_left: float = 600.0) -> EdgeFacts:
    return EdgeFacts(scope, deterministic, fresh_left, ETAG)


EDGE_ON = {"layers": {"edge": {"enabled": True}}}


def body(content: str = "Lima.", **extra: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "ollama_chat/llama3.2:1b",
        "choices": [
            {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
        **extra,
    }


# --- ETag ---------------------------------------------------------------------------------------------


def test_etag_is_strong_and_ignores_per_response_decoration() -> None:
    stored = answer_etag(body())
    assert stored.startswith('"') and stored.endswith('"') and not stored.startswith("W/")
    served = body(cached=True, usage={"prompt_tokens": 0}, model="llama3.2")
    served["choices"][0]["logprobs"] = None  # null in one serialisation, absent in another
    assert answer_etag(served) == stored
    reordered = dict(reversed(list(body().items())))
    assert answer_etag(reordered) == stored


def test_etag_changes_with_the_answer_or_the_generation() -> None:
    assert answer_etag(body("Cusco.")) != answer_etag(body())
    assert answer_etag({**body(), "id": "chatcmpl-2"}) != answer_etag(body())


def test_payload_etag_reads_stored_bytes() -> None:
    import orjson

    assert payload_etag(orjson.dumps(body())) == answer_etag(body())
    assert payload_etag(b"not json") is None
    assert payload_etag(b"[1, 2]") is None


# --- headers ------------------------------------------------------------------------------------------


def test_global_deterministic_answer_is_public_without_vary() -> None:
    settings = effective({"scope": "global", **EDGE_ON})
    for outcome in ("HIT", "MISS"):
        headers = edge_headers(settings, outcome, facts(), stream=False)
        assert headers == {"ETag": ETAG, "Cache-Control": "public, max-age=0, s-maxage=60"}


def test_freshness_is_capped_by_what_the_proxy_still_serves() -> None:
    settings = effective(
        {"scope": "global", "layers": {"edge": {"enabled": True, "s_maxage": 300, "max_age": 120}}}
    )
    headers = edge_headers(settings, "HIT", facts(fresh_left=42.9), stream=False)
    assert headers["Cache-Control"] == "public, max-age=42, s-maxage=42"
    roomy = edge_headers(settings, "HIT", facts(fresh_left=3600), stream=False)
    assert roomy["Cache-Control"] == "public, max-age=120, s-maxage=300"


def test_stale_while_revalidate_is_announced() -> None:
    settings = effective(
        {"scope": "global", "layers": {"edge": {"enabled": True, "stale_while_revalidate": 30}}}
    )
    headers = edge_headers(settings, "HIT", facts(), stream=False)
    assert headers["Cache-Control"] == "public, max-age=0, s-maxage=60, stale-while-revalidate=30"


def test_tenant_answer_is_private_and_varies_on_authorization() -> None:
    settings = effective({"scope": "team", "layers": {"edge": {"enabled": True, "max_age": 30}}})
    headers = edge_headers(settings, "HIT", facts("team"), stream=False)
    assert headers == {"ETag": ETAG, "Vary": "Authorization", "Cache-Control": "private, max-age=30"}


def test_explicitly_public_tenant_answer_is_shared_per_authorization() -> None:
    settings = effective({"scope": "team", "layers": {"edge": {"enabled": True, "public": True}}})
    headers = edge_headers(settings, "HIT", facts("team"), stream=False)
    assert headers["Cache-Control"].startswith("public, ")
    assert headers["Vary"] == "Authorization"


@pytest.mark.parametrize(
    ("outcome", "fact"),
    [
        ("BYPASS", None),
        ("STALE", facts()),
        ("HIT", None),
        ("MISS", EdgeFacts("global", True, 600.0, None)),  # answer unknown (not stored)
        ("HIT", facts(deterministic=False)),  # first_response
        ("HIT", facts(fresh_left=0.5)),  # about to expire at the proxy
    ],
)
def test_everything_else_is_private_no_store(outcome: Any, fact: EdgeFacts | None) -> None:
    settings = effective({"scope": "global", **EDGE_ON})
    assert edge_headers(settings, outcome, fact, stream=False) == {"Cache-Control": "private, no-store"}


def test_pii_group_never_gets_public_headers() -> None:
    settings = effective(
        {
            "scope": "global",
            "layers": {"edge": {"enabled": True, "public": True}},
            "models": {"m": {"pii": True}},
        }
    )
    assert settings.pii
    assert edge_headers(settings, "HIT", facts("user"), stream=False) == {
        "Cache-Control": "private, no-store"
    }


def test_group_without_the_edge_layer_is_private_when_another_has_it() -> None:
    section = {"scope": "global", "models": {"public-bot": EDGE_ON}}
    assert edge_in_use(settings_from_mapping(section, environ={}))
    assert effective(section, "public-bot").layers.edge.enabled
    other = effective(section, "other")
    assert edge_headers(other, "HIT", facts(), stream=False) == {"Cache-Control": "private, no-store"}


def test_streams_keep_the_proxy_cache_control_and_are_not_buffered() -> None:
    settings = effective({"scope": "global", **EDGE_ON})
    assert edge_headers(settings, "HIT", facts(), stream=True) == {"X-Accel-Buffering": "no"}


def test_edge_in_use() -> None:
    assert not edge_in_use(settings_from_mapping({}, environ={}))
    assert edge_in_use(settings_from_mapping(EDGE_ON, environ={}))


def test_deterministic_reasons() -> None:
    # Decided once, by the eligibility verdict; the edge layer reads the flag, never the reason.
    for reason in ("temperature_0", "default_temperature_0", "top_k_1", "fixed_seed", "force_zero"):
        assert Verdict(True, reason).deterministic
    for reason in ("first_response", "not_deterministic", "embedding", ""):
        assert not Verdict(True, reason).deterministic
    assert not Verdict(False, "temperature_0").deterministic


# --- conditional requests -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "matches"),
    [
        (ETAG, True),
        (f"W/{ETAG}", True),  # If-None-Match uses the weak comparison
        (f'"other", {ETAG}', True),
        ("*", True),
        ('"other"', False),
        ("", False),
        (None, False),
    ],
)
def test_etag_matches(header: str | None, matches: bool) -> None:
    assert etag_matches(header, ETAG) is matches


def test_not_modified_keeps_validators_and_caching_fields_only() -> None:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", b"123"),
        (b"etag", ETAG.encode()),
        (b"cache-control", b"public, max-age=0, s-maxage=60"),
        (b"vary", b"Authorization"),
        (b"age", b"3"),
        (b"x-cache", b"HIT"),
    ]
    kept = dict(not_modified_headers(headers))
    assert b"content-type" not in kept and b"content-length" not in kept
    assert kept[b"etag"] == ETAG.encode() and kept[b"vary"] == b"Authorization" and kept[b"age"] == b"3"


# --- settings -----------------------------------------------------------------------------------------


def test_edge_settings_defaults_and_validation() -> None:
    edge = settings_from_mapping({}, environ={}).layers.edge
    assert (edge.enabled, edge.public, edge.s_maxage, edge.max_age, edge.stale_while_revalidate) == (
        False,
        False,
        60,
        0,
        0,
    )
    with pytest.raises(SettingsError, match=r"cache_plugin\.layers\.edge\.s_maxage"):
        settings_from_mapping({"layers": {"edge": {"s_maxage": -1}}}, environ={})
    with pytest.raises(SettingsError, match=r"cache_plugin\.layers\.edge\.maxage: unknown setting"):
        settings_from_mapping({"layers": {"edge": {"maxage": 5}}}, environ={})
    env = {"LITELLM_CACHE_PLUGIN__LAYERS__EDGE__S_MAXAGE": "5"}
    assert settings_from_mapping(EDGE_ON, environ=env).layers.edge.s_maxage == 5


def test_a_pii_group_cannot_be_declared_public() -> None:
    section = {"models": {"hr": {"pii": True, "layers": {"edge": {"enabled": True, "public": True}}}}}
    with pytest.raises(SettingsError, match=r"cache_plugin\.models\.hr: .*public cannot be true for a pii"):
        settings_from_mapping(section, environ={})
