"""PII mode and encryption at rest: per-user scope, TTL and size caps, AES-GCM with rotation where an
unknown key is a miss (never an error), tampering and entry swapping detected."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from litellm_cache_plugin.crypto import PayloadCipher, generate_key
from litellm_cache_plugin.engine import CacheEngine
from litellm_cache_plugin.envelope import decode_entry, encode_entry
from litellm_cache_plugin.policy.controls import RequestControls
from litellm_cache_plugin.policy.keys import Tenant
from litellm_cache_plugin.settings import SettingsError, settings_from_mapping
from litellm_cache_plugin.store.memory import MemoryStore

A = Tenant("user", "alice")
SECRET = b'{"choices":[{"message":{"content":"patient 4711 has condition X"}}]}'


def engine_with(store: MemoryStore, *keys: str) -> CacheEngine:
    return CacheEngine(store, namespace="t", cipher=PayloadCipher(list(keys)) if keys else None)


async def lookup(engine: CacheEngine, key: str, tenant: Tenant = A) -> tuple[str, bytes | None]:
    found = await engine.lookup(
        key, tenant=tenant, model_group="m", model_version="1", controls=RequestControls()
    )
    return found.reason, (found.entry.payload if found.entry else None)


async def test_encrypted_at_rest_and_readable_with_the_key() -> None:
    store, key = MemoryStore(), generate_key()
    engine = engine_with(store, key)
    stored = await engine.store_entry(
        "k", SECRET, tenant=A, model_group="m", model_version="1", ttl=60, encrypt=True
    )
    assert stored is not None and stored.payload == SECRET
    raw = await store.get("k")
    assert raw is not None and b"4711" not in raw and b"condition" not in raw
    assert await lookup(engine, "k") == ("fresh", SECRET)


async def test_rotation_old_entries_miss_instead_of_failing() -> None:
    store, old, new = MemoryStore(), generate_key(), generate_key()
    await engine_with(store, old).store_entry(
        "k", SECRET, tenant=A, model_group="m", model_version="1", ttl=60, encrypt=True
    )
    assert await lookup(engine_with(store, new, old), "k") == ("fresh", SECRET)  # graceful: old still listed
    assert await lookup(engine_with(store, new), "k") == ("undecryptable", None)  # dropped: a miss
    assert await lookup(engine_with(store), "k") == ("undecryptable", None)  # no key at all: a miss


async def test_tampering_and_swapping_are_misses() -> None:
    store, key = MemoryStore(), generate_key()
    engine = engine_with(store, key)
    await engine.store_entry("k1", SECRET, tenant=A, model_group="m", model_version="1", ttl=60, encrypt=True)
    raw = await store.get("k1")
    assert raw is not None
    entry = decode_entry(raw)
    assert entry is not None
    flipped = bytearray(entry.payload)
    flipped[-1] ^= 1
    await store.set("k1", encode_entry(entry.__class__(**{**entry.__dict__, "payload": bytes(flipped)})), 60)
    assert (await lookup(engine, "k1"))[0] == "undecryptable"
    # a valid ciphertext copied under another key does not decrypt (bound to key and tenant)
    await engine.store_entry("k2", SECRET, tenant=A, model_group="m", model_version="1", ttl=60, encrypt=True)
    original = await store.get("k2")
    assert original is not None
    await store.set("k3", original, 60)
    assert (await lookup(engine, "k3"))[0] == "undecryptable"


async def test_encryption_requested_without_a_key_stores_nothing() -> None:
    engine = engine_with(MemoryStore())
    assert (
        await engine.store_entry(
            "k", SECRET, tenant=A, model_group="m", model_version="1", ttl=60, encrypt=True
        )
    ) is None
    assert (await lookup(engine, "k"))[0] == "absent"


def test_pii_model_settings() -> None:
    key = generate_key()
    settings = settings_from_mapping(
        {
            "scope": "team",
            "ttl": 3600,
            "stale_while_revalidate": 60,
            "layers": {"semantic": {"enabled": True}},
            "encryption": {"keys": [key]},
            "models": {"health": {"pii": True}},
        },
        environ={},
    )
    pii = settings.for_model("health")
    assert (pii.scope, pii.ttl, pii.stale_while_revalidate, pii.encrypt, pii.pii) == (
        "user",
        300,
        0,
        True,
        True,
    )
    assert pii.max_entry_bytes == 64 * 1024
    assert pii.layers.semantic.enabled is False
    normal = settings.for_model("chat")
    assert (normal.scope, normal.encrypt, normal.layers.semantic.enabled) == ("team", False, True)
    assert key not in repr(settings)  # keys never appear in logs of the settings


@pytest.mark.parametrize("bad", ["not base64!", "c2hvcnQ="])
def test_bad_keys_are_named_without_being_shown(bad: str) -> None:
    from litellm_cache_plugin.integrations.litellm import CachePlugin

    with pytest.raises(SettingsError, match=r"cache_plugin\.encryption\.keys\[0\]") as error:
        CachePlugin(settings_from_mapping({"encryption": {"keys": [bad]}}, environ={}))
    assert bad not in str(error.value)


async def test_pii_entries_are_per_user_even_within_a_team() -> None:
    from litellm_cache_plugin.integrations.litellm import CachePlugin
    from litellm_cache_plugin.policy.keys import Identity

    plugin = CachePlugin(
        settings_from_mapping(
            {"encryption": {"keys": [generate_key()]}, "models": {"health": {"pii": True}}}, environ={}
        ),
        proxy_mode=False,
    )

    def kwargs_for(user: str) -> dict[str, object]:
        return {
            "model": "ollama_chat/x",
            "messages": [{"role": "user", "content": "my diagnosis?"}],
            "temperature": 0,
            "metadata": {
                "model_group": "health",
                "user_api_key_team_id": "ward-1",
                "user_api_key_user_id": user,
            },
        }

    alice, bob = plugin.context(kwargs_for("alice")), plugin.context(kwargs_for("bob"))
    assert alice is not None and bob is not None
    assert alice.tenant != bob.tenant
    assert plugin.region.key_for(alice) != plugin.region.key_for(bob)
    assert alice.encrypt and alice.ttl == 300
    assert plugin.identity_from(kwargs_for("alice")) == Identity(team_id="ward-1", user_id="alice")
