"""An Ollama-compatible HTTP server that simulates models instead of running them.

The demo, the end-to-end tests and the benchmarks point LiteLLM's ``ollama`` and
``ollama_chat`` providers at it when no real Ollama is around, so it speaks the same
JSON (and NDJSON streams) as Ollama's HTTP API, takes real time to answer, and
models the two server behaviours a response cache interacts with: limited
parallelism per model and llama.cpp's KV prefix cache.

Answers are synthetic text; ``/_sim/*`` endpoints expose counters and let tests
inject failures, change timing or simulate a re-pulled model.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import os
import re
import socket
import struct
import threading
import time
import zlib
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from typing import Any, Literal, TypeVar

import orjson
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

__all__ = [
    "SIMULATOR_KEY",
    "OllamaSimulator",
    "SimModel",
    "SimulatorConfig",
    "SimulatorThread",
    "bind_socket",
    "canonical_model_name",
    "create_app",
]

OLLAMA_VERSION = "0.12.6"
_LAST_CALLS_MAX = 200
_DEFAULT_KEEP_ALIVE = timedelta(minutes=5)
# What Ollama reports for keep_alive < 0 ("keep loaded forever").
_FOREVER = datetime(2318, 1, 1, tzinfo=timezone.utc)
_PIECE_RE = re.compile(r"\s*\S+")
_WORD_RE = re.compile(r"\w+")
_USER_TURN_RE = re.compile(r"^#{2,3} *User:", re.MULTILINE | re.IGNORECASE)
_NEXT_TURN_RE = re.compile(r"^#{2,3} *\w+:", re.MULTILINE)
_JSON_TOKEN_RE = re.compile(r"\w+|[^\w\s]")
_T = TypeVar("_T", bound=BaseModel)
_HEX_RE = re.compile(r"^[0-9a-f]+$")
_PARAM_SIZE_RE = re.compile(r"(\d+(?:\.\d+)?)([bm])\b")
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_FILLER_WORDS = (
    "the", "model", "considers", "context", "carefully", "and", "then", "explains", "each", "step",
    "with", "a", "short", "example", "so", "that", "answer", "stays", "clear", "while", "noting",
    "relevant", "details", "about", "input", "data", "before", "summarising", "result", "in", "plain",
    "terms", "for", "reader", "who", "asked", "question", "today", "using", "simple", "words",
    "where", "possible", "also", "mentions", "limits", "of", "approach",
)  # fmt: skip


# --------------------------------------------------------------------------- config


def _now() -> datetime:
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
    modified_at: datetime = Field(default_factory=_now)

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

    @field_validator("models")
    @classmethod
    def _unique_names(cls, models: list[SimModel]) -> list[SimModel]:
        seen: set[str] = set()
        for model in models:
            if model.key in seen:
                raise ValueError(f"duplicate model name {model.name!r}")
            seen.add(model.key)
        return models


class _ConfigPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    latency_ms: float | None = Field(default=None, ge=0)
    tokens_per_second: float | None = Field(default=None, gt=0)
    prompt_tokens_per_second: float | None = Field(default=None, gt=0)
    default_answer_tokens: int | None = Field(default=None, ge=1)


def _default_fail_endpoints() -> list[Literal["chat", "generate", "embed"]]:
    return ["chat", "generate"]


class _FailPlan(BaseModel):
    model_config = ConfigDict(extra="forbid")

    count: int = Field(default=1, ge=0)
    status: int = Field(default=500, ge=400, le=599)
    mode: Literal["error", "cut"] = "error"
    endpoints: list[Literal["chat", "generate", "embed"]] = Field(default_factory=_default_fail_endpoints)


class _DigestChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1)
    digest: str | None = None

    @field_validator("digest")
    @classmethod
    def _check_digest(cls, value: str | None) -> str | None:
        return None if value is None else _normalise_digest(value) or None


# --------------------------------------------------------------------------- model metadata


@dataclass(frozen=True)
class _ModelMeta:
    family: str
    parameter_size: str
    parameter_count: int
    quantization_level: str
    size: int
    context_length: int
    embedding_length: int


def _model_meta(model: SimModel, embedding_dim: int) -> _ModelMeta:
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
    return _ModelMeta(
        family=family,
        parameter_size=parameter_size,
        parameter_count=parameter_count,
        quantization_level=quantization,
        size=size,
        context_length=context_length,
        embedding_length=embedding_length,
    )


_CHAT_TEMPLATE = (
    "{{- if or .System .Tools }}<|start_header_id|>system<|end_header_id|>\n\n"
    "{{ .System }}{{- if .Tools }}\nYou have access to the following tools: {{ .Tools }}{{ end }}"
    "<|eot_id|>{{ end }}{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n"
    "{{ .Content }}<|eot_id|>{{ end }}<|start_header_id|>assistant<|end_header_id|>\n\n"
)
_EMBED_TEMPLATE = "{{ .Prompt }}"


# --------------------------------------------------------------------------- runtime state


class _ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class _ModelRuntime:
    spec: SimModel
    semaphore: asyncio.Semaphore
    # Rendered token sequences (prompt + answer) held in KV-cache slots, least recently used first.
    prefix_cache: OrderedDict[tuple[str, ...], None] = field(default_factory=OrderedDict)
    expires_at: datetime | None = None


@dataclass
class _Failure:
    remaining: int
    status: int
    mode: str
    endpoints: frozenset[str]


@dataclass(frozen=True)
class _GenOptions:
    temperature: float | None
    seed: int | None
    num_predict: int | None
    stop: tuple[str, ...]
    raw: dict[str, Any]


@dataclass(frozen=True)
class _Answer:
    pieces: list[str]  # streamed content pieces, each a word with its leading whitespace
    tool_calls: list[dict[str, Any]] | None
    eval_count: int
    done_reason: str
    cache_tokens: tuple[str, ...]  # how the answer extends the KV cache for a follow-up turn


def _empty_requests() -> dict[str, int]:
    return {"chat": 0, "generate": 0, "embed": 0, "embed_inputs": 0, "tags": 0, "show": 0}


def _created_at() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _json_response(payload: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=orjson.dumps(payload), status=status, content_type="application/json", charset="utf-8"
    )


def _canonical_json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def _json_tokens(value: Any) -> list[str]:
    """Tokens of a JSON value: words and punctuation, roughly as a BPE tokenizer splits JSON."""
    return _JSON_TOKEN_RE.findall(_canonical_json(value))


def _pieces(text: str) -> list[str]:
    return _PIECE_RE.findall(text)


def _ns(seconds: float) -> int:
    return max(0, int(seconds * 1e9))


async def _read_body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        raise _ApiError(400, "missing request body")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _ApiError(400, f"invalid JSON in request body: {exc}") from None
    if not isinstance(data, dict):
        raise _ApiError(400, "request body must be a JSON object")
    return data


def _require_model(body: dict[str, Any]) -> str:
    name = body.get("model") or body.get("name")  # "name" is the older spelling, still sent by LiteLLM
    if not isinstance(name, str) or not name.strip():
        raise _ApiError(400, "model is required")
    return name


def _stream_flag(body: dict[str, Any]) -> bool:
    # Ollama streams unless told otherwise.
    value = body.get("stream")
    return True if value is None else bool(value)


def _parse_options(body: dict[str, Any]) -> _GenOptions:
    raw = body.get("options")
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise _ApiError(400, "options must be a JSON object")

    def number(key: str) -> float | None:
        value = raw.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _ApiError(400, f'option "{key}" must be of type number')
        return float(value)

    temperature = number("temperature")
    seed_value = number("seed")
    # llama.cpp reads a negative seed as "pick one at random".
    seed = int(seed_value) if seed_value is not None and seed_value >= 0 else None
    predict_value = number("num_predict")
    # -1 (unbounded) and -2 (fill the context) fall back to the natural answer length.
    num_predict = int(predict_value) if predict_value is not None and predict_value > 0 else None
    stop_raw = raw.get("stop")
    if stop_raw is None:
        stop: tuple[str, ...] = ()
    elif isinstance(stop_raw, str):
        stop = (stop_raw,) if stop_raw else ()
    elif isinstance(stop_raw, list) and all(isinstance(s, str) for s in stop_raw):
        stop = tuple(s for s in stop_raw if s)
    else:
        raise _ApiError(400, 'option "stop" must be a string or a list of strings')
    return _GenOptions(temperature=temperature, seed=seed, num_predict=num_predict, stop=stop, raw=raw)


def _last_user_turn(prompt: str) -> str:
    """The user's words in a chat flattened into one prompt (LiteLLM renders "### User:" sections)."""
    parts = _USER_TURN_RE.split(prompt)
    if len(parts) == 1:
        return prompt
    return _NEXT_TURN_RE.split(parts[-1], maxsplit=1)[0]


def _parse_keep_alive(value: Any) -> timedelta | None:
    """Seconds or a Go duration string; ``None`` means keep forever."""
    if value is None:
        return _DEFAULT_KEEP_ALIVE
    seconds: float
    if isinstance(value, bool):
        return _DEFAULT_KEEP_ALIVE
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        negative = text.startswith("-")
        text = text.lstrip("+-")
        try:
            seconds = float(text)
        except ValueError:
            parts = _DURATION_RE.findall(text)
            if not parts or "".join(n + u for n, u in parts) != text:
                raise _ApiError(400, f"invalid keep_alive duration {value!r}") from None
            seconds = sum(float(n) * _DURATION_UNITS[u] for n, u in parts)
        if negative:
            seconds = -seconds
    else:
        raise _ApiError(400, "keep_alive must be a number or a duration string")
    return None if seconds < 0 else timedelta(seconds=seconds)


def _hash_unit_vector(key: str, dim: int) -> list[float]:
    raw = hashlib.shake_256(key.encode()).digest(4 * dim)
    values = [(u / 2147483648.0) - 1.0 for u in struct.unpack(f"<{dim}I", raw)]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


@lru_cache(maxsize=65536)
def _word_vector(model_key: str, digest: str, word: str, dim: int) -> tuple[float, ...]:
    return tuple(_hash_unit_vector(f"{model_key}\0{digest}\0word\0{word}", dim))


def _embedding(model_key: str, digest: str, text: str, dim: int) -> list[float]:
    """Deterministic unit vector for ``text``.

    A bag-of-words part makes texts sharing words land close together (like a real
    embedding model, so similarity search behaves sensibly), and a whole-text part
    keeps different spellings of the same words distinct but near.
    """
    acc = [0.0] * dim
    for word in _WORD_RE.findall(text.lower()):
        for i, v in enumerate(_word_vector(model_key, digest, word, dim)):
            acc[i] += v
    norm = math.sqrt(sum(v * v for v in acc))
    if norm:
        acc = [v / norm for v in acc]
    whole = _hash_unit_vector(f"{model_key}\0{digest}\0text\0{text}", dim)
    mixed = [a + 0.2 * w for a, w in zip(acc, whole, strict=True)]
    norm = math.sqrt(sum(v * v for v in mixed)) or 1.0
    return [v / norm for v in mixed]


def _fill_schema(schema: Any, seed: bytes, depth: int = 0) -> Any:
    """A value that satisfies the common parts of a JSON schema (structured outputs / tool args)."""
    if not isinstance(schema, dict) or depth > 8:
        return None
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    number = int.from_bytes(hashlib.sha256(seed + str(depth).encode()).digest()[:4], "big")
    if kind == "object" or "properties" in schema:
        props = schema.get("properties")
        if not isinstance(props, dict):
            return {}
        return {
            name: _fill_schema(sub, seed + name.encode(), depth + 1) for name, sub in sorted(props.items())
        }
    if kind == "array":
        items = schema.get("items")
        return [_fill_schema(items, seed, depth + 1)] if isinstance(items, dict) else []
    if kind == "integer":
        return number % 100
    if kind == "number":
        return (number % 1000) / 10
    if kind == "boolean":
        return number % 2 == 0
    if kind == "null":
        return None
    return f"sim-{seed.hex()[:6]}"


def bind_socket(host: str, port: int) -> socket.socket:
    """A bound, non-blocking listening-ready TCP socket; binding up front tells us the port for port=0."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, sock_type, proto, _, address = infos[0]
    sock = socket.socket(family, sock_type, proto)
    try:
        if os.name != "nt":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def url_for(host: str, port: int) -> str:
    """A URL a local client can connect to (wildcard addresses are not connectable everywhere)."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


# --------------------------------------------------------------------------- the simulator


_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _error_middleware(request: web.Request, handler: _Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except _ApiError as exc:
        return _json_response({"error": exc.message}, status=exc.status)


class OllamaSimulator:
    """State and request handlers of one simulator instance (one per app)."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config.model_copy(deep=True)
        self.models: dict[str, _ModelRuntime] = {
            m.key: _ModelRuntime(spec=m, semaphore=asyncio.Semaphore(self.config.parallel))
            for m in self.config.models
        }
        self.requests = _empty_requests()
        self.prompt_tokens = 0
        self.prompt_tokens_reused = 0
        # Prompt-evaluation time spent, and the time the reused prefix tokens would have taken.
        self.prompt_eval_seconds = 0.0
        self.prompt_eval_seconds_saved = 0.0
        self.last_calls: deque[dict[str, Any]] = deque(maxlen=_LAST_CALLS_MAX)
        self.failure: _Failure | None = None

    # ----------------------------------------------------------------- helpers

    def _resolve(self, name: str) -> _ModelRuntime:
        runtime = self.models.get(canonical_model_name(name))
        if runtime is None:
            raise _ApiError(404, f'model "{name}" not found, try pulling it first')
        return runtime

    def _take_failure(self, endpoint: str) -> _Failure | None:
        plan = self.failure
        if plan is None or plan.remaining <= 0 or endpoint not in plan.endpoints:
            return None
        plan.remaining -= 1
        if plan.remaining == 0:
            self.failure = None
        return plan

    def _details(self, model: SimModel) -> dict[str, Any]:
        meta = _model_meta(model, self.config.embedding_dim)
        return {
            "parent_model": "",
            "format": "gguf",
            "family": meta.family,
            "families": [meta.family],
            "parameter_size": meta.parameter_size,
            "quantization_level": meta.quantization_level,
        }

    def _use_prefix_cache(
        self, runtime: _ModelRuntime, prompt: tuple[str, ...], answer: tuple[str, ...]
    ) -> int:
        """Prompt tokens served from the KV cache; also stores this prompt+answer in a slot."""
        best = 0
        for cached in runtime.prefix_cache:
            limit = min(len(cached), len(prompt))
            i = 0
            while i < limit and cached[i] == prompt[i]:
                i += 1
            best = max(best, i)
        # llama.cpp always re-evaluates at least the last prompt token to get fresh logits.
        reused = min(best, len(prompt) - 1) if prompt else 0
        slots = self.config.prefix_cache_slots
        if slots > 0:
            entry = prompt + answer
            runtime.prefix_cache.pop(entry, None)
            runtime.prefix_cache[entry] = None
            while len(runtime.prefix_cache) > slots:
                runtime.prefix_cache.popitem(last=False)
        return reused

    def _touch(self, runtime: _ModelRuntime, keep_alive: timedelta | None) -> None:
        runtime.expires_at = _FOREVER if keep_alive is None else _now() + keep_alive

    def _record(self, summary: dict[str, Any]) -> dict[str, Any]:
        self.last_calls.append(summary)
        return summary

    def _compose_answer(
        self,
        runtime: _ModelRuntime,
        prompt: tuple[str, ...],
        question: str,
        options: _GenOptions,
        fmt: Any,
        tool: dict[str, Any] | None,
    ) -> _Answer:
        spec = runtime.spec
        # Greedy decoding (temperature 0) ignores the seed; otherwise a seed pins the sampler.
        deterministic = options.temperature == 0 or options.seed is not None
        seed = None if options.temperature == 0 else options.seed
        material = [
            spec.key,
            spec.digest,
            "\x1f".join(prompt),
            repr(seed),
            repr(options.num_predict),
            _canonical_json(fmt) if fmt else "",
        ]
        if not deterministic:
            # Ollama samples at temperature 0.8 by default, so repeated calls differ.
            material.append(os.urandom(16).hex())
        digest = hashlib.sha256("\x1e".join(material).encode()).digest()
        answer_id = digest.hex()[:6]

        if tool is not None:
            nested = tool.get("function")
            function: dict[str, Any] = nested if isinstance(nested, dict) else tool
            name = str(function.get("name") or "tool")
            params = function.get("parameters")
            arguments = _fill_schema(params, digest) if isinstance(params, dict) else {}
            calls = [
                {"function": {"name": name, "arguments": arguments if isinstance(arguments, dict) else {}}}
            ]
            tokens = ("<|tool_calls|>", *_json_tokens(calls))
            return _Answer(
                pieces=[], tool_calls=calls, eval_count=len(tokens), done_reason="stop", cache_tokens=tokens
            )

        snippet = " ".join(question.split())
        if len(snippet) > 60:
            snippet = snippet[:60].rstrip()
        header = (
            f"Simulated answer {answer_id} to: {snippet} …" if snippet else f"Simulated answer {answer_id} …"
        )
        done_reason = "stop"
        if fmt:
            value = (
                _fill_schema(fmt, digest)
                if isinstance(fmt, dict)
                else {"answer": header.removesuffix(" …").removesuffix("…").rstrip()}
            )
            pieces = _pieces(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())
        else:
            pieces = _pieces(header)
            target = options.num_predict or self.config.default_answer_tokens
            missing = max(0, target - len(pieces))
            if missing:
                picks = hashlib.shake_256(digest + b"filler").digest(2 * missing)
                words = struct.unpack(f">{missing}H", picks)
                pieces += [" " + _FILLER_WORDS[w % len(_FILLER_WORDS)] for w in words]
        if options.num_predict is not None and len(pieces) >= options.num_predict:
            # The answer ran into the num_predict limit (plain answers are padded up to it).
            pieces = pieces[: options.num_predict]
            done_reason = "length"
        if options.stop:
            text = "".join(pieces)
            cut = min((i for i in (text.find(s) for s in options.stop) if i >= 0), default=-1)
            if cut >= 0:
                pieces = _pieces(text[:cut])
                done_reason = "stop"
        text_tokens = tuple("".join(pieces).split())
        return _Answer(
            pieces=pieces,
            tool_calls=None,
            eval_count=len(pieces),
            done_reason=done_reason,
            cache_tokens=text_tokens,
        )

    # ----------------------------------------------------------------- generation

    async def _generate(
        self,
        request: web.Request,
        *,
        started: float,
        endpoint: Literal["chat", "generate"],
        runtime: _ModelRuntime,
        model_field: str,
        stream: bool,
        prompt: tuple[str, ...],
        answer: _Answer,
        keep_alive: timedelta | None,
        summary: dict[str, Any],
        extra_final: dict[str, Any],
    ) -> web.StreamResponse:
        failure = self._take_failure(endpoint)
        if failure is not None:
            summary["fail"] = failure.mode
            if failure.mode == "error":
                return _json_response({"error": "simulated failure"}, status=failure.status)

        async with runtime.semaphore:
            # Timing is read once so a /_sim/config change never splits one request.
            cfg = self.config
            reused = self._use_prefix_cache(runtime, prompt, answer.cache_tokens)
            prompt_eval_count = max(1, len(prompt) - reused)
            self.prompt_tokens += len(prompt)
            self.prompt_tokens_reused += len(prompt) - prompt_eval_count
            summary["prompt_eval_count"] = prompt_eval_count
            summary["eval_count"] = answer.eval_count
            prompt_seconds = prompt_eval_count / cfg.prompt_tokens_per_second
            self.prompt_eval_seconds += prompt_seconds
            self.prompt_eval_seconds_saved += (len(prompt) - prompt_eval_count) / cfg.prompt_tokens_per_second
            eval_seconds = answer.eval_count / cfg.tokens_per_second

            await asyncio.sleep(cfg.latency_ms / 1000)
            # Like Ollama, load_duration covers everything before evaluation starts, queueing included.
            load_ns = _ns(time.perf_counter() - started)

            def final(content: bool) -> dict[str, Any]:
                body: dict[str, Any] = {"model": model_field, "created_at": _created_at()}
                text = "".join(answer.pieces) if content else ""
                if endpoint == "chat":
                    message: dict[str, Any] = {"role": "assistant", "content": text}
                    if content and answer.tool_calls is not None:
                        message["tool_calls"] = answer.tool_calls
                    body["message"] = message
                else:
                    body["response"] = text
                body.update(
                    done=True,
                    done_reason=answer.done_reason,
                    total_duration=_ns(time.perf_counter() - started),
                    load_duration=load_ns,
                    prompt_eval_count=prompt_eval_count,
                    prompt_eval_duration=_ns(prompt_seconds),
                    eval_count=answer.eval_count,
                    eval_duration=_ns(eval_seconds),
                )
                body.update(extra_final)
                # What this answer reported, so that tests can sum the compute a cache saved.
                summary["total_duration"] = body["total_duration"]
                return body

            if not stream:
                await asyncio.sleep(prompt_seconds + eval_seconds)
                self._touch(runtime, keep_alive)
                if failure is not None:  # mode "cut": the server dies before answering
                    return self._drop(request)
                return _json_response(final(content=True))

            response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
            await response.prepare(request)
            try:
                await asyncio.sleep(prompt_seconds)
                chunks = self._stream_chunks(endpoint, model_field, answer)
                cut_at = len(chunks) // 2 if failure is not None else None
                per_chunk = eval_seconds / max(1, len(chunks))
                eval_start = time.perf_counter()
                for i, chunk in enumerate(chunks):
                    if i == cut_at:
                        return self._drop(request, response)
                    # Deadline-based pacing keeps the total close to eval_seconds despite sleep jitter.
                    delay = eval_start + (i + 1) * per_chunk - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    chunk["created_at"] = _created_at()
                    await response.write(orjson.dumps(chunk) + b"\n")
                if cut_at is not None:
                    return self._drop(request, response)
                await response.write(orjson.dumps(final(content=False)) + b"\n")
                await response.write_eof()
            except ConnectionError:
                # The client went away mid-stream; nothing left to send it.
                pass
            finally:
                self._touch(runtime, keep_alive)
            return response

    def _stream_chunks(self, endpoint: str, model_field: str, answer: _Answer) -> list[dict[str, Any]]:
        def chunk(content: str, tool_calls: list[dict[str, Any]] | None = None) -> dict[str, Any]:
            body: dict[str, Any] = {"model": model_field, "created_at": ""}
            if endpoint == "chat":
                message: dict[str, Any] = {"role": "assistant", "content": content}
                if tool_calls is not None:
                    message["tool_calls"] = tool_calls
                body["message"] = message
            else:
                body["response"] = content
            body["done"] = False
            return body

        if answer.tool_calls is not None:
            # Ollama emits a parsed tool call as one chunk rather than token by token.
            return [chunk("", answer.tool_calls)]
        return [chunk(piece) for piece in answer.pieces]

    @staticmethod
    def _drop(request: web.Request, response: web.StreamResponse | None = None) -> web.StreamResponse:
        """Close the connection without finishing the response, like a crashed server would."""
        if request.transport is not None:
            request.transport.close()
        return response if response is not None else web.Response()

    def _load_reply(self, endpoint: str, model_field: str, keep_alive: timedelta | None) -> web.Response:
        # An empty prompt only loads (or, with keep_alive 0, unloads) the model.
        unload = keep_alive is not None and keep_alive.total_seconds() == 0
        body: dict[str, Any] = {"model": model_field, "created_at": _created_at()}
        if endpoint == "chat":
            body["message"] = {"role": "assistant", "content": ""}
        else:
            body["response"] = ""
        body.update(done_reason="unload" if unload else "load", done=True)
        return _json_response(body)

    # ----------------------------------------------------------------- Ollama API

    async def handle_root(self, request: web.Request) -> web.StreamResponse:
        return web.Response(text="Ollama is running")

    async def handle_version(self, request: web.Request) -> web.StreamResponse:
        return _json_response({"version": OLLAMA_VERSION})

    async def handle_chat(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        body = await _read_body(request)
        name = _require_model(body)
        runtime = self._resolve(name)
        if runtime.spec.kind != "chat":
            raise _ApiError(400, f'"{name}" does not support chat')
        messages = body.get("messages") or []
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            raise _ApiError(400, "messages must be a list of objects")
        tools = body.get("tools") or []
        if not isinstance(tools, list):
            raise _ApiError(400, "tools must be a list")
        options = _parse_options(body)
        keep_alive = _parse_keep_alive(body.get("keep_alive"))
        stream = _stream_flag(body)
        fmt = body.get("format") or None

        prompt: list[str] = []
        if tools:
            prompt += ["<|tools|>", *_json_tokens(tools)]
        question = ""
        for message in messages:
            role = message.get("role")
            content = message.get("content")
            if not isinstance(role, str) or not role:
                raise _ApiError(400, "message role is required")
            if content is None:
                content = ""
            if not isinstance(content, str):
                raise _ApiError(400, "message content must be a string")
            prompt += [f"<|{role}|>", *content.split()]
            images = message.get("images")
            if isinstance(images, list):
                prompt += ["<|image|>"] * len(images)
            if message.get("tool_calls"):
                prompt += ["<|tool_calls|>", *_json_tokens(message["tool_calls"])]
            if role == "user":
                question = content
        self.requests["chat"] += 1
        if not messages:
            self._touch(runtime, keep_alive)
            return self._load_reply("chat", name, keep_alive)
        prompt.append("<|assistant|>")
        prompt_tokens = tuple(prompt)

        # Tool-capable models answer a user turn with a call to the first offered tool.
        wants_tool = bool(tools) and messages[-1].get("role") == "user" and isinstance(tools[0], dict)
        answer = self._compose_answer(
            runtime, prompt_tokens, question, options, fmt, tools[0] if wants_tool else None
        )
        summary = self._record(
            {
                "endpoint": "chat",
                "model": name,
                "stream": stream,
                "n_inputs": 1,
                "inputs": [question],
                "prompt_tokens": len(prompt_tokens),
                "prompt_eval_count": None,
                "eval_count": None,
                "options": options.raw,
            }
        )
        return await self._generate(
            request,
            started=started,
            endpoint="chat",
            runtime=runtime,
            model_field=name,
            stream=stream,
            prompt=prompt_tokens,
            answer=answer,
            keep_alive=keep_alive,
            summary=summary,
            extra_final={},
        )

    async def handle_generate(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        body = await _read_body(request)
        name = _require_model(body)
        runtime = self._resolve(name)
        if runtime.spec.kind != "chat":
            raise _ApiError(400, f'"{name}" does not support generate')
        prompt_text = body.get("prompt") or ""
        system = body.get("system") or ""
        if not isinstance(prompt_text, str) or not isinstance(system, str):
            raise _ApiError(400, "prompt and system must be strings")
        raw = bool(body.get("raw"))
        options = _parse_options(body)
        keep_alive = _parse_keep_alive(body.get("keep_alive"))
        stream = _stream_flag(body)
        fmt = body.get("format") or None
        images = body.get("images")
        n_images = len(images) if isinstance(images, list) else 0
        self.requests["generate"] += 1
        if not prompt_text and not n_images:
            self._touch(runtime, keep_alive)
            return self._load_reply("generate", name, keep_alive)

        if raw:
            # Raw mode bypasses the template: the prompt is used exactly as sent.
            prompt = prompt_text.split()
        else:
            prompt = ["<|system|>", *system.split()] if system else []
            prompt += ["<|user|>", *prompt_text.split(), *(["<|image|>"] * n_images), "<|assistant|>"]
        prompt_tokens = tuple(prompt) or ("<|bos|>",)
        answer = self._compose_answer(
            runtime, prompt_tokens, _last_user_turn(prompt_text), options, fmt, None
        )
        extra: dict[str, Any] = {}
        if not raw:
            # The deprecated conversation "context": token ids of prompt and answer.
            extra["context"] = [zlib.crc32(t.encode()) % 128256 for t in prompt_tokens + answer.cache_tokens]
        summary = self._record(
            {
                "endpoint": "generate",
                "model": name,
                "stream": stream,
                "n_inputs": 1,
                "inputs": [prompt_text],
                "prompt_tokens": len(prompt_tokens),
                "prompt_eval_count": None,
                "eval_count": None,
                "options": options.raw,
            }
        )
        return await self._generate(
            request,
            started=started,
            endpoint="generate",
            runtime=runtime,
            model_field=name,
            stream=stream,
            prompt=prompt_tokens,
            answer=answer,
            keep_alive=keep_alive,
            summary=summary,
            extra_final=extra,
        )

    async def _embed_vectors(
        self,
        request: web.Request,
        *,
        endpoint: str,
        name: str,
        texts: list[str],
        truncate: bool,
        dimensions: int | None,
        keep_alive: timedelta | None,
        options: dict[str, Any],
    ) -> tuple[list[list[float]], int, int, int]:
        """Vectors, prompt token count, load_duration and total_duration (ns) for an embed call."""
        started = time.perf_counter()
        runtime = self._resolve(name)
        spec = runtime.spec
        context_length = _model_meta(spec, self.config.embedding_dim).context_length
        token_lists: list[list[str]] = []
        for text in texts:
            words = text.split()
            if len(words) > context_length:
                if not truncate:
                    raise _ApiError(400, "input length exceeds maximum context length")
                words = words[:context_length]
            token_lists.append(words)
        self.requests["embed"] += 1
        self.requests["embed_inputs"] += len(texts)
        prompt_eval_count = sum(max(1, len(words)) for words in token_lists) if texts else 0
        summary = self._record(
            {
                "endpoint": endpoint,
                "model": name,
                "stream": False,
                "n_inputs": len(texts),
                "inputs": list(texts),
                "prompt_tokens": prompt_eval_count,
                "prompt_eval_count": prompt_eval_count,
                "eval_count": 0,
                "options": options,
            }
        )
        failure = self._take_failure("embed")
        if failure is not None:
            summary["fail"] = failure.mode
            if failure.mode == "error":
                raise _ApiError(failure.status, "simulated failure")
        dim = self.config.embedding_dim
        async with runtime.semaphore:
            cfg = self.config
            await asyncio.sleep(cfg.latency_ms / 1000)
            load_ns = _ns(time.perf_counter() - started)
            await asyncio.sleep(prompt_eval_count / cfg.prompt_tokens_per_second)
            vectors: list[list[float]] = []
            for text, words in zip(texts, token_lists, strict=True):
                source = text if len(words) == len(text.split()) else " ".join(words)
                vector = _embedding(spec.key, spec.digest, source, dim)
                if dimensions is not None and dimensions < dim:
                    vector = vector[:dimensions]
                    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
                    vector = [v / norm for v in vector]
                vectors.append(vector)
            self._touch(runtime, keep_alive)
            if failure is not None:
                self._drop(request)
                raise _ApiError(failure.status, "simulated failure")
        return vectors, prompt_eval_count, load_ns, _ns(time.perf_counter() - started)

    async def handle_embed(self, request: web.Request) -> web.StreamResponse:
        body = await _read_body(request)
        name = _require_model(body)
        self._resolve(name)
        raw_input = body.get("input")
        if raw_input is None or raw_input == "":
            texts: list[str] = []
        elif isinstance(raw_input, str):
            texts = [raw_input]
        elif isinstance(raw_input, list) and all(isinstance(t, str) for t in raw_input):
            texts = list(raw_input)
        else:
            raise _ApiError(400, "invalid input type: input must be a string or a list of strings")
        dimensions = body.get("dimensions")
        if dimensions is not None and (
            isinstance(dimensions, bool) or not isinstance(dimensions, int) or dimensions < 1
        ):
            raise _ApiError(400, "dimensions must be a positive integer")
        options = body.get("options") if isinstance(body.get("options"), dict) else {}
        vectors, count, load_ns, total_ns = await self._embed_vectors(
            request,
            endpoint="embed",
            name=name,
            texts=texts,
            truncate=body.get("truncate", True) is not False,
            dimensions=dimensions,
            keep_alive=_parse_keep_alive(body.get("keep_alive")),
            options=options or {},
        )
        return _json_response(
            {
                "model": name,
                "embeddings": vectors,
                "total_duration": total_ns,
                "load_duration": load_ns,
                "prompt_eval_count": count,
            }
        )

    async def handle_embeddings(self, request: web.Request) -> web.StreamResponse:
        """The legacy single-prompt endpoint."""
        body = await _read_body(request)
        name = _require_model(body)
        self._resolve(name)
        prompt = body.get("prompt") or ""
        if not isinstance(prompt, str):
            raise _ApiError(400, "prompt must be a string")
        options = body.get("options") if isinstance(body.get("options"), dict) else {}
        vectors, _, _, _ = await self._embed_vectors(
            request,
            endpoint="embeddings",
            name=name,
            texts=[prompt] if prompt else [],
            truncate=True,
            dimensions=None,
            keep_alive=_parse_keep_alive(body.get("keep_alive")),
            options=options or {},
        )
        return _json_response({"embedding": vectors[0] if vectors else []})

    async def handle_tags(self, request: web.Request) -> web.StreamResponse:
        self.requests["tags"] += 1
        models = []
        for runtime in self.models.values():
            spec = runtime.spec
            models.append(
                {
                    "name": spec.display_name,
                    "model": spec.display_name,
                    "modified_at": spec.modified_at.isoformat(),
                    "size": _model_meta(spec, self.config.embedding_dim).size,
                    "digest": spec.digest,
                    "details": self._details(spec),
                }
            )
        return _json_response({"models": models})

    async def handle_show(self, request: web.Request) -> web.StreamResponse:
        body = await _read_body(request)
        name = _require_model(body)
        spec = self._resolve(name).spec
        self.requests["show"] += 1
        meta = _model_meta(spec, self.config.embedding_dim)
        # Real Ollama shows no digest here; the blob path in the Modelfile changes on a re-pull instead.
        blob = hashlib.sha256(f"blob:{spec.digest}".encode()).hexdigest()
        template = _CHAT_TEMPLATE if spec.kind == "chat" else _EMBED_TEMPLATE
        parameters = 'stop                           "<|eot_id|>"' if spec.kind == "chat" else ""
        modelfile = (
            '# Modelfile generated by "ollama show"\n'
            "# To build a new Modelfile based on this one, replace the FROM line with:\n"
            f"# FROM {spec.display_name}\n\n"
            f"FROM /root/.ollama/models/blobs/sha256-{blob}\n"
            f'TEMPLATE """{template}"""\n'
        )
        if spec.kind == "chat":
            modelfile += 'PARAMETER stop "<|eot_id|>"\n'
        return _json_response(
            {
                "license": "Simulated model for testing; no weights, no license terms.",
                "modelfile": modelfile,
                "parameters": parameters,
                "template": template,
                "details": self._details(spec),
                "model_info": {
                    "general.architecture": meta.family,
                    "general.file_type": 15 if spec.kind == "chat" else 1,
                    "general.parameter_count": meta.parameter_count,
                    "general.quantization_version": 2,
                    f"{meta.family}.context_length": meta.context_length,
                    f"{meta.family}.embedding_length": meta.embedding_length,
                },
                "capabilities": ["completion", "tools"] if spec.kind == "chat" else ["embedding"],
                "modified_at": spec.modified_at.isoformat(),
            }
        )

    async def handle_ps(self, request: web.Request) -> web.StreamResponse:
        now = _now()
        models = []
        for runtime in self.models.values():
            if runtime.expires_at is None or runtime.expires_at <= now:
                continue
            spec = runtime.spec
            size = _model_meta(spec, self.config.embedding_dim).size
            models.append(
                {
                    "name": spec.display_name,
                    "model": spec.display_name,
                    "size": size,
                    "digest": spec.digest,
                    "details": self._details(spec),
                    "expires_at": runtime.expires_at.isoformat(),
                    "size_vram": size,
                }
            )
        return _json_response({"models": models})

    # ----------------------------------------------------------------- control endpoints

    def stats(self) -> dict[str, Any]:
        return {
            "requests": dict(self.requests),
            "prompt_tokens": self.prompt_tokens,
            "prompt_tokens_reused": self.prompt_tokens_reused,
            "prompt_eval_seconds": round(self.prompt_eval_seconds, 6),
            "prompt_eval_seconds_saved": round(self.prompt_eval_seconds_saved, 6),
            "last_calls": [dict(call) for call in self.last_calls],
        }

    def reset(self) -> None:
        self.requests = _empty_requests()
        self.prompt_tokens = 0
        self.prompt_tokens_reused = 0
        self.prompt_eval_seconds = 0.0
        self.prompt_eval_seconds_saved = 0.0
        self.last_calls.clear()
        self.failure = None
        for runtime in self.models.values():
            runtime.prefix_cache.clear()
            runtime.expires_at = None

    def set_digest(self, name: str, digest: str | None = None) -> SimModel:
        """Simulate a re-pull: new digest and modified_at, and a cold KV cache."""
        runtime = self._resolve(name)
        new_digest = digest or os.urandom(32).hex()
        runtime.spec = runtime.spec.model_copy(update={"digest": new_digest, "modified_at": _now()})
        runtime.prefix_cache.clear()
        return runtime.spec

    def _timing(self) -> dict[str, Any]:
        cfg = self.config
        return {
            "latency_ms": cfg.latency_ms,
            "tokens_per_second": cfg.tokens_per_second,
            "prompt_tokens_per_second": cfg.prompt_tokens_per_second,
            "default_answer_tokens": cfg.default_answer_tokens,
            "parallel": cfg.parallel,
        }

    async def handle_sim_stats(self, request: web.Request) -> web.StreamResponse:
        return _json_response(self.stats())

    async def handle_sim_reset(self, request: web.Request) -> web.StreamResponse:
        self.reset()
        return _json_response({"ok": True})

    async def handle_sim_digest(self, request: web.Request) -> web.StreamResponse:
        change = _validated(_DigestChange, await _read_body(request))
        spec = self.set_digest(change.model, change.digest)
        return _json_response(
            {"model": spec.display_name, "digest": spec.digest, "modified_at": spec.modified_at.isoformat()}
        )

    async def handle_sim_config_get(self, request: web.Request) -> web.StreamResponse:
        return _json_response(self._timing())

    async def handle_sim_config(self, request: web.Request) -> web.StreamResponse:
        patch = _validated(_ConfigPatch, await _read_body(request))
        self.config = self.config.model_copy(update=patch.model_dump(exclude_none=True))
        return _json_response(self._timing())

    async def handle_sim_fail(self, request: web.Request) -> web.StreamResponse:
        plan = _validated(_FailPlan, await _read_body(request))
        self.failure = (
            _Failure(plan.count, plan.status, plan.mode, frozenset(plan.endpoints)) if plan.count else None
        )
        return _json_response(plan.model_dump())


def _validated(model: type[_T], body: dict[str, Any]) -> _T:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        details = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()
        )
        raise _ApiError(400, details) from None


SIMULATOR_KEY: web.AppKey[OllamaSimulator] = web.AppKey("ollama_simulator", OllamaSimulator)


def create_app(config: SimulatorConfig | None = None) -> web.Application:
    """The simulator as an aiohttp application; its state is ``app[SIMULATOR_KEY]``."""
    sim = OllamaSimulator(config or SimulatorConfig())
    # Embedding batches can be large; Ollama itself has no small body limit.
    app = web.Application(middlewares=[_error_middleware], client_max_size=64 * 1024 * 1024)
    app[SIMULATOR_KEY] = sim
    routes = app.router
    routes.add_get("/", sim.handle_root)
    routes.add_get("/api/version", sim.handle_version)
    routes.add_post("/api/chat", sim.handle_chat)
    routes.add_post("/api/generate", sim.handle_generate)
    routes.add_post("/api/embed", sim.handle_embed)
    routes.add_post("/api/embeddings", sim.handle_embeddings)
    routes.add_get("/api/tags", sim.handle_tags)
    routes.add_post("/api/show", sim.handle_show)
    routes.add_get("/api/ps", sim.handle_ps)
    routes.add_get("/_sim/stats", sim.handle_sim_stats)
    routes.add_post("/_sim/reset", sim.handle_sim_reset)
    routes.add_post("/_sim/digest", sim.handle_sim_digest)
    routes.add_get("/_sim/config", sim.handle_sim_config_get)
    routes.add_post("/_sim/config", sim.handle_sim_config)
    routes.add_post("/_sim/fail", sim.handle_sim_fail)
    return app


# --------------------------------------------------------------------------- background thread


class SimulatorThread:
    """Runs a simulator on its own event loop in a daemon thread (for tests and benchmarks).

    Usable as a context manager or via ``start()``/``stop()``; ``url`` is known once started.
    """

    def __init__(self, config: SimulatorConfig | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.config = config or SimulatorConfig()
        self.host = host
        self._requested_port = port
        self.app = create_app(self.config)
        self._port: int | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def simulator(self) -> OllamaSimulator:
        return self.app[SIMULATOR_KEY]

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("simulator not started")
        return self._port

    @property
    def url(self) -> str:
        return url_for(self.host, self.port)

    def start(self, timeout: float = 10.0) -> SimulatorThread:
        if self._thread is not None or self._ready.is_set():
            # An aiohttp app is frozen by its first runner, so an instance serves once.
            raise RuntimeError("a SimulatorThread can only be started once")
        # Bound here so a busy port raises in the caller and port=0 resolves before we return.
        sock = bind_socket(self.host, self._requested_port)
        self._port = sock.getsockname()[1]
        self._thread = threading.Thread(
            target=self._run, args=(sock,), name=f"ollama-simulator-{self._port}", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("simulator did not start in time")
        if self._error is not None:
            raise RuntimeError("simulator failed to start") from self._error
        return self

    def _run(self, sock: socket.socket) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        runner = web.AppRunner(self.app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        try:
            loop.run_until_complete(runner.setup())
            loop.run_until_complete(web.SockSite(runner, sock).start())
        except BaseException as exc:
            self._error = exc
            sock.close()
            loop.close()
            self._ready.set()
            return
        self._loop = loop
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(runner.cleanup())
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def stop(self, timeout: float = 10.0) -> None:
        thread, loop = self._thread, self._loop
        if thread is None:
            return
        if loop is not None and thread.is_alive():
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        self._thread = None
        self._loop = None

    def __enter__(self) -> SimulatorThread:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
