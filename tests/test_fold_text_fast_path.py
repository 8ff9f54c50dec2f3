"""``fold_text`` skips its line loop for text with nothing to fold: the result must be the same."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from litellm_cache_plugin.policy import normalize

PIECES = [*"ab1 \t\r\n`~.", "\u00a0", "\u2028", "\x0b", "\x0c", "\x85", "\u0301", "\u00e9", "\u3000"]
TRICKY = st.lists(st.sampled_from(PIECES), max_size=40).map("".join)


def slow_fold(text: str) -> str:
    """The line-by-line folding alone (what ``fold_text`` did before its shortcut)."""
    original = normalize._nothing_to_fold
    try:
        normalize._nothing_to_fold = lambda text: False  # type: ignore[assignment]
        return normalize.fold_text(text)
    finally:
        normalize._nothing_to_fold = original


@settings(max_examples=3000)
@given(TRICKY)
def test_shortcut_gives_the_same_result(text: str) -> None:
    assert normalize.fold_text(text) == slow_fold(text)


def test_shortcut_examples() -> None:
    for text in ("  What is 2+2?  ", "line one\nline two\n\nthird", "a\u00a0b", "x\u2028y"):
        assert normalize.fold_text(text) == slow_fold(text)
