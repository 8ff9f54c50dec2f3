"""An Ollama-compatible HTTP server that simulates models instead of running them.

The demo, the end-to-end tests and the benchmarks point LiteLLM's ``ollama`` and
``ollama_chat`` providers at it when no real Ollama is around, so it speaks the same
JSON (and NDJSON streams) as Ollama's HTTP API, takes real time to answer, and
models the two server behaviours a response cache interacts with: limited
parallelism per model and llama.cpp's KV prefix cache.

Answers are synthetic text; ``/_sim/*`` endpoints expose counters and let tests
inject failures, change timing or simulate a re-pulled model.

Modules: ``config`` (models and timing), ``parsing`` (request bodies, JSON), ``runtime`` (the
simulated models and their state), ``replies`` (paced and streamed answers), ``handlers`` (the HTTP
API and the app); this one serves an app on a socket or in a background thread.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading

from aiohttp import web

from litellm_cache_plugin.simulator.config import SimModel, SimulatorConfig, canonical_model_name
from litellm_cache_plugin.simulator.handlers import SIMULATOR_KEY, OllamaSimulator, create_app

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
