"""The simulator's settings: its models (:class:`SimModel`), timing (:class:`SimulatorConfig`), the
bodies of its ``/_sim/*`` control requests, and model metadata derived from a model's name."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_HEX_RE = re.compile(r"^[0-9a-f]+$")
_PARAM_SIZE_RE = re.compile(r"(\d+(?:\.\d+)?)([bm])\b")


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def canonical_model_name(name: str) -> str:
    """Lookup key for a model name: Ollama treats a bare name as ``name:latest``, case-insensitively."""
    key = name.strip().lower()
    if ":" not in key.rsplit("/", 1)[-1]:
        key += ":latest"
    return key


def _default_digest(name: str) -> str:
    return hashlib.sha256(f"litellm-cache-plugin-simulator:{canonical_model_name(name)}".encode()).hexdigest()


def _normalise_digest(value: str) -> str:
    digest = value.strip().lower().removeprefix("sha256:").removeprefix("sha256-")
    if digest and not _HEX_RE.match(digest):
        raise ValueError("digest must be a hex string (optionally prefixed with 'sha256:')")
    return digest


class SimModel(BaseModel):
    """One simulated model, as ``ollama list`` would show it."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    kind: Literal["chat", "embed"] = "chat"
    # Empty means "derive from the name", so the same name always has the same digest.
    digest: str = ""
    modified_at: datetime = Field(default_factory=utc_now)

    @field_validator("digest")
    @classmethod
    def _check_digest(cls, value: str) -> str:
        return _normalise_digest(value)

    @model_validator(mode="after")
    def _fill_defaults(self) -> SimModel:
        if not self.digest:
            self.digest = _default_digest(self.name)
        if self.modified_at.tzinfo is None:
            self.modified_at = self.modified_at.replace(tzinfo=timezone.utc)
        return self

    @property
    def key(self) -> str:
        return canonical_model_name(self.name)

    @property
    def display_name(self) -> str:
        """The name as ``/api/tags`` lists it: always with a tag."""
        name = self.name.strip()
        return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


def _default_models() -> list[SimModel]:
    return [SimModel(name="llama3.2:1b", kind="chat"), SimModel(name="nomic-embed-text", kind="embed")]


class EquivalencePair(BaseModel):
    """Two prompts labelled as asking the same thing or not (one line of an equivalence file)."""

    model_config = ConfigDict(extra="forbid")

    a: str = Field(min_length=1)
    b: str = Field(min_length=1)
    label: Literal["same", "different"]


class SimJudge(BaseModel):
    """A judge for verified semantic matches (``layers.semantic.verify``): chat models named in
    ``models`` answer the plugin's judge question (``policy.verify.judge_messages``) with "yes" or
    "no" from labelled pairs, deterministically. Pairs come from ``equivalence_file`` (JSON lines
    ``{"a": ..., "b": ..., "label": "same" | "different"}``, or one JSON list of such objects) and
    ``pairs``; prompts are compared case- and whitespace-insensitively, in either order. A pair
    that is not labelled is answered ``unknown``.

    ``intent_answers``: every chat model answers prompts labelled "same" (transitively: one intent)
    alike, as if asked the first prompt of the intent, so that paraphrases get the same answer."""

    model_config = ConfigDict(extra="forbid")

    models: list[str] = Field(default_factory=lambda: ["judge:1b"])
    equivalence_file: str | None = None
    pairs: list[EquivalencePair] = Field(default_factory=list)
    unknown: Literal["yes", "no"] = "no"
    intent_answers: bool = False


class SimulatorConfig(BaseModel):
    """Models and timing of a simulator instance."""

    model_config = ConfigDict(extra="forbid")

    models: list[SimModel] = Field(default_factory=_default_models)
    latency_ms: float = Field(default=50.0, ge=0)
    tokens_per_second: float = Field(default=200.0, gt=0)
    prompt_tokens_per_second: float = Field(default=2000.0, gt=0)
    default_answer_tokens: int = Field(default=24, ge=1)
    parallel: int = Field(default=4, ge=1)
    embedding_dim: int = Field(default=256, ge=2, le=65536)
    prefix_cache_slots: int = Field(default=8, ge=0)
    # A judge model answering from labelled pairs (None: no judge; its models must be in ``models``).
    judge: SimJudge | None = None

    @field_validator("models")
    @classmethod
    def _unique_names(cls, models: list[SimModel]) -> list[SimModel]:
        seen: set[str] = set()
        for model in models:
            if model.key in seen:
                raise ValueError(f"duplicate model name {model.name!r}")
            seen.add(model.key)
        return models


class ConfigPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    latency_ms: float | None = Field(default=None, ge=0)
    tokens_per_second: float | None = Field(default=None, gt=0)
    prompt_tokens_per_second: float | None = Field(default=None, gt=0)
    default_answer_tokens: int | None = Field(default=None, ge=1)


def _default_fail_endpoints() -> list[Literal["chat", "generate", "embed"]]:
    return ["chat", "generate"]


class FailPlan(BaseModel):
    model_config = ConfigDict(extra="forbid")

    count: int = Field(default=1, ge=0)
    status: int = Field(default=500, ge=400, le=599)
    mode: Literal["error", "cut"] = "error"
    endpoints: list[Literal["chat", "generate", "embed"]] = Field(default_factory=_default_fail_endpoints)


class DigestChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1)
    digest: str | None = None

    @field_validator("digest")
    @classmethod
    def _check_digest(cls, value: str | None) -> str | None:
        return None if value is None else _normalise_digest(value) or None


# --------------------------------------------------------------------------- model metadata


@dataclass(frozen=True)
class ModelMeta:
    family: str
    parameter_size: str
    parameter_count: int
    quantization_level: str
    size: int
    context_length: int
    embedding_length: int


def model_meta(model: SimModel, embedding_dim: int) -> ModelMeta:
    """Plausible ``details``/``model_info`` values derived from the name, for clients that read them."""
    base = model.key.rsplit("/", 1)[-1]
    stem, _, tag = base.partition(":")
    if model.kind == "embed":
        family = "nomic-bert" if "nomic" in stem else "bert"
    else:
        letters = re.match(r"[a-z]+", stem)
        family = letters.group(0) if letters else "llama"
    match = _PARAM_SIZE_RE.search(tag) or _PARAM_SIZE_RE.search(stem)
    if match:
        number, unit = float(match.group(1)), match.group(2)
        parameter_size = f"{match.group(1)}{unit.upper()}"
        parameter_count = int(number * (1e9 if unit == "b" else 1e6))
    elif model.kind == "embed":
        parameter_size, parameter_count = "137M", 136_727_040
    else:
        parameter_size, parameter_count = "3.2B", 3_212_749_888
    if model.kind == "embed":
        quantization, size = "F16", parameter_count * 2
        context_length, embedding_length = 2048, embedding_dim
    else:
        # Q4_K_M is ~4.8 bits per weight.
        quantization, size = "Q4_K_M", parameter_count * 6 // 10
        context_length, embedding_length = 131072, 2048
    return ModelMeta(
        family=family,
        parameter_size=parameter_size,
        parameter_count=parameter_count,
        quantization_level=quantization,
        size=size,
        context_length=context_length,
        embedding_length=embedding_length,
    )


CHAT_TEMPLATE = (
    "{{- if or .System .Tools }}<|start_header_id|>system<|end_header_id|>\n\n"
    "{{ .System }}{{- if .Tools }}\nYou have access to the following tools: {{ .Tools }}{{ end }}"
    "<|eot_id|>{{ end }}{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n"
    "{{ .Content }}<|eot_id|>{{ end }}<|start_header_id|>assistant<|end_header_id|>\n\n"
)
EMBED_TEMPLATE = "{{ .Prompt }}"
