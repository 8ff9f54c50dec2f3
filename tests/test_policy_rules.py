"""Eligibility, freshness, request controls, headers, envelope and settings: pure, no I/O."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from litellm_cache_plugin.envelope import Entry, decode_entry, encode_entry
from litellm_cache_plugin.policy.controls import (
    RequestControls,
    effective_ttl,
    merge_controls,
    parse_cache_control,
    parse_litellm_cache_field,
    response_headers,
)
from litellm_cache_plugin.policy.eligibility import judge
from litellm_cache_plugin.policy.freshness import age_seconds, backend_ttl, classify
from litellm_cache_plugin.settings import SettingsError, load_settings, settings_from_mapping

# -- eligibility ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "params", "cacheable", "reason"),
    [
        ("ollama_chat", {"temperature": 0}, True, "temperature_0"),
        ("ollama_chat", {"temperature": 0.0}, True, "temperature_0"),
        ("ollama_chat", {}, False, "not_deterministic"),  # Ollama's default is 0.8
        ("ollama_chat", {"temperature": 0.7}, False, "not_deterministic"),
        ("ollama_chat", {"temperature": 0.7, "seed": 42}, True, "fixed_seed"),
        ("openai", {"temperature": 0.7, "seed": 42}, False, "not_deterministic"),  # best-effort seed
        ("ollama", {"top_k": 1, "temperature": 0.9}, True, "top_k_1"),
        ("ollama_chat", {"temperature": 0, "n": 2}, False, "n_gt_1"),
        ("ollama_chat", {"options": {"temperature": 0}}, True, "temperature_0"),
        ("mystery", {}, False, "temperature_unknown_default"),
    ],
)
def test_deterministic_mode(provider: str, params: dict[str, object], cacheable: bool, reason: str) -> None:
    verdict = judge("deterministic", "chat", provider, params)
    assert (verdict.cacheable, verdict.reason) == (cacheable, reason)


def test_other_modes() -> None:
    assert judge("off", "chat", "ollama", {"temperature": 0}).cacheable is False
    assert judge("off", "embedding", "ollama", {}).cacheable is False
    assert judge("first_response", "chat", "ollama", {"temperature": 1.3}).cacheable is True
    forced = judge("force_zero", "chat", "ollama", {"temperature": 1.3})
    assert forced.cacheable and forced.force_temperature_zero
    assert judge("deterministic", "embedding", "ollama", {}).cacheable is True


# -- freshness -----------------------------------------------------------------------------------


def test_fresh_stale_expired() -> None:
    assert classify(100.0, 10, 5, now=105) == "fresh"
    assert classify(100.0, 10, 5, now=112) == "stale"
    assert classify(100.0, 10, 5, now=115) == "expired"
    assert classify(100.0, 10, 0, now=110) == "expired"


def test_max_age_narrows_and_disables_stale() -> None:
    assert classify(100.0, 10, 5, now=104, max_age=5) == "fresh"
    assert classify(100.0, 10, 5, now=106, max_age=5) == "expired"
    assert classify(100.0, 10, 5, now=112, max_age=60) == "expired"


def test_age_and_backend_ttl() -> None:
    assert age_seconds(100.0, 99.0) == 0  # replica clocks may disagree
    assert age_seconds(100.0, 102.9) == 2
    assert backend_ttl(10, 5) > 15


@given(created=st.floats(0, 1e9), fresh=st.floats(0.001, 1e6), stale=st.floats(0, 1e6), dt=st.floats(0, 3e6))
def test_freshness_is_monotonic(created: float, fresh: float, stale: float, dt: float) -> None:
    order = {"fresh": 0, "stale": 1, "expired": 2}
    a = classify(created, fresh, stale, created + dt)
    b = classify(created, fresh, stale, created + dt + 1)
    assert order[a] <= order[b]


# -- controls and headers ------------------------------------------------------------------------


def test_cache_control_header() -> None:
    assert parse_cache_control("no-cache") == RequestControls(no_cache=True)
    # LiteLLM's meanings (and RFC 9111 §5.2.1.5): a request's no-store forbids storing, not serving
    assert parse_cache_control("No-Store") == RequestControls(no_store=True)
    assert parse_cache_control("no-store, no-cache") == RequestControls(no_cache=True, no_store=True)
    assert parse_cache_control("max-age=30, foo") == RequestControls(max_age=30)
    assert parse_cache_control("max-age=banana") == RequestControls()
    assert parse_cache_control(None) == RequestControls()


def test_litellm_cache_field() -> None:
    assert parse_litellm_cache_field({"no-cache": True}) == RequestControls(no_cache=True)
    assert parse_litellm_cache_field({"no-store": True}) == RequestControls(no_store=True)
    both = {"no-store": True, "no-cache": True}
    assert parse_litellm_cache_field(both) == RequestControls(no_cache=True, no_store=True)
    assert parse_litellm_cache_field({"ttl": 60, "s-maxage": 10}) == RequestControls(ttl=60, max_age=10)
    assert parse_litellm_cache_field({"ttl": "x"}) == RequestControls()
    assert parse_litellm_cache_field("nonsense") == RequestControls()


def test_merge_is_strictest_and_ttl_never_raises_the_ceiling() -> None:
    merged = merge_controls(RequestControls(ttl=60, max_age=100), RequestControls(ttl=30, no_cache=True))
    assert merged == RequestControls(no_cache=True, ttl=30, max_age=100)
    assert effective_ttl(3600, 60) == 60
    assert effective_ttl(3600, 10_000) == 3600
    assert effective_ttl(3600, None) == 3600


def test_response_headers() -> None:
    assert response_headers("HIT", "exact", 3) == {"x-cache": "HIT", "x-cache-layer": "exact", "Age": "3"}
    assert response_headers("MISS", "exact", 3) == {"x-cache": "MISS"}
    assert response_headers("BYPASS") == {"x-cache": "BYPASS"}


# -- envelope ------------------------------------------------------------------------------------


def entry(payload: bytes = b'{"a":1}') -> Entry:
    return Entry(
        payload=payload, created_at=1.5, fresh_for=60, stale_for=5, tenant="t",
        counters={"lcp:gen:model:x": 3}, model_version="sha256:x", kind="response", upstream_ms=12.5,
        tags=("a",),
    )  # fmt: skip


def test_envelope_round_trip() -> None:
    assert decode_entry(encode_entry(entry())) == entry()


@given(st.binary(max_size=200))
def test_garbage_never_raises(raw: bytes) -> None:
    decode_entry(raw)


def test_corruption_is_detected() -> None:
    raw = bytearray(encode_entry(entry(b'{"answer":"Paris"}')))
    raw[-3] ^= 0x01
    assert decode_entry(bytes(raw)) is None
    assert decode_entry(encode_entry(entry())[:-1]) is None
    assert decode_entry(b"\x02" + encode_entry(entry())[1:]) is None


# -- settings ------------------------------------------------------------------------------------


def test_defaults_match_the_contract() -> None:
    s = settings_from_mapping({}, environ={})
    assert (s.backend, s.scope, s.ttl, s.stale_while_revalidate, s.eligibility, s.body_marker) == (
        "memory://", "team", 3600, 0, "deterministic", True,
    )  # fmt: skip


def test_per_model_override() -> None:
    s = settings_from_mapping(
        {"ttl": 100, "models": {"llama3.2": {"ttl": 5, "eligibility": "off"}}}, environ={}
    )
    assert s.for_model("llama3.2").ttl == 5
    assert s.for_model("llama3.2").eligibility == "off"
    assert s.for_model("other").ttl == 100


@pytest.mark.parametrize(
    ("section", "fragment"),
    [
        (
            {"scope": "planet"},
            "cache_plugin.scope: must be one of 'team', 'user', 'key' or 'global' (got 'planet')",
        ),
        ({"ttl": -1}, "cache_plugin.ttl:"),
        ({"backend": "mongodb://x"}, "cache_plugin.backend: "),
        ({"eligibilty": "off"}, "cache_plugin.eligibilty: unknown setting"),
        ({"models": {"m": {"ttl": "soon"}}}, "cache_plugin.models.m.ttl:"),
        ({"layers": {"exact": {"enabled": "maybe"}}}, "cache_plugin.layers.exact.enabled:"),
    ],
)
def test_bad_values_name_the_key(section: dict[str, object], fragment: str) -> None:
    with pytest.raises(SettingsError) as error:
        settings_from_mapping(section, environ={})
    assert fragment in str(error.value)
    assert "\n" not in str(error.value)


def test_environment_overrides(tmp_path: object) -> None:
    s = settings_from_mapping(
        {"ttl": 10},
        environ={"LITELLM_CACHE_PLUGIN__TTL": "20", "LITELLM_CACHE_PLUGIN__LAYERS__EXACT__ENABLED": "false"},
    )
    assert s.ttl == 20
    assert s.layers.exact.enabled is False


def test_load_from_proxy_config(tmp_path: pytest.TempPathFactory) -> None:
    path = tmp_path / "config.yaml"  # type: ignore[operator]
    path.write_text("model_list: []\ncache_plugin:\n  scope: user\n  ttl: 42\n")
    s = load_settings(path, environ={})
    assert (s.scope, s.ttl) == ("user", 42)
