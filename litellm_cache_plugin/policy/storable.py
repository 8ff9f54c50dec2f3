"""Whether an answer may be stored: decided here once, for the write path and the edge layer's
validator alike. Pure, no I/O."""

from __future__ import annotations

from typing import Any


def complete_response(body: Any, finish_reasons: tuple[str, ...]) -> bool:
    """Only complete, successful answers are stored: every choice finished for a normal reason and
    carries output."""
    if not isinstance(body, dict):
        return False
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices:
        return False
    for choice in choices:
        if not isinstance(choice, dict) or choice.get("finish_reason") not in finish_reasons:
            return False
        message = choice.get("message")
        has_text = isinstance(choice.get("text"), str) and choice["text"] != ""
        has_message = isinstance(message, dict) and bool(message.get("content") or message.get("tool_calls"))
        if not (has_text or has_message):
            return False
    return True
