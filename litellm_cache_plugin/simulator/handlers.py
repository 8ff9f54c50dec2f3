"""The simulator's HTTP API: Ollama's endpoints (:class:`OllamaSimulator`), the ``/_sim/*`` control
endpoints tests use (:class:`SimControl`), and the aiohttp app wiring both (:func:`create_app`)."""

from __future__ import annotations

import asyncio
import hashlib
import time
import zlib
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from aiohttp import web

from litellm_cache_plugin.simulator.config import (
    CHAT_TEMPLATE,
    EMBED_TEMPLATE,
    ConfigPatch,
    DigestChange,
    FailPlan,
    SimModel,
    SimulatorConfig,
    model_meta,
    utc_now,
)
from litellm_cache_plugin.simulator.parsing import (
    ApiError,
    json_response,
    json_tokens,
    last_user_turn,
    nanoseconds,
    parse_keep_alive,
    parse_options,
    read_body,
    require_model,
    stream_flag,
    validated,
)
from litellm_cache_plugin.simulator.replies import drop, generate_reply, load_reply
from litellm_cache_plugin.simulator.runtime import Failure, SimState

OLLAMA_VERSION = "0.12.6"

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _error_middleware(request: web.Request, handler: _Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return json_response({"error": exc.message}, status=exc.status)


class OllamaSimulator:
    """Ollama's HTTP API over one simulator's state (one per app)."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.state = SimState(config)

    def stats(self) -> dict[str, Any]:
        """What ``/_sim/stats`` reports: requests, prompt tokens (reused), the last calls."""
        return self.state.stats()

    def reset(self) -> None:
        self.state.reset()

    def set_digest(self, name: str, digest: str | None = None) -> SimModel:
        """Simulate a re-pull: new digest and modified_at, and a cold KV cache."""
        return self.state.set_digest(name, digest)

    # ----------------------------------------------------------------- Ollama API

    async def handle_root(self, request: web.Request) -> web.StreamResponse:
        return web.Response(text="Ollama is running")

    async def handle_version(self, request: web.Request) -> web.StreamResponse:
        return json_response({"version": OLLAMA_VERSION})

    async def handle_chat(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        body = await read_body(request)
        name = require_model(body)
        runtime = self.state.resolve(name)
        if runtime.spec.kind != "chat":
            raise ApiError(400, f'"{name}" does not support chat')
        messages = body.get("messages") or []
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            raise ApiError(400, "messages must be a list of objects")
        tools = body.get("tools") or []
        if not isinstance(tools, list):
            raise ApiError(400, "tools must be a list")
        options = parse_options(body)
        keep_alive = parse_keep_alive(body.get("keep_alive"))
        stream = stream_flag(body)
        fmt = body.get("format") or None

        prompt: list[str] = []
        if tools:
            prompt += ["<|tools|>", *json_tokens(tools)]
        question = ""
        for message in messages:
            role = message.get("role")
            content = message.get("content")
            if not isinstance(role, str) or not role:
                raise ApiError(400, "message role is required")
            if content is None:
                content = ""
            if not isinstance(content, str):
                raise ApiError(400, "message content must be a string")
            prompt += [f"<|{role}|>", *content.split()]
            images = message.get("images")
            if isinstance(images, list):
                prompt += ["<|image|>"] * len(images)
            if message.get("tool_calls"):
                prompt += ["<|tool_calls|>", *json_tokens(message["tool_calls"])]
            if role == "user":
                question = content
        self.state.requests["chat"] += 1
        if not messages:
            self.state.touch(runtime, keep_alive)
            return load_reply("chat", name, keep_alive)
        prompt.append("<|assistant|>")
        prompt_tokens = tuple(prompt)

        self.state.count_model(runtime)
        # Tool-capable models answer a user turn with a call to the first offered tool.
        wants_tool = bool(tools) and messages[-1].get("role") == "user" and isinstance(tools[0], dict)
        answer = self.state.judge_answer(runtime, messages)
        if answer is None:
            # Intent-aware answers: a paraphrase is answered as the first prompt of its intent.
            intent = self.state.intent_of(question)
            shaped = prompt_tokens
            if intent is not None and intent != question:
                # The same tokens, with the words of the last user turn replaced by the intent's.
                words = question.split()
                last = max(i for i, t in enumerate(prompt_tokens) if t == "<|user|>")
                turn = prompt_tokens[last + 1 : last + 1 + len(words)]
                if list(turn) == words:
                    tail = prompt_tokens[last + 1 + len(words) :]
                    shaped = (*prompt_tokens[: last + 1], *intent.split(), *tail)
            answer = self.state.compose_answer(
                runtime, shaped, intent or question, options, fmt, tools[0] if wants_tool else None
            )
        summary = self.state.record(
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
        return await generate_reply(
            request,
            self.state,
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
        body = await read_body(request)
        name = require_model(body)
        runtime = self.state.resolve(name)
        if runtime.spec.kind != "chat":
            raise ApiError(400, f'"{name}" does not support generate')
        prompt_text = body.get("prompt") or ""
        system = body.get("system") or ""
        if not isinstance(prompt_text, str) or not isinstance(system, str):
            raise ApiError(400, "prompt and system must be strings")
        raw = bool(body.get("raw"))
        options = parse_options(body)
        keep_alive = parse_keep_alive(body.get("keep_alive"))
        stream = stream_flag(body)
        fmt = body.get("format") or None
        images = body.get("images")
        n_images = len(images) if isinstance(images, list) else 0
        self.state.requests["generate"] += 1
        if not prompt_text and not n_images:
            self.state.touch(runtime, keep_alive)
            return load_reply("generate", name, keep_alive)

        if raw:
            # Raw mode bypasses the template: the prompt is used exactly as sent.
            prompt = prompt_text.split()
        else:
            prompt = ["<|system|>", *system.split()] if system else []
            prompt += ["<|user|>", *prompt_text.split(), *(["<|image|>"] * n_images), "<|assistant|>"]
        prompt_tokens = tuple(prompt) or ("<|bos|>",)
        answer = self.state.compose_answer(
            runtime, prompt_tokens, last_user_turn(prompt_text), options, fmt, None
        )
        extra: dict[str, Any] = {}
        if not raw:
            # The deprecated conversation "context": token ids of prompt and answer.
            extra["context"] = [zlib.crc32(t.encode()) % 128256 for t in prompt_tokens + answer.cache_tokens]
        summary = self.state.record(
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
        return await generate_reply(
            request,
            self.state,
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
        state = self.state
        runtime = state.resolve(name)
        spec = runtime.spec
        token_lists = state.embed_tokens(spec, texts, truncate)
        state.requests["embed"] += 1
        state.requests["embed_inputs"] += len(texts)
        prompt_eval_count = sum(max(1, len(words)) for words in token_lists) if texts else 0
        summary = state.record(
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
        failure = state.take_failure("embed")
        if failure is not None:
            summary["fail"] = failure.mode
            if failure.mode == "error":
                raise ApiError(failure.status, "simulated failure")
        async with runtime.semaphore:
            cfg = state.config
            await asyncio.sleep(cfg.latency_ms / 1000)
            load_ns = nanoseconds(time.perf_counter() - started)
            await asyncio.sleep(prompt_eval_count / cfg.prompt_tokens_per_second)
            vectors = state.embed(spec, texts, token_lists, dimensions)
            state.touch(runtime, keep_alive)
            if failure is not None:
                drop(request)
                raise ApiError(failure.status, "simulated failure")
        return vectors, prompt_eval_count, load_ns, nanoseconds(time.perf_counter() - started)

    async def handle_embed(self, request: web.Request) -> web.StreamResponse:
        body = await read_body(request)
        name = require_model(body)
        self.state.resolve(name)
        raw_input = body.get("input")
        if raw_input is None or raw_input == "":
            texts: list[str] = []
        elif isinstance(raw_input, str):
            texts = [raw_input]
        elif isinstance(raw_input, list) and all(isinstance(t, str) for t in raw_input):
            texts = list(raw_input)
        else:
            raise ApiError(400, "invalid input type: input must be a string or a list of strings")
        dimensions = body.get("dimensions")
        if dimensions is not None and (
            isinstance(dimensions, bool) or not isinstance(dimensions, int) or dimensions < 1
        ):
            raise ApiError(400, "dimensions must be a positive integer")
        options = body.get("options") if isinstance(body.get("options"), dict) else {}
        vectors, count, load_ns, total_ns = await self._embed_vectors(
            request,
            endpoint="embed",
            name=name,
            texts=texts,
            truncate=body.get("truncate", True) is not False,
            dimensions=dimensions,
            keep_alive=parse_keep_alive(body.get("keep_alive")),
            options=options or {},
        )
        return json_response(
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
        body = await read_body(request)
        name = require_model(body)
        self.state.resolve(name)
        prompt = body.get("prompt") or ""
        if not isinstance(prompt, str):
            raise ApiError(400, "prompt must be a string")
        options = body.get("options") if isinstance(body.get("options"), dict) else {}
        vectors, _, _, _ = await self._embed_vectors(
            request,
            endpoint="embeddings",
            name=name,
            texts=[prompt] if prompt else [],
            truncate=True,
            dimensions=None,
            keep_alive=parse_keep_alive(body.get("keep_alive")),
            options=options or {},
        )
        return json_response({"embedding": vectors[0] if vectors else []})

    async def handle_tags(self, request: web.Request) -> web.StreamResponse:
        self.state.requests["tags"] += 1
        models = []
        for runtime in self.state.models.values():
            spec = runtime.spec
            models.append(
                {
                    "name": spec.display_name,
                    "model": spec.display_name,
                    "modified_at": spec.modified_at.isoformat(),
                    "size": model_meta(spec, self.state.config.embedding_dim).size,
                    "digest": spec.digest,
                    "details": self.state.details(spec),
                }
            )
        return json_response({"models": models})

    async def handle_show(self, request: web.Request) -> web.StreamResponse:
        body = await read_body(request)
        name = require_model(body)
        spec = self.state.resolve(name).spec
        self.state.requests["show"] += 1
        meta = model_meta(spec, self.state.config.embedding_dim)
        # Real Ollama shows no digest here; the blob path in the Modelfile changes on a re-pull instead.
        blob = hashlib.sha256(f"blob:{spec.digest}".encode()).hexdigest()
        template = CHAT_TEMPLATE if spec.kind == "chat" else EMBED_TEMPLATE
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
        return json_response(
            {
                "license": "Simulated model for testing; no weights, no license terms.",
                "modelfile": modelfile,
                "parameters": parameters,
                "template": template,
                "details": self.state.details(spec),
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
        now = utc_now()
        models = []
        for runtime in self.state.models.values():
            if runtime.expires_at is None or runtime.expires_at <= now:
                continue
            spec = runtime.spec
            size = model_meta(spec, self.state.config.embedding_dim).size
            models.append(
                {
                    "name": spec.display_name,
                    "model": spec.display_name,
                    "size": size,
                    "digest": spec.digest,
                    "details": self.state.details(spec),
                    "expires_at": runtime.expires_at.isoformat(),
                    "size_vram": size,
                }
            )
        return json_response({"models": models})

    # ----------------------------------------------------------------- control endpoints


class SimControl:
    """The ``/_sim/*`` endpoints: counters, reset, re-pull, timing and failure injection."""

    def __init__(self, state: SimState) -> None:
        self.state = state

    async def handle_sim_stats(self, request: web.Request) -> web.StreamResponse:
        return json_response(self.state.stats())

    async def handle_sim_reset(self, request: web.Request) -> web.StreamResponse:
        self.state.reset()
        return json_response({"ok": True})

    async def handle_sim_digest(self, request: web.Request) -> web.StreamResponse:
        change = validated(DigestChange, await read_body(request))
        spec = self.state.set_digest(change.model, change.digest)
        return json_response(
            {"model": spec.display_name, "digest": spec.digest, "modified_at": spec.modified_at.isoformat()}
        )

    async def handle_sim_config_get(self, request: web.Request) -> web.StreamResponse:
        return json_response(self.state.timing())

    async def handle_sim_config(self, request: web.Request) -> web.StreamResponse:
        patch = validated(ConfigPatch, await read_body(request))
        self.state.config = self.state.config.model_copy(update=patch.model_dump(exclude_none=True))
        return json_response(self.state.timing())

    async def handle_sim_fail(self, request: web.Request) -> web.StreamResponse:
        plan = validated(FailPlan, await read_body(request))
        self.state.failure = (
            Failure(plan.count, plan.status, plan.mode, frozenset(plan.endpoints)) if plan.count else None
        )
        return json_response(plan.model_dump())


SIMULATOR_KEY: web.AppKey[OllamaSimulator] = web.AppKey("ollama_simulator", OllamaSimulator)


def create_app(config: SimulatorConfig | None = None) -> web.Application:
    """The simulator as an aiohttp application; its state is ``app[SIMULATOR_KEY]``."""
    sim = OllamaSimulator(config or SimulatorConfig())
    control = SimControl(sim.state)
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
    routes.add_get("/_sim/stats", control.handle_sim_stats)
    routes.add_post("/_sim/reset", control.handle_sim_reset)
    routes.add_post("/_sim/digest", control.handle_sim_digest)
    routes.add_get("/_sim/config", control.handle_sim_config_get)
    routes.add_post("/_sim/config", control.handle_sim_config)
    routes.add_post("/_sim/fail", control.handle_sim_fail)
    return app
