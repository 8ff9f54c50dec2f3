"""Adversarial tenant isolation: thousands of generated requests from several tenants, each trying to
reach another tenant's entries with forged cache keys, identities, metadata, user fields, headers,
tags, look-alike unicode and stolen keys. The plugin runs as in the proxy (pre-call hook, then the
carrier cache exactly as LiteLLM's caching handler calls it) on a real in-process store.

Every stored answer names its owner; a served answer owned by anyone but the requester's tenant is a
cross-tenant hit. The suite requires zero.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from litellm_cache_plugin.integrations.litellm import CachePlugin
from litellm_cache_plugin.settings import settings_from_mapping

PROMPTS = ["What is our revenue?", "Summarise the roadmap.", "Who is on call?", "Reset my password."]
LOOKALIKES = [
    "team-a",
    "team-\u0430",  # Cyrillic a
    "team-a\u200b",
    "TEAM-A",
    "team-a ",
    "team_a",
    "team-\u0251",  # Latin alpha
]


@dataclass(frozen=True)
class Caller:
    api_key: str
    team_id: str | None
    user_id: str | None

    @property
    def tenant(self) -> str:
        # scope "team": the team, or the key for callers without a team (never broader)
        return f"team:{self.team_id}" if self.team_id else f"key:{self.api_key}"


CALLERS = [
    Caller("hash-a1", "team-a", "alice"),
    Caller("hash-a2", "team-a", "anna"),
    Caller("hash-b1", "team-b", "bob"),
    Caller("hash-c1", "team-\u0430", "cyril"),  # Cyrillic look-alike of team-a: a different team
    Caller("hash-n1", None, "nora"),
    Caller("hash-n2", None, "nora"),  # same user, other key, no team
]


class Auth:
    """What the proxy hands the pre-call hook after authenticating a key."""

    def __init__(self, caller: Caller) -> None:
        self.api_key = caller.api_key
        self.token = caller.api_key
        self.team_id = caller.team_id
        self.user_id = caller.user_id
        self.org_id = None


class Harness:
    def __init__(self) -> None:
        self.plugin = CachePlugin(
            settings_from_mapping({"backend": "memory://"}, environ={}), proxy_mode=True
        )
        self.stolen: list[str] = []  # keys and identity tokens seen by anyone: attackers reuse them
        self.served = 0
        self.cross = 0
        self.calls = 0

    async def request(self, caller: Caller, rng: random.Random) -> None:
        self.calls += 1
        prompt = rng.choice(PROMPTS)
        data: dict[str, Any] = {
            "model": "llama3.2",
            "messages": [{"role": "user", "content": prompt + rng.choice(["", " ", "\n"])}],
            "temperature": 0,
            "metadata": {},
            "litellm_call_id": f"call-{self.calls}",
            "proxy_server_request": {"headers": {}},
        }
        self._forge(data, rng)
        rejected = await self.plugin.async_pre_call_hook(Auth(caller), None, data, "completion")
        if isinstance(rejected, str):
            return
        # What LiteLLM's caching handler then passes to litellm.cache (deployment-level kwargs).
        kwargs = {
            **data,
            "model": "ollama_chat/llama3.2:1b",
            "api_base": "http://127.0.0.1:9",
            "custom_llm_provider": "ollama_chat",
        }
        kwargs["metadata"] = {**data["metadata"], "model_group": "llama3.2"}
        self.stolen.append(kwargs["metadata"].get("lcp_identity", ""))
        client_key = data.get("cache_key") or (
            rng.choice(self.stolen) if self.stolen and rng.random() < 0.5 else None
        )
        lookup_kwargs = {k: v for k, v in kwargs.items() if k != "cache_key"}
        if client_key:
            lookup_kwargs["cache_key"] = client_key
        found = await self.plugin.carrier.async_get_cache(**lookup_kwargs)
        if found is not None:
            self.served += 1
            owner = json.loads(found["choices"][0]["message"]["content"])["owner"]
            if owner != caller.tenant:
                self.cross += 1
            return
        self.stolen.append(self.plugin.carrier.get_cache_key(**kwargs))
        answer = {
            "id": "x",
            "object": "chat.completion",
            "created": 1,
            "model": "llama3.2",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": json.dumps({"owner": caller.tenant})},
                }
            ],
        }
        await self.plugin.carrier.async_add_cache(json.dumps(answer), **kwargs)

    def _forge(self, data: dict[str, Any], rng: random.Random) -> None:
        victim = rng.choice(CALLERS)
        metadata = data["metadata"]
        for _ in range(rng.randint(0, 6)):
            attack = rng.randrange(10)
            if attack == 0:
                data["cache_key"] = rng.choice(self.stolen) if self.stolen else "lcp:x:" + "0" * 64
            elif attack == 1:
                metadata["lcp_identity"] = (
                    rng.choice(self.stolen) if self.stolen else '["k","team-a",null,null]|00'
                )
            elif attack == 2:
                metadata["user_api_key_team_id"] = rng.choice(LOOKALIKES)
                metadata["user_api_key_hash"] = victim.api_key
            elif attack == 3:
                data["user"] = victim.user_id
            elif attack == 4:
                data["proxy_server_request"]["headers"]["x-team-id"] = victim.team_id or ""
                data["proxy_server_request"]["headers"]["x-litellm-cache-key"] = rng.choice(
                    self.stolen or ["x"]
                )
            elif attack == 5:
                metadata["cache_tags"] = [rng.choice(["shared", "team-a", "global"])]
            elif attack == 6:
                metadata["model_group"] = rng.choice(["llama3.2", "other"])
            elif attack == 7:
                data["cache"] = {"namespace": victim.team_id, "ttl": rng.choice([1, 60, -5, "x"])}
            elif attack == 8:
                metadata["user_api_key_user_id"] = victim.user_id
                metadata["user_api_key_org_id"] = "org"
            else:
                data["namespace"] = victim.team_id


@pytest.mark.timeout(600)
async def test_ten_thousand_adversarial_requests_zero_cross_tenant_hits() -> None:
    harness = Harness()
    rng = random.Random(20261123)
    for _ in range(10_000):
        await harness.request(rng.choice(CALLERS), rng)
    print(
        f"\nadversarial: {harness.calls} requests, {harness.served} served from cache, "
        f"{harness.cross} cross-tenant"
    )
    assert harness.calls == 10_000
    assert harness.served > 5_000  # the cache really serves: isolation is not bought by never hitting
    assert harness.cross == 0


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(0, 2**32 - 1),
    order=st.lists(st.sampled_from(range(len(CALLERS))), min_size=2, max_size=12),
)
async def test_property_no_sequence_of_callers_crosses_tenants(seed: int, order: list[int]) -> None:
    harness = Harness()
    rng = random.Random(seed)
    for index in order:
        await harness.request(CALLERS[index], rng)
    assert harness.cross == 0
