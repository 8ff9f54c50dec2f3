"""Which requests may be served from and stored in the cache. Pure functions, no I/O.

Modes (setting ``eligibility``, per model group under ``models:``):

- ``deterministic`` (default): only requests whose answer is reproducible — temperature 0 given
  explicitly (or the provider's default temperature is 0), greedy ``top_k: 1`` on providers that honour
  it, or a fixed ``seed`` on a provider that honours seeds (Ollama, vLLM; OpenAI's seed is best effort,
  so it does not count). A request without ``temperature`` is judged by the provider's default:
  Ollama's is 0.8, OpenAI's 1, so those are not deterministic. ``n > 1`` asks for several different
  samples and is bypassed.
- ``force_zero``: every request is made deterministic by sending it upstream with temperature 0
  (the glue rewrites the request) and is cached.
- ``first_response``: the first answer is cached and replayed whatever the sampling settings
  (``n`` stays in the key).
- ``off``: nothing is cached.

Tools and function calls are cacheable: tool definitions and ``tool_choice`` are in the key, and a
``tool_calls`` answer replays like any other. Embeddings are deterministic by nature and are cacheable
under every mode but ``off``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from litellm_cache_plugin.policy.keys import provider_defaults, provider_family

SEED_HONOURING_PROVIDERS: frozenset[str] = frozenset({"ollama", "hosted_vllm", "vllm"})
TOP_K_HONOURING_PROVIDERS: frozenset[str] = frozenset({"ollama", "hosted_vllm", "vllm"})


# Verdicts whose answer is reproducible (so a shared cache may keep it): the edge layer reads
# ``Verdict.deterministic``, never the reason string.
DETERMINISTIC_REASONS: frozenset[str] = frozenset(
    {"temperature_0", "default_temperature_0", "top_k_1", "fixed_seed", "force_zero"}
)


@dataclass(frozen=True)
class Verdict:
    cacheable: bool
    reason: str
    force_temperature_zero: bool = False

    @property
    def deterministic(self) -> bool:
        """Cacheable because the answer is reproducible (not merely the first answer kept)."""
        return self.cacheable and self.reason in DETERMINISTIC_REASONS


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _param(params: Mapping[str, Any], name: str) -> Any:
    value = params.get(name)
    if value is None:
        # Ollama options may arrive nested (``options: {temperature: 0}``) through extra_body.
        for container in ("options", "extra_body"):
            nested = params.get(container)
            if isinstance(nested, Mapping) and nested.get(name) is not None:
                return nested[name]
    return value


def judge(mode: str, kind: str, provider: str | None, params: Mapping[str, Any]) -> Verdict:
    """Decide whether a request may use the cache."""
    if mode == "off":
        return Verdict(False, "eligibility_off")
    if kind == "embedding":
        return Verdict(True, "embedding")
    if mode == "first_response":
        return Verdict(True, "first_response")
    if mode == "force_zero":
        return Verdict(True, "force_zero", force_temperature_zero=True)

    family = provider_family(provider)
    n = _number(params.get("n"))
    if n is not None and n > 1:
        return Verdict(False, "n_gt_1")
    temperature = _number(_param(params, "temperature"))
    if temperature is None:
        temperature = _number(provider_defaults(provider).get("temperature"))
        if temperature is None:
            return Verdict(False, "temperature_unknown_default")
        if temperature == 0:
            return Verdict(True, "default_temperature_0")
    if temperature == 0:
        return Verdict(True, "temperature_0")
    top_k = _number(_param(params, "top_k"))
    if top_k == 1 and (family in TOP_K_HONOURING_PROVIDERS or provider in TOP_K_HONOURING_PROVIDERS):
        return Verdict(True, "top_k_1")
    seed = _param(params, "seed")
    if seed is not None and (family in SEED_HONOURING_PROVIDERS or provider in SEED_HONOURING_PROVIDERS):
        return Verdict(True, "fixed_seed")
    return Verdict(False, "not_deterministic")
