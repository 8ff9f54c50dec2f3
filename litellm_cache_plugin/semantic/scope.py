"""Which semantic scope a request is in and what text it is searched by: pure code.

A match is only possible between requests equal in everything but the last user turn: tenant, model
group and version, system prompt and earlier turns, and every output-affecting parameter. The scope
id is the exact key's canonical material with the last user message (or the prompt) taken out,
hashed. With ``layers.semantic.conversations: by_meaning`` the earlier user and assistant turns
leave the scope too (contents, number and roles) and travel as the prompt's ``context``, judged as
a whole by ``conversation.decide``. Single prompts get the same scope in both modes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from litellm_cache_plugin.policy.keys import CacheRequest, Tenant, request_material
from litellm_cache_plugin.policy.normalize import canonical_json, canonical_value, fold_text
from litellm_cache_plugin.semantic.conversation import Turn

__all__ = ["SCOPE_SCHEMA", "ConversationMode", "SemanticPrompt", "semantic_prompt", "semantic_scope"]

ConversationMode = Literal["exact", "by_meaning"]

# Bump when the scope material changes shape: old records then sit in other scopes and expire.
SCOPE_SCHEMA = 1


def _text_of(content: Any) -> str | None:
    """The text of a message content; ``None`` when it holds anything but text (images, audio)."""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence) and not isinstance(content, (bytes, bytearray)) and content:
        texts: list[str] = []
        for part in content:
            is_text = isinstance(part, Mapping) and part.get("type") == "text"
            if not (is_text and isinstance(part.get("text"), str)):
                return None
            texts.append(part["text"])
        return "\n".join(texts)
    return None


@dataclass(frozen=True)
class SemanticPrompt:
    """What the semantic layer looks up for one request: the scope id, the text embedded and searched
    (the last user turn, or the prompt) and, for a multi-turn chat scoped by meaning, the earlier
    turns (``(role, folded text)``) a candidate is judged against as a whole (``conversation``)."""

    scope: str
    text: str
    context: tuple[Turn, ...] = ()


def semantic_scope(request: CacheRequest, tenant: Tenant) -> tuple[str, str] | None:
    """``(scope id, text to embed)`` for a request, or ``None`` when it is not eligible.

    Eligible: a chat request whose last message is a text-only user turn, or a text completion with a
    string prompt. The scope id hashes the exact key's material with the last user turn (or the
    prompt) removed; the text is that turn, folded like the exact key folds it.
    """
    prompt = semantic_prompt(request, tenant)
    return None if prompt is None else (prompt.scope, prompt.text)


def _conversation_material(earlier: Sequence[Any]) -> tuple[list[Any], tuple[Turn, ...]] | None:
    """The earlier messages the scope keeps (the system and developer prompts, in order) and the
    earlier user and assistant turns it leaves out (their contents, number and roles: they are
    judged as a whole by ``conversation.decide``); ``None`` when there is no such turn or one of
    them is not plain text (tool calls, tool results, images: the conversation is then scoped
    exactly)."""
    shape: list[Any] = []
    turns: list[Turn] = []
    for message in earlier:
        if not isinstance(message, Mapping):
            message = canonical_value(message)
            if not isinstance(message, dict):
                return None
        role = message.get("role")
        if role in ("system", "developer"):
            shape.append(message)
            continue
        if role not in ("user", "assistant") or message.get("tool_calls") or message.get("function_call"):
            return None
        if any(k not in ("role", "content") and v is not None for k, v in message.items()):
            return None  # another field ("name"): kept exact
        raw = _text_of(message.get("content"))
        if raw is None:
            return None
        turns.append((role, fold_text(raw)))
    if not turns:
        return None
    return shape, tuple(turns)


def semantic_prompt(
    request: CacheRequest, tenant: Tenant, *, conversations: ConversationMode = "exact"
) -> SemanticPrompt | None:
    """The :class:`SemanticPrompt` of a request, or ``None`` when it is not eligible (see
    :func:`semantic_scope`).

    ``conversations="by_meaning"``: a chat with earlier user/assistant turns, all plain text with no
    other field, gets a scope without them (still with the system prompts, the parameters, tenant,
    model group and version, and the last turn's other fields) and carries them as ``context``; a
    single prompt, or a conversation with a tool call, an image or a named turn, is scoped exactly
    as with ``"exact"``.
    """
    context: tuple[Turn, ...] = ()
    if request.kind == "chat":
        messages = request.messages
        if not isinstance(messages, Sequence) or isinstance(messages, (str, bytes)) or not messages:
            return None
        last = messages[-1]
        if not isinstance(last, Mapping):
            last = canonical_value(last)
            if not isinstance(last, dict):
                return None
        if last.get("role") != "user":
            return None
        raw = _text_of(last.get("content"))
        if raw is None:
            return None
        earlier: list[Any] = list(messages[:-1])
        by_meaning = _conversation_material(earlier) if conversations == "by_meaning" else None
        if by_meaning is not None:
            earlier, context = by_meaning
        material = request_material(replace(request, messages=earlier), tenant)
        if context:
            # Never the scope of an exact conversation or of a single prompt.
            material["conversation"] = "by_meaning"
        # Other fields of the last turn ("name") still have to match.
        material["last_turn"] = {
            str(k): canonical_value(v) for k, v in last.items() if k != "content" and v is not None
        }
    elif request.kind == "text" and isinstance(request.prompt, str):
        raw = request.prompt
        material = request_material(replace(request, prompt=None), tenant)
    else:
        return None
    text = fold_text(raw)
    if not text:
        return None
    material["layer"] = "semantic"
    material["semantic_schema"] = SCOPE_SCHEMA
    scope = hashlib.sha256(canonical_json(material).encode("utf-8")).hexdigest()[:32]
    return SemanticPrompt(scope, text, context)
