"""What ``fast_path.auth_reuse_seconds`` remembers in a worker: LiteLLM's accepted auth verdicts, per
credential, route and header set, and the request setups done with them, per identical request. The
decisions (whether a verdict may stand in, what identifies a request) are ``verdicts``' pure code;
this is their memory."""

from __future__ import annotations

import pickle
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Final

from litellm_cache_plugin.integrations.fast_path.verdicts import headers_digest, verdict_reusable
from litellm_cache_plugin.settings import FastPath

# Remembered verdicts (credential fingerprint, route, header digest), for the whole process.
VERDICT_CAPACITY: Final = 10_000
# Remembered request setups (pickled, ~5-10 KB each) of reused verdicts, for the whole process.
SETUP_CAPACITY: Final = 1_000

VerdictKey = tuple[str, str, str]


@dataclass
class Verdict:
    """LiteLLM's auth result for a credential on a route, and when it was given (monotonic)."""

    auth: Any
    at: float

    def copy_auth(self) -> Any:
        # A deep copy (~40 us): the proxy sets per-request fields on the auth object it is given and
        # may edit its nested metadata; nothing of one request may reach the next through the verdict.
        return self.auth.model_copy(deep=True)


class ReuseMemory:
    """The remembered verdicts and setups of one worker's fast path."""

    def __init__(self, settings: FastPath) -> None:
        self.settings = settings
        self._verdicts: OrderedDict[VerdictKey, Verdict] = OrderedDict()
        # (verdict key, setup key) -> (the verdict's time, pickled (request data, auth) after setup)
        self._setups: OrderedDict[tuple[VerdictKey, str], tuple[float, bytes]] = OrderedDict()

    def reusable_verdict(
        self, fingerprint: str | None, path: str, headers: Iterable[tuple[bytes, bytes]]
    ) -> tuple[VerdictKey, Verdict] | None:
        """The auth verdict remembered for this credential, route and header set, when
        ``fast_path.auth_reuse_seconds`` allows it to stand in for LiteLLM's auth (``verdicts``)."""
        window = self.settings.auth_reuse_seconds
        if window <= 0 or fingerprint is None:
            return None
        key = (fingerprint, path, headers_digest(headers))
        verdict = self._verdicts.get(key)
        if verdict is None:
            return None
        now = datetime.now(timezone.utc)
        if not verdict_reusable(verdict.auth, age=time.monotonic() - verdict.at, window=window, now=now):
            del self._verdicts[key]
            return None
        return key, verdict

    def remember_verdict(
        self, fingerprint: str | None, path: str, headers: Iterable[tuple[bytes, bytes]], auth: Any
    ) -> None:
        if self.settings.auth_reuse_seconds <= 0 or fingerprint is None:
            return
        copy = getattr(auth, "model_copy", None)
        if not callable(copy):
            return  # not LiteLLM's auth object: never reused
        # Without the request's own budget reservation (a reused hit reserves nothing, and must not
        # release again what the first request reserved) and its trace span (a reused hit has none).
        update = {name: None for name in ("budget_reservation", "parent_otel_span") if hasattr(auth, name)}
        key = (fingerprint, path, headers_digest(headers))
        self._verdicts[key] = Verdict(copy(update=update).model_copy(deep=True), time.monotonic())
        self._verdicts.move_to_end(key)
        while len(self._verdicts) > VERDICT_CAPACITY:
            self._verdicts.popitem(last=False)

    def remembered_setup(
        self, verdict_key: VerdictKey, verdict: Verdict, key: str
    ) -> tuple[dict[str, Any], Any] | None:
        """A fresh copy of the request data and auth object the route's setup produced for a request
        with this setup key under this verdict (``remember_setup``), or None."""
        found = self._setups.get((verdict_key, key))
        if found is None or found[0] != verdict.at:
            return None
        try:
            # Bytes this process pickled itself (remember_setup), never anything a client sent.
            data, auth = pickle.loads(found[1])
        except Exception:
            del self._setups[(verdict_key, key)]
            return None
        self._setups.move_to_end((verdict_key, key))
        return data, auth

    def remember_setup(
        self, verdict_key: VerdictKey, verdict: Verdict, key: str, data: Any, auth: Any
    ) -> None:
        """Keep what setup produced with a reused verdict (which carries no budget reservation), before
        any hook sees it. Pickled together, so the auth object in the request's metadata stays the
        same object as the one handed to the hooks; what cannot be pickled (a live trace span) is not
        kept, and that request's setup runs every time."""
        try:
            blob = pickle.dumps((data, auth), protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:
            return
        self._setups[(verdict_key, key)] = (verdict.at, blob)
        self._setups.move_to_end((verdict_key, key))
        while len(self._setups) > SETUP_CAPACITY:
            self._setups.popitem(last=False)
