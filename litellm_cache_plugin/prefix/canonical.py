"""System-prompt canonicalization and the affinity key. Pure functions, no I/O.

A model server's KV prefix cache only helps when the prefix is *byte-identical* (token-identical,
really) to one it evaluated before. Clients that build the same system prompt from templates differ
in trailing spaces, CRLF line endings, a stray blank line... and every such variant is evaluated from
scratch. This module makes equivalent system prompts identical before the request leaves:

- **Configured canonical prompts** (``layers.prefix.canonical_system_prompts``): a system message
  whose folded form (:func:`~litellm_cache_plugin.policy.normalize.fold_text`, the exact layer's own
  notion of "the same text") equals the folded form of a configured prompt is replaced by that
  prompt's configured bytes, verbatim.
- **Stable rendering** of other system prompts (``layers.prefix.stable_rendering``, on by default):
  the system text is replaced by its folded form. Folding never touches indentation, fenced code,
  case, punctuation or any character other than whitespace (and Unicode NFC), and the exact layer
  already treats texts with the same folded form as one cache entry, so this changes no answer the
  cache would give and no meaning; it only fixes the bytes. Turn it off to send unmatched system
  prompts exactly as the client wrote them.

Only *system* (and ``developer``) messages at the start of the conversation are touched; user and
assistant turns are never rewritten. Content given as a list is rewritten only when it is a single
text part (the exact layer treats that as the plain string; several parts are left alone because
providers join them differently).

Both rewrites keep the folded form, so canonicalization never changes an exact-layer key and the
affinity key (:func:`affinity_key`) is the same before and after it: routing, keys and the request
that reaches the model all agree whichever of them sees the messages first.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from litellm_cache_plugin.policy.normalize import canonical_json, canonical_value, fold_text

__all__ = [
    "SYSTEM_ROLES",
    "CanonicalPrompts",
    "affinity_key",
    "canonical_table",
    "canonicalize_messages",
]

SYSTEM_ROLES = frozenset({"system", "developer"})


def canonical_table(prompts: Iterable[str]) -> dict[str, str]:
    """Folded form -> configured prompt. Raises ``ValueError`` for an empty prompt or for two
    different prompts with the same folded form (which one to send would be ambiguous)."""
    table: dict[str, str] = {}
    for index, prompt in enumerate(prompts):
        folded = fold_text(prompt)
        if not folded:
            raise ValueError(f"entry {index} is empty")
        previous = table.get(folded)
        if previous is not None and previous != prompt:
            raise ValueError(f"entry {index} is the same prompt as an earlier one up to whitespace")
        table[folded] = prompt
    return table


class CanonicalPrompts:
    """The canonical rendering of one ``layers.prefix`` configuration (built once, used per request)."""

    __slots__ = ("stable_rendering", "table")

    def __init__(self, prompts: Iterable[str] = (), *, stable_rendering: bool = True) -> None:
        self.table = canonical_table(prompts)
        self.stable_rendering = stable_rendering

    def render(self, text: str) -> str:
        """The bytes to send for a system text: its configured canonical prompt, else (with stable
        rendering) its folded form, else the text unchanged."""
        folded = fold_text(text)
        canonical = self.table.get(folded)
        if canonical is not None:
            return canonical
        return folded if self.stable_rendering else text


def _text_of(content: Any) -> str | None:
    """The text of a message content the canonicalizer may rewrite (a string or one text part)."""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence) and not isinstance(content, (str, bytes)) and len(content) == 1:
        part = content[0]
        if isinstance(part, Mapping) and part.get("type") == "text" and isinstance(part.get("text"), str):
            return str(part["text"])
    return None


def canonicalize_messages(messages: Any, prompts: CanonicalPrompts) -> list[Any] | None:
    """Messages with their leading system prompts canonicalized, or None when nothing changes.

    Returns a new list (changed messages are new dicts), never mutates the input: the caller's list
    may be shared (an SDK user's variable, a retry's kwargs).
    """
    if not isinstance(messages, list):
        return None
    out: list[Any] | None = None
    for index, message in enumerate(messages):
        if not isinstance(message, Mapping) or message.get("role") not in SYSTEM_ROLES:
            break
        content = message.get("content")
        text = _text_of(content)
        if text is None:
            continue
        rendered = prompts.render(text)
        if rendered == content:
            continue
        if out is None:
            out = list(messages)
        # A single text part becomes the plain string: the exact layer already treats them as equal.
        out[index] = {**message, "content": rendered}
    return out


def affinity_key(messages: Any, prefix_chars: int = 0) -> str | None:
    """What identifies a request's reusable prefix, as a short hex digest; None when there is none.

    The prefix is the leading system/developer messages; a conversation without one is identified by
    its first message, so the turns of one conversation stay together (each turn's prompt extends the
    previous one). Texts are folded, so the key is the same before and after canonicalization.
    ``prefix_chars`` > 0 keeps only that many characters of the prefix: prompts that share a long
    beginning share a deployment (they share that much KV cache too).
    """
    if not isinstance(messages, Sequence) or isinstance(messages, (str, bytes)) or not messages:
        return None
    parts: list[str] = []
    for message in messages:
        if not isinstance(message, Mapping) or message.get("role") not in SYSTEM_ROLES:
            break
        parts.append(_key_part(message))
    if not parts:
        first = messages[0]
        if not isinstance(first, Mapping):
            return None
        parts.append(_key_part(first))
    prefix = "\x1e".join(parts)
    if prefix_chars > 0:
        prefix = prefix[:prefix_chars]
    return hashlib.blake2b(prefix.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def _key_part(message: Mapping[str, Any]) -> str:
    role = str(message.get("role") or "")
    content = message.get("content")
    text = _text_of(content)
    if text is None:
        # Multi-part or non-text content: identical prefixes still share a key (key order aside).
        text = canonical_json(canonical_value(content))
    return f"{role}\x1f{fold_text(text)}"
