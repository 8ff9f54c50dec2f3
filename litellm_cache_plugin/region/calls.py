"""Per-call state: one bounded table ``call id -> CallState`` instead of a map per concern.

A call is one LiteLLM call id: the lookup records its decision and the invalidation counters it read,
the single-flight claim records the key it leads, and the write, the header hook and the failure
hooks read and clear them. Bounded (oldest first out): a call whose hooks never come back (a client
that left) costs one slot until it is pushed out.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

from litellm_cache_plugin.region.context import Decision, NearMatch

CALL_CAPACITY = 20_000


@dataclass
class CallState:
    decision: Decision | None = None
    leading: str | None = None  # key of the single flight this call leads (released if nothing is stored)
    # Invalidation counters read when the call looked its entry up: its write records them (an
    # invalidation during the upstream call then kills the answer it produces).
    counters: Mapping[str, int] | None = None
    # (semantic scope, text) of a miss, so that its stored answer becomes findable by meaning.
    semantic: tuple[str, str] | None = None
    # Its earlier turns ((role, text), ...) when the conversation is scoped by meaning.
    semantic_context: tuple[tuple[str, str], ...] = ()
    # Verified mode: the near match found for this miss, verified once its own answer is stored.
    verify: NearMatch | None = None


class CallTable:
    def __init__(self, capacity: int = CALL_CAPACITY) -> None:
        self.capacity = capacity
        self._calls: OrderedDict[str, CallState] = OrderedDict()

    def state(self, call_id: str | None) -> CallState:
        """The call's state (a throw-away one for a call without an id: nothing can be kept for it)."""
        if not call_id:
            return CallState()
        state = self._calls.get(call_id)
        if state is None:
            state = self._calls[call_id] = CallState()
            while len(self._calls) > self.capacity:
                self._calls.popitem(last=False)
        return state

    def get(self, call_id: str | None) -> CallState | None:
        return self._calls.get(call_id) if call_id else None

    def record(self, call_id: str | None, decision: Decision) -> None:
        self.state(call_id).decision = decision

    def decision(self, call_id: str | None) -> Decision | None:
        state = self.get(call_id)
        return state.decision if state is not None else None

    def stop_leading(self, call_id: str | None) -> str | None:
        """The key this call led, forgotten (None: it led nothing)."""
        state = self.get(call_id)
        if state is None:
            return None
        key, state.leading = state.leading, None
        return key

    def __len__(self) -> int:
        return len(self._calls)
