"""What the fast path remembers in a worker to spare a hit LiteLLM's per-request work:
``fast_path.auth_reuse_seconds`` (opt-in) keeps LiteLLM's accepted auth verdicts, per credential,
route and header set, and the request setups done with them, per identical request;
``fast_path.setup_reuse_seconds`` keeps the setups done after LiteLLM's own auth ran, each with the
verdict it was done under. The decisions (whether a verdict may stand in, which verdicts a setup may
be kept under, what identifies a request) are ``verdicts``' pure code; this is their memory."""

from __future__ import annotations

import pickle
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Final

from litellm_cache_plugin.integrations.fast_path.verdicts import (
    headers_digest,
    setup_reusable_with,
    verdict_reusable,
)
from litellm_cache_plugin.settings import FastPath

# Remembered verdicts (credential fingerprint, route, header digest), for the whole process.
VERDICT_CAPACITY: Final = 10_000
# Remembered request setups (pickled, ~5-10 KB each) of reused verdicts, for the whole process.
SETUP_CAPACITY: Final = 1_000

VerdictKey = tuple[str, str, str]
# (credential fingerprint, route, setup key) of a setup done after LiteLLM's own auth
FreshSetupKey = tuple[str, str, str]


# Setup keys seen once after LiteLLM's own auth (only a key seen again within the window is kept).
SEEN_CAPACITY: Final = 10_000


@dataclass
class _FreshSetup:
    """A setup done after LiteLLM's own auth ran: when (monotonic), the verdict it was done under
    (pickled as auth returned it, before setup edited it), and (request data, auth) after setup,
    pickled."""

    at: float
    verdict: bytes
    blob: bytes


def _pickled(value: Any) -> bytes | None:
    try:
        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        return None


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

    def __init__(self, settings: FastPath, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.clock = clock  # monotonic seconds
        self._verdicts: OrderedDict[VerdictKey, Verdict] = OrderedDict()
        # (verdict key, setup key) -> (the verdict's time, pickled (request data, auth) after setup)
        self._setups: OrderedDict[tuple[VerdictKey, str], tuple[float, bytes]] = OrderedDict()
        self._fresh_setups: OrderedDict[FreshSetupKey, _FreshSetup] = OrderedDict()
        self._seen: OrderedDict[FreshSetupKey, float] = OrderedDict()

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
        if not verdict_reusable(verdict.auth, age=self.clock() - verdict.at, window=window, now=now):
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
        self._verdicts[key] = Verdict(copy(update=update).model_copy(deep=True), self.clock())
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

    def setup_for_verdict(self, key: FreshSetupKey, auth: Any) -> tuple[dict[str, Any], Any] | None:
        """A fresh copy of the request data and auth object setup produced for an identical request
        (``key``) under the same verdict as ``auth`` (the one LiteLLM's auth just returned: equal
        pickles), at most ``fast_path.setup_reuse_seconds`` ago; else None."""
        window = self.settings.setup_reuse_seconds
        if window <= 0 or not setup_reusable_with(auth):
            return None
        found = self._fresh_setups.get(key)
        if found is None:
            return None
        if not 0 <= self.clock() - found.at < window:
            del self._fresh_setups[key]
            return None
        if _pickled(auth) != found.verdict:
            return None  # the key, its team or user changed since: setup runs again (and is kept)
        try:
            # Bytes this process pickled itself (remember_setup_for_verdict), never anything a client sent.
            data, copied = pickle.loads(found.blob)
        except Exception:
            del self._fresh_setups[key]
            return None
        self._fresh_setups.move_to_end(key)
        return data, copied

    def verdict_to_keep(self, key: FreshSetupKey, auth: Any) -> bytes | None:
        """The verdict to keep a setup under (``auth`` pickled, before setup edits it), when this
        request's setup is worth keeping: its verdict may be kept and an identical request was seen
        within the window before (a request seen once, as most are, costs no copy). Else None."""
        window = self.settings.setup_reuse_seconds
        if window <= 0 or not setup_reusable_with(auth):
            return None
        now = self.clock()
        seen = self._seen.get(key)
        self._seen[key] = now
        self._seen.move_to_end(key)
        while len(self._seen) > SEEN_CAPACITY:
            self._seen.popitem(last=False)
        if seen is None or not 0 <= now - seen < window:
            return None
        return _pickled(auth)

    def remember_setup_for_verdict(
        self, key: FreshSetupKey, verdict: bytes, data: Any, auth: Any, *, at: float
    ) -> None:
        """Keep what setup produced (``data``, and ``auth`` as setup left it) under ``verdict``
        (``verdict_to_keep``) for identical requests (``setup_for_verdict``). ``at``: when the setup
        began (monotonic), so its age is never understated."""
        blob = _pickled((data, auth))
        if blob is None:
            return  # what cannot be pickled is not kept: that request's setup runs every time
        self._fresh_setups[key] = _FreshSetup(at, verdict, blob)
        self._fresh_setups.move_to_end(key)
        while len(self._fresh_setups) > SETUP_CAPACITY:
            self._fresh_setups.popitem(last=False)
