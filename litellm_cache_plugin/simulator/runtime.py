"""The simulated models: their state (concurrency, KV prefix cache, keep-alive), how an answer and an
embedding are made up, and the counters ``/_sim/stats`` reports. No HTTP here (see ``handlers``)."""

from __future__ import annotations

import asyncio
import hashlib
import math
import os
import re
import struct
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from typing import Any

import orjson

from litellm_cache_plugin.simulator.config import (
    SimModel,
    SimulatorConfig,
    canonical_model_name,
    model_meta,
    utc_now,
)
from litellm_cache_plugin.simulator.judge import judges
from litellm_cache_plugin.simulator.parsing import (
    ApiError,
    GenOptions,
    canonical_json,
    json_tokens,
    split_pieces,
)

_LAST_CALLS_MAX = 200
# What Ollama reports for keep_alive < 0 ("keep loaded forever").
_FOREVER = datetime(2318, 1, 1, tzinfo=timezone.utc)
_WORD_RE = re.compile(r"\w+")
_FILLER_WORDS = (
    "the", "model", "considers", "context", "carefully", "and", "then", "explains", "each", "step",
    "with", "a", "short", "example", "so", "that", "answer", "stays", "clear", "while", "noting",
    "relevant", "details", "about", "input", "data", "before", "summarising", "result", "in", "plain",
    "terms", "for", "reader", "who", "asked", "question", "today", "using", "simple", "words",
    "where", "possible", "also", "mentions", "limits", "of", "approach",
)  # fmt: skip


@dataclass
class ModelRuntime:
    spec: SimModel
    semaphore: asyncio.Semaphore
    # Rendered token sequences (prompt + answer) held in KV-cache slots, least recently used first.
    prefix_cache: OrderedDict[tuple[str, ...], None] = field(default_factory=OrderedDict)
    expires_at: datetime | None = None


@dataclass
class Failure:
    remaining: int
    status: int
    mode: str
    endpoints: frozenset[str]


@dataclass(frozen=True)
class Answer:
    pieces: list[str]  # streamed content pieces, each a word with its leading whitespace
    tool_calls: list[dict[str, Any]] | None
    eval_count: int
    done_reason: str
    cache_tokens: tuple[str, ...]  # how the answer extends the KV cache for a follow-up turn


def _empty_requests() -> dict[str, int]:
    # "judge": chat requests a judge model answered (also counted in "chat").
    return {"chat": 0, "generate": 0, "embed": 0, "embed_inputs": 0, "tags": 0, "show": 0, "judge": 0}


@dataclass(frozen=True)
class Evaluation:
    """How long one generation takes, from the timing configured when it started."""

    prompt_eval_count: int  # prompt tokens evaluated (the rest came from the KV prefix cache)
    latency_seconds: float
    prompt_seconds: float
    eval_seconds: float


def _hash_unit_vector(key: str, dim: int) -> list[float]:
    raw = hashlib.shake_256(key.encode()).digest(4 * dim)
    values = [(u / 2147483648.0) - 1.0 for u in struct.unpack(f"<{dim}I", raw)]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


@lru_cache(maxsize=65536)
def _word_vector(model_key: str, digest: str, word: str, dim: int) -> tuple[float, ...]:
    return tuple(_hash_unit_vector(f"{model_key}\0{digest}\0word\0{word}", dim))


def embedding(model_key: str, digest: str, text: str, dim: int) -> list[float]:
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


def fill_schema(schema: Any, seed: bytes, depth: int = 0) -> Any:
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
            name: fill_schema(sub, seed + name.encode(), depth + 1) for name, sub in sorted(props.items())
        }
    if kind == "array":
        items = schema.get("items")
        return [fill_schema(items, seed, depth + 1)] if isinstance(items, dict) else []
    if kind == "integer":
        return number % 100
    if kind == "number":
        return (number % 1000) / 10
    if kind == "boolean":
        return number % 2 == 0
    if kind == "null":
        return None
    return f"sim-{seed.hex()[:6]}"


class SimState:
    """State of one simulator instance and how its models answer (one per app)."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config.model_copy(deep=True)
        self.models: dict[str, ModelRuntime] = {
            m.key: ModelRuntime(spec=m, semaphore=asyncio.Semaphore(self.config.parallel))
            for m in self.config.models
        }
        self.requests = _empty_requests()
        # Generation requests (chat and generate) per model, as the request named it.
        self.requests_by_model: dict[str, int] = {}
        self.judge = judges(self.config.judge)
        self.prompt_tokens = 0
        self.prompt_tokens_reused = 0
        # Prompt-evaluation time spent, and the time the reused prefix tokens would have taken.
        self.prompt_eval_seconds = 0.0
        self.prompt_eval_seconds_saved = 0.0
        self.last_calls: deque[dict[str, Any]] = deque(maxlen=_LAST_CALLS_MAX)
        self.failure: Failure | None = None

    # ----------------------------------------------------------------- models

    def resolve(self, name: str) -> ModelRuntime:
        runtime = self.models.get(canonical_model_name(name))
        if runtime is None:
            raise ApiError(404, f'model "{name}" not found, try pulling it first')
        return runtime

    def take_failure(self, endpoint: str) -> Failure | None:
        plan = self.failure
        if plan is None or plan.remaining <= 0 or endpoint not in plan.endpoints:
            return None
        plan.remaining -= 1
        if plan.remaining == 0:
            self.failure = None
        return plan

    def details(self, model: SimModel) -> dict[str, Any]:
        meta = model_meta(model, self.config.embedding_dim)
        return {
            "parent_model": "",
            "format": "gguf",
            "family": meta.family,
            "families": [meta.family],
            "parameter_size": meta.parameter_size,
            "quantization_level": meta.quantization_level,
        }

    def use_prefix_cache(
        self, runtime: ModelRuntime, prompt: tuple[str, ...], answer: tuple[str, ...]
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

    def touch(self, runtime: ModelRuntime, keep_alive: timedelta | None) -> None:
        runtime.expires_at = _FOREVER if keep_alive is None else utc_now() + keep_alive

    def record(self, summary: dict[str, Any]) -> dict[str, Any]:
        self.last_calls.append(summary)
        return summary

    def compose_answer(
        self,
        runtime: ModelRuntime,
        prompt: tuple[str, ...],
        question: str,
        options: GenOptions,
        fmt: Any,
        tool: dict[str, Any] | None,
    ) -> Answer:
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
            canonical_json(fmt) if fmt else "",
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
            arguments = fill_schema(params, digest) if isinstance(params, dict) else {}
            calls = [
                {"function": {"name": name, "arguments": arguments if isinstance(arguments, dict) else {}}}
            ]
            tokens = ("<|tool_calls|>", *json_tokens(calls))
            return Answer(
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
                fill_schema(fmt, digest)
                if isinstance(fmt, dict)
                else {"answer": header.removesuffix(" …").removesuffix("…").rstrip()}
            )
            pieces = split_pieces(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())
        else:
            pieces = split_pieces(header)
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
                pieces = split_pieces(text[:cut])
                done_reason = "stop"
        text_tokens = tuple("".join(pieces).split())
        return Answer(
            pieces=pieces,
            tool_calls=None,
            eval_count=len(pieces),
            done_reason=done_reason,
            cache_tokens=text_tokens,
        )

    def count_model(self, runtime: ModelRuntime) -> None:
        key = runtime.spec.key
        self.requests_by_model[key] = self.requests_by_model.get(key, 0) + 1

    def judge_answer(self, runtime: ModelRuntime, messages: list[dict[str, Any]]) -> Answer | None:
        """The reply of a judge model ("yes"/"no" from the labelled pairs), None for other models."""
        if self.judge is None or not self.judge.is_judge(runtime.spec.key):
            return None
        self.requests["judge"] += 1
        pieces = split_pieces(self.judge.answer(messages))
        return Answer(
            pieces=pieces,
            tool_calls=None,
            eval_count=len(pieces),
            done_reason="stop",
            cache_tokens=tuple("".join(pieces).split()),
        )

    def intent_of(self, question: str) -> str | None:
        """With ``judge.intent_answers``: the prompt whose answer ``question`` gets (its intent's first)."""
        if self.judge is None or not self.judge.config.intent_answers:
            return None
        return self.judge.intent(question)

    # ----------------------------------------------------------------- generation

    def evaluate(self, runtime: ModelRuntime, prompt: tuple[str, ...], answer: Answer) -> Evaluation:
        """Account one generation (KV prefix reuse, counters) and say how long it takes. Timing is read
        once so a /_sim/config change never splits one request."""
        cfg = self.config
        reused = self.use_prefix_cache(runtime, prompt, answer.cache_tokens)
        prompt_eval_count = max(1, len(prompt) - reused)
        self.prompt_tokens += len(prompt)
        self.prompt_tokens_reused += len(prompt) - prompt_eval_count
        prompt_seconds = prompt_eval_count / cfg.prompt_tokens_per_second
        self.prompt_eval_seconds += prompt_seconds
        self.prompt_eval_seconds_saved += (len(prompt) - prompt_eval_count) / cfg.prompt_tokens_per_second
        return Evaluation(
            prompt_eval_count=prompt_eval_count,
            latency_seconds=cfg.latency_ms / 1000,
            prompt_seconds=prompt_seconds,
            eval_seconds=answer.eval_count / cfg.tokens_per_second,
        )

    def embed_tokens(self, spec: SimModel, texts: list[str], truncate: bool) -> list[list[str]]:
        """The words of each input, cut to the model's context (or an error without ``truncate``)."""
        context_length = model_meta(spec, self.config.embedding_dim).context_length
        token_lists: list[list[str]] = []
        for text in texts:
            words = text.split()
            if len(words) > context_length:
                if not truncate:
                    raise ApiError(400, "input length exceeds maximum context length")
                words = words[:context_length]
            token_lists.append(words)
        return token_lists

    def embed(
        self, spec: SimModel, texts: list[str], token_lists: list[list[str]], dimensions: int | None
    ) -> list[list[float]]:
        """One vector per input (``dimensions``: cut and renormalised, as Ollama does)."""
        dim = self.config.embedding_dim
        vectors: list[list[float]] = []
        for text, words in zip(texts, token_lists, strict=True):
            source = text if len(words) == len(text.split()) else " ".join(words)
            vector = embedding(spec.key, spec.digest, source, dim)
            if dimensions is not None and dimensions < dim:
                vector = vector[:dimensions]
                norm = math.sqrt(sum(v * v for v in vector)) or 1.0
                vector = [v / norm for v in vector]
            vectors.append(vector)
        return vectors

    # ----------------------------------------------------------------- control

    def stats(self) -> dict[str, Any]:
        return {
            "requests": dict(self.requests),
            "requests_by_model": dict(self.requests_by_model),
            "prompt_tokens": self.prompt_tokens,
            "prompt_tokens_reused": self.prompt_tokens_reused,
            "prompt_eval_seconds": round(self.prompt_eval_seconds, 6),
            "prompt_eval_seconds_saved": round(self.prompt_eval_seconds_saved, 6),
            "last_calls": [dict(call) for call in self.last_calls],
        }

    def reset(self) -> None:
        self.requests = _empty_requests()
        self.requests_by_model = {}
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
        runtime = self.resolve(name)
        new_digest = digest or os.urandom(32).hex()
        runtime.spec = runtime.spec.model_copy(update={"digest": new_digest, "modified_at": utc_now()})
        runtime.prefix_cache.clear()
        return runtime.spec

    def timing(self) -> dict[str, Any]:
        cfg = self.config
        return {
            "latency_ms": cfg.latency_ms,
            "tokens_per_second": cfg.tokens_per_second,
            "prompt_tokens_per_second": cfg.prompt_tokens_per_second,
            "default_answer_tokens": cfg.default_answer_tokens,
            "parallel": cfg.parallel,
        }
