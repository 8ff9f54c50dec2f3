"""Redis and Valkey backend on ``redis.asyncio`` (redis-py >= 5).

Every key is sent as ``prefix + key``. Values and locks expire server-side (``PX``, milliseconds,
rounded up, at least 1 ms); counters have no TTL and, like everything else in the database, obey the
server's ``maxmemory-policy`` (use a ``volatile-*`` policy so that only TTL'd entries get evicted).

Cluster: the engine puts a ``{hash tag}`` in keys it reads or writes together. This class keeps
every command single-key except MGET (``get_many``/``get_counters``), which a ``redis+cluster://``
variant will have to split by slot; see ``_mget``. Non-transactional pipelines, the one-key release
script, INFO and DBSIZE all have per-node equivalents there.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError

from litellm_cache_plugin.store import (
    flag,
    non_negative_float,
    non_negative_int,
    one_of,
    parse_options,
    positive_float,
    positive_int,
    take_slot,
    text,
    url_options,
)
from litellm_cache_plugin.store.base import Coverage, StoreError, StoreStats

__all__ = ["RedisStore"]

# Compare-and-delete: only the owner may release, atomically (GET then DEL from the client could
# delete a lock that expired and was taken by someone else in between).
_RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""
_RELEASE_SHA = hashlib.sha1(_RELEASE_LUA.encode()).hexdigest()

# get_with_counters_or_lock: KEYS = entry, lock, counters...; ARGV = owner, lock TTL in ms. Replies
# the entry, the counters, then 1 if the lock was taken (only when the entry is missing).
_READ_OR_LOCK_LUA = """
local entry = redis.call('GET', KEYS[1])
local reply = {entry}
for i = 3, #KEYS do
    reply[i - 1] = redis.call('GET', KEYS[i])
end
local locked = 0
if not entry and redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
    locked = 1
end
reply[#KEYS] = locked
return reply
"""
_READ_OR_LOCK_SHA = hashlib.sha1(_READ_OR_LOCK_LUA.encode()).hexdigest()

_DB_PATH = re.compile(r"^(/\d*)?$")

COMMON_OPTIONS = {
    "prefix": text,
    "max_connections": positive_int,
    "socket_timeout": positive_float,
    "socket_connect_timeout": positive_float,
    "pool_timeout": positive_float,
    "health_check_interval": non_negative_float,
    "retries": non_negative_int,
    "client_name": text,
}
_SSL_OPTIONS = {
    "ssl_cert_reqs": one_of("none", "optional", "required"),
    "ssl_ca_certs": text,
    "ssl_certfile": text,
    "ssl_keyfile": text,
    "ssl_check_hostname": flag,
}

# A cache must answer fast or not at all: the guard's deadline (tens of ms) is the real limit, these
# only stop a stuck socket from being held forever when the store is used unguarded.
DEFAULT_MAX_CONNECTIONS = 50
DEFAULT_SOCKET_TIMEOUT = 1.0
DEFAULT_POOL_TIMEOUT = 1.0
DEFAULT_RETRIES = 1
# Keys SCAN examines per round trip when counting the cache's keys (count_keys).
SCAN_COUNT = 1000


def _ttl_ms(ttl: float) -> int:
    if not (isinstance(ttl, (int, float)) and math.isfinite(ttl) and ttl > 0):
        raise ValueError(f"ttl must be a positive finite number of seconds, got {ttl!r}")
    # Rounded up so that an entry never lives shorter than asked; at least 1 ms.
    return max(1, math.ceil(ttl * 1000))


class WaitingConnectionPool(aioredis.BlockingConnectionPool):
    """A :class:`~redis.asyncio.BlockingConnectionPool` (at most ``max_connections``; a caller beyond
    that waits up to ``timeout`` seconds for a free one) that pays for waiting only when it waits.

    redis-py's blocking pool takes a condition and arms a timeout on every command, about 15 µs of a
    70 µs loopback GET. Here a semaphore admits callers (free when a slot is open) and the plain
    pool's own bookkeeping hands out the connection; with a slot per caller it never runs out.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._slots = asyncio.Semaphore(self.max_connections)
        # Connections handed out by get_connection (their release frees a slot); one the plain pool
        # takes back itself when connecting fails was never handed out.
        self._holding: set[int] = set()

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        slots = self._slots
        if not await take_slot(slots, self.timeout):
            raise RedisConnectionError("No connection available.")
        take = aioredis.ConnectionPool.get_connection
        try:
            connection = await take(self, *args, **kwargs)  # type: ignore[no-untyped-call]
        except BaseException:
            slots.release()
            raise
        self._holding.add(id(connection))
        return connection

    async def release(self, connection: Any) -> None:
        held = id(connection) in self._holding
        self._holding.discard(id(connection))
        try:
            await aioredis.ConnectionPool.release(self, connection)
        finally:
            if held:
                self._slots.release()


@contextmanager
def _errors(op: str) -> Iterator[None]:
    # OSError covers what slips past redis-py's own wrapping (resets during connect, TLS errors).
    try:
        yield
    except (RedisError, OSError) as exc:
        raise StoreError(f"redis {op} failed: {type(exc).__name__}: {exc}") from exc


class RedisStore:
    """A :class:`~litellm_cache_plugin.store.base.Store` on one Redis or Valkey server.

    ``client`` must return bytes (``decode_responses=False``, the default). ``close()`` closes the
    client and, when the client owns it (built by :meth:`from_url` or ``Redis.from_url``), its pool.

    ``stats()`` is honest about what one cheap round trip can tell, and says so in its
    ``coverage``: ``evictions``, ``expirations`` (INFO ``evicted_keys``/``expired_keys``) and
    ``bytes`` (INFO ``used_memory``) are for the whole server (``server``: all databases, other
    applications' keys included; Redis keeps none of them per database or per prefix);
    ``entries`` is DBSIZE when ``prefix`` is empty (``database``: every key of the database, ours
    or not) and ``None`` otherwise. The cache's own key count needs a scan:
    :meth:`count_keys`, which the engine runs in the background
    (:class:`~litellm_cache_plugin.store.own_entries.OwnEntries`).
    """

    name = "redis"

    def __init__(self, client: aioredis.Redis, prefix: str = "") -> None:
        if client.connection_pool.connection_kwargs.get("decode_responses"):
            raise ValueError("RedisStore needs a client with decode_responses=False: values are bytes")
        self._client = client
        self.prefix = prefix
        self._closed = False

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisStore:
        """``redis://[user:password@]host[:port][/db][?option=value&...]`` or ``rediss://`` for TLS.

        Options (query parameters or keywords, keywords win): ``prefix``, ``max_connections`` (50),
        ``socket_timeout`` (1.0 s), ``socket_connect_timeout`` (= socket_timeout), ``pool_timeout``
        (1.0 s to wait for a free pooled connection), ``health_check_interval`` (0 = off),
        ``retries`` (1 immediate retry on a connection error, e.g. a pooled connection the server
        closed; timeouts are not retried), ``client_name``; with ``rediss://`` also
        ``ssl_cert_reqs`` (none/optional/required), ``ssl_ca_certs``, ``ssl_certfile``,
        ``ssl_keyfile``, ``ssl_check_hostname``. Nothing connects until the first command.
        """
        base_url, query = url_options(url)
        parts = urlsplit(base_url)
        scheme = parts.scheme.lower()
        if scheme not in ("redis", "rediss"):
            raise ValueError(f"RedisStore.from_url needs a redis:// or rediss:// URL, got {scheme}://")
        if not _DB_PATH.match(parts.path):
            # redis-py would silently fall back to database 0.
            raise ValueError(
                f"the path of a {scheme}:// URL must be a database number like /3, not {parts.path!r}"
            )
        spec = {**COMMON_OPTIONS, **_SSL_OPTIONS} if scheme == "rediss" else COMMON_OPTIONS
        opts = parse_options(scheme, {**query, **options}, spec)
        prefix = opts.pop("prefix", "")
        socket_timeout = opts.pop("socket_timeout", DEFAULT_SOCKET_TIMEOUT)
        kwargs: dict[str, Any] = {
            "max_connections": opts.pop("max_connections", DEFAULT_MAX_CONNECTIONS),
            "timeout": opts.pop("pool_timeout", DEFAULT_POOL_TIMEOUT),
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": opts.pop("socket_connect_timeout", socket_timeout),
            "retry": Retry(NoBackoff(), opts.pop("retries", DEFAULT_RETRIES), (RedisConnectionError,)),
            **opts,
        }
        try:
            # A blocking pool: a burst beyond max_connections waits briefly for a free connection
            # instead of failing at once, which would trip the circuit breaker for no reason.
            pool = WaitingConnectionPool.from_url(base_url, **kwargs)
        except (ValueError, TypeError) as exc:
            # redis-py's messages name the part of the URL at fault, never the password.
            raise ValueError(f"invalid {scheme}:// URL: {exc}") from None
        return cls(aioredis.Redis.from_pool(pool), prefix=prefix)

    @property
    def client(self) -> aioredis.Redis:
        return self._client

    def _k(self, key: str) -> str:
        return self.prefix + key

    def _check_open(self) -> None:
        # redis-py would silently reconnect after close(); a closed store should say so.
        if self._closed:
            raise StoreError("redis store is closed")

    # --- values --------------------------------------------------------------------------------

    async def get(self, key: str) -> bytes | None:
        self._check_open()
        with _errors("GET"):
            value = await self._client.get(self._k(key))
        return _as_bytes(value)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return [_as_bytes(v) for v in await self._mget(keys)]

    async def _mget(self, keys: Sequence[str]) -> list[bytes | str | None]:
        self._check_open()
        if not keys:
            return []
        # Cluster: MGET fails with CROSSSLOT unless all keys share a slot; the cluster variant must
        # group keys by slot (hash tags make the engine's groups land together) and reassemble.
        with _errors("MGET"):
            return await self._client.mget([self._k(key) for key in keys])

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        self._check_open()
        px = _ttl_ms(ttl)
        with _errors("SET"):
            await self._client.set(self._k(key), value, px=px)

    async def set_many(self, items: Sequence[tuple[str, bytes]], ttl: float) -> None:
        self._check_open()
        if not items:
            return
        px = _ttl_ms(ttl)
        # Not a transaction (MULTI would need one slot in a cluster and buys nothing here): each SET
        # stands alone; one round trip.
        pipe = self._client.pipeline(transaction=False)
        for key, value in items:
            pipe.set(self._k(key), value, px=px)
        with _errors("SET (pipeline)"):
            await pipe.execute()

    async def delete(self, key: str) -> bool:
        self._check_open()
        with _errors("DEL"):
            return bool(await self._client.delete(self._k(key)))

    # --- counters ------------------------------------------------------------------------------

    async def incr(self, key: str, amount: int = 1) -> int:
        self._check_open()
        with _errors("INCRBY"):
            return int(await self._client.incrby(self._k(key), amount))

    async def get_with_counters(
        self, key: str, counter_keys: Sequence[str]
    ) -> tuple[bytes | None, list[int]]:
        # One MGET for the entry and its invalidation counters (the cluster variant groups by slot).
        values = await self._mget([key, *counter_keys])
        try:
            counters = [0 if v is None else int(v) for v in values[1:]]
        except ValueError as exc:
            raise StoreError(f"redis counter holds a non-integer value: {exc}") from exc
        return _as_bytes(values[0]), counters

    async def get_with_counters_or_lock(
        self, key: str, counter_keys: Sequence[str], lock_key: str, owner: str, ttl: float
    ) -> tuple[bytes | None, list[int], bool]:
        # One script: the read and, on a miss, the fill lock, in the read's round trip.
        self._check_open()
        keys = [self._k(key), self._k(lock_key), *(self._k(k) for k in counter_keys)]
        reply = await self._script(_READ_OR_LOCK_SHA, _READ_OR_LOCK_LUA, keys, [owner, _ttl_ms(ttl)])
        try:
            counters = [0 if v is None else int(v) for v in reply[1:-1]]
        except ValueError as exc:
            raise StoreError(f"redis counter holds a non-integer value: {exc}") from exc
        return _as_bytes(reply[0]), counters, reply[-1] == 1

    async def _script(self, sha: str, source: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        with _errors("EVALSHA"):
            try:
                return await self._client.evalsha(sha, len(keys), *keys, *args)
            except NoScriptError:
                # First use on this server, or its script cache was flushed (restart, failover,
                # SCRIPT FLUSH): load it once and run it again.
                await self._client.script_load(source)
                return await self._client.evalsha(sha, len(keys), *keys, *args)

    async def get_counters(self, keys: Sequence[str]) -> list[int]:
        values = await self._mget(keys)
        try:
            return [0 if v is None else int(v) for v in values]
        except ValueError as exc:
            raise StoreError(f"redis counter holds a non-integer value: {exc}") from exc

    # --- locks ---------------------------------------------------------------------------------

    async def acquire_lock(self, key: str, owner: str, ttl: float) -> bool:
        self._check_open()
        px = _ttl_ms(ttl)
        with _errors("SET NX"):
            return bool(await self._client.set(self._k(key), owner, nx=True, px=px))

    async def release_lock(self, key: str, owner: str) -> bool:
        self._check_open()
        deleted = await self._script(_RELEASE_SHA, _RELEASE_LUA, [self._k(key)], [owner])
        return bool(deleted)

    # --- housekeeping --------------------------------------------------------------------------

    async def stats(self) -> StoreStats:
        """See the class docstring for what each figure covers."""
        self._check_open()
        pipe = self._client.pipeline(transaction=False)
        pipe.info("stats")
        pipe.info("memory")
        if not self.prefix:
            pipe.dbsize()
        with _errors("INFO"):
            replies = await pipe.execute()
        stats, memory = replies[0], replies[1]
        return StoreStats(
            backend=self.name,
            entries=int(replies[2]) if not self.prefix else None,
            bytes=_int_or_none(memory.get("used_memory")),
            evictions=_int_or_none(stats.get("evicted_keys")),
            expirations=_int_or_none(stats.get("expired_keys")),
            coverage=self._coverage(),
        )

    def _coverage(self) -> dict[str, Coverage]:
        coverage: dict[str, Coverage] = {"bytes": "server", "evictions": "server", "expirations": "server"}
        if not self.prefix:
            coverage["entries"] = "database"
        return coverage

    async def count_keys(self, key_prefix: str = "", *, max_keys: int) -> int | None:
        """Keys starting with ``prefix + key_prefix``, by SCAN MATCH (``SCAN_COUNT`` keys examined per
        round trip); ``None`` without scanning when the database holds more than ``max_keys`` keys
        (DBSIZE). As exact as SCAN: keys added or removed meanwhile may or may not be counted, and a
        key may be counted twice if the server resizes its table during the scan. Off the request
        path only: it reads the whole key space of the database."""
        self._check_open()
        match = glob_escape(self.prefix + key_prefix) + "*"
        with _errors("SCAN"):
            if int(await self._client.dbsize()) > max_keys:
                return None
            found = 0
            async for _ in self._client.scan_iter(match=match, count=SCAN_COUNT):
                found += 1
                if found > max_keys:  # the database grew meanwhile: stop, as promised
                    return None
        return found

    async def ping(self) -> bool:
        self._check_open()
        with _errors("PING"):
            return bool(await self._client.ping())

    async def close(self) -> None:
        """Close the client (and its pool when it owns it). Idempotent; later calls raise StoreError."""
        if self._closed:
            return
        self._closed = True
        with _errors("close"):
            await self._client.aclose()


def _as_bytes(value: bytes | str | None) -> bytes | None:
    # With decode_responses=False (checked at construction) redis-py returns bytes; the str arm of
    # its annotations only exists for decoding clients.
    if isinstance(value, str):
        return value.encode()
    return value


def glob_escape(text: str) -> str:
    """``text`` as a literal in a Redis glob pattern (MATCH, KEYS)."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _int_or_none(value: object) -> int | None:
    # INFO fields are parsed to int by redis-py; anything else means the server does not report it.
    return value if isinstance(value, int) and not isinstance(value, bool) else None
