"""Near-miss guard: a cheap lexical check run on a candidate *after* the similarity search.

Embeddings place "how far is Paris from Lyon" and "how far is Paris from Lille" a few hundredths
apart, yet their answers differ. The guard compares the *slots* of two prompts and rejects the pair
when any slot differs. Pure functions, no I/O, no model; features are extracted once per prompt
(:func:`features`) and compared in microseconds (:func:`near_miss`).

Rules, in the order they are checked (:data:`RULES`; the first that fires is the reason, returned
as a :class:`Refusal` with the differing tokens by :func:`check`):

- ``number``: numerals and number words, normalized (``2,700`` == ``2700``, ``three`` == ``3``,
  ``twenty-five`` == ``25``, ``45k`` == ``45000``, ``3rd`` == ``third``), as a multiset; a lone ``1``
  against an article is no difference ("1 cup" / "a cup"); arithmetic signs next to numbers or
  one-letter variables (``x^2 - 5x`` / ``x^2 + 5x``).
- ``time``: weekdays, months, seasons, relative days; "today" said on one side only is no difference.
- ``unit``: measurement units, currencies, periods (``monthly`` == ``per month``); units of time
  without a period marker ("how many hours") only when both prompts name one.
- ``quoted``: text in quotes or backticks, exactly. ``code``: identifiers, paths, file names, URLs.
- ``language``: the prompt is written in another language (function words, script).
- ``format``: output-format words (json, yaml, table, bullet, python, in French, "as a list"...).
- ``entity``: capitalized words not at the start of a sentence, acronyms, CamelCase; an entity of one
  prompt must occur (as a word, any case, hyphens ignored; an acronym as the words it spells: US /
  United States) in the other.
- ``negation``: the number of negations (``not``, ``n't``, ``never``, ``without``...) and
  prefix-negated twins (``safe``/``unsafe``, ``transferable``/``non-transferable``).
- ``antonym``: both prompts use one axis of a small general lexicon with different poles.
- ``person``: who it is about (I/we vs he/she/they), when both prompts say.
- ``order``: the same words on the other sides of from/to/into/than/instead of (from X to Y vs from
  Y to X); a symmetric question ("how far is X from Y" / "the distance from X to Y") is no swap.
- ``question``: both start a sentence with a question word asking for another kind of answer (when
  vs how much vs why...); what/which are never compared.
- ``swap``: the prompts are otherwise the same sentence but a run of content words was replaced,
  added as a modifier, or added/dropped as a restricting phrase ("... in children", "... by post").
  Typos, inflections, British spellings, forms of one word (differ/difference), moved words,
  contractions, greetings and a small synonym lexicon do not count. When the two prompts share less
  than :data:`SWAP_MIN_FRAME` of their wording (a paraphrase reworded as a whole, where the embedding
  judged the meaning), only a changed *object* word counts (the word after an article or a
  preposition, or the last one: "tips for remote work" / "share tips on better sleep").

The ``swap`` rule is what catches lowercase entity swaps and scope changes that no lexicon lists; its
price is that a single-word synonym substitution outside the lexicon, in an otherwise identical
sentence, is refused too (a miss, never a wrong answer). Measured per rule, with what each rule
refuses and protects, by ``benchmarks/semantic/run.py``.

Layout (each module imports only the ones above it):

- ``forms`` — forms of one word: stem, British spellings, typos, variants, acronym shapes.
- ``lexicon`` — the word lists, as data (numbers, times, units, formats, antonym axes, synonyms...).
- ``patterns`` — the regular expressions and the normalization of a prompt.
- ``prompt`` — :class:`PromptFeatures` and :func:`features`.
- ``swap`` — the ``swap`` rule's comparison of two sentences.
- ``rules`` — every rule, :data:`RULES`, :class:`Refusal` and the checks.
"""

from __future__ import annotations

from litellm_cache_plugin.semantic.guard.prompt import PromptFeatures, features
from litellm_cache_plugin.semantic.guard.rules import (
    RULES,
    Refusal,
    all_refusals,
    check,
    explain,
    explain_refusal,
    near_miss,
)
from litellm_cache_plugin.semantic.guard.swap import SWAP_MIN_FRAME

__all__ = [
    "RULES",
    "SWAP_MIN_FRAME",
    "PromptFeatures",
    "Refusal",
    "all_refusals",
    "check",
    "explain",
    "explain_refusal",
    "features",
    "near_miss",
]
