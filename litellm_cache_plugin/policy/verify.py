"""Verified semantic matches: the pure decisions (no I/O).

In verified mode (``layers.semantic.verify.mode: judge``) a near match found by the semantic index is
not served. The request goes upstream; a background job asks a judge model whether the new prompt
and the cached one ask the same thing (:func:`judge_messages`, :func:`parse_judgement`). A "yes"
turns the paraphrase's exact key into an *alias* of the cached (canonical) entry: an entry of kind
:data:`ALIAS_KIND` whose payload names the canonical key (:class:`AliasTarget`) and which carries the
canonical entry's tenant, version, tags, invalidation counters and lifetime. A "no" is remembered
for the pair (:func:`verdict_key`), so the pair is neither judged again nor ever served.

Resolving an alias re-reads the canonical entry with the request's tenant, model group, version and
controls, and :func:`alias_verdict` says whether it may be served: the alias dies with its canonical
entry (invalidated by model group, tag or tenant, a version change, expiry, replacement).
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import orjson

__all__ = [
    "ALIAS_KIND",
    "AliasTarget",
    "EntryFacts",
    "Judgement",
    "alias_ttl",
    "alias_verdict",
    "decode_alias",
    "decode_verdict",
    "encode_alias",
    "encode_verdict",
    "judge_messages",
    "judge_prompts",
    "parse_judgement",
    "verdict_key",
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


def verdict_key(namespace: str, paraphrase_key: str, canonical_key: str) -> str:
    """Where the judge's verdict on one pair is remembered. Both keys are exact keys, which hold the
    tenant, model group and version: so does the verdict's key."""
    digest = hashlib.sha256(f"{paraphrase_key}\x00{canonical_key}".encode()).hexdigest()[:40]
    return f"{namespace}:v:{digest}"


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
_OPEN_A, _OPEN_B, _CLOSE = "<request_a>", "<request_b>", "</request>"
_PROMPTS_RE = re.compile(
    re.escape(_OPEN_A) + r"\n(.*?)\n" + re.escape(_CLOSE) + r"\n" + re.escape(_OPEN_B) + r"\n(.*?)\n"
    + re.escape(_CLOSE),
    re.DOTALL,
)  # fmt: skip


def judge_messages(cached_prompt: str, new_prompt: str) -> list[dict[str, str]]:
    """The chat messages sent to the judge model (deterministic; parsed back by :func:`judge_prompts`)."""
    body = f"{_OPEN_A}\n{cached_prompt}\n{_CLOSE}\n{_OPEN_B}\n{new_prompt}\n{_CLOSE}"
    return [{"role": "system", "content": _INSTRUCTION}, {"role": "user", "content": body}]


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
