"""Vector search on a Redis server with the search module (RediSearch: Redis Stack, Redis 8), on
redis-py's ``redis.commands.search`` (``FT.CREATE`` with a ``VECTOR`` field, ``FT.SEARCH`` KNN with a
``TAG`` filter). The semantic layer's shared index (``layers.semantic.index: redis+search://...``)
uses it through ``semantic/shared.py``; nothing here knows about prompts or the guard.

Layout (``prefix`` defaults to ``lcp:sv:``)::

    {prefix}{dims}:{tag}:{member}   a HASH: "tag" (TAG), "vec" (VECTOR, float32, cosine) and the
                                    caller's fields (stored, not indexed); expires with PEXPIRE
    {prefix}idx:{dims}              the search index over {prefix}{dims}: (one per vector size)

A query is ``(@tag:{<tag>})=>[KNN k @vec $vec AS dist]``: the server only ranks documents whose tag
is the one asked for, and every hit's tag is checked again here before it is returned, so a bug in the
ranking cannot hand out another tag's document. Tags and members are restricted to ``[A-Za-z0-9_]``
(callers pass hashes), so nothing needs escaping in the query language.

Expiry is Redis's own: the search module drops a document when its key expires or is deleted. The
index is created on first use; when it disappears (a restarted server without persistence, a
``FLUSHALL``) a search that finds it missing creates it again, which also indexes the keys still
there. A single server (or a proxy in front of several): the search module's cluster coordinator is
not used.

:class:`GuardedVectorSearch` gives every call the backend deadline and the store's circuit breaker,
like :class:`~litellm_cache_plugin.store.guarded.GuardedStore`: a call returns within the deadline or
raises :class:`~litellm_cache_plugin.store.base.StoreError`.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar

import redis.asyncio as aioredis
from redis.commands.search.field import TagField, VectorField
from redis.commands.search.index_definition import IndexDefinition, IndexType
from redis.commands.search.query import Query
from redis.exceptions import RedisError, ResponseError

from litellm_cache_plugin.store import one_of, positive_int, url_options
from litellm_cache_plugin.store.base import StoreError
from litellm_cache_plugin.store.deadline import within_deadline
from litellm_cache_plugin.store.guarded import CircuitBreaker, CircuitOpenError

__all__ = [
    "SCHEMES",
    "GuardedVectorSearch",
    "RedisVectorSearch",
    "VectorHit",
    "VectorSearch",
    "open_vector_search",
]

SCHEMES = ("redis+search", "rediss+search")
DEFAULT_PREFIX = "lcp:sv:"
_SAFE = re.compile(r"^[A-Za-z0-9_]{1,128}$")
_TAG_FIELD = "tag"
_VECTOR_FIELD = "vec"
_RESERVED = {_TAG_FIELD, _VECTOR_FIELD, "dist", "id", "payload"}
# Keys examined per FT.SEARCH page when a whole tag is dropped.
_DROP_PAGE = 1000

Algorithm = Literal["hnsw", "flat"]

_OPTIONS = {
    "algorithm": one_of("hnsw", "flat"),
    "m": positive_int,
    "ef_construction": positive_int,
    "ef_runtime": positive_int,
}

T = TypeVar("T")


@dataclass(frozen=True)
class VectorHit:
    """One document near the query: ``distance`` is the cosine distance (1 - cosine similarity)."""

    member: str
    distance: float
    fields: Mapping[str, str]


class VectorSearch(Protocol):
    """What the semantic layer's shared index needs from a vector search engine."""

    async def add(
        self, tag: str, member: str, vector: bytes, dims: int, fields: Mapping[str, str], ttl: float
    ) -> None:
        """Store (or replace) ``member`` under ``tag``: ``vector`` is ``dims`` float32 little-endian."""
        ...

    async def knn(self, tag: str, vector: bytes, dims: int, k: int, fields: Sequence[str]) -> list[VectorHit]:
        """Up to ``k`` members of ``tag`` nearest to ``vector``, nearest first, with ``fields``."""
        ...

    async def delete(self, tag: str, member: str, dims: int) -> bool: ...

    async def ensure_index(self, dims: int) -> None:
        """Create the index of ``dims``-sized vectors if it does not exist (idempotent)."""
        ...

    async def drop_tag(self, tag: str, dims: int) -> int:
        """Delete every member of ``tag``; returns how many."""
        ...

    async def count(self, dims: int) -> int | None:
        """Documents in the index of ``dims``-sized vectors (``None``: no such index yet)."""
        ...

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...


def _check_name(what: str, value: str) -> str:
    if not _SAFE.match(value):
        raise ValueError(f"a vector search {what} must match [A-Za-z0-9_]{{1,128}} (a hash), got {value!r}")
    return value


@contextmanager
def _errors(op: str) -> Iterator[None]:
    try:
        yield
    except (RedisError, OSError) as exc:
        raise StoreError(f"redis vector search {op} failed: {type(exc).__name__}: {exc}") from exc


def _missing_index(error: ResponseError) -> bool:
    text = str(error).lower()
    return "no such index" in text or "unknown index name" in text


class RedisVectorSearch:
    """:class:`VectorSearch` on one Redis server with the search module (see the module docstring).

    ``client`` must return bytes (``decode_responses=False``). ``algorithm``: ``hnsw`` (approximate,
    ``m``/``ef_construction``/``ef_runtime``) or ``flat`` (exact brute force over the tag's
    documents). ``ef_runtime`` defaults to 100, not the module's 10: a served match must be found, and
    with 10 the benchmark's 100 k-record scope lost 45% of its hits (75 of 136). With a selective tag
    filter the module itself brute-forces the filtered documents, so a small scope is searched exactly
    whatever the algorithm.
    """

    name = "redis+search"

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        prefix: str = DEFAULT_PREFIX,
        algorithm: Algorithm = "hnsw",
        m: int = 16,
        ef_construction: int = 200,
        ef_runtime: int = 100,
    ) -> None:
        if client.connection_pool.connection_kwargs.get("decode_responses"):
            raise ValueError(
                "RedisVectorSearch needs a client with decode_responses=False: vectors are bytes"
            )
        self._client = client
        self.prefix = prefix
        self.algorithm: Algorithm = algorithm
        self.m = m
        self.ef_construction = ef_construction
        self.ef_runtime = ef_runtime
        self._ready: set[int] = set()  # vector sizes whose index this process created or found
        self._creating: dict[int, asyncio.Future[None]] = {}

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisVectorSearch:
        """``redis+search://[user:password@]host[:port][/db][?option=value&...]`` (``rediss+search://``
        for TLS). Options: ``prefix`` (``lcp:sv:``), ``algorithm`` (``hnsw`` or ``flat``), ``m`` (16),
        ``ef_construction`` (200), ``ef_runtime`` (100), and every connection option of
        :meth:`~litellm_cache_plugin.store.redis.RedisStore.from_url` (``max_connections``,
        ``socket_timeout``, ...). Nothing connects until the first command."""
        from litellm_cache_plugin.store.redis import RedisStore

        base_url, query = url_options(url)
        scheme, sep, rest = base_url.partition("://")
        if not sep or scheme.lower() not in SCHEMES:
            raise ValueError(
                f"a vector search URL starts with redis+search:// or rediss+search://, got {scheme}://"
            )
        merged: dict[str, object] = {**query, **options}
        mine: dict[str, Any] = {}
        for name, parse in _OPTIONS.items():
            if name in merged:
                raw = merged.pop(name)
                try:
                    mine[name] = parse(raw)
                except ValueError as exc:
                    raise ValueError(
                        f"option {name!r} of the redis+search index must be {exc} (got {raw!r})"
                    ) from None
        prefix = merged.pop("prefix", DEFAULT_PREFIX)
        if not isinstance(prefix, str) or not prefix:
            raise ValueError("option 'prefix' of the redis+search index must be a non-empty string")
        redis_scheme = "rediss" if scheme.lower().startswith("rediss") else "redis"
        store = RedisStore.from_url(f"{redis_scheme}://{rest}", **merged)
        return cls(store.client, prefix=prefix, **mine)

    @property
    def client(self) -> aioredis.Redis:
        return self._client

    def index_name(self, dims: int) -> str:
        return f"{self.prefix}idx:{dims}"

    def key(self, tag: str, member: str, dims: int) -> str:
        return f"{self.prefix}{dims}:{_check_name('tag', tag)}:{_check_name('member', member)}"

    # --- the index --------------------------------------------------------------------------------

    async def ensure_index(self, dims: int) -> None:
        """Create the index of ``dims``-sized vectors unless this process knows it exists."""
        if dims in self._ready:
            return
        pending = self._creating.get(dims)
        if pending is not None:
            await asyncio.shield(pending)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._creating[dims] = future
        try:
            await self._create(dims)
            self._ready.add(dims)
            future.set_result(None)
        except BaseException as error:
            future.set_exception(error if isinstance(error, Exception) else StoreError("cancelled"))
            future.exception()  # retrieved: waiters re-raise it, nobody else needs to
            raise
        finally:
            del self._creating[dims]

    async def _create(self, dims: int) -> None:
        if not isinstance(dims, int) or dims < 1:
            raise ValueError(f"vector size must be a positive integer, got {dims!r}")
        attributes: dict[str, Any] = {"TYPE": "FLOAT32", "DIM": dims, "DISTANCE_METRIC": "COSINE"}
        if self.algorithm == "hnsw":
            attributes.update(M=self.m, EF_CONSTRUCTION=self.ef_construction, EF_RUNTIME=self.ef_runtime)
        fields = [
            TagField(_TAG_FIELD, case_sensitive=True),
            VectorField(_VECTOR_FIELD, self.algorithm.upper(), attributes),
        ]
        definition = IndexDefinition(  # type: ignore[no-untyped-call]
            prefix=[f"{self.prefix}{dims}:"], index_type=IndexType.HASH
        )
        with _errors("FT.CREATE"):
            try:
                await self._client.ft(self.index_name(dims)).create_index(fields, definition=definition)
            except ResponseError as error:
                if "already exists" not in str(error).lower():
                    raise

    # --- members ----------------------------------------------------------------------------------

    async def add(
        self, tag: str, member: str, vector: bytes, dims: int, fields: Mapping[str, str], ttl: float
    ) -> None:
        if len(vector) != 4 * dims:
            raise ValueError(f"a vector of {dims} float32 values is {4 * dims} bytes, got {len(vector)}")
        if not (math.isfinite(ttl) and ttl > 0):
            raise ValueError(f"ttl must be a positive finite number of seconds, got {ttl!r}")
        clash = _RESERVED.intersection(fields)
        if clash:
            raise ValueError(f"field names reserved by the vector search: {sorted(clash)}")
        await self.ensure_index(dims)
        key = self.key(tag, member, dims)
        mapping: dict[str, str | bytes] = {**fields, _TAG_FIELD: tag, _VECTOR_FIELD: vector}
        # One key, one transaction: never a document without its expiry.
        pipe = self._client.pipeline(transaction=True)
        pipe.delete(key)  # a replaced member keeps none of its old fields
        pipe.hset(key, mapping=mapping)  # type: ignore[arg-type]
        pipe.pexpire(key, max(1, math.ceil(ttl * 1000)))
        with _errors("HSET"):
            await pipe.execute()

    async def knn(self, tag: str, vector: bytes, dims: int, k: int, fields: Sequence[str]) -> list[VectorHit]:
        if len(vector) != 4 * dims:
            raise ValueError(f"a vector of {dims} float32 values is {4 * dims} bytes, got {len(vector)}")
        _check_name("tag", tag)
        # No FT.CREATE first: one round trip. A missing index is created below, on its error.
        # EF_RUNTIME per query: the URL's value holds even for an index created with another one.
        ef = f" EF_RUNTIME {self.ef_runtime}" if self.algorithm == "hnsw" else ""
        query = (
            Query(f"(@{_TAG_FIELD}:{{{tag}}})=>[KNN {int(k)} @{_VECTOR_FIELD} $vec{ef} AS dist]")
            .sort_by("dist")
            .return_fields("dist", _TAG_FIELD, *fields)
            .paging(0, int(k))
            .dialect(2)
        )
        with _errors("FT.SEARCH"):
            try:
                result = await self._client.ft(self.index_name(dims)).search(
                    query, query_params={"vec": vector}
                )
            except ResponseError as error:
                if not _missing_index(error):
                    raise
                # The server lost the index (restart without persistence, FLUSHALL): create it again;
                # documents still there are indexed in the background. Nothing to find right now.
                self._ready.discard(dims)
                await self.ensure_index(dims)
                return []
        key_prefix = f"{self.prefix}{dims}:{tag}:"
        hits: list[VectorHit] = []
        for doc in result.docs:
            values = doc.__dict__
            doc_id = str(values.get("id", ""))
            # Belt and braces: the filter already restricts the ranking to the tag.
            if values.get(_TAG_FIELD) != tag or not doc_id.startswith(key_prefix):
                continue
            try:
                distance = float(values["dist"])
            except (KeyError, TypeError, ValueError):
                continue
            found = {name: str(values[name]) for name in fields if values.get(name) is not None}
            hits.append(VectorHit(doc_id[len(key_prefix) :], distance, found))
        return hits

    async def delete(self, tag: str, member: str, dims: int) -> bool:
        with _errors("DEL"):
            return bool(await self._client.delete(self.key(tag, member, dims)))

    async def drop_tag(self, tag: str, dims: int) -> int:
        _check_name("tag", tag)
        if dims not in self._ready:
            await self.ensure_index(dims)
        removed = 0
        index = self._client.ft(self.index_name(dims))
        with _errors("FT.SEARCH (drop)"):
            while True:
                query = Query(f"@{_TAG_FIELD}:{{{tag}}}").no_content().paging(0, _DROP_PAGE).dialect(2)
                result = await index.search(query)
                ids = [str(doc.id) for doc in result.docs]
                if not ids:
                    return removed
                removed += int(await self._client.delete(*ids))
                if len(ids) < _DROP_PAGE:
                    return removed

    async def count(self, dims: int) -> int | None:
        with _errors("FT.INFO"):
            try:
                info = await self._client.ft(self.index_name(dims)).info()  # type: ignore[no-untyped-call]
            except ResponseError as error:
                if _missing_index(error):
                    return None
                raise
        try:
            return int(info["num_docs"])
        except (KeyError, TypeError, ValueError):
            return None

    async def ping(self) -> bool:
        with _errors("PING"):
            return bool(await self._client.ping())

    async def close(self) -> None:
        with _errors("close"):
            await self._client.aclose()


class GuardedVectorSearch:
    """Every call of ``inner`` within ``timeout`` seconds or :class:`StoreError`; a circuit breaker
    (the store's :class:`CircuitBreaker`) stops calling a server that keeps failing and probes it
    again after ``reset_after`` seconds, so lookups resume by themselves when it is back.

    Cancellation of the caller passes through untouched and is not a failure. ``close()`` always
    reaches the backend."""

    def __init__(
        self,
        inner: VectorSearch,
        timeout: float,
        breaker: CircuitBreaker | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not (math.isfinite(timeout) and timeout > 0):
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        self.inner = inner
        self.timeout = timeout
        self.breaker = breaker if breaker is not None else CircuitBreaker(clock=clock)
        self.failures = 0
        self.timeouts = 0
        self.short_circuits = 0

    def counters(self) -> dict[str, int]:
        return {"failures": self.failures, "timeouts": self.timeouts, "short_circuits": self.short_circuits}

    async def _call(self, op: str, start: Callable[[], Awaitable[T]]) -> T:
        if not self.breaker.allow():
            self.short_circuits += 1
            raise CircuitOpenError("vector search circuit open")
        try:
            result = await within_deadline(start, self.timeout)
        except (asyncio.TimeoutError, TimeoutError) as exc:
            self.timeouts += 1
            self._failed()
            raise StoreError(f"vector search {op} timed out after {self.timeout:g}s") from exc
        except StoreError:
            self._failed()
            raise
        except ValueError:
            # The caller's mistake (a bad name or size): says nothing about the server's health.
            self.breaker.on_abandon()
            raise
        except Exception as exc:
            self._failed()
            raise StoreError(f"vector search {op} failed: {type(exc).__name__}: {exc}") from exc
        except BaseException:
            self.breaker.on_abandon()
            raise
        self.breaker.on_success()
        return result

    def _failed(self) -> None:
        self.failures += 1
        self.breaker.on_failure()

    async def add(
        self, tag: str, member: str, vector: bytes, dims: int, fields: Mapping[str, str], ttl: float
    ) -> None:
        await self._call("add", lambda: self.inner.add(tag, member, vector, dims, fields, ttl))

    async def knn(self, tag: str, vector: bytes, dims: int, k: int, fields: Sequence[str]) -> list[VectorHit]:
        return await self._call("knn", lambda: self.inner.knn(tag, vector, dims, k, fields))

    async def delete(self, tag: str, member: str, dims: int) -> bool:
        return await self._call("delete", lambda: self.inner.delete(tag, member, dims))

    async def drop_tag(self, tag: str, dims: int) -> int:
        return await self._call("drop_tag", lambda: self.inner.drop_tag(tag, dims))

    async def ensure_index(self, dims: int) -> None:
        await self._call("ensure_index", lambda: self.inner.ensure_index(dims))

    async def count(self, dims: int) -> int | None:
        return await self._call("count", lambda: self.inner.count(dims))

    async def ping(self) -> bool:
        return await self._call("ping", self.inner.ping)

    async def close(self) -> None:
        with suppress(asyncio.TimeoutError, TimeoutError, StoreError):
            await within_deadline(self.inner.close, self.timeout)


def open_vector_search(url: str, *, timeout: float | None = 0.1, **options: Any) -> VectorSearch:
    """The vector search ``url`` names (``redis+search://`` or ``rediss+search://``), wrapped in a
    :class:`GuardedVectorSearch` with ``timeout`` seconds per call (``None``: bare)."""
    search = RedisVectorSearch.from_url(url, **options)
    return search if timeout is None else GuardedVectorSearch(search, timeout)
