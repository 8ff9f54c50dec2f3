"""The simulator's answers on the wire: a generation paced like a real model (queueing, prompt
evaluation, tokens per second), streamed as NDJSON or sent whole, and cut like a crashed server
when a failure is injected."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any, Literal

import orjson
from aiohttp import web

from litellm_cache_plugin.simulator.parsing import created_at, json_response, nanoseconds
from litellm_cache_plugin.simulator.runtime import Answer, ModelRuntime, SimState


async def generate_reply(
    request: web.Request,
    state: SimState,
    *,
    started: float,
    endpoint: Literal["chat", "generate"],
    runtime: ModelRuntime,
    model_field: str,
    stream: bool,
    prompt: tuple[str, ...],
    answer: Answer,
    keep_alive: timedelta | None,
    summary: dict[str, Any],
    extra_final: dict[str, Any],
) -> web.StreamResponse:
    failure = state.take_failure(endpoint)
    if failure is not None:
        summary["fail"] = failure.mode
        if failure.mode == "error":
            return json_response({"error": "simulated failure"}, status=failure.status)

    async with runtime.semaphore:
        timing = state.evaluate(runtime, prompt, answer)
        prompt_eval_count = timing.prompt_eval_count
        summary["prompt_eval_count"] = prompt_eval_count
        summary["eval_count"] = answer.eval_count
        prompt_seconds, eval_seconds = timing.prompt_seconds, timing.eval_seconds

        await asyncio.sleep(timing.latency_seconds)
        # Like Ollama, load_duration covers everything before evaluation starts, queueing included.
        load_ns = nanoseconds(time.perf_counter() - started)

        def final(content: bool) -> dict[str, Any]:
            body: dict[str, Any] = {"model": model_field, "created_at": created_at()}
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
                total_duration=nanoseconds(time.perf_counter() - started),
                load_duration=load_ns,
                prompt_eval_count=prompt_eval_count,
                prompt_eval_duration=nanoseconds(prompt_seconds),
                eval_count=answer.eval_count,
                eval_duration=nanoseconds(eval_seconds),
            )
            body.update(extra_final)
            # What this answer reported, so that tests can sum the compute a cache saved.
            summary["total_duration"] = body["total_duration"]
            return body

        if not stream:
            await asyncio.sleep(prompt_seconds + eval_seconds)
            state.touch(runtime, keep_alive)
            if failure is not None:  # mode "cut": the server dies before answering
                return drop(request)
            return json_response(final(content=True))

        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        try:
            await asyncio.sleep(prompt_seconds)
            chunks = stream_chunks(endpoint, model_field, answer)
            cut_at = len(chunks) // 2 if failure is not None else None
            per_chunk = eval_seconds / max(1, len(chunks))
            eval_start = time.perf_counter()
            for i, chunk in enumerate(chunks):
                if i == cut_at:
                    return drop(request, response)
                # Deadline-based pacing keeps the total close to eval_seconds despite sleep jitter.
                delay = eval_start + (i + 1) * per_chunk - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                chunk["created_at"] = created_at()
                await response.write(orjson.dumps(chunk) + b"\n")
            if cut_at is not None:
                return drop(request, response)
            await response.write(orjson.dumps(final(content=False)) + b"\n")
            await response.write_eof()
        except ConnectionError:
            # The client went away mid-stream; nothing left to send it.
            pass
        finally:
            state.touch(runtime, keep_alive)
        return response


def stream_chunks(endpoint: str, model_field: str, answer: Answer) -> list[dict[str, Any]]:
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


def drop(request: web.Request, response: web.StreamResponse | None = None) -> web.StreamResponse:
    """Close the connection without finishing the response, like a crashed server would."""
    if request.transport is not None:
        request.transport.close()
    return response if response is not None else web.Response()


def load_reply(endpoint: str, model_field: str, keep_alive: timedelta | None) -> web.Response:
    # An empty prompt only loads (or, with keep_alive 0, unloads) the model.
    unload = keep_alive is not None and keep_alive.total_seconds() == 0
    body: dict[str, Any] = {"model": model_field, "created_at": created_at()}
    if endpoint == "chat":
        body["message"] = {"role": "assistant", "content": ""}
    else:
        body["response"] = ""
    body.update(done_reason="unload" if unload else "load", done=True)
    return json_response(body)
