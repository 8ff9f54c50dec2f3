"""Settings: one pydantic model read from the ``cache_plugin:`` section of the proxy's config.yaml.

Names and defaults are the user-facing contract (see README). A wrong value raises
:class:`SettingsError` whose message is one line naming the key and what is allowed.

Environment overrides: ``LITELLM_CACHE_PLUGIN__<KEY>[__<SUBKEY>...]`` (double underscore separates
levels), e.g. ``LITELLM_CACHE_PLUGIN__BACKEND=redis://cache:6379/0`` or
``LITELLM_CACHE_PLUGIN__LAYERS__SEMANTIC__ENABLED=false``. Values are parsed as YAML scalars.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

Scope = Literal["team", "user", "key", "global"]
EligibilityMode = Literal["deterministic", "force_zero", "first_response", "off"]

ENV_PREFIX = "LITELLM_CACHE_PLUGIN__"
SUPPORTED_BACKEND_SCHEMES = ("memory", "redis", "rediss", "redis+cluster", "memcached")


class SettingsError(ValueError):
    """A bad configuration value; ``str(error)`` is one line naming the key."""


class _Strict(BaseModel):
    # Unknown keys are errors: a typo must stop startup, not silently do nothing.
    model_config = ConfigDict(extra="forbid", frozen=True)


class ExactLayer(_Strict):
    enabled: bool = True
    # Responses whose finish_reason is not one of these are never stored (truncation, filters).
    cacheable_finish_reasons: tuple[str, ...] = ("stop", "tool_calls", "function_call", "eos")


class SemanticVerify(_Strict):
    """Verified semantic matches (``layers.semantic.verify``): a near match is never served until it
    is verified (a judge model said that the two prompts ask the same thing, or the paraphrase's own
    answer agreed with the cached one); a verified paraphrase then hits as an alias of the cached
    entry (see ``policy/verify.py`` and the README, "Verified matches")."""

    # "off": near matches are served as they are found (threshold + guard). Otherwise a near match is
    # answered upstream (a MISS) and verified in the background: "judge" by ``judge_model``;
    # "agreement" by comparing the paraphrase's fresh answer with the cached one (equal text after a
    # conservative normalization; no judge call); "both": agreement first, the judge when they differ.
    mode: Literal["off", "judge", "agreement", "both"] = "off"
    # A model group of the same proxy (or Router) that answers "yes" or "no" (modes judge and both).
    judge_model: str | None = Field(default=None, min_length=1)
    # No unverified semantic answer is ever served. Only ``true`` is implemented.
    strict: bool = True
    # Verifications running at once (judge calls in flight) per process; more wait their turn.
    max_concurrent: int = Field(default=2, ge=1, le=256)
    # Verifications waiting or running per process; beyond, new near matches are not verified
    # (counted as ``verify_dropped``) until the queue drains.
    max_pending: int = Field(default=256, ge=1, le=100_000)
    # Deadline of one judge call (seconds); a late, failed or unclear answer records nothing.
    timeout: float = Field(default=30.0, gt=0)
    # How long a verdict on a pair of prompts is remembered (seconds): the pair is not judged again.
    verdict_ttl: float = Field(default=7 * 86400.0, gt=0)

    @model_validator(mode="after")
    def _check(self) -> SemanticVerify:
        if self.mode in ("judge", "both") and not self.judge_model:
            raise ValueError(
                f"judge_model: a model group is required when mode is {self.mode!r} "
                "(mode 'agreement' verifies without a judge)"
            )
        if not self.strict:
            raise ValueError("strict: only true is implemented (no unverified semantic answer is served)")
        return self


class SemanticLayer(_Strict):
    """Serve a cached answer to a paraphrase (see ``litellm_cache_plugin.semantic``).

    Needs the ``[semantic]`` extra for the built-in embedder. Defaults are measured with
    ``python benchmarks/semantic/run.py`` (a source checkout); re-calibrate on your own labelled pairs
    with ``python -m litellm_cache_plugin.semantic.calibrate``.
    """

    enabled: bool = False
    # Cosine similarity a cached prompt must reach (built-in embedder: all-MiniLM-L6-v2). 0.88: the
    # lowest threshold at which the tuning sets of benchmarks/semantic served no trap (results/semantic/).
    threshold: float = Field(default=0.88, ge=0.0, le=1.0)
    # Refuse candidates whose numbers, names, negation, format... differ from the prompt.
    guard: bool = True
    # "builtin" (int8 ONNX MiniLM on the CPU) or "litellm:<model group>" (an embedding model
    # served through LiteLLM; its group name and version are part of the semantic keys).
    embedder: str = Field(default="builtin", pattern=r"^(builtin|litellm:.+)$")
    # onnxruntime threads for the built-in embedder.
    embedder_threads: int = Field(default=1, ge=1, le=64)
    # Cached prompts kept per scope (tenant + model + system prompt + conversation + params), LRU.
    max_entries_per_scope: int = Field(default=10_000, ge=1, le=1_000_000)
    # Cached prompts kept in one process over all scopes (about 2 KB each), LRU by scope.
    max_entries: int = Field(default=100_000, ge=1, le=10_000_000)
    # Nearest candidates checked by the guard, best first.
    candidates: int = Field(default=4, ge=1, le=64)
    # Longer prompts are not matched semantically: the model sees only its first 256 tokens.
    max_chars: int = Field(default=1000, ge=1)
    # Records another replica wrote that are loaded inline on one lookup; the rest load in background.
    sync_batch: int = Field(default=512, ge=1, le=100_000)
    # Where the vectors are searched: "local" (an in-process index in every replica, filled from the
    # backend) or "redis+search://host:port/db?prefix=..." / "rediss+search://..." (one index on a
    # Redis server with the search module, shared by every replica; see semantic/shared.py).
    index: str = Field(default="local", pattern=r"^(local|rediss?\+search://.+)$")
    # Verified matches (off by default): see SemanticVerify.
    verify: SemanticVerify = SemanticVerify()
    # Multi-turn chats: "exact" (every earlier turn must be equal, the default) or "by_meaning" (the
    # conversation judged as a whole: semantic/conversation.py). by_meaning answered 1.2-4.2% of
    # unseen conversation traps wrongly (results/semantic/conversations-s12/): the proxy warns at
    # start-up when it is on without verify.
    conversations: Literal["exact", "by_meaning"] = "exact"


class EmbeddingLayer(_Strict):
    enabled: bool = True


class PrefixAffinity(_Strict):
    """Prefix-affinity routing over the deployments of one model group (consistent hashing with
    bounded loads, see ``litellm_cache_plugin.prefix.affinity``)."""

    enabled: bool = True
    # A deployment takes no new request once it holds ceil(load_factor * (in flight + 1) / deployments).
    load_factor: float = Field(default=1.25, ge=1.0, le=100.0)
    # ... but a deployment with fewer requests in flight than this is never passed over for load (a
    # model server runs a few requests at once; splitting them would only evaluate prefixes twice).
    min_inflight_cap: int = Field(default=4, ge=1, le=100_000)
    # Characters of the prefix (leading system messages, else the first message) that identify it;
    # 0 = all of it.
    prefix_chars: int = Field(default=2048, ge=0)
    # Seconds a deployment that just failed is passed over (LiteLLM's cooldown needs several failures).
    failure_cooldown: float = Field(default=10.0, ge=0)
    # An in-flight request whose end LiteLLM never reported stops counting after this many seconds.
    inflight_timeout: float = Field(default=600.0, gt=0)


class PrefixLayer(_Strict):
    """Make the model server's own KV prefix cache hit (see ``litellm_cache_plugin.prefix``)."""

    enabled: bool = False
    # System prompts sent verbatim whenever a request's system prompt equals one up to whitespace.
    canonical_system_prompts: tuple[str, ...] = ()
    # Other system prompts are sent in folded form (whitespace made stable; what the exact layer keys on).
    stable_rendering: bool = True
    affinity: PrefixAffinity = PrefixAffinity()
    # Record reuse measured from responses (Ollama prompt_eval_count, OpenAI-style cached_tokens).
    measure: bool = True
    # Prompt-evaluation throughput used for "time saved" until the server's own durations are seen.
    prompt_tokens_per_second: float | None = Field(default=None, gt=0)

    @field_validator("canonical_system_prompts")
    @classmethod
    def _check_canonical_prompts(cls, prompts: tuple[str, ...]) -> tuple[str, ...]:
        from litellm_cache_plugin.prefix.canonical import canonical_table

        canonical_table(prompts)  # raises ValueError on empty or ambiguous entries
        return prompts


class EdgeLayer(_Strict):
    """HTTP caching headers so a shared cache (nginx, a CDN) can serve deterministic answers (see
    ``litellm_cache_plugin.policy.edge`` and the README section "Edge layer")."""

    enabled: bool = False
    # Mark answers public although the scope is not global: a shared cache then keeps one copy per
    # Authorization header (``Vary: Authorization``). PII model groups are never public.
    public: bool = False
    # Seconds a shared cache may serve an answer without asking the proxy (capped by the entry's
    # remaining TTL): also the longest it keeps serving an answer after an invalidation.
    s_maxage: int = Field(default=60, ge=0, le=31_536_000)
    # Seconds a client's own cache may reuse an answer (``max-age``, capped the same way).
    max_age: int = Field(default=0, ge=0, le=31_536_000)
    # ``stale-while-revalidate`` for shared caches: added to the staleness bound after an invalidation.
    stale_while_revalidate: int = Field(default=0, ge=0, le=31_536_000)


class Layers(_Strict):
    exact: ExactLayer = ExactLayer()
    semantic: SemanticLayer = SemanticLayer()
    embedding: EmbeddingLayer = EmbeddingLayer()
    prefix: PrefixLayer = PrefixLayer()
    edge: EdgeLayer = EdgeLayer()


class FastPath(_Strict):
    """Serve exact hits ahead of LiteLLM's request pipeline (proxy only), with the proxy's own auth."""

    enabled: bool = True
    # False: hits consume no LiteLLM RPM/TPM/parallel-request limits. True: the rate limiter admits
    # (or refuses, with the proxy's own 429) every hit and counts its tokens, like any request.
    apply_rate_limits: bool = False
    # Bodies larger than this are never buffered by the fast path; they go down the normal pipeline.
    max_body_bytes: int = Field(default=4 * 1024 * 1024, gt=0)
    # Opt-in (0: off). For this many seconds after LiteLLM's auth accepted a credential on a route in
    # this worker, a fast-path hit with the same credential reuses that verdict instead of running
    # LiteLLM's auth (and custom_auth) again; the key's model access is still checked on every hit,
    # an expired or blocked key is never reused, and misses always run LiteLLM's auth. An identical
    # request (every header, client address, body) under a reused verdict also reuses the route's
    # request setup, done once with that verdict. The price: a key revoked, blocked or over budget, or
    # a team or key setting changed, within the window may still be served cached answers as before
    # until the window ends (see README, "Reusing the auth verdict").
    auth_reuse_seconds: float = Field(default=0, ge=0, le=60)
    # With LiteLLM's auth run on the hit (the default), an identical request (every header, client
    # address, body) whose auth verdict is equal to the one a remembered setup was done with reuses
    # that setup (``add_litellm_data_to_request``) for this many seconds after it ran (0: never). Only
    # verdicts without a budget reservation or a trace span qualify. The price: a change to the proxy's
    # general settings made at run time reaches identical repeat hits up to this late (a change to the
    # key, team or user changes the verdict, and is seen at once). See README, "Reusing the setup".
    setup_reuse_seconds: float = Field(default=5, ge=0, le=60)


class SingleFlight(_Strict):
    """Concurrent identical misses wait for one upstream call instead of each making their own."""

    enabled: bool = True
    # How long a waiting request waits for the leader before going upstream itself (seconds).
    timeout: float = Field(default=30, gt=0)


class Versions(_Strict):
    """Where model versions come from (they are part of every key)."""

    # Read the model digest from Ollama deployments (GET /api/tags); a re-pull changes it.
    ollama_digest: bool = True
    # A digest older than this is re-read in the background (seconds): the longest a re-pulled model
    # can still be answered from entries of its previous version.
    refresh_interval: float = Field(default=30, gt=0)
    # Bound on the first, blocking read of a deployment's digest; on failure the version is "unknown".
    fetch_timeout: float = Field(default=1.0, gt=0)


class Pii(_Strict):
    """What ``pii: true`` on a model group means: entries are per user (the user id, else the API
    key), live at most ``ttl_cap`` seconds, are at most ``max_entry_bytes`` long, are never shared by
    meaning (no semantic layer), and are encrypted at rest when ``encryption.keys`` is set."""

    ttl_cap: float = Field(default=300, gt=0)
    max_entry_bytes: int = Field(default=64 * 1024, gt=0)


class Encryption(_Strict):
    """AES-256-GCM at rest. ``keys``: base64 32-byte keys, first encrypts, all decrypt (rotation).
    ``apply_to``: ``pii`` (model groups marked ``pii: true``) or ``all``."""

    keys: list[str] = Field(default_factory=list, repr=False)
    apply_to: Literal["pii", "all"] = "pii"


class Prices(_Strict):
    """What one upstream call of a model group costs, for ``llm_cache.cost_saved``. Without it the cost
    comes from LiteLLM's cost map (which prices local Ollama models at zero). Per-token prices win;
    otherwise ``gpu_cost_per_hour`` prices the model server's reported compute time."""

    input_cost_per_token: float | None = Field(default=None, ge=0)
    output_cost_per_token: float | None = Field(default=None, ge=0)
    gpu_cost_per_hour: float | None = Field(default=None, ge=0)


class Prometheus(_Strict):
    """Serve the cache's metrics in the Prometheus text format (OpenTelemetry Prometheus exporter)."""

    enabled: bool = False
    # Route on the proxy's own HTTP server (each uvicorn worker answers for itself).
    path: str = Field(default="/v1/cache/metrics", pattern=r"^/[A-Za-z0-9/_.-]{1,128}$")
    # Like LiteLLM's own /metrics: open by default (counts per model group, no tenant or prompt data).
    # True: only the proxy admin may scrape (send the master key as a bearer token).
    require_auth: bool = False
    # SDK/Router use (no proxy app): also serve it on this loopback port with prometheus_client.
    port: int | None = Field(default=None, ge=1, le=65535)


class Otlp(_Strict):
    """Export metrics and spans over OTLP/HTTP to a collector (when the application has not set up
    OpenTelemetry itself)."""

    endpoint: str | None = Field(default=None, pattern=r"^https?://")
    headers: dict[str, str] = Field(default_factory=dict, repr=False)
    export_interval: float = Field(default=15, gt=0)


class TelemetrySettings(_Strict):
    """OpenTelemetry metrics and spans. Providers the application configured globally (e.g. LiteLLM's
    own OpenTelemetry callback, or ``opentelemetry-instrument``) are used as they are; otherwise the
    plugin builds its own from ``otlp`` and ``prometheus``. Off: no instrument exists at all."""

    enabled: bool = True
    otlp: Otlp = Otlp()
    prometheus: Prometheus = Prometheus()
    # How often backend size/eviction figures are sampled for the gauges (seconds, off the request path).
    backend_sample_interval: float = Field(default=15, gt=0)


class ModelOverride(_Strict):
    """Per model group: any of these replaces the global value for that group."""

    scope: Scope | None = None
    ttl: float | None = Field(default=None, gt=0)
    stale_while_revalidate: float | None = Field(default=None, ge=0)
    eligibility: EligibilityMode | None = None
    # Model version: part of every key. Change it to invalidate everything of this group.
    version: str | None = None
    layers: Layers | None = None
    # Personal data: per-user scope, short TTL, size cap, no semantic sharing, encrypted at rest.
    pii: bool = False
    prices: Prices | None = None

    @model_validator(mode="after")
    def _pii_is_never_public(self) -> ModelOverride:
        if self.pii and self.layers is not None and self.layers.edge.public:
            raise ValueError("layers.edge.public cannot be true for a pii model group")
        return self


class PluginSettings(_Strict):
    backend: str = "memory://"
    scope: Scope = "team"
    ttl: float = Field(default=3600, gt=0)
    stale_while_revalidate: float = Field(default=0, ge=0)
    eligibility: EligibilityMode = "deterministic"
    layers: Layers = Layers()
    fast_path: FastPath = FastPath()
    single_flight: SingleFlight = SingleFlight()
    versions: Versions = Versions()
    pii: Pii = Pii()
    encryption: Encryption = Encryption()
    telemetry: TelemetrySettings = TelemetrySettings()
    models: dict[str, ModelOverride] = Field(default_factory=dict)
    # Marks non-streamed hits with "cached": true in the JSON body (the OpenAI SDK hides headers).
    body_marker: bool = True
    # Deadline for every backend call on the request path; on expiry the request goes upstream. It is
    # measured on the event loop, so a loop lagging under load counts towards it.
    backend_timeout_ms: float = Field(default=100, gt=0)
    # Entries bigger than this are never stored.
    max_entry_bytes: int = Field(default=4 * 1024 * 1024, gt=0)
    # Payloads of at least this many bytes are stored zstd-compressed when that saves 10% (0/None: never).
    # 16 KiB: see benchmarks/encoding.py; smaller answers would pay 3-16 us per hit for the saving.
    compress_min_bytes: int | None = Field(default=16 * 1024, ge=0)
    # Namespace inside the backend, so several deployments can share one Redis.
    namespace: str = Field(default="lcp", pattern=r"^[A-Za-z0-9_.-]{1,32}$")

    @field_validator("backend")
    @classmethod
    def _check_backend(cls, value: str) -> str:
        scheme = value.split("://", 1)[0] if "://" in value else ""
        if scheme not in SUPPORTED_BACKEND_SCHEMES:
            allowed = ", ".join(s + "://" for s in SUPPORTED_BACKEND_SCHEMES)
            raise ValueError(f"must be a URL starting with one of {allowed}")
        return value

    def for_model(self, model_group: str | None) -> EffectiveSettings:
        """The settings that apply to one model group (global values with its override applied)."""
        override = self.models.get(model_group or "")
        if override is None:
            return EffectiveSettings(
                scope=self.scope,
                ttl=self.ttl,
                stale_while_revalidate=self.stale_while_revalidate,
                eligibility=self.eligibility,
                version=None,
                layers=self.layers,
                max_entry_bytes=self.max_entry_bytes,
                encrypt=self.encryption.apply_to == "all" and bool(self.encryption.keys),
            )
        if override.pii:
            layers = override.layers or self.layers
            return EffectiveSettings(
                scope="user",
                ttl=min(override.ttl or self.ttl, self.pii.ttl_cap),
                stale_while_revalidate=0,
                eligibility=override.eligibility or self.eligibility,
                version=override.version,
                layers=layers.model_copy(update={"semantic": SemanticLayer(enabled=False)}),
                max_entry_bytes=min(self.max_entry_bytes, self.pii.max_entry_bytes),
                encrypt=bool(self.encryption.keys),
                pii=True,
                prices=override.prices,
            )
        return EffectiveSettings(
            scope=override.scope or self.scope,
            ttl=override.ttl if override.ttl is not None else self.ttl,
            stale_while_revalidate=(
                override.stale_while_revalidate
                if override.stale_while_revalidate is not None
                else self.stale_while_revalidate
            ),
            eligibility=override.eligibility or self.eligibility,
            version=override.version,
            layers=override.layers or self.layers,
            max_entry_bytes=self.max_entry_bytes,
            encrypt=self.encryption.apply_to == "all" and bool(self.encryption.keys),
            prices=override.prices,
        )


class EffectiveSettings(BaseModel):
    model_config = ConfigDict(frozen=True)

    scope: Scope
    ttl: float
    stale_while_revalidate: float
    eligibility: EligibilityMode
    version: str | None
    layers: Layers
    max_entry_bytes: int
    encrypt: bool = False
    pii: bool = False
    prices: Prices | None = None


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    location = ".".join(str(part) for part in first["loc"]) or "<root>"
    message = first["msg"]
    if first["type"] == "extra_forbidden":
        message = "unknown setting"
    elif first["type"] == "value_error":  # a validator's own sentence, without pydantic's prefix
        message = message.removeprefix("Value error, ")
    elif first["type"] == "literal_error":
        expected = first.get("ctx", {}).get("expected")
        message = f"must be one of {expected}" if expected else message
    value = first.get("input")
    shown = "" if first["type"] == "missing" or isinstance(value, dict) else f" (got {value!r})"
    more = len(error.errors()) - 1
    suffix = f" [and {more} more problem{'s' if more > 1 else ''}]" if more else ""
    return f"cache_plugin.{location}: {message}{shown}{suffix}"


def _env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        path = [part.lower() for part in name[len(ENV_PREFIX) :].split("__") if part]
        if not path:
            continue
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        node = overrides
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return overrides


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(dict(merged[key]), value)
        else:
            merged[key] = value
    return merged


def settings_from_mapping(
    section: Mapping[str, Any] | None, environ: Mapping[str, str] | None = None
) -> PluginSettings:
    """Validate a ``cache_plugin:`` section (plus env overrides). Raises :class:`SettingsError`."""
    if section is not None and not isinstance(section, Mapping):
        raise SettingsError(f"cache_plugin: must be a mapping of settings (got {type(section).__name__})")
    data = _merge(dict(section or {}), _env_overrides(os.environ if environ is None else environ))
    try:
        return PluginSettings.model_validate(data)
    except ValidationError as error:
        raise SettingsError(_describe(error)) from None


def load_settings(config_path: str | Path | None, environ: Mapping[str, str] | None = None) -> PluginSettings:
    """Read the ``cache_plugin:`` section of the proxy's config.yaml (missing file section = defaults)."""
    section: Any = None
    if config_path is not None:
        try:
            document = yaml.safe_load(Path(config_path).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as error:
            raise SettingsError(f"cache_plugin: cannot read {config_path}: {error}") from None
        if not isinstance(document, Mapping):
            raise SettingsError(f"cache_plugin: {config_path} is not a YAML mapping")
        section = document.get("cache_plugin")
    return settings_from_mapping(section, environ)
