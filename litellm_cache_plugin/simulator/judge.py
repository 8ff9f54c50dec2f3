"""The simulator's judge for verified semantic matches, and intent-aware answers, from labelled pairs
of prompts (:class:`~litellm_cache_plugin.simulator.config.SimJudge`). Deterministic: the same
question always gets the same "yes" or "no"."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import orjson

from litellm_cache_plugin.policy.verify import judge_prompts
from litellm_cache_plugin.simulator.config import EquivalencePair, SimJudge, canonical_model_name


def normal(prompt: str) -> str:
    """How prompts are compared: case and whitespace do not matter."""
    return " ".join(prompt.split()).casefold()


def read_pairs(path: str | Path) -> list[EquivalencePair]:
    """Pairs of an equivalence file: JSON lines, or one JSON list."""
    text = Path(path).read_text(encoding="utf-8").strip()
    if not text:
        return []
    if text.startswith("["):
        rows = orjson.loads(text)
    else:
        rows = [orjson.loads(line) for line in text.splitlines() if line.strip()]
    return [EquivalencePair.model_validate(row) for row in rows]


class JudgeBook:
    """Labelled pairs, ready to answer a judge question or to name a prompt's intent."""

    def __init__(self, config: SimJudge) -> None:
        self.config = config
        self.models = frozenset(canonical_model_name(name) for name in config.models)
        pairs = read_pairs(config.equivalence_file) if config.equivalence_file else []
        pairs += config.pairs
        self.labels: dict[frozenset[str], str] = {}
        self._parent: dict[str, str] = {}
        self._first: dict[str, str] = {}  # normal form -> the prompt as first written
        self._rank: dict[str, int] = {}
        for pair in pairs:
            a, b = normal(pair.a), normal(pair.b)
            for key, written in ((a, pair.a), (b, pair.b)):
                if key not in self._first:
                    self._first[key] = written
                    self._rank[key] = len(self._rank)
            self.labels[frozenset((a, b))] = pair.label
            if pair.label == "same":
                self._union(a, b)

    def is_judge(self, model_key: str) -> bool:
        return model_key in self.models

    def verdict(self, first: str, second: str) -> str:
        """ "yes" or "no" for two prompts: their label, else the configured answer for unknown pairs."""
        a, b = normal(first), normal(second)
        if a == b:
            return "yes"
        label = self.labels.get(frozenset((a, b)))
        if label is None:
            return self.config.unknown
        return "yes" if label == "same" else "no"

    def answer(self, messages: Sequence[Mapping[str, object]]) -> str:
        """The judge's reply to a chat request ("no" when it is not a judge question)."""
        prompts = judge_prompts(messages)
        if prompts is None:
            return "no"
        return self.verdict(*prompts)

    def intent(self, prompt: str) -> str | None:
        """The first prompt of the intent ``prompt`` belongs to (labelled "same" with it, transitively),
        or None when it is in no labelled pair."""
        key = normal(prompt)
        if key not in self._parent:
            return None
        return self._first[self._find(key)]

    def _find(self, key: str) -> str:
        parent = self._parent.setdefault(key, key)
        if parent != key:
            parent = self._parent[key] = self._find(parent)
        return parent

    def _union(self, a: str, b: str) -> None:
        ra, rb = self._find(a), self._find(b)
        if ra != rb:
            # The root is the prompt seen first, so the intent's answer does not depend on pair order.
            rank = self._rank
            keep, drop = (ra, rb) if rank[ra] <= rank[rb] else (rb, ra)
            self._parent[drop] = keep


def judges(config: SimJudge | None) -> JudgeBook | None:
    return JudgeBook(config) if config is not None else None


__all__ = ["JudgeBook", "judges", "normal", "read_pairs"]
