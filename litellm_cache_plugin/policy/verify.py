"""Verified semantic matches: the pure decisions (no I/O).

In verified mode (``layers.semantic.verify.mode``: ``judge``, ``agreement`` or ``both``) a near match
found by the semantic index is not served. The request goes upstream; a background job then verifies
the pair: a judge model says whether the new prompt and the cached one ask the same thing
(:func:`judge_messages`, :func:`parse_judgement`), or the new prompt's fresh answer is compared with
the cached one (:func:`answers_agree`: equal text after a conservative normalization), or both
(agreement first, the judge only when the answers differ). A "yes" (or agreeing answers) turns the
paraphrase's exact key into an *alias* of the cached (canonical) entry: an entry of kind
:data:`ALIAS_KIND` whose payload names the canonical key (:class:`AliasTarget`) and which carries the
canonical entry's tenant, version, tags, invalidation counters and lifetime. A "no" is remembered
for the pair (:func:`verdict_key`), so the pair is neither judged again nor ever served.

Replicas (and workers) sharing a backend verify one pair once: a job first takes the pair's
verification lock (:func:`verify_lock_key`, :func:`verify_lock_ttl`); :func:`after_verify_lock` says
what a job does when it got the lock, found it held by another replica's job, or could not reach the
store (fail open: it verifies anyway).

Resolving an alias re-reads the canonical entry with the request's tenant, model group, version and
controls, and :func:`alias_verdict` says whether it may be served: the alias dies with its canonical
entry (invalidated by model group, tag or tenant, a version change, expiry, replacement).
"""

from __future__ import annotations

import hashlib
import math
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson

__all__ = [
    "ALIAS_KIND",
    "VERIFY_LOCK_MARGIN_S",
    "AliasTarget",
    "EntryFacts",
    "Judgement",
    "LockPlan",
    "LockState",
    "after_verify_lock",
    "alias_ttl",
    "alias_verdict",
    "answers_agree",
    "decode_alias",
    "decode_verdict",
    "encode_alias",
    "encode_verdict",
    "judge_messages",
    "judge_prompts",
    "normalize_answer",
    "parse_judgement",
    "verdict_key",
    "verify_lock_key",
    "verify_lock_ttl",
]

# The entry kind of an alias (envelope format 3 stores an unknown kind as text; a replica that does
# not know it reads a kind mismatch: a miss, then its own answer overwrites the alias).
ALIAS_KIND = "alias"
# An alias with less life left than this is not written (it would die before it is read).
MIN_ALIAS_TTL_S = 1.0

Judgement = Literal["same", "different"]


@dataclass(frozen=True)
class AliasTarget:
    """What an alias entry points at: one canonical entry (its key and when it was written) of one
    model group. ``similarity``: of the two prompts when the near match was found."""

    canonical_key: str
    model_group: str
    canonical_created_at: float
    similarity: float | None = None


def encode_alias(target: AliasTarget) -> bytes:
    return orjson.dumps(
        {
            "to": target.canonical_key,
            "group": target.model_group,
            "created": target.canonical_created_at,
            "sim": target.similarity,
        }
    )


def decode_alias(payload: bytes) -> AliasTarget | None:
    """The target of an alias payload, or None when the bytes are not one."""
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    to, group, created, sim = data.get("to"), data.get("group"), data.get("created"), data.get("sim")
    if not isinstance(to, str) or not to or not isinstance(group, str):
        return None
    if not isinstance(created, (int, float)) or isinstance(created, bool) or not math.isfinite(created):
        return None
    similarity = float(sim) if isinstance(sim, (int, float)) and not isinstance(sim, bool) else None
    return AliasTarget(to, group, float(created), similarity)


@dataclass(frozen=True)
class EntryFacts:
    """What the alias rules read of an entry (the alias itself, or its canonical entry)."""

    tenant: str
    model_version: str
    tags: tuple[str, ...]
    counters: Mapping[str, int]
    created_at: float


def alias_verdict(
    *,
    alias: EntryFacts,
    target: AliasTarget | None,
    canonical: EntryFacts | None,
    canonical_reason: str,
    tenant: str,
    model_group: str,
    model_version: str,
) -> str | None:
    """None when the canonical entry may answer a request that found ``alias`` at its own exact key;
    otherwise why not (a miss reason, a small fixed set).

    ``canonical``: the canonical entry as the engine judged it for *this request* (tenant, invalidation
    counters, version, freshness), None when it missed (``canonical_reason`` says why). The alias must
    still be of the request's tenant, model group and version, and point at that very entry: same
    tenant, version, tags and counters, written at the time the alias recorded. A canonical entry that
    was invalidated, expired, re-versioned or replaced since therefore kills the alias."""
    if target is None:
        return "alias_corrupt"
    if alias.tenant != tenant or target.model_group != model_group or alias.model_version != model_version:
        return "alias_scope"
    if canonical is None:
        return "alias_dead" if canonical_reason != "backend_error" else "backend_error"
    if canonical.tenant != tenant or canonical.tenant != alias.tenant:
        return "alias_scope"
    if canonical.model_version != alias.model_version:
        return "alias_dead"
    if canonical.created_at != target.canonical_created_at:
        return "alias_replaced"
    if tuple(sorted(canonical.tags)) != tuple(sorted(alias.tags)):
        return "alias_replaced"
    if dict(canonical.counters) != dict(alias.counters):
        return "alias_replaced"
    return None


def alias_ttl(created_at: float, fresh_for: float, stale_for: float, now: float) -> float | None:
    """Backend TTL of an alias to an entry written at ``created_at``: the entry's remaining fresh life
    (an alias serves fresh entries only), or None when too little is left to be worth writing."""
    remaining = created_at + fresh_for - now
    if not math.isfinite(remaining) or remaining < MIN_ALIAS_TTL_S:
        return None
    return remaining + max(0.0, stale_for)


def _pair_digest(paraphrase_key: str, canonical_key: str) -> str:
    return hashlib.sha256(f"{paraphrase_key}\x00{canonical_key}".encode()).hexdigest()[:40]


def verdict_key(namespace: str, paraphrase_key: str, canonical_key: str) -> str:
    """Where the judge's verdict on one pair is remembered. Both keys are exact keys, which hold the
    tenant, model group and version: so does the verdict's key."""
    return f"{namespace}:v:{_pair_digest(paraphrase_key, canonical_key)}"


# --- one verification per pair across replicas ------------------------------------------------------

# What a verification lock outlives the judge's timeout by: the job's backend calls (each bounded by
# the backend deadline: the lock, the verdict, the canonical entry read twice, the verdict and alias
# written) and event-loop lag. A lock that expires under a job that is still running only lets another
# replica verify the pair too (one more judge call); it never lets anything unverified be served.
VERIFY_LOCK_MARGIN_S = 5.0

# How taking the pair's lock went: taken by this job, held by another job (another replica or
# worker), or the store could not say (error, deadline, circuit open).
LockState = Literal["acquired", "held", "store_failed"]


def verify_lock_key(namespace: str, paraphrase_key: str, canonical_key: str) -> str:
    """The lock one verification of a pair holds in the shared store (same pair hash as
    :func:`verdict_key`, so tenant-, model-group- and version-scoped like it)."""
    return f"{namespace}:vlock:{_pair_digest(paraphrase_key, canonical_key)}"


def verify_lock_ttl(judge_timeout: float) -> float:
    """How long the lock lives: the judge's timeout plus :data:`VERIFY_LOCK_MARGIN_S` (it is taken
    once the job has its concurrency slot, so waiting in the queue does not count)."""
    timeout = judge_timeout if math.isfinite(judge_timeout) and judge_timeout > 0 else 0.0
    return timeout + VERIFY_LOCK_MARGIN_S


@dataclass(frozen=True)
class LockPlan:
    """What a verification job does once it tried to take its pair's lock.

    ``verify``: go on (read the remembered verdict, compare, ask the judge); else the job ends, the
    other job's verdict or alias being what later requests find. ``release``: the job holds the lock
    and releases it when it ends, however it ends. ``count``: the ``semantic`` counter to bump, if any.
    """

    verify: bool
    release: bool
    count: str | None


def after_verify_lock(state: LockState) -> LockPlan:
    """The decision for each way of taking the lock:

    - ``acquired``: verify, then release;
    - ``held``: another job verifies this very pair now: do not judge nor compare again, end as
      ``verify_deduplicated``;
    - ``store_failed``: the store cannot coordinate: fail open, verify anyway without a lock (at
      worst one more judge call, as without replicas), counted ``verify_unlocked``. Nothing waits
      for the store beyond its deadline and no request is ever involved."""
    if state == "acquired":
        return LockPlan(verify=True, release=True, count=None)
    if state == "held":
        return LockPlan(verify=False, release=False, count="verify_deduplicated")
    return LockPlan(verify=True, release=False, count="verify_unlocked")


def encode_verdict(judgement: Judgement) -> bytes:
    return b"1" if judgement == "same" else b"0"


def decode_verdict(raw: bytes | None) -> Judgement | None:
    if raw == b"1":
        return "same"
    if raw == b"0":
        return "different"
    return None


# --- the judge's prompt and answer ------------------------------------------------------------------

_INSTRUCTION = (
    "You decide whether a cached answer may be reused. Do request A and request B ask for the same "
    "thing, so that one correct answer to A is a correct answer to B (same facts, numbers, units, "
    "entities, scope, language and output format)? Reply with one word: yes or no."
)
_CONVERSATION_INSTRUCTION = (
    "You decide whether a cached answer may be reused. Request A and request B are conversations, "
    "one line per turn, each ending with a user message. Given everything said earlier in each, "
    "does the last message of B ask for the same thing as the last message of A, so that one "
    "correct reply to A is a correct reply to B (same facts, numbers, units, entities, intent, "
    "scope, language and output format)? Reply with one word: yes or no."
)
_OPEN_A, _OPEN_B, _CLOSE = "<request_a>", "<request_b>", "</request>"
_PROMPTS_RE = re.compile(
    re.escape(_OPEN_A) + r"\n(.*?)\n" + re.escape(_CLOSE) + r"\n" + re.escape(_OPEN_B) + r"\n(.*?)\n"
    + re.escape(_CLOSE),
    re.DOTALL,
)  # fmt: skip


def judge_messages(
    cached_prompt: str,
    new_prompt: str,
    cached_context: Sequence[tuple[str, str]] = (),
    new_context: Sequence[tuple[str, str]] = (),
) -> list[dict[str, str]]:
    """The chat messages sent to the judge model (deterministic; parsed back by :func:`judge_prompts`).

    With earlier turns on either side (conversations scoped by meaning), each side is its whole
    conversation, one ``role: text`` line per turn, and the judge is asked about the last messages in
    their conversations: the last messages alone can be word for word the same and ask different
    things ("cancel it" after a gym membership or a streaming plan)."""
    if not cached_context and not new_context:
        a, b, instruction = cached_prompt, new_prompt, _INSTRUCTION
    else:
        a = conversation_transcript(cached_context, cached_prompt)
        b = conversation_transcript(new_context, new_prompt)
        instruction = _CONVERSATION_INSTRUCTION
    body = f"{_OPEN_A}\n{a}\n{_CLOSE}\n{_OPEN_B}\n{b}\n{_CLOSE}"
    return [{"role": "system", "content": instruction}, {"role": "user", "content": body}]


def conversation_transcript(context: Sequence[tuple[str, str]], last: str) -> str:
    """A conversation as the judge reads it: its earlier turns, then the last user message."""
    return "\n".join([*(f"{role}: {text}" for role, text in context), f"user: {last}"])


def judge_prompts(messages: Sequence[Mapping[str, object]]) -> tuple[str, str] | None:
    """The two prompts of a judge request made by :func:`judge_messages`, or None when it is not one
    (for a judge that answers from labelled pairs, such as the simulator's)."""
    for message in reversed(messages):
        content = message.get("content")
        if message.get("role") == "user" and isinstance(content, str):
            found = _PROMPTS_RE.search(content)
            return (found.group(1), found.group(2)) if found else None
    return None


_ANSWER_RE = re.compile(r"[a-z]+")


def parse_judgement(text: str | None) -> Judgement | None:
    """ "same" for an answer that starts with yes, "different" for one that starts with no; None for
    anything else (an unclear answer records nothing: the pair stays unverified, never served)."""
    if not isinstance(text, str):
        return None
    first = _ANSWER_RE.search(text.strip().lower()[:40])
    if first is None:
        return None
    if first.group(0) in ("yes", "same"):
        return "same"
    if first.group(0) in ("no", "different", "not"):
        return "different"
    return None


# --- agreement: the fresh answer of the paraphrase against the cached one ---------------------------

# Trailing characters that never change what an answer says: whitespace and sentence-ending
# punctuation (after NFKC, so full-width forms are covered). Deliberately not every Unicode
# punctuation mark: "50%", "a/b", "C#", quotes and closing brackets keep their last character.
_TRAILING = ".,;:!?\u2026\u3002\uff61"


def normalize_answer(text: str) -> str:
    """An answer's text as :func:`answers_agree` compares it: Unicode NFKC, case-folded, every run of
    whitespace one space, no leading whitespace, no trailing whitespace nor sentence-ending
    punctuation (``.,;:!?`` and the ellipsis and ideographic full stop). Idempotent. Nothing else is
    folded: digits, signs, units, words and their order all stay."""
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())
    folded = " ".join(folded.split())
    while True:
        stripped = folded.rstrip(_TRAILING).rstrip()
        if stripped == folded:
            return folded
        folded = stripped


def _number_marks(text: str) -> list[str]:
    """The characters NFKC would turn into plain digits while changing their meaning: superscripts,
    subscripts, vulgar fractions, circled and other "number, other" characters (``10²`` is not
    ``102``; ``½`` is kept apart from ``1/2`` written out). Answers agree only if these are the
    same, in order."""
    return [char for char in text if unicodedata.category(char) == "No"]


def _text_agrees(a: str, b: str) -> bool:
    return normalize_answer(a) == normalize_answer(b) and _number_marks(a) == _number_marks(b)


def _arguments(raw: Any) -> tuple[Any, ...] | None:
    """A tool call's arguments as a value (JSON text parsed: key order and spacing do not matter); the
    raw text, normalized, when it is not JSON."""
    if isinstance(raw, str):
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return ("text", normalize_answer(raw), _number_marks(raw))
    else:
        value = raw
    try:  # compared as canonical JSON: 1, 1.0 and true stay three different values
        return ("json", orjson.dumps(value, option=orjson.OPT_SORT_KEYS))
    except TypeError:  # not JSON (an integer beyond 64 bits): not compared, never agrees
        return None


def _call(call: Any) -> tuple[Any, ...] | None:
    """What one tool call (or legacy ``function_call``) says: its type, function name (exact) and
    arguments; its id is left out (a new id on every generation). None when it cannot be read."""
    if not isinstance(call, Mapping):
        return None
    function = call.get("function", call)  # a legacy function_call is the function itself
    if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
        return None
    arguments = _arguments(function.get("arguments"))
    if arguments is None:
        return None
    return (call.get("type", "function"), function["name"], arguments)


def _calls(message: Mapping[str, Any]) -> list[tuple[Any, ...]] | None:
    calls: list[Any] = []
    tool_calls = message.get("tool_calls")
    if tool_calls is not None:
        if not isinstance(tool_calls, list):
            return None
        calls.extend(tool_calls)
    if message.get("function_call") is not None:
        calls.append(message["function_call"])
    read = [_call(call) for call in calls]
    return None if any(call is None for call in read) else [call for call in read if call is not None]


def _choice(choice: Any) -> tuple[str, list[tuple[Any, ...]]] | None:
    """(text, tool calls) of one choice of a chat or text completion, None when it has neither shape
    or says nothing (an empty answer never agrees)."""
    if not isinstance(choice, Mapping):
        return None
    message = choice.get("message")
    if isinstance(message, Mapping):
        content = message.get("content")
        if content is None:
            content = ""
        if not isinstance(content, str):  # content parts (multimodal answers): not compared
            return None
        calls = _calls(message)
        if calls is None:
            return None
    elif isinstance(choice.get("text"), str):
        content, calls = choice["text"], []
    else:
        return None
    if not normalize_answer(content) and not calls:
        return None
    return content, calls


def answers_agree(cached: Any, fresh: Any) -> bool:
    """Whether two stored answers (chat or text completion bodies, as the exact layer stores them)
    say the same thing, so that the requests they answer may share an entry.

    They agree only when they have the same number of choices and each pair of choices agrees: the
    text (``message.content`` or ``text``) equal after :func:`normalize_answer`, with the same
    superscripts, fractions and other number marks NFKC would fold, and the same tool calls in the
    same order (function name exact, arguments equal as JSON values; ids ignored). Never on an empty
    answer (no text and no tool call), nor on anything that is not such a body (content parts,
    unreadable tool calls): no agreement is a safe answer, the pair stays unverified. Streamed answers
    are stored assembled, so they are compared the same way. No embedding of the answers is used: two
    answers that differ only in a number would look alike to one."""
    if not isinstance(cached, Mapping) or not isinstance(fresh, Mapping):
        return False
    a_choices, b_choices = cached.get("choices"), fresh.get("choices")
    if not isinstance(a_choices, list) or not isinstance(b_choices, list):
        return False
    if not a_choices or len(a_choices) != len(b_choices):
        return False
    for a_raw, b_raw in zip(a_choices, b_choices, strict=True):
        a, b = _choice(a_raw), _choice(b_raw)
        if a is None or b is None:
            return False
        if not _text_agrees(a[0], b[0]) or a[1] != b[1]:
            return False
    return True
