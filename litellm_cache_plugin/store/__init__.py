"""Storage backends behind one async protocol, and :func:`open_store` to pick one by URL.

``open_store("memory://?max_bytes=268435456")`` or ``open_store("redis://host:6379/3?prefix=app:")``
returns a :class:`Store`, by default wrapped in a :class:`GuardedStore` so that every call has a
deadline and fails with :class:`StoreError` only.

Backends are found by URL scheme: first in :data:`BUILTIN_BACKENDS` (imported lazily, so the redis
client is only imported when a redis URL is used), then in the entry-point group
``litellm_cache_plugin.backends``, whose entry-point name is the scheme and whose object is either a
class with a ``from_url(url, **options)`` classmethod or a plain callable ``(url, **options) -> Store``.

The option helpers at the bottom (:func:`url_options`, :func:`parse_options` and the value parsers)
are shared by the built-in backends and usable by third-party ones.
"""

from __future__ import annotations

import asyncio
import importlib
import math
import re
from collections.abc import Callable, Mapping
from importlib import metadata
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from litellm_cache_plugin.store.base import Store, StoreError, StoreStats
from litellm_cache_plugin.store.guarded import CircuitBreaker, CircuitOpenError, GuardedStore

__all__ = [
    "BUILTIN_BACKENDS",
    "ENTRY_POINT_GROUP",
    "CircuitBreaker",
    "CircuitOpenError",
    "GuardedStore",
    "Store",
    "StoreError",
    "StoreStats",
    "open_store",
    "supported_schemes",
]

ENTRY_POINT_GROUP = "litellm_cache_plugin.backends"

# scheme -> "module:attribute". Adding a backend (``redis+cluster``, ``memcached``) is one line here
# plus its module; nothing is imported until a URL asks for it.
BUILTIN_BACKENDS: Mapping[str, str] = {
    "memory": "litellm_cache_plugin.store.memory:MemoryStore",
    "redis": "litellm_cache_plugin.store.redis:RedisStore",
    "rediss": "litellm_cache_plugin.store.redis:RedisStore",
    "redis+cluster": "litellm_cache_plugin.store.redis_cluster:RedisClusterStore",
    "memcached": "litellm_cache_plugin.store.memcached:MemcachedStore",
}

_SCHEME_RE = re.compile(r"^[a-z][a-z0-9+.-]*$")


def open_store(url: str, *, timeout: float | None = 0.05, **options: Any) -> Store:
    """Build the store that ``url`` names.

    ``options`` configure the backend like the URL's query parameters do and win over them (they may
    also carry values a URL cannot, e.g. a ``clock`` for the memory store). Options are validated
    by the backend; a bad one raises ``ValueError`` naming it.

    ``timeout`` (seconds) wraps the backend in a :class:`GuardedStore` with that per-call deadline
    and the default circuit breaker; ``None`` returns the bare backend (tests, benchmarks).

    Raises ``ValueError`` for a malformed URL, an unknown scheme (the message lists the supported
    ones) or invalid options. Nothing connects here: network backends connect on first use.
    """
    if timeout is not None and not (math.isfinite(timeout) and timeout > 0):
        raise ValueError(f"timeout must be a positive number of seconds or None, got {timeout!r}")
    scheme = _scheme_of(url)
    factory = _builtin_factory(scheme) or _entry_point_factory(scheme)
    if factory is None:
        raise ValueError(
            f"unknown store scheme {scheme!r}; supported schemes: {', '.join(supported_schemes())}"
        )
    store = factory(url, **options)
    if not isinstance(store, Store):
        raise TypeError(f"backend for {scheme!r} returned {type(store).__name__}, which is not a Store")
    if timeout is None:
        return store
    return GuardedStore(store, timeout)


def supported_schemes() -> list[str]:
    """Built-in schemes followed by the ones registered as entry points, without duplicates."""
    schemes = list(BUILTIN_BACKENDS)
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if entry.name not in schemes:
            schemes.append(entry.name)
    return schemes


def _scheme_of(url: str) -> str:
    # Only the scheme is ever echoed back: the rest of a URL may hold a password.
    scheme, sep, _ = url.partition("://")
    scheme = scheme.lower()
    if not sep or not _SCHEME_RE.match(scheme):
        raise ValueError(
            "a store URL looks like 'scheme://...' (e.g. 'memory://' or 'redis://host:6379/0'); "
            f"supported schemes: {', '.join(supported_schemes())}"
        )
    return scheme


def _as_factory(obj: object) -> Callable[..., object]:
    from_url = getattr(obj, "from_url", None)
    if callable(from_url):
        return from_url  # type: ignore[no-any-return]
    if callable(obj):
        return obj
    raise TypeError(f"store backend {obj!r} is neither callable nor has a from_url()")


def _builtin_factory(scheme: str) -> Callable[..., object] | None:
    target = BUILTIN_BACKENDS.get(scheme)
    if target is None:
        return None
    module_name, _, attribute = target.partition(":")
    return _as_factory(getattr(importlib.import_module(module_name), attribute))


def _entry_point_factory(scheme: str) -> Callable[..., object] | None:
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if entry.name == scheme:
            return _as_factory(entry.load())
    return None


# --- option helpers shared by backends -------------------------------------------------------


def url_options(url: str) -> tuple[str, dict[str, str]]:
    """Split ``url`` into (url without query, query parameters). Repeated parameters are an error."""
    parts = urlsplit(url)
    try:
        pairs = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError as exc:
        raise ValueError(f"malformed query string in {parts.scheme}:// store URL: {exc}") from None
    found: dict[str, str] = {}
    for name, value in pairs:
        if name in found:
            raise ValueError(f"option {name!r} is given more than once in the {parts.scheme}:// store URL")
        found[name] = value
    return urlunsplit(parts._replace(query="", fragment="")), found


OptionParser = Callable[[object], Any]
"""Turns a raw option (a ``str`` from a URL or a typed keyword value) into its value, or raises
``ValueError`` with a message that completes "must be ..."."""


def parse_options(
    backend: str, raw: Mapping[str, object], spec: Mapping[str, OptionParser]
) -> dict[str, Any]:
    """Validate ``raw`` against ``spec``; unknown names and bad values raise a clear ``ValueError``."""
    parsed: dict[str, Any] = {}
    for name, value in raw.items():
        parser = spec.get(name)
        if parser is None:
            accepted = ", ".join(sorted(spec))
            raise ValueError(f"unknown option {name!r} for the {backend} store; accepted options: {accepted}")
        try:
            parsed[name] = parser(value)
        except ValueError as exc:
            raise ValueError(
                f"option {name!r} of the {backend} store must be {exc} (got {value!r})"
            ) from None
    return parsed


def positive_int(value: object) -> int:
    return _int_at_least(value, 1, "a positive integer")


def non_negative_int(value: object) -> int:
    return _int_at_least(value, 0, "an integer >= 0")


def _int_at_least(value: object, minimum: int, what: str) -> int:
    if isinstance(value, bool):
        raise ValueError(what)
    if isinstance(value, str):
        try:
            value = int(value.strip(), 10)
        except ValueError:
            raise ValueError(what) from None
    if not isinstance(value, int) or value < minimum:
        raise ValueError(what)
    return value


_SIZE_RE = re.compile(r"^\s*(\d+)\s*(|b|k|kb|kib|m|mb|mib|g|gb|gib)\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def byte_size(value: object) -> int:
    """A positive byte count: an int, or a string like ``268435456``, ``512KiB``, ``256MiB``, ``1G``.

    Units are binary (K = 1024) whatever the spelling, since these are memory budgets."""
    what = "a positive byte size such as 268435456 or 256MiB"
    if isinstance(value, str):
        match = _SIZE_RE.match(value)
        if match is None:
            raise ValueError(what)
        value = int(match.group(1)) * _SIZE_UNITS[match.group(2)[:1].lower()]
    return _int_at_least(value, 1, what)


def positive_float(value: object) -> float:
    return _float_check(value, lambda f: f > 0, "a positive finite number")


def non_negative_float(value: object) -> float:
    return _float_check(value, lambda f: f >= 0, "a finite number >= 0")


def _float_check(value: object, ok: Callable[[float], bool], what: str) -> float:
    if isinstance(value, bool):
        raise ValueError(what)
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise ValueError(what) from None
    if not isinstance(value, (int, float)) or not math.isfinite(value) or not ok(value):
        raise ValueError(what)
    return float(value)


def text(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError("a string")
    return value


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def flag(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
    raise ValueError("a boolean (true/false, yes/no, on/off, 1/0)")


async def take_slot(slots: asyncio.Semaphore, timeout: float | None) -> bool:
    """Take one of a connection pool's slots: at once when one is free (no timer armed: that costs
    more than the command on loopback), else waiting at most ``timeout`` seconds (None: as long as it
    takes). False: none was freed in time."""
    if not slots.locked():
        await slots.acquire()
        return True
    try:
        await asyncio.wait_for(slots.acquire(), timeout)
    except asyncio.TimeoutError:
        return False
    return True


def one_of(*choices: str) -> OptionParser:
    def parse(value: object) -> str:
        if isinstance(value, str) and value.lower() in choices:
            return value.lower()
        raise ValueError(f"one of {', '.join(choices)}")

    return parse
