"""Command line: ``python -m litellm_cache_plugin.simulator [--port 11435] [--model NAME[:kind]] ...``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import socket
import sys

from aiohttp import web
from pydantic import ValidationError

from litellm_cache_plugin.simulator.server import (
    SimModel,
    SimulatorConfig,
    bind_socket,
    create_app,
)

_KINDS = ("chat", "embed")


def parse_model(spec: str) -> SimModel:
    """``NAME[:kind]``; a trailing ``:chat``/``:embed`` is the kind, any other suffix is the model's tag.

    Without a kind, names mentioning "embed" are embedding models, like ``nomic-embed-text``.
    """
    name, _, suffix = spec.rpartition(":")
    if name and suffix in _KINDS:
        return SimModel(name=name, kind="chat" if suffix == "chat" else "embed")
    return SimModel(name=spec, kind="embed" if "embed" in spec.lower() else "chat")


def build_parser() -> argparse.ArgumentParser:
    defaults = SimulatorConfig()
    parser = argparse.ArgumentParser(
        prog="python -m litellm_cache_plugin.simulator",
        description="Serve an Ollama-compatible HTTP API backed by simulated models.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument(
        "--port", type=int, default=11435, help="port to listen on, 0 = any free one (default: %(default)s)"
    )
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=defaults.latency_ms,
        help="fixed overhead per request (default: %(default)s)",
    )
    parser.add_argument(
        "--tokens-per-second",
        type=float,
        default=defaults.tokens_per_second,
        help="generation speed (default: %(default)s)",
    )
    parser.add_argument(
        "--prompt-tokens-per-second",
        type=float,
        default=defaults.prompt_tokens_per_second,
        help="prompt evaluation speed (default: %(default)s)",
    )
    parser.add_argument(
        "--model",
        action="append",
        metavar="NAME[:kind]",
        help="a model to serve, kind 'chat' or 'embed'; repeatable (default: llama3.2:1b, nomic-embed-text)",
    )
    parser.add_argument(
        "--parallel",
        type=int,
        default=defaults.parallel,
        help="requests processed at once per model (default: %(default)s)",
    )
    parser.add_argument(
        "--default-answer-tokens",
        type=int,
        default=defaults.default_answer_tokens,
        help="answer length without num_predict (default: %(default)s)",
    )
    parser.add_argument(
        "--embedding-dim",
        type=int,
        default=defaults.embedding_dim,
        help="embedding vector length (default: %(default)s)",
    )
    parser.add_argument(
        "--prefix-cache-slots",
        type=int,
        default=defaults.prefix_cache_slots,
        help="KV prefix cache slots per model (default: %(default)s)",
    )
    return parser


async def _serve(config: SimulatorConfig, sock: socket.socket, host: str) -> int:
    runner = web.AppRunner(create_app(config), access_log=None, handle_signals=False, shutdown_timeout=2.0)
    await runner.setup()
    try:
        await web.SockSite(runner, sock).start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            # Not available on Windows' event loop; Ctrl-C still ends the process there.
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        port = sock.getsockname()[1]
        shown = f"[{host}]" if ":" in host else host
        print(f"simulator listening on http://{shown}:{port}", flush=True)
        await stop.wait()
    finally:
        await runner.cleanup()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        fields: dict[str, object] = {
            "latency_ms": args.latency_ms,
            "tokens_per_second": args.tokens_per_second,
            "prompt_tokens_per_second": args.prompt_tokens_per_second,
            "parallel": args.parallel,
            "default_answer_tokens": args.default_answer_tokens,
            "embedding_dim": args.embedding_dim,
            "prefix_cache_slots": args.prefix_cache_slots,
        }
        if args.model:
            fields["models"] = [parse_model(spec) for spec in args.model]
        config = SimulatorConfig.model_validate(fields)
    except (ValidationError, ValueError) as exc:
        print(f"error: invalid configuration: {exc}", file=sys.stderr)
        return 2
    try:
        sock = bind_socket(args.host, args.port)
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    try:
        return asyncio.run(_serve(config, sock, args.host))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
