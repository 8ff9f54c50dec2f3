"""Redis Cluster (and Valkey cluster) backend: :class:`RedisStore` on ``redis.asyncio.cluster``.

``redis+cluster://[user:password@]host:port[,host:port...][?option=value&...]`` names any number of
startup nodes; the client discovers the rest of the cluster (and follows MOVED/ASK) from them.

Every command :class:`RedisStore` sends is single-key and runs as is on the node that owns the
key's slot: GET, SET PX, SET NX PX, DEL, INCRBY and the compare-and-delete release script (its one
key decides the node; SCRIPT LOAD after NOSCRIPT goes to every primary). What differs here:

* multi-key reads (``get_many``, ``get_counters``) group the keys by hash slot and send one MGET
  per slot, all in one pipeline that redis-py splits by node and sends to the nodes concurrently,
  so a read costs one round trip per node involved; keys that all share one slot go as a single
  plain MGET. Measured through the store on a local 3-node cluster, this beats a
  non-transactional pipeline of single GETs at every size (4 keys in 4 slots: 0.26 vs 0.36 ms;
  20 keys in 20 slots: 0.68 vs 0.97 ms; 20 keys in one slot: 0.29 vs 0.75 ms), and separate
  concurrent MGETs per slot as soon as more than one slot is involved (20 slots: 1.5 ms);
* ``set_many`` is the non-transactional pipeline :class:`RedisStore` already uses; redis-py splits
  it by node the same way;
* ``stats()``, ``count_keys()`` and ``ping()`` ask every primary and add up / require all answers;
* failures the cluster client reports outside ``RedisError`` (no reachable startup node, a slot no
  node serves) become :class:`StoreError` like everything else.

Hash tags: Redis hashes only the part of a key between the first ``{`` and the next ``}`` when that
part is non-empty, so ``lcp:x:{abc}:body`` and ``lcp:e:{abc}`` share a slot and thus a node. Keys
the engine reads or writes together (an entry and its companions, the generation counters one
lookup checks) should carry the same ``{hash tag}``: their MGET is then one command on one node
instead of one per slot. Without tags everything still works, only with more commands per read.
Do not put braces in ``prefix`` (a tag in the prefix would send every key to one slot, one node).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Any, Concatenate, ParamSpec, TypeVar, cast
from urllib.parse import unquote, urlsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.exceptions import RedisClusterException, RedisError

from litellm_cache_plugin.store import (
    parse_options,
    positive_float,
    take_slot,
    url_options,
)
from litellm_cache_plugin.store.base import StoreError, StoreStats, get_with_counters_then_lock
from litellm_cache_plugin.store.memcached import parse_hosts
from litellm_cache_plugin.store.redis import (
    COMMON_OPTIONS,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_POOL_TIMEOUT,
    DEFAULT_RETRIES,
    DEFAULT_SOCKET_TIMEOUT,
    SCAN_COUNT,
    RedisStore,
    _errors,
    _int_or_none,
    glob_escape,
)

__all__ = ["RedisClusterStore"]

P = ParamSpec("P")
T = TypeVar("T")
S = TypeVar("S", bound=RedisStore)

DEFAULT_PORT = 6379

# The same URL options as a single Redis server, without the TLS ones.
_OPTIONS = COMMON_OPTIONS


def _cluster_call(
    method: Callable[Concatenate[S, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[S, P], Coroutine[Any, Any, T]]:
    """Run a store method the way the cluster client needs it (see :class:`RedisClusterStore`)."""

    @functools.wraps(method)
    async def call(self: S, /, *args: P.args, **kwargs: P.kwargs) -> T:
        store = cast("RedisClusterStore", self)
        store._check_open()  # before connecting: a closed store must not reconnect
        await store._take_slot()
        try:
            # A no-op once done. Without it, commands issued concurrently before the client knows
            # the cluster can be sent on connections that its discovery then closes under them.
            await store.cluster.initialize()
            return await method(self, *args, **kwargs)
        except (RedisClusterException, RedisError, OSError) as exc:
            # RedisClusterException (no reachable node, a slot nobody serves) is not a RedisError.
            raise StoreError(f"redis cluster: {type(exc).__name__}: {exc}") from exc
        finally:
            store._slots.release()

    return call


class RedisClusterStore(RedisStore):
    """A :class:`~litellm_cache_plugin.store.base.Store` on a Redis or Valkey cluster.

    ``client`` must return bytes (``decode_responses=False``, the default). ``close()`` closes it.
    ``stats()`` adds up every primary's INFO (server-wide figures, see :class:`RedisStore`);
    ``entries`` is the sum of DBSIZE when ``prefix`` is empty and ``None`` otherwise;
    ``count_keys()`` scans every primary.

    The cluster client's per-node pools do not wait for a free connection: one call too many
    fails, and redis-py then rediscovers the cluster, which breaks the calls in flight. So the
    store lets at most the client's ``max_connections`` calls run at once (each uses at most one
    connection per node) and makes the others wait up to ``pool_timeout`` seconds for their turn.
    """

    name = "redis+cluster"

    def __init__(
        self, client: RedisCluster, prefix: str = "", *, pool_timeout: float = DEFAULT_POOL_TIMEOUT
    ) -> None:
        # Not RedisStore.__init__: a cluster client has no single connection pool to check.
        kwargs = client.get_connection_kwargs()
        if kwargs.get("decode_responses"):
            raise ValueError("RedisClusterStore needs a client with decode_responses=False: values are bytes")
        self._cluster = client
        # The inherited methods only use commands both clients share, with the same signatures.
        self._client = cast(aioredis.Redis, client)
        self.prefix = prefix
        self.pool_timeout = positive_float(pool_timeout)
        self._slots = asyncio.Semaphore(int(kwargs.get("max_connections") or DEFAULT_MAX_CONNECTIONS))
        self._closed = False

    async def _take_slot(self) -> None:
        if not await take_slot(self._slots, self.pool_timeout):
            raise StoreError(f"redis cluster: no free connection within {self.pool_timeout} s")

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisClusterStore:
        """``redis+cluster://[user:password@]host:port[,host:port...][?option=value&...]``.

        Options (query parameters or keywords, keywords win): ``prefix``, ``max_connections`` (50
        per node, and as many calls at once), ``pool_timeout`` (1.0 s to wait for a turn beyond
        that), ``socket_timeout`` (1.0 s), ``socket_connect_timeout`` (= socket_timeout),
        ``health_check_interval`` (0 = off), ``retries`` (1: a command that meets a connection
        error or a timeout is retried once, immediately, after the client refreshed its view of
        the cluster), ``client_name``. Nothing connects until the first command.
        """
        base_url, query = url_options(url)
        parts = urlsplit(base_url)
        if parts.scheme.lower() != "redis+cluster":
            raise ValueError(
                f"RedisClusterStore.from_url needs a redis+cluster:// URL, got {parts.scheme}://"
            )
        if parts.path not in ("", "/"):
            raise ValueError("a redis+cluster:// URL has no database path: a cluster only has database 0")
        userinfo, _, hosts = parts.netloc.rpartition("@")
        username, _, password = userinfo.partition(":")
        opts = parse_options("redis+cluster", {**query, **options}, _OPTIONS)
        prefix = opts.pop("prefix", "")
        socket_timeout = opts.pop("socket_timeout", DEFAULT_SOCKET_TIMEOUT)
        retry = Retry(NoBackoff(), opts.pop("retries", DEFAULT_RETRIES))
        pool_timeout = opts.pop("pool_timeout", DEFAULT_POOL_TIMEOUT)
        client = RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in parse_hosts(hosts, DEFAULT_PORT)],
            username=unquote(username) or None,
            password=unquote(password) or None,
            max_connections=opts.pop("max_connections", DEFAULT_MAX_CONNECTIONS),
            socket_timeout=socket_timeout,
            socket_connect_timeout=opts.pop("socket_connect_timeout", socket_timeout),
            retry=retry,
            **opts,
        )
        return cls(client, prefix=prefix, pool_timeout=pool_timeout)

    @property
    def cluster(self) -> RedisCluster:
        """The underlying cluster client (``client`` is the same object, typed as a plain Redis)."""
        return self._cluster

    # --- what differs from a single server ------------------------------------------------------

    async def get_with_counters_or_lock(
        self, key: str, counter_keys: Sequence[str], lock_key: str, owner: str, ttl: float
    ) -> tuple[bytes | None, list[int], bool]:
        # A script's keys must share a slot (CROSSSLOT otherwise): the read, then SET NX, each a
        # cluster call of its own.
        return await get_with_counters_then_lock(self, key, counter_keys, lock_key, owner, ttl)

    async def _mget(self, keys: Sequence[str]) -> list[bytes | str | None]:
        self._check_open()
        if not keys:
            return []
        full_keys = [self._k(key) for key in keys]
        first_slot = key_slot(full_keys[0].encode())
        with _errors("MGET"):
            if all(key_slot(key.encode()) == first_slot for key in full_keys):
                # Keys sharing a hash tag: one plain MGET, no pipeline machinery.
                return await self._cluster.mget(full_keys)
            # One MGET per slot in one pipeline that redis-py sends to the nodes concurrently.
            return await self._cluster.mget_nonatomic(full_keys)

    @_cluster_call
    async def stats(self) -> StoreStats:
        """Sums over every primary; see the class docstring."""
        primaries = RedisCluster.PRIMARIES
        with _errors("INFO"):
            info: dict[str, dict[str, Any]] = await self._cluster.info(target_nodes=primaries)
            entries = None if self.prefix else int(await self._cluster.dbsize(target_nodes=primaries))
        return StoreStats(
            backend=self.name,
            entries=entries,
            bytes=_sum(node.get("used_memory") for node in info.values()),
            evictions=_sum(node.get("evicted_keys") for node in info.values()),
            expirations=_sum(node.get("expired_keys") for node in info.values()),
            coverage=self._coverage(),
        )

    @_cluster_call
    async def count_keys(self, key_prefix: str = "", *, max_keys: int) -> int | None:
        """:meth:`RedisStore.count_keys` over every primary (DBSIZE summed, then SCAN per node)."""
        primaries = RedisCluster.PRIMARIES
        match = glob_escape(self.prefix + key_prefix) + "*"
        with _errors("SCAN"):
            if int(await self._cluster.dbsize(target_nodes=primaries)) > max_keys:
                return None
            found = 0
            # SCAN goes to every primary; redis-py follows each node's cursor to its end.
            async for _ in self._cluster.scan_iter(match=match, count=SCAN_COUNT, target_nodes=primaries):
                found += 1
                if found > max_keys:
                    return None
        return found

    @_cluster_call
    async def ping(self) -> bool:
        """True when every primary answers: a cluster missing one serves only part of the keys."""
        with _errors("PING"):
            return bool(await self._cluster.ping(target_nodes=RedisCluster.PRIMARIES))

    # Every public call but close(), inherited or not, goes through _cluster_call.
    get = _cluster_call(RedisStore.get)
    get_many = _cluster_call(RedisStore.get_many)
    set = _cluster_call(RedisStore.set)
    set_many = _cluster_call(RedisStore.set_many)
    delete = _cluster_call(RedisStore.delete)
    incr = _cluster_call(RedisStore.incr)
    get_counters = _cluster_call(RedisStore.get_counters)
    get_with_counters = _cluster_call(RedisStore.get_with_counters)
    acquire_lock = _cluster_call(RedisStore.acquire_lock)
    release_lock = _cluster_call(RedisStore.release_lock)


def _sum(values: Iterable[object]) -> int | None:
    # None as soon as one node does not report the figure: a partial sum would mislead.
    total = 0
    for value in values:
        number = _int_or_none(value)
        if number is None:
            return None
        total += number
    return total
