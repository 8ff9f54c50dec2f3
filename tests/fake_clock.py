"""The tests' settable clock: a callable returning ``now`` (seconds), which a test moves by hand."""

from __future__ import annotations


class FakeClock:
    """Passed wherever the code under test takes a ``clock`` (monotonic or wall seconds)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
