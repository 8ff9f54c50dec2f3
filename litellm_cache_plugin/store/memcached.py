"""Memcached backend, with its own small asyncio client for the text protocol (no dependency).

``memcached://host[:port][,host[:port]...][?prefix=...&option=value...]``; the port defaults to
11211. With several servers each key lives on one of them, chosen by a consistent-hash ring (160
points per server), so adding or removing a server moves only about its share of the keys;
``get_many``/``get_counters``/``set_many`` send each server its share concurrently, one round trip
each (multi-key ``get``, pipelined ``set``).

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

Connections: each server has a pool of up to ``max_connections`` asyncio streams, opened on
demand and reused. A connection whose exchange failed, timed out or was cancelled half way is
closed, never reused (its stream position is unknown). A connection error on a pooled connection
(the server restarted, or closed it while idle) is retried ``retries`` times on a new connection
after the server's other idle connections are dropped; like the Redis backend, this can apply an
``incr`` twice in the rare case that the server had executed it before the connection broke.
"""

from __future__ import annotations

import asyncio
import bisect
import hashlib
import math
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar
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
from litellm_cache_plugin.store.base import StoreError, StoreStats

__all__ = [
    "DEFAULT_PORT",
    "MAX_KEY_LENGTH",
    "MemcachedClient",
    "MemcachedError",
    "MemcachedStore",
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
# Keys per ``get`` line: Memcached copes with long lines, but bounded lines keep its per-request
# buffers small; the lines of one call still go out in one write, one round trip.
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


class _ServerError(MemcachedError):
    """``SERVER_ERROR``: the server refused one command; the connection is still in step."""


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


class _Connection:
    __slots__ = ("reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def line(self) -> bytes:
        return (await self.reader.readuntil(b"\r\n"))[:-2]

    async def block(self, size: int) -> bytes:
        data = await self.reader.readexactly(size + 2)
        if data[-2:] != b"\r\n":
            raise MemcachedError("malformed value block in the server's reply")
        return data[:-2]

    def close(self) -> None:
        self.writer.close()


Reader = Callable[[_Connection], Awaitable[R]]


class MemcachedClient:
    """One Memcached server over a pool of asyncio streams, speaking the text protocol.

    Keys are ``bytes`` Memcached accepts as they are (see :func:`memcached_key`); ``exptime`` is
    Memcached's (seconds up to 30 days, else a unix timestamp; 0 never expires, < 0 already
    expired). Every method raises :class:`MemcachedError` (a ``StoreError``) when the server cannot
    be reached, times out or answers with an error. Not thread-safe; one event loop.
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
        self.host = host
        self.port = port
        self.socket_timeout = socket_timeout
        self.socket_connect_timeout = socket_connect_timeout or socket_timeout
        self.pool_timeout = pool_timeout
        self.retries = retries
        self._idle: list[_Connection] = []
        self._slots = asyncio.Semaphore(max_connections)
        self._closed = False

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    # --- commands ------------------------------------------------------------------------------

    async def get_multi(self, keys: Sequence[bytes]) -> dict[bytes, bytes]:
        """Values of the keys found, in one round trip."""
        return {key: value for key, (value, _) in (await self._retrieve(b"get", keys)).items()}

    async def gets_multi(self, keys: Sequence[bytes]) -> dict[bytes, tuple[bytes, int]]:
        """(value, CAS unique) of the keys found, in one round trip."""
        return await self._retrieve(b"gets", keys)

    async def set(self, key: bytes, value: bytes, exptime: int, flags: int = 0) -> bool:
        """Store unconditionally. False only when the value is too large for the server."""
        return (await self.set_multi([(key, value)], exptime, flags))[0]

    async def set_multi(
        self, items: Sequence[tuple[bytes, bytes]], exptime: int, flags: int = 0
    ) -> list[bool]:
        """Pipelined ``set`` of every item in one round trip; False where the value was too large."""
        if not items:
            return []
        payload = b"".join(_storage(b"set", key, value, exptime, flags) for key, value in items)
        replies = await self._run(payload, lambda conn: _lines(conn, len(items)))
        results: list[bool] = []
        for reply in replies:
            try:
                results.append(_stored(reply))
            except _ServerError as exc:
                if b"too large" not in reply:
                    raise exc from None
                results.append(False)
        return results

    async def add(self, key: bytes, value: bytes, exptime: int, flags: int = 0) -> bool:
        """Store only if the key is missing (or expired). True if stored."""
        return _stored(await self._one_line(_storage(b"add", key, value, exptime, flags)))

    async def cas(self, key: bytes, value: bytes, exptime: int, cas_unique: int, flags: int = 0) -> bool:
        """Store only if the key's CAS value is still ``cas_unique``. True if stored."""
        command = b"cas %b %d %d %d %d\r\n%b\r\n" % (key, flags, exptime, len(value), cas_unique, value)
        return _stored(await self._one_line(command))

    async def delete(self, key: bytes) -> bool:
        """True if the key existed (and had not expired)."""
        reply = await self._one_line(b"delete %b\r\n" % key)
        if reply == b"DELETED":
            return True
        if reply == b"NOT_FOUND":
            return False
        raise _reply_error(reply)

    async def incr(self, key: bytes, amount: int) -> int | None:
        """New value, or None if the key is missing. ``amount`` >= 0; wraps at 2**64."""
        return await self._arith(b"incr", key, amount)

    async def decr(self, key: bytes, amount: int) -> int | None:
        """New value (never below 0), or None if the key is missing."""
        return await self._arith(b"decr", key, amount)

    async def version(self) -> str:
        reply = await self._one_line(b"version\r\n")
        if not reply.startswith(b"VERSION "):
            raise _reply_error(reply)
        return reply[8:].decode("ascii", "replace")

    async def stats(self) -> dict[str, str]:
        """The general ``stats`` of the server, as strings."""

        async def read(conn: _Connection) -> dict[str, str]:
            found: dict[str, str] = {}
            while (line := await conn.line()) != b"END":
                parts = line.split(b" ", 2)
                if len(parts) != 3 or parts[0] != b"STAT":
                    raise _out_of_step(line)
                found[parts[1].decode("ascii", "replace")] = parts[2].decode("ascii", "replace")
            return found

        return await self._run(b"stats\r\n", read)

    async def close(self) -> None:
        """Close the pooled connections; the ones in use close when they come back. Idempotent."""
        self._closed = True
        self._drop_idle()

    # --- protocol helpers ----------------------------------------------------------------------

    async def _retrieve(self, command: bytes, keys: Sequence[bytes]) -> dict[bytes, tuple[bytes, int]]:
        unique = list(dict.fromkeys(keys))
        if not unique:
            return {}
        batches = [unique[i : i + GET_BATCH] for i in range(0, len(unique), GET_BATCH)]
        payload = b"".join(command + b" " + b" ".join(batch) + b"\r\n" for batch in batches)

        async def read(conn: _Connection) -> dict[bytes, tuple[bytes, int]]:
            found: dict[bytes, tuple[bytes, int]] = {}
            ended = 0
            while ended < len(batches):
                line = await conn.line()
                if line == b"END":
                    ended += 1
                    continue
                parts = line.split(b" ")
                if parts[0] != b"VALUE" or len(parts) not in (4, 5):
                    raise _out_of_step(line)
                value = await conn.block(int(parts[3]))
                found[parts[1]] = (value, int(parts[4]) if len(parts) == 5 else 0)
            return found

        return await self._run(payload, read)

    async def _arith(self, command: bytes, key: bytes, amount: int) -> int | None:
        reply = await self._one_line(b"%b %b %d\r\n" % (command, key, amount))
        if reply == b"NOT_FOUND":
            return None
        if reply.isdigit():
            return int(reply)
        raise _reply_error(reply)

    async def _one_line(self, payload: bytes) -> bytes:
        return await self._run(payload, _Connection.line)

    # --- the pool ------------------------------------------------------------------------------

    async def _run(self, payload: bytes, read: Reader[R]) -> R:
        """Send ``payload`` on a pooled connection and parse the reply with ``read``."""
        if self._closed:
            raise MemcachedError(f"memcached client for {self.address} is closed")
        attempt = 0
        while True:
            await self._take_slot()
            try:
                conn, reused = await self._connection()
            except BaseException:
                self._slots.release()
                raise
            try:
                # Readers raise only when the stream is out of step; a SERVER_ERROR reply to a
                # one-line command is returned and judged by the caller, the connection kept.
                result = await asyncio.wait_for(_exchange(conn, payload, read), self.socket_timeout)
            except BaseException as exc:
                conn.close()  # out of step or broken: never reuse it
                self._slots.release()
                if not isinstance(exc, Exception):
                    raise  # cancellation (e.g. the guard's deadline) goes through as it is
                if reused and attempt < self.retries and _is_connection_failure(exc):
                    # Most likely the server restarted: its other idle connections are dead too.
                    self._drop_idle()
                    attempt += 1
                    continue
                if isinstance(exc, MemcachedError):
                    raise
                raise MemcachedError(f"memcached {self.address}: {_describe(exc)}") from exc
            self._give_back(conn)
            return result

    async def _take_slot(self) -> None:
        if not await take_slot(self._slots, self.pool_timeout):
            raise MemcachedError(f"memcached {self.address}: no free connection within {self.pool_timeout} s")

    async def _connection(self) -> tuple[_Connection, bool]:
        if self._idle:
            return self._idle.pop(), True
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port), self.socket_connect_timeout
            )
        except (asyncio.TimeoutError, OSError) as exc:
            raise MemcachedError(f"memcached {self.address}: connect failed: {_describe(exc)}") from exc
        return _Connection(reader, writer), False

    def _give_back(self, conn: _Connection) -> None:
        if self._closed:
            conn.close()
        else:
            self._idle.append(conn)
        self._slots.release()

    def _drop_idle(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


def _is_connection_failure(exc: Exception) -> bool:
    # Broken or closed by the peer; a timeout (an OSError too since 3.11) says nothing about that.
    return isinstance(exc, (OSError, asyncio.IncompleteReadError)) and not isinstance(
        exc, asyncio.TimeoutError
    )


async def _exchange(conn: _Connection, payload: bytes, read: Reader[R]) -> R:
    conn.writer.write(payload)
    await conn.writer.drain()
    return await read(conn)


async def _lines(conn: _Connection, count: int) -> list[bytes]:
    return [await conn.line() for _ in range(count)]


def _storage(command: bytes, key: bytes, value: bytes, exptime: int, flags: int) -> bytes:
    return b"%b %b %d %d %d\r\n%b\r\n" % (command, key, flags, exptime, len(value), value)


def _stored(reply: bytes) -> bool:
    if reply == b"STORED":
        return True
    if reply in (b"NOT_STORED", b"EXISTS", b"NOT_FOUND"):
        return False
    raise _reply_error(reply)


def _reply_error(reply: bytes) -> MemcachedError:
    """The error for the reply to a one-line command that is not one of its expected answers."""
    if reply.startswith(b"SERVER_ERROR"):
        return _ServerError(f"memcached: {reply[:200].decode('ascii', 'replace')}")
    # ERROR, CLIENT_ERROR (after a bad data block the server may read our data as commands).
    return _out_of_step(reply)


def _out_of_step(reply: bytes) -> MemcachedError:
    # Not a _ServerError: the connection gets closed, since its replies may no longer line up.
    return MemcachedError(f"memcached: unexpected reply {reply[:200].decode('ascii', 'replace')!r}")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    if isinstance(exc, asyncio.IncompleteReadError):
        return "connection closed by the server"
    if isinstance(exc, (ValueError, IndexError)):
        return f"malformed reply ({exc})"
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
        per server), ``socket_timeout`` (1.0 s per command), ``socket_connect_timeout``
        (= socket_timeout), ``pool_timeout`` (1.0 s to wait for a free connection), ``retries`` (1
        retry on a new connection when a pooled one turns out dead). Nothing connects until the
        first command.
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
