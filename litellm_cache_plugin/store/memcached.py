"""Memcached backend on the ``emcache`` client (the optional ``[memcached]`` extra).

``memcached://host[:port][,host[:port]...][?prefix=...&option=value...]``; the port defaults to
11211. Without the extra, ``memcached://`` fails at configuration time with an error naming it
(:class:`MissingExtraError`, a ``ValueError``). With several servers each key lives on one of them,
chosen by this module's consistent-hash ring (160 points per server, MD5), not emcache's own
rendezvous hashing: every key stays on the server the earlier, hand-written client put it on, so
replicas of the old and the new version agree during a rolling upgrade (invalidation counters
included). Adding or removing a server moves only about its share of the keys;
``get_many``/``get_counters``/``set_many`` send each server its share concurrently.

Keys. Every key is sent as ``prefix + key``. Memcached keys are at most 250 bytes of printable ASCII
without spaces, so: bytes outside ``!``..``~`` (space, control characters, non-ASCII as UTF-8)
and ``%`` itself are percent-escaped (``%20``), which keeps distinct keys distinct; if the result
is still longer than 250 bytes, its first 216 bytes are kept and the rest is replaced by ``%#``
and 32 hex digits of the SHA-256 of the whole escaped key. That is deterministic (every client
computes the same key) and cannot collide with an unhashed key, in which ``%`` is always followed
by two hex digits. The engine's keys (``lcp:x:<sha256 hex>`` and the like) pass through unchanged.

TTLs. Memcached counts time in whole seconds and an item given ``exptime N`` expires at the N-th
tick of its clock, between N-1 and N seconds later; so a TTL is sent as ``ceil(ttl) + 1`` and an
entry never lives shorter than asked (at most about 2 s longer). Memcached reads an ``exptime``
above 30 days (2,592,000 s) as a unix timestamp: longer TTLs are sent as ``now + ttl`` by this
machine's clock, which must therefore roughly agree with the servers' (NTP); they are capped at
2**32 - 1 (year 2106), the end of Memcached's clock.

Values larger than the server's item size limit (``-I``, 1 MiB by default, item header included)
are not stored, as the memory backend does with values larger than its budget: ``set`` does not
fail on them (a failure would count against the circuit breaker) and Memcached drops any older
value of the key.

Counters are decimal values with no expiry: ``incr`` on a missing key fails in Memcached, so the
first increment does ``add key 0`` (which loses harmlessly to a concurrent creator) and ``incr``
again. Amounts must be >= 0: Memcached's counters are unsigned 64-bit and ``decr`` stops at 0,
which is not the arithmetic the store promises.

**Generation counters on Memcached are best effort.** Memcached has no keys exempt from eviction:
under memory pressure it may evict a counter like any other item (least recently used first;
counters live in the smallest slab class, apart from large values, which makes it rare but not
impossible). The engine treats an entry whose recorded generation is older than the current
counter as invalid; an evicted counter reads as 0 again, so entries invalidated before the
eviction can come back to life until they expire. Size Memcached so that it does not evict (the
``evictions`` figure of ``stats()`` must stay at 0), or use Redis with a ``volatile-*`` policy
when invalidation must be exact.

Locks: ``acquire_lock`` is ``add key owner exptime`` (only one ``add`` of a missing key wins).
``release_lock`` reads the lock with ``gets`` and, if the owner matches, overwrites it with ``cas``
(so only if nobody changed it since) by an already expired item (``exptime -1``): a lock that
expired and was taken by someone else in between has a new CAS value and is left alone. No race.

The client. Each server has one ``emcache`` client (its C-accelerated parser and a pool of up to
``max_connections`` connections, opened on demand); this module adds what the store's contract
needs on top of emcache's primitives, never a socket of its own:

- ``get_many`` splits into ``get`` commands of at most ``GET_BATCH`` keys (sent concurrently);
  ``set_many`` is one ``set`` per item, concurrently (emcache has no pipelined ``set``).
- ``incr`` of a missing counter and the compare-and-delete of a lock, as above (``add``, ``gets``,
  ``cas``); a value too large for the server is reported as not stored, as before.
- Errors: every failure is a :class:`MemcachedError` (a ``StoreError``). Error replies
  (``SERVER_ERROR``, ``CLIENT_ERROR``) leave the connection in the pool, since emcache read them
  whole; a command cancelled or timed out half way has its connection closed by emcache, never
  reused.
- Slots: at most ``max_connections`` commands in flight per server, waiting in arrival order at
  most ``pool_timeout`` for a slot. emcache's own queue for a connection serves the last caller
  first: with 64 tasks on 50 connections, early callers starved into timeouts in a first trial.
- Failures are noticed at the deadline (``socket_timeout``): emcache does not fail a command whose
  connection drops, nor a command waiting for a connection that cannot be opened (it reconnects in
  the background). The hand-written client failed at once on a refused connection; behind
  :class:`~litellm_cache_plugin.store.guarded.GuardedStore` (100 ms by default) the difference is
  that deadline, for the few calls before the circuit opens. After a timeout the server's emcache
  client is replaced by a fresh one, so the next command connects at once instead of after
  emcache's reconnect backoff (up to 60 s). A command that timed out on a client that had worked
  before (most likely a pooled connection to a server that restarted) is retried once
  (``retries``) on the fresh client; like the Redis backend this can apply an ``incr`` twice.
  emcache logs these events (lost connections, failed connection attempts) at WARNING on the
  ``emcache`` loggers.

Measured against the hand-written client it replaces (``benchmarks/memcached_client.py``;
``results/2026-12-02-2cpu-24gb-amd/memcached_client.txt``: both through ``MemcachedStore`` on one
loopback memcached, interleaved, on 2 vCPUs shared with a load average of ~6, so read the ratios
and the client's CPU per operation rather than the absolute times): ``get`` 0.70x the latency and
0.68x the CPU, ``set`` 0.67x / 0.63x, ``get_many`` of 32 keys 0.73x / 0.67x; ``get_with_counters``
(the read of every lookup) about even (1.05x latency, 1.02x CPU; 64 concurrent tasks: 1.04x the
throughput); ``set_many`` of 32 items 6.3x the latency and CPU (32 ``set`` commands instead of one
pipelined write: ~6 ms instead of ~1 ms for an embedding batch). Decision: emcache. It is faster
where every request goes, even on the lookup read, maintained (TLS, SASL and autodiscovery are
there when wanted) and leaves no protocol code here; the price is embedding batch writes, after an
upstream call, and failures noticed at a deadline rather than at once (above).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import hashlib
import importlib
import math
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from litellm_cache_plugin.store import (
    non_negative_int,
    parse_options,
    positive_float,
    positive_int,
    take_slot,
    text,
    url_options,
)
from litellm_cache_plugin.store.base import StoreError, StoreStats, get_with_counters_then_lock

if TYPE_CHECKING:
    import emcache

__all__ = [
    "DEFAULT_PORT",
    "MAX_KEY_LENGTH",
    "MemcachedClient",
    "MemcachedError",
    "MemcachedStore",
    "MissingExtraError",
    "memcached_key",
    "parse_hosts",
    "to_exptime",
]

R = TypeVar("R")

DEFAULT_PORT = 11211
MAX_KEY_LENGTH = 250
RELATIVE_EXPTIME_LIMIT = 30 * 24 * 3600  # Memcached reads a larger exptime as a unix timestamp
MAX_EXPTIME = 2**32 - 1

DEFAULT_MAX_CONNECTIONS = 50
DEFAULT_SOCKET_TIMEOUT = 1.0
DEFAULT_POOL_TIMEOUT = 1.0
DEFAULT_RETRIES = 1
# How long closing one emcache client may take (see _close_quietly).
CLOSE_TIMEOUT = 1.0
# Keys per ``get`` command: Memcached copes with long lines, but bounded lines keep its per-request
# buffers small; the commands of one call go out concurrently.
GET_BATCH = 100

_OPTIONS = {
    "prefix": text,
    "max_connections": positive_int,
    "socket_timeout": positive_float,
    "socket_connect_timeout": positive_float,
    "pool_timeout": positive_float,
    "retries": non_negative_int,
}


class MemcachedError(StoreError):
    """The server could not be reached, timed out, or answered with an error."""


class MissingExtraError(ValueError):
    """``memcached://`` is configured but the ``[memcached]`` extra (``emcache``) is not installed."""


# --- keys --------------------------------------------------------------------------------------------

_PLAIN_KEY = re.compile(r"[!-$&-~]*")  # printable ASCII but space and '%': sent as is
_HASHED_HEAD = MAX_KEY_LENGTH - 2 - 32


def memcached_key(key: str) -> bytes:
    """The Memcached key for ``key`` (a full key, prefix included); see the module docstring."""
    if len(key) <= MAX_KEY_LENGTH and _PLAIN_KEY.fullmatch(key):
        return key.encode("ascii")
    escaped = "".join(chr(b) if 0x21 <= b <= 0x7E and b != 0x25 else f"%{b:02X}" for b in key.encode("utf-8"))
    if len(escaped) <= MAX_KEY_LENGTH:
        return escaped.encode("ascii")
    digest = hashlib.sha256(escaped.encode("ascii")).hexdigest()[:32]
    return f"{escaped[:_HASHED_HEAD]}%#{digest}".encode("ascii")


def to_exptime(ttl: float, now: Callable[[], float] = time.time) -> int:
    """Memcached's ``exptime`` for a TTL in seconds; see the module docstring."""
    if isinstance(ttl, bool) or not (isinstance(ttl, (int, float)) and math.isfinite(ttl) and ttl > 0):
        raise ValueError(f"ttl must be a positive finite number of seconds, got {ttl!r}")
    seconds = math.ceil(ttl) + 1
    if seconds <= RELATIVE_EXPTIME_LIMIT:
        return seconds
    return min(math.ceil(now()) + seconds, MAX_EXPTIME)


# --- hosts -------------------------------------------------------------------------------------------

_HOST_PORT = re.compile(r"^(?:\[(?P<ipv6>[0-9A-Fa-f:.]+)\]|(?P<host>[^:\[\]/@,\s]+))(?::(?P<port>\d{1,5}))?$")


def parse_hosts(hosts: str, default_port: int) -> list[tuple[str, int]]:
    """``host[:port],host[:port],...`` (``[v6addr]:port`` for IPv6) as a list of (host, port)."""
    found: list[tuple[str, int]] = []
    for item in hosts.split(","):
        match = _HOST_PORT.match(item.strip())
        port = int(match.group("port") or default_port) if match else 0
        if match is None or not 0 < port < 65536:
            raise ValueError(f"expected host[:port] in a list like h1:p1,h2:p2, got {item.strip()!r}")
        found.append((match.group("ipv6") or match.group("host"), port))
    return found


# --- the client --------------------------------------------------------------------------------------

_emcache_module: Any = None


def _emcache() -> Any:
    """The ``emcache`` module, imported on first use: the ``memcached`` extra is optional."""
    global _emcache_module
    if _emcache_module is None:
        try:
            _emcache_module = importlib.import_module("emcache")
        except ImportError as exc:
            raise MissingExtraError(
                "memcached:// needs the [memcached] extra (the emcache client): "
                f"pip install 'litellm-cache-plugin[memcached]' ({exc})"
            ) from None
    return _emcache_module


class _Generation:
    """One emcache client (its connection pool) for one server. ``answered``: a command on it got a
    reply, so the pool holds connections that worked."""

    __slots__ = ("answered", "client")

    def __init__(self, client: emcache.Client) -> None:
        self.client = client
        self.answered = False


class MemcachedClient:
    """One Memcached server through an ``emcache`` client, with the store's error and retry rules.

    Keys are ``bytes`` Memcached accepts as they are (see :func:`memcached_key`); ``exptime`` is
    Memcached's (seconds up to 30 days, else a unix timestamp; 0 never expires, < 0 already
    expired). Every method raises :class:`MemcachedError` (a ``StoreError``) when the server cannot
    be reached, times out or answers with an error. Not thread-safe; one event loop. See the module
    docstring for how failures, timeouts and retries work.
    """

    def __init__(
        self,
        host: str,
        port: int = DEFAULT_PORT,
        *,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        socket_timeout: float = DEFAULT_SOCKET_TIMEOUT,
        socket_connect_timeout: float | None = None,
        pool_timeout: float = DEFAULT_POOL_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
    ) -> None:
        self._emcache = _emcache()
        self.host = host
        self.port = port
        self.max_connections = max_connections
        self.socket_timeout = socket_timeout
        self.socket_connect_timeout = socket_connect_timeout or socket_timeout
        self.pool_timeout = pool_timeout
        self.retries = retries
        self._node = self._emcache.MemcachedHostAddress(host, port)
        self._generation: _Generation | None = None
        self._closing: set[asyncio.Task[None]] = set()
        # FIFO slots in front of emcache's pool: at most max_connections commands in flight, so
        # emcache always has a connection to give (its own waiters are served last in, first out).
        self._slots = asyncio.Semaphore(max_connections)
        self._closed = False

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    # --- commands ------------------------------------------------------------------------------

    async def get_multi(self, keys: Sequence[bytes]) -> dict[bytes, bytes]:
        """Values of the keys found (one ``get`` per GET_BATCH keys, concurrently)."""
        found = await self._retrieve(False, keys)
        return {key: item.value for key, item in found.items()}

    async def gets_multi(self, keys: Sequence[bytes]) -> dict[bytes, tuple[bytes, int]]:
        """(value, CAS unique) of the keys found."""
        found = await self._retrieve(True, keys)
        return {key: (item.value, int(item.cas or 0)) for key, item in found.items()}

    async def set(self, key: bytes, value: bytes, exptime: int, flags: int = 0) -> bool:
        """Store unconditionally. False only when the value is too large for the server."""

        async def command(client: emcache.Client) -> bool:
            try:
                await client.set(key, value, flags=flags, exptime=exptime)
            except self._emcache.StorageCommandError as exc:
                if "too large" in str(exc):
                    return False  # SERVER_ERROR object too large for cache: memcached drops it
                raise
            return True

        return await self._run(command)

    async def set_multi(
        self, items: Sequence[tuple[bytes, bytes]], exptime: int, flags: int = 0
    ) -> list[bool]:
        """``set`` of every item, concurrently; False where the value was too large."""
        if not items:
            return []
        if len(items) == 1:
            return [await self.set(items[0][0], items[0][1], exptime, flags)]
        return list(await asyncio.gather(*(self.set(key, value, exptime, flags) for key, value in items)))

    async def add(self, key: bytes, value: bytes, exptime: int, flags: int = 0) -> bool:
        """Store only if the key is missing (or expired). True if stored."""
        refused = self._emcache.NotStoredStorageCommandError
        return await self._run(lambda c: _stored(c.add(key, value, flags=flags, exptime=exptime), refused))

    async def cas(self, key: bytes, value: bytes, exptime: int, cas_unique: int, flags: int = 0) -> bool:
        """Store only if the key's CAS value is still ``cas_unique`` (False: changed or gone since)."""

        async def command(client: emcache.Client) -> bool:
            try:
                await client.cas(key, value, cas_unique, flags=flags, exptime=exptime)
            except self._emcache.StorageCommandError as exc:  # EXISTS (NotStored...) or NOT_FOUND
                if isinstance(exc, self._emcache.NotStoredStorageCommandError) or "NOT_FOUND" in str(exc):
                    return False
                raise
            return True

        return await self._run(command)

    async def delete(self, key: bytes) -> bool:
        """True if the key existed (and had not expired)."""
        return await self._run(lambda c: _stored(c.delete(key), self._emcache.NotFoundCommandError))

    async def incr(self, key: bytes, amount: int) -> int | None:
        """New value, or None if the key is missing. ``amount`` >= 0; wraps at 2**64."""
        return await self._arith(True, key, amount)

    async def decr(self, key: bytes, amount: int) -> int | None:
        """New value (never below 0), or None if the key is missing."""
        return await self._arith(False, key, amount)

    async def version(self) -> str:
        async def command(client: emcache.Client) -> str:
            return str(await client.version(self._node))

        return await self._run(command)

    async def stats(self) -> dict[str, str]:
        """The general ``stats`` of the server, as strings."""

        async def command(client: emcache.Client) -> dict[str, str]:
            found = await client.stats(self._node)
            return {str(name): str(value) for name, value in found.items()}

        return await self._run(command)

    async def close(self) -> None:
        """Close the connections (commands in flight end first). Idempotent."""
        self._closed = True
        generation, self._generation = self._generation, None
        if generation is not None:
            self._retire(generation)
        while self._closing:
            await asyncio.gather(*list(self._closing), return_exceptions=True)

    # --- helpers -------------------------------------------------------------------------------

    async def _retrieve(self, with_cas: bool, keys: Sequence[bytes]) -> dict[bytes, emcache.Item]:
        unique = list(dict.fromkeys(keys))
        if not unique:
            return {}

        async def command(batch: list[bytes]) -> dict[bytes, emcache.Item]:
            async def run(client: emcache.Client) -> dict[bytes, emcache.Item]:
                if len(batch) == 1:  # get/gets: no task per server as get_many/gets_many start
                    item = await (client.gets(batch[0]) if with_cas else client.get(batch[0]))
                    return {} if item is None else {batch[0]: item}
                return await (client.gets_many(batch) if with_cas else client.get_many(batch))

            return await self._run(run)

        if len(unique) <= GET_BATCH:
            return await command(unique)
        found: dict[bytes, emcache.Item] = {}
        batches = [unique[i : i + GET_BATCH] for i in range(0, len(unique), GET_BATCH)]
        for part in await asyncio.gather(*(command(batch) for batch in batches)):
            found.update(part)
        return found

    async def _arith(self, up: bool, key: bytes, amount: int) -> int | None:
        async def command(client: emcache.Client) -> int | None:
            try:
                # None only for a command sent with noreply, which this module never does.
                return await (client.increment(key, amount) if up else client.decrement(key, amount))
            except self._emcache.NotFoundCommandError:
                return None

        return await self._run(command)

    async def _run(self, command: Callable[[emcache.Client], Awaitable[R]]) -> R:
        """Run ``command`` with this server's emcache client, turning every failure into a
        :class:`MemcachedError` (see the module docstring for the retry)."""
        if self._closed:
            raise MemcachedError(f"memcached client for {self.address} is closed")
        emcache = self._emcache
        attempt = 0
        while True:
            if not await take_slot(self._slots, self.pool_timeout):
                raise MemcachedError(
                    f"memcached {self.address}: no free connection within {self.pool_timeout} s"
                )
            try:
                generation = self._generation or await self._open()
                try:
                    result = await command(generation.client)
                except asyncio.TimeoutError:
                    # emcache notices a dead connection or an unreachable server only at the
                    # deadline; its pool would then reconnect with a backoff of up to 60 s. Start
                    # afresh instead (the next command connects at once), and retry once when the
                    # pool had worked: most likely the server restarted under a pooled connection.
                    self._discard(generation)
                    if generation.answered and attempt < self.retries:
                        attempt += 1
                        continue
                    reason = "timed out"
                    if not generation.answered and self._cannot_connect(generation):
                        reason += (
                            f": cannot connect (connection attempts failed within {self.socket_timeout} s)"
                        )
                    raise MemcachedError(f"memcached {self.address}: {reason}") from None
                except asyncio.CancelledError:
                    # A deadline above this client (GuardedStore's, shorter than socket_timeout)
                    # ended the command. Replace the pool too when it has no connection and its
                    # attempts to open one failed: emcache would retry with a growing backoff.
                    if self._cannot_connect(generation):
                        self._discard(generation)
                    raise
                except RuntimeError as exc:
                    if generation is not self._generation and attempt < self.retries:
                        attempt += 1  # its client was closed under it by a concurrent discard
                        continue
                    raise MemcachedError(f"memcached {self.address}: {exc}") from exc
                except (emcache.CommandError, ValueError) as exc:
                    # An error reply (SERVER_ERROR, CLIENT_ERROR...): emcache has read it whole, the
                    # connection is still in step and stays in the pool.
                    raise MemcachedError(f"memcached {self.address}: {_describe(exc)}") from exc
                generation.answered = True
                return result
            finally:
                self._slots.release()

    async def _open(self) -> _Generation:
        client = await self._emcache.create_client(
            [self._node],
            timeout=self.socket_timeout,
            connection_timeout=self.socket_connect_timeout,
            max_connections=self.max_connections,
            min_connections=1,
        )
        current = self._generation
        if self._closed or current is not None:
            # Closed meanwhile, or another command opened one first.
            self._retire(_Generation(client))
            if current is None:
                raise MemcachedError(f"memcached client for {self.address} is closed")
            return current
        self._generation = _Generation(client)
        return self._generation

    def _discard(self, generation: _Generation) -> None:
        if self._generation is generation:
            self._generation = None
            self._retire(generation)

    def _retire(self, generation: _Generation) -> None:
        task = asyncio.ensure_future(_close_quietly(generation.client))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def _cannot_connect(self, generation: _Generation) -> bool:
        """The pool holds no connection and its attempts to open one failed (emcache's metrics)."""
        try:
            metrics = generation.client.cluster_managment().connection_pool_metrics()[self._node]
        except Exception:  # pragma: no cover - metrics are best effort
            return False
        return bool(metrics.cur_connections == 0 and metrics.connections_created_with_error > 0)


async def _stored(call: Awaitable[object], refused: type[Exception]) -> bool:
    """False when ``call`` raises ``refused`` (the command was refused, not failed), else True."""
    try:
        await call
    except refused:
        return False
    return True


async def _close_quietly(client: emcache.Client) -> None:
    # Bounded: emcache's close waits for its background reconnection task, which on Python < 3.12
    # can miss the cancellation (asyncio.wait_for drops it when the connect attempt ends at the same
    # moment) and keep retrying. Cancelling the close cancels that task a second time.
    with contextlib.suppress(Exception):
        await asyncio.wait_for(client.close(), CLOSE_TIMEOUT)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ValueError) and "invalid literal" in str(exc):
        return f"malformed reply ({exc})"  # e.g. CLIENT_ERROR to an incr of a non-number
    return f"{type(exc).__name__}: {exc}"


# --- the store ---------------------------------------------------------------------------------------


class _Ring:
    """Consistent hashing of keys onto servers (160 points per server on a 32-bit circle)."""

    POINTS = 160

    def __init__(self, names: Sequence[str]) -> None:
        points = sorted(
            (_hash32(f"{name}-{i}".encode()), index)
            for index, name in enumerate(names)
            for i in range(self.POINTS)
        )
        self._hashes = [h for h, _ in points]
        self._owners = [index for _, index in points]

    def server(self, key: bytes) -> int:
        position = bisect.bisect(self._hashes, _hash32(key))
        return self._owners[position % len(self._owners)]


def _hash32(data: bytes) -> int:
    return int.from_bytes(hashlib.md5(data, usedforsecurity=False).digest()[:4], "big")


class MemcachedStore:
    """A :class:`~litellm_cache_plugin.store.base.Store` on one or more Memcached servers.

    See the module docstring for keys, TTLs, counters (best effort!) and locks. ``stats()`` adds up
    the servers' ``stats``, which cover everything they hold: ``bytes`` (``bytes``), ``evictions``
    (``evictions``), ``expirations`` (expired items Memcached removed: found expired by a get,
    reclaimed for a new item, or freed by the LRU crawler), and ``entries`` (``curr_items``) when
    ``prefix`` is empty, else ``None`` since counting one prefix is impossible.
    """

    name = "memcached"

    def __init__(self, clients: Sequence[MemcachedClient], prefix: str = "") -> None:
        if not clients:
            raise ValueError("MemcachedStore needs at least one server")
        self._clients = list(clients)
        self._ring = _Ring([client.address for client in clients]) if len(clients) > 1 else None
        self.prefix = prefix
        self._closed = False

    @classmethod
    def from_url(cls, url: str, **options: Any) -> MemcachedStore:
        """``memcached://host[:port][,host[:port]...][?option=value&...]``.

        Options (query parameters or keywords, keywords win): ``prefix``, ``max_connections`` (50
        per server), ``socket_timeout`` (1.0 s per command, waiting for a connection included),
        ``socket_connect_timeout`` (= socket_timeout, to open one connection), ``pool_timeout`` (1.0 s
        to wait for a free slot), ``retries`` (1 retry on a fresh client after a timeout on one
        that had worked). Nothing connects until the first command. Raises
        :class:`MissingExtraError` when the ``[memcached]`` extra is not installed.
        """
        base_url, query = url_options(url)
        parts = urlsplit(base_url)
        if parts.scheme.lower() != "memcached":
            raise ValueError(f"MemcachedStore.from_url needs a memcached:// URL, got {parts.scheme}://")
        if "@" in parts.netloc:
            raise ValueError("memcached:// URLs take no user or password: this client does not authenticate")
        if parts.path not in ("", "/"):
            raise ValueError(f"a memcached:// URL has no path, got {parts.path!r}")
        opts = parse_options("memcached", {**query, **options}, _OPTIONS)
        prefix = opts.pop("prefix", "")
        servers = parse_hosts(parts.netloc, DEFAULT_PORT)
        return cls([MemcachedClient(host, port, **opts) for host, port in servers], prefix=prefix)

    @property
    def clients(self) -> list[MemcachedClient]:
        return list(self._clients)

    def key_for(self, key: str) -> bytes:
        """The Memcached key the store uses for ``key`` (prefix, escaping and hashing applied)."""
        return memcached_key(self.prefix + key)

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("memcached store is closed")

    def _client(self, key: bytes) -> MemcachedClient:
        return self._clients[0] if self._ring is None else self._clients[self._ring.server(key)]

    def _by_client(self, keys: Iterable[bytes]) -> dict[int, list[bytes]]:
        groups: dict[int, list[bytes]] = {}
        for key in keys:
            index = 0 if self._ring is None else self._ring.server(key)
            groups.setdefault(index, []).append(key)
        return groups

    async def _on_each(
        self, groups: dict[int, R], call: Callable[[MemcachedClient, R], Awaitable[object]]
    ) -> None:
        """Run ``call`` for each server's share, concurrently; raise the first failure."""
        if len(groups) == 1:
            ((index, arg),) = groups.items()
            await call(self._clients[index], arg)
            return
        results = await asyncio.gather(
            *(call(self._clients[index], arg) for index, arg in groups.items()), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result

    # --- values --------------------------------------------------------------------------------

    async def get(self, key: str) -> bytes | None:
        self._check_open()
        mkey = self.key_for(key)
        return (await self._client(mkey).get_multi([mkey])).get(mkey)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        self._check_open()
        if not keys:
            return []
        mkeys = [self.key_for(key) for key in keys]
        found: dict[bytes, bytes] = {}

        async def fetch(client: MemcachedClient, group: list[bytes]) -> None:
            found.update(await client.get_multi(group))

        await self._on_each(self._by_client(mkeys), fetch)
        return [found.get(mkey) for mkey in mkeys]

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        self._check_open()
        mkey = self.key_for(key)
        await self._client(mkey).set(mkey, value, to_exptime(ttl))

    async def set_many(self, items: Sequence[tuple[str, bytes]], ttl: float) -> None:
        self._check_open()
        expires = to_exptime(ttl)
        if not items:
            return
        groups: dict[int, list[tuple[bytes, bytes]]] = {}
        for key, value in items:
            mkey = self.key_for(key)
            index = 0 if self._ring is None else self._ring.server(mkey)
            groups.setdefault(index, []).append((mkey, value))

        async def store(client: MemcachedClient, group: list[tuple[bytes, bytes]]) -> None:
            await client.set_multi(group, expires)

        await self._on_each(groups, store)

    async def delete(self, key: str) -> bool:
        self._check_open()
        mkey = self.key_for(key)
        return await self._client(mkey).delete(mkey)

    # --- counters ------------------------------------------------------------------------------

    async def incr(self, key: str, amount: int = 1) -> int:
        self._check_open()
        if isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
            raise ValueError(f"memcached counters only go up: amount must be an integer >= 0, got {amount!r}")
        mkey = self.key_for(key)
        client = self._client(mkey)
        value = await client.incr(mkey, amount)
        if value is None:
            # Missing: create it at 0 (a concurrent creator wins harmlessly) and increment that.
            await client.add(mkey, b"0", 0)
            value = await client.incr(mkey, amount)
            if value is None:
                raise StoreError("memcached counter vanished between its creation and its increment")
        return value

    async def get_with_counters(
        self, key: str, counter_keys: Sequence[str]
    ) -> tuple[bytes | None, list[int]]:
        values = await self.get_many([key, *counter_keys])
        try:
            counters = [0 if value is None else int(value) for value in values[1:]]
        except ValueError as exc:
            raise StoreError(f"memcached counter holds a non-integer value: {exc}") from exc
        return values[0], counters

    async def get_with_counters_or_lock(
        self, key: str, counter_keys: Sequence[str], lock_key: str, owner: str, ttl: float
    ) -> tuple[bytes | None, list[int], bool]:
        # Memcached has no conditional multi-key command: the read, then ``add`` for the lock.
        return await get_with_counters_then_lock(self, key, counter_keys, lock_key, owner, ttl)

    async def get_counters(self, keys: Sequence[str]) -> list[int]:
        values = await self.get_many(keys)
        try:
            # int() ignores the trailing spaces Memcached leaves after a decr shortened a number.
            return [0 if value is None else int(value) for value in values]
        except ValueError as exc:
            raise StoreError(f"memcached counter holds a non-integer value: {exc}") from exc

    # --- locks ---------------------------------------------------------------------------------

    async def acquire_lock(self, key: str, owner: str, ttl: float) -> bool:
        self._check_open()
        mkey = self.key_for(key)
        return await self._client(mkey).add(mkey, owner.encode(), to_exptime(ttl))

    async def release_lock(self, key: str, owner: str) -> bool:
        self._check_open()
        mkey = self.key_for(key)
        client = self._client(mkey)
        held = (await client.gets_multi([mkey])).get(mkey)
        if held is None or held[0] != owner.encode():
            return False
        # Expire it only if it is still the very item we read (see the module docstring).
        return await client.cas(mkey, b"", -1, held[1])

    # --- housekeeping --------------------------------------------------------------------------

    async def stats(self) -> StoreStats:
        """Sums over the servers; see the class docstring."""
        self._check_open()
        per_server = await asyncio.gather(*(client.stats() for client in self._clients))

        def total(*names: str) -> int | None:
            try:
                return sum(int(stats[name]) for stats in per_server for name in names)
            except (KeyError, ValueError):
                return None  # a server that does not report it: a partial sum would mislead

        return StoreStats(
            backend=self.name,
            entries=None if self.prefix else total("curr_items"),
            bytes=total("bytes"),
            evictions=total("evictions"),
            expirations=total("get_expired", "reclaimed", "crawler_reclaimed"),
        )

    async def ping(self) -> bool:
        """True when every server answers ``version``."""
        self._check_open()
        await asyncio.gather(*(client.version() for client in self._clients))
        return True

    async def close(self) -> None:
        """Close every connection. Idempotent; later calls raise ``StoreError``."""
        self._closed = True
        for client in self._clients:
            await client.close()
