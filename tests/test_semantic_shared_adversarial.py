"""The adversarial tenant suite (tests/test_adversarial_tenants.py: forged cache keys, identities,
metadata, look-alike teams, stolen keys) with the semantic layer on the shared vector index: every
tenant asks paraphrases of the same questions, so the one index holds near-identical vectors of every
tenant, and a served answer owned by anyone but the requester's tenant is a cross-tenant hit. Zero is
required, with semantic hits really happening."""

from __future__ import annotations

import random
import uuid

import pytest

pytest.importorskip("onnxruntime", reason="the [semantic] extra is not installed")

from litellm_cache_plugin.integrations.litellm import CachePlugin
from litellm_cache_plugin.settings import settings_from_mapping
from tests import test_adversarial_tenants as adversarial

# Paraphrases of the suite's questions: after the first of a group is cached, the others can only be
# served by meaning.
PARAPHRASED = [
    "What is our revenue?",
    "What's our revenue?",
    "Tell me what our revenue is.",
    "Summarise the roadmap.",
    "Please summarise the roadmap.",
    "Give me a summary of the roadmap.",
    "Who is on call?",
    "Who is on call right now?",
    "Reset my password.",
    "Please reset my password.",
]


class SharedIndexHarness(adversarial.Harness):
    def __init__(self, index_url: str) -> None:
        super().__init__()
        self.plugin = CachePlugin(
            settings_from_mapping(
                {
                    "backend": "memory://",
                    # Each index call's deadline. This test checks tenant isolation, not the deadline
                    # (tests/test_semantic_shared_index.py does): a lookup that fails open would go
                    # unexamined, so none may. 1 s was not enough on a loaded 2-core machine (the suite
                    # with two CPU burners: "knn timed out after 1s"): a full garbage collection stalls
                    # the loop, answer or not (0.45 s measured with this test alone, 370 k objects).
                    # A refused, failing or hung index is still an error with 10 s.
                    "backend_timeout_ms": 10_000,
                    "layers": {"semantic": {"enabled": True, "index": index_url}},
                },
                environ={},
            ),
            proxy_mode=True,
        )


@pytest.mark.timeout(900)
async def test_adversarial_requests_zero_cross_tenant_semantic_hits(
    redis_search_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(adversarial, "PROMPTS", PARAPHRASED)
    index_url = redis_search_url.replace("prefix=", f"prefix=adv{uuid.uuid4().hex[:8]}-", 1)
    harness = SharedIndexHarness(index_url)
    semantic = harness.plugin.region.semantic
    assert semantic is not None and semantic.shared is not None
    rng = random.Random(20261202)
    try:
        for _ in range(2_000):
            await harness.request(rng.choice(adversarial.CALLERS), rng)
        stats = dict(semantic.stats)
    finally:
        await semantic.close()
    print(
        f"\nadversarial, shared semantic index: {harness.calls} requests, {harness.served} served from "
        f"cache ({stats.get('hit', 0)} by meaning, {stats.get('refused', 0)} refused by the guard), "
        f"{harness.cross} cross-tenant, {stats.get('error', 0)} index errors"
    )
    assert harness.calls == 2_000
    assert stats.get("hit", 0) >= 100  # the shared index really serves paraphrases
    assert stats.get("error", 0) == 0
    assert harness.cross == 0
