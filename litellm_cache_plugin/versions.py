"""Model versions read from the model server, so that re-pulling a model invalidates its entries.

For Ollama deployments the version is the model's digest from ``GET {api_base}/api/tags`` (it changes
when a model is re-pulled; ``/api/show`` has no digest). Digests are cached per server and re-read in
the background once older than ``refresh_interval`` seconds (default 30): that is the longest a
re-pulled model can still be answered from its previous version's entries. The first read for a
server blocks for at most ``fetch_timeout``; if it fails the version is ``"unknown"`` (such entries are
never confused with a known version) and the read is retried on the next request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp

log = logging.getLogger("litellm_cache_plugin")

OLLAMA_PROVIDERS = frozenset({"ollama", "ollama_chat"})


def ollama_model_name(model: str) -> str:
    """``ollama_chat/llama3.2`` → ``llama3.2:latest`` (the name as /api/tags lists it)."""
    name = model.split("/", 1)[1] if "/" in model else model
    return name if ":" in name else f"{name}:latest"


@dataclass
class _ServerDigests:
    digests: dict[str, str] = field(default_factory=dict)
    fetched_at: float = float("-inf")
    refreshing: asyncio.Task[None] | None = None


class OllamaVersions:
    def __init__(
        self,
        *,
        refresh_interval: float = 30.0,
        fetch_timeout: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.refresh_interval = refresh_interval
        self.fetch_timeout = fetch_timeout
        self.clock = clock
        self._servers: dict[str, _ServerDigests] = {}
        self.fetches = 0
        self.failures = 0

    def current(self, api_base: str, model: str) -> str | None:
        """The digest known right now (no I/O); None when never read successfully."""
        server = self._servers.get(api_base.rstrip("/"))
        if server is None:
            return None
        return server.digests.get(ollama_model_name(model))

    async def ensure(self, api_base: str, model: str) -> str | None:
        """Make sure the digest is known; refresh in the background when it is getting old."""
        base = api_base.rstrip("/")
        server = self._servers.setdefault(base, _ServerDigests())
        age = self.clock() - server.fetched_at
        if ollama_model_name(model) not in server.digests:
            if age > min(1.0, self.refresh_interval):  # do not hammer a server that lacks the model
                await self._fetch(base, server)
        elif age > self.refresh_interval and (server.refreshing is None or server.refreshing.done()):
            server.refreshing = asyncio.ensure_future(self._fetch(base, server))
        return server.digests.get(ollama_model_name(model))

    async def refresh_all(self) -> None:
        """Re-read every known server now (on demand, e.g. after a re-pull)."""
        await asyncio.gather(*(self._fetch(base, server) for base, server in self._servers.items()))

    async def _fetch(self, base: str, server: _ServerDigests) -> None:
        self.fetches += 1
        try:
            timeout = aiohttp.ClientTimeout(total=self.fetch_timeout)
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.get(f"{base}/api/tags") as response,
            ):
                response.raise_for_status()
                body = await response.json(content_type=None)
            digests: dict[str, str] = {}
            for listed in body.get("models", []):
                if isinstance(listed, dict) and listed.get("digest"):
                    # /api/tags has both "name" and "model"; accept lookups of either spelling
                    for name in (listed.get("name"), listed.get("model")):
                        if name:
                            digests[str(name)] = str(listed["digest"])
            server.digests = digests
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError, KeyError, TypeError) as error:
            self.failures += 1
            log.warning("could not read model digests from %s: %s", base, error)
        finally:
            server.fetched_at = self.clock()

    async def close(self) -> None:
        for server in self._servers.values():
            if server.refreshing is not None and not server.refreshing.done():
                server.refreshing.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await server.refreshing
