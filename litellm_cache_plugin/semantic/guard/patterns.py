"""The guard's regular expressions (numbers, units, clock times, quotes, code, operators, scripts...)
and the normalization applied to a prompt before its features are read (greetings, hedges,
sign-offs, contractions, phrasal verbs)."""

from __future__ import annotations

import re
import unicodedata

from litellm_cache_plugin.semantic.guard.lexicon import PREAMBLE_WORDS

# "300k": the number before it is in thousands.
THOUSANDS = re.compile(r"[kK](?![A-Za-z])")
# Phrasal verbs whose particle carries the meaning; joined into one token before anything else.
PHRASALS = re.compile(r"\b(log|sign|opt|turn|switch|check|set)\s+(in|on|out|off|up|into)\b", re.IGNORECASE)
PHRASAL_JOIN = {"into": "in", "up": "up"}

CONTRACTIONS = (
    (re.compile(r"\b(?:at\s+)?what\s+time\b", re.IGNORECASE), "when"),
    (re.compile(r"\b(can)(?:'?t|not)\b", re.IGNORECASE), r"\1 not"),
    (re.compile(r"\bwon'?t\b", re.IGNORECASE), "will not"),
    (re.compile(r"\bshan'?t\b", re.IGNORECASE), "shall not"),
    (re.compile(r"\b(\w+)n't\b", re.IGNORECASE), r"\1 not"),
    (re.compile(r"\b(\w+)'re\b", re.IGNORECASE), r"\1 are"),
    (re.compile(r"\b(\w+)'ve\b", re.IGNORECASE), r"\1 have"),
    (re.compile(r"\b(\w+)'ll\b", re.IGNORECASE), r"\1 will"),
    (re.compile(r"\b(i)'m\b", re.IGNORECASE), r"\1 am"),
    (re.compile(r"\b(what|where|who|how|when|why|that|there|it|he|she)'s\b", re.IGNORECASE), r"\1 is"),
)

QUOTED = re.compile(
    r"\"([^\"\n]{1,200})\"|\u201c([^\u201d\n]{1,200})\u201d|`([^`\n]{1,200})`|(?<![\w])'([^'\n]{1,200})'(?![\w])"
)
NUMBER = re.compile(r"(?<![\w.])(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d+))?(st|nd|rd|th)?(?![\d])")
NUMBER_UNIT = re.compile(
    r"(?<![\w.])(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?\s?(%|°[cf]|[a-z]{1,12}(?:/[a-z]{1,2})?)(?![a-z])",
    re.IGNORECASE,
)
CURRENCY = re.compile(r"[£$€¥₹]")
CLOCK = re.compile(r"\b(\d{1,2})(?::(\d{2}))?\s?(am|pm)\b", re.IGNORECASE)
ACRONYM = re.compile(r"^[A-Z0-9&]{2,}s?$")
GREETING = re.compile(
    r"^\s*(?:(?:hi|hello|hey|hiya|greetings|good\s+(?:morning|afternoon|evening)|morning|afternoon|evening)"
    r"(?:\s+(?:there|team|all|everyone|folks|guys))?|dear\s+\w+)\s*[,!.:;-]+\s*",
    re.IGNORECASE,
)
PREAMBLE = re.compile(r"\s*([^,:;!?.\n]{1,60})[,:;!-]+\s+")
SIGN_OFF = re.compile(
    r"[\s,.!;-]*(?:(?:many\s+)?thanks(?:\s+in\s+advance)?|thank\s+you(?:\s+so\s+much)?|thx|cheers|ta)"
    r"[\s.!]*$",
    re.IGNORECASE,
)
TOKEN = re.compile(r"[\w][\w'\-&+#/.:]*[\w+#]|[\w]", re.UNICODE)
SENTENCE_GAP = re.compile(r"[.!?:;\n]")
CODEISH = re.compile(r"[_/\\]|::|\(\)|\w\.\w|[a-z][A-Z]|^\.")
# "as a list", "in a bulleted list", "in list form": a list as the output's form. "List the planets"
# alone asks for the planets (a request verb), not for a format.
LIST_FORMAT = re.compile(
    r"\b(?:as|in(?:to)?|with)\s+(?:a\s+)?(?:bullet(?:ed)?\s+|numbered\s+|short\s+|simple\s+)?"
    r"(?:list|lists)\b|\blist\s+form\b",
    re.IGNORECASE,
)
DOTTED_ACRONYM = re.compile(r"^(?:[A-Za-z]\.)+[A-Za-z]\.?$")
# Arithmetic operators next to a number or a one-letter variable: a sign change is another question
# (x^2 - 5x vs x^2 + 5x). Hyphens inside words ("5-year-old") are not operators.
OPERATOR = re.compile(
    r"(?:(?<=[\d)a-zA-Z])|(?<=[\d)a-zA-Z] ))([-+*/^=<>\u00d7\u00f7])(?=\s?(?:\d|\(|[a-zA-Z](?![a-zA-Z])))"
)
WORD_SPLIT = re.compile(r"[-/]")
NEXT_WORD = re.compile(r"\s+(\w+)")
SCRIPTS = (
    ("zh-ja", re.compile(r"[\u3040-\u30ff\u3400-\u9fff]")),
    ("ko", re.compile(r"[\uac00-\ud7af]")),
    ("ru", re.compile(r"[\u0400-\u04ff]")),
    ("ar", re.compile(r"[\u0600-\u06ff]")),
    ("el", re.compile(r"[\u0370-\u03ff]")),
    ("he", re.compile(r"[\u0590-\u05ff]")),
    ("hi", re.compile(r"[\u0900-\u097f]")),
)


def _strip_preamble(text: str) -> str:
    """Drop a leading clause made only of pleasantries ("Sorry, silly question, but ...")."""
    for _ in range(3):
        match = PREAMBLE.match(text)
        if match is None:
            break
        if not all(word.lower() in PREAMBLE_WORDS for word in re.findall(r"[\w']+", match.group(1))):
            break
        text = text[match.end() :]
    return text


def normalize(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).replace("\u2019", "'").replace("\u2018", "'")
    # Greetings, hedges and sign-offs carry no question ("Hi team, quick one: ..." / "... Thanks!").
    text = SIGN_OFF.sub("", _strip_preamble(GREETING.sub("", text, count=1)), count=1) or text
    for pattern, replacement in CONTRACTIONS:
        text = pattern.sub(replacement, text)
    return PHRASALS.sub(lambda m: m.group(1) + PHRASAL_JOIN.get(m.group(2).lower(), m.group(2)), text)
