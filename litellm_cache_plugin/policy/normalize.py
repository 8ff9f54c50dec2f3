"""Request normalization for exact-match keys. Pure functions, no I/O.

What is folded, and why (anything not listed here is kept byte for byte):

Text of a message (``fold_text``):
- Unicode is put in NFC form: canonically equivalent sequences (é as one code point or e + combining
  accent) render identically and mean the same; NFKC is *not* applied (it would turn ``①`` into ``1``).
- Line endings: CRLF and CR become LF.
- Leading and trailing whitespace of the whole text is removed.
- Trailing spaces/tabs at the end of each line are removed.
- Runs of spaces/tabs *between words* on a line become one space. Indentation at the start of a line is
  kept: it is meaningful in code, YAML and nested lists.
- Three or more consecutive line breaks become two (at most one blank line).
- Inside fenced code blocks (```` ``` ```` or ``~~~``) nothing but line endings is folded.

Structure:
- Key order in every JSON object never matters (canonical JSON with sorted keys).
- ``None``-valued message fields are dropped (``"name": null`` is the same as no name).
- A content list holding exactly one text part is the same as that text as a plain string. Lists with
  several parts are kept as lists (providers join parts differently).
- Tool-call ``arguments`` that are JSON strings are parsed, so their key order and spacing do not matter.
- Numbers: an integral float equals the integer (``0.0`` == ``0``).
"""

from __future__ import annotations

import contextlib
import json
import re
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

_FENCE = re.compile(r"^[ \t]*(```|~~~)")
_INNER_SPACES = re.compile(r"(?<=\S)[ \t]{2,}(?=\S)|(?<=\S)\t(?=\S)")
_MANY_NEWLINES = re.compile(r"\n{3,}")


def _nothing_to_fold(text: str) -> bool:
    """True when the line-by-line folding below cannot change ``text`` (only the outer strip can):
    no runs of blanks, tabs, CR, three line breaks, fences, whitespace before a line break, and NFC
    already. Substring tests run in C; a regex for the same is ten times slower on a long prompt."""
    for marker in ("  ", "\t", "\r", "\n\n\n", "```", "~~~"):
        if marker in text:
            return False
    if "\n" in text:
        for line in text.split("\n")[:-1]:
            if line and line[-1].isspace():
                return False
    return unicodedata.is_normalized("NFC", text)


def fold_text(text: str) -> str:
    """Fold formatting that cannot change the meaning of prose (see module docstring)."""
    if _nothing_to_fold(text):
        return text.strip()  # the common case (most prompts), same result without the line loop
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    out: list[str] = []
    in_fence = False
    for line in text.split("\n"):
        if _FENCE.match(line):
            in_fence = not in_fence
            out.append(line.rstrip())
            continue
        if in_fence:
            out.append(line)
            continue
        stripped = line.rstrip()
        body = stripped.lstrip(" \t")
        indent = stripped[: len(stripped) - len(body)]
        out.append(indent + _INNER_SPACES.sub(" ", body))
    folded = "\n".join(out)
    if not in_fence:
        folded = _MANY_NEWLINES.sub("\n\n", folded)
    return folded.strip()


def canonical_number(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def canonical_value(value: Any) -> Any:
    """Recursively canonicalize plain JSON-like data (numbers; tuples become lists)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return canonical_number(value)
    if isinstance(value, Mapping):
        return {str(k): canonical_value(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [canonical_value(v) for v in value]
    if hasattr(value, "model_dump"):
        return canonical_value(value.model_dump(exclude_none=True))
    return str(value)


def _canonical_content(content: Any) -> Any:
    if isinstance(content, str):
        return fold_text(content)
    if isinstance(content, Sequence) and not isinstance(content, (str, bytes)):
        parts: list[Any] = []
        for part in content:
            if isinstance(part, Mapping) and part.get("type") == "text" and isinstance(part.get("text"), str):
                parts.append({**canonical_value(part), "text": fold_text(part["text"])})
            else:
                parts.append(canonical_value(part))
        if len(parts) == 1 and isinstance(parts[0], dict) and set(parts[0]) == {"type", "text"}:
            return parts[0]["text"]
        return parts
    return canonical_value(content)


def _canonical_tool_calls(tool_calls: Any) -> Any:
    calls = canonical_value(tool_calls)
    if not isinstance(calls, list):
        return calls
    for call in calls:
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict) and isinstance(function.get("arguments"), str):
            with contextlib.suppress(ValueError):
                function["arguments"] = canonical_value(json.loads(function["arguments"]))
    return calls


def canonical_messages(messages: Any) -> Any:
    """Chat messages in canonical form (see module docstring)."""
    if not isinstance(messages, Sequence) or isinstance(messages, (str, bytes)):
        return canonical_value(messages)
    out: list[Any] = []
    for message in messages:
        if not isinstance(message, Mapping):
            message = canonical_value(message)
            if not isinstance(message, dict):
                out.append(message)
                continue
        item: dict[str, Any] = {}
        for field, value in message.items():
            if value is None:
                continue
            if field == "content":
                item[field] = _canonical_content(value)
            elif field == "tool_calls":
                item[field] = _canonical_tool_calls(value)
            else:
                item[str(field)] = canonical_value(value)
        out.append(item)
    return out


# Built once: json.dumps with non-default options builds an encoder per call (a third of its time).
_CANONICAL_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def canonical_json(value: Any) -> str:
    """The one serialization used for hashing: sorted keys, no spaces, UTF-8 as is."""
    return _CANONICAL_ENCODER.encode(value)
