"""The region's pure parts: the lookup plan, the per-call table, the one identity builder."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from litellm_cache_plugin.policy.keys import Identity
from litellm_cache_plugin.policy.lookup import Bypass, Miss, Serve, plan_after_exact
from litellm_cache_plugin.region import Decision, IdentitySigner, identity_of
from litellm_cache_plugin.region.calls import CallTable


def plan(outcome: str, reason: str = "", **flags: bool) -> object:
    options = {"semantic": True, "single_flight": True, "no_store": False, **flags}
    return plan_after_exact(outcome, reason, **options)  # type: ignore[arg-type]


def test_hits_are_served_and_stale_hits_refresh() -> None:
    assert plan("HIT", "fresh") == Serve(stale=False)
    assert plan("STALE", "stale") == Serve(stale=True)


def test_bypass_keeps_its_reason() -> None:
    assert plan("BYPASS", "no_cache") == Bypass("no_cache")


def test_a_miss_tries_semantic_then_coalesces() -> None:
    assert plan("MISS", "absent") == Miss("absent", semantic=True, coalesce=True)
    assert plan("MISS", "absent", semantic=False) == Miss("absent", semantic=False, coalesce=True)
    assert plan("MISS", "absent", single_flight=False) == Miss("absent", semantic=True, coalesce=False)


def test_a_no_store_miss_never_leads_a_single_flight() -> None:
    # Its answer is never stored: a waiter would wait for nothing.
    assert plan("MISS", "absent", no_store=True) == Miss("absent", semantic=True, coalesce=False)


def test_a_failed_backend_is_not_asked_to_coordinate() -> None:
    assert plan("MISS", "backend_error") == Miss("backend_error", semantic=True, coalesce=False)


def test_call_table_is_one_bounded_state_per_call() -> None:
    table = CallTable(capacity=3)
    table.record("a", Decision("HIT", "exact"))
    table.state("a").leading = "k1"
    table.state("a").counters = {"c": 1}
    assert table.decision("a") == Decision("HIT", "exact")
    assert table.stop_leading("a") == "k1"
    assert table.stop_leading("a") is None  # released once
    for call in ("b", "c", "d"):
        table.record(call, Decision("MISS"))
    assert len(table) == 3
    assert table.decision("a") is None  # oldest pushed out
    assert table.decision("d") == Decision("MISS")


def test_a_call_without_an_id_keeps_nothing() -> None:
    table = CallTable()
    table.record(None, Decision("HIT"))
    table.state(None).leading = "k"
    assert len(table) == 0
    assert table.decision(None) is None
    assert table.stop_leading(None) is None


@pytest.mark.parametrize(
    ("principal", "expected"),
    [
        (
            SimpleNamespace(api_key="h", team_id="t", user_id="u", org_id="o"),
            Identity(api_key_hash="h", team_id="t", user_id="u", org_id="o"),
        ),
        (SimpleNamespace(token="tok", team_id=None), Identity(api_key_hash="tok")),
        (SimpleNamespace(api_key="", token="tok", org_id=7), Identity(api_key_hash="tok", org_id="7")),
        (object(), Identity()),
    ],
)
def test_one_identity_builder_with_org(principal: object, expected: Identity) -> None:
    assert identity_of(principal) == expected


def test_signed_identity_round_trips_and_forgeries_fail() -> None:
    signer = IdentitySigner()
    identity = Identity(api_key_hash="h", team_id="t", user_id="u", org_id="o")
    token = signer.sign(identity)
    assert signer.verify(token) == identity
    assert IdentitySigner().verify(token) is None  # another process's secret
    assert signer.verify(token.replace('"t"', '"x"')) is None
    assert signer.verify("nonsense") is None
