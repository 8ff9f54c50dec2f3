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
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher

__all__ = [
    "RULES",
    "PromptFeatures",
    "Refusal",
    "all_refusals",
    "check",
    "explain",
    "explain_refusal",
    "features",
    "near_miss",
]


def _wordset(text: str) -> frozenset[str]:
    return frozenset(text.split())


def _stem(word: str) -> str:
    """A crude stemmer: enough to equate ``refund``/``refunds``/``refunded`` and ``park``/``parking``."""
    for suffix in ("ings", "ing", "ied", "ies", "ed", "es", "s", "ly"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            base = word[: -len(suffix)]
            if suffix in ("ied", "ies"):
                return base + "y"
            if suffix in ("ing", "ed") and len(base) >= 4 and base[-1] == base[-2]:
                return base[:-1]  # stopped -> stop, planning -> plan
            return base
    if word.endswith("e") and len(word) >= 5:
        return word[:-1]  # increase/increased/increasing -> increas
    return word


# --- lexicons ---------------------------------------------------------------------------------

_NUMBER_WORDS: dict[str, float] = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
    "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20, "thirty": 30,
    "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90, "hundred": 100,
    "thousand": 1000, "million": 10**6, "billion": 10**9, "dozen": 12, "half": 0.5, "twice": 2,
    "double": 2, "triple": 3, "single": 1, "couple": 2, "quarter": 0.25,
    "first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7,
    "eighth": 8, "ninth": 9, "tenth": 10,
}  # fmt: skip
# Words that combine into one number when adjacent ("twenty-five", "two hundred").
_CARDINALS = _wordset(
    "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety hundred thousand "
    "million billion"
)
_THOUSANDS = re.compile(r"[kK](?![A-Za-z])")
# "one" and "second" are often not quantities ("which one", "a second opinion"); they still count, as
# a mismatch then only costs a miss.

_TIME_WORDS = _wordset(
    "monday tuesday wednesday thursday friday saturday sunday weekday weekend "
    "january february march april may june july august september october november december "
    "today tomorrow yesterday tonight morning afternoon evening night midnight noon "
    "spring summer autumn fall winter christmas easter"
)
# "may", "march", "fall" are also verbs; they count as time words only when capitalized.
_AMBIGUOUS_TIME = frozenset({"may", "march", "fall"})

_UNITS: dict[str, str] = {}
for _canon, _aliases in {
    "km": "km kms kilometer kilometers kilometre kilometres",
    "mile": "mile miles mi",
    "m": "m meter meters metre metres",
    "cm": "cm centimeter centimeters centimetre centimetres",
    "mm": "mm millimeter millimeters millimetre millimetres",
    "ft": "ft foot feet",
    "inch": "inch inches",
    "kg": "kg kgs kilo kilos kilogram kilograms kilogramme kilogrammes",
    "g": "g gram grams gramme grammes",
    "lb": "lb lbs",
    "oz": "oz ounce ounces",
    "stone": "st stone stones",
    "l": "l litre litres liter liters",
    "ml": "ml millilitre millilitres milliliter milliliters",
    "gallon": "gallon gallons gal",
    "pint": "pint pints",
    "kwh": "kwh kilowatt-hour kilowatt-hours",
    "kw": "kw kilowatt kilowatts",
    "w": "w watt watts",
    "v": "v volt volts",
    "mph": "mph",
    "kph": "kph km/h kmh",
    "celsius": "c °c celsius centigrade",
    "fahrenheit": "f °f fahrenheit",
    "kelvin": "k kelvin",
    "percent": "% percent per-cent percentage",
    "gb": "gb gigabyte gigabytes",
    "mb": "mb megabyte megabytes",
    "tb": "tb terabyte terabytes",
    "kb": "kb kilobyte kilobytes",
    "ghz": "ghz",
    "mhz": "mhz",
    "px": "px pixel pixels",
    "second": "sec secs seconds",
    "minute": "min mins minute minutes",
    "hour": "h hr hrs hour hours hourly",
    "day": "day days daily",
    "week": "wk week weeks weekly fortnight fortnightly",
    "month": "mo month months monthly",
    "year": "yr yrs year years yearly annual annually",
    "gbp": "£ gbp pound pounds quid sterling",
    "usd": "$ usd dollar dollars",
    "eur": "€ eur euro euros",
    "jpy": "¥ jpy yen",
    "inr": "₹ inr rupee rupees",
    "pence": "p pence penny",
    "cent": "cent cents",
}.items():
    for _alias in _aliases.split():
        _UNITS[_alias] = _canon
_TIME_UNITS = frozenset({"second", "minute", "hour", "day", "week", "month", "year"})
_PERIOD_WORDS = _wordset("hourly daily weekly fortnightly monthly yearly annual annually fortnight")
_PERIOD_MARKERS = _wordset("per a an each every")
# "one" and "single" are articles as often as numbers.
_ARTICLE_NUMBERS = frozenset({"one", "single"})
# One-letter (and "in", "st", "mi", "p"...) aliases are units only right after a number ("5 m", "3pm"
# is handled as a time); as standalone words they are too often something else.
_STANDALONE_UNIT_MIN_LEN = 2
_NOT_STANDALONE_UNITS = frozenset({"st", "mi", "min", "mo", "gal", "sec", "hr", "wk", "yr", "in", "am"})

_FORMAT_WORDS: dict[str, str] = {}
for _canon, _aliases in {
    "json": "json", "yaml": "yaml yml", "xml": "xml", "csv": "csv tsv", "markdown": "markdown md",
    "html": "html", "table": "table tables tabular", "list": "numbered",
    "bullet": "bullet bullets bulleted", "code": "code snippet", "python": "python py",
    "javascript": "javascript js node nodejs", "typescript": "typescript ts", "java": "java",
    "rust": "rust", "golang": "golang", "c": "c++ cpp c#", "ruby": "ruby", "php": "php",
    "sql": "sql", "bash": "bash shell sh zsh powershell", "regex": "regex regexp",
    "essay": "essay", "poem": "poem haiku limerick sonnet", "email": "email e-mail letter",
    "tweet": "tweet", "summary": "summary summarize summarise tldr tl;dr", "outline": "outline",
    "diagram": "diagram chart graph", "paragraph": "paragraph paragraphs", "sentence": "sentence sentences",
    "word": "word words", "short": "brief briefly concise concisely", "long": "detailed lengthy",
    "steps": "step-by-step", "eli5": "eli5", "english": "english", "french": "french",
    "spanish": "spanish", "german": "german", "italian": "italian", "portuguese": "portuguese",
    "dutch": "dutch", "chinese": "chinese mandarin", "japanese": "japanese", "korean": "korean",
    "arabic": "arabic", "russian": "russian", "hindi": "hindi", "welsh": "welsh", "polish": "polish",
    "formal": "formal", "casual": "casual informal", "funny": "funny humorous",
    "uppercase": "uppercase capitals", "lowercase": "lowercase",
}.items():  # fmt: skip
    for _alias in _aliases.split():
        _FORMAT_WORDS[_alias] = _canon

_NEGATIONS = _wordset(
    "not no never none nobody nothing nowhere neither nor without cannot neednt hardly barely "
    "isnt arent wasnt werent dont doesnt didnt cant couldnt shouldnt wouldnt wont mustnt"
)
_NEG_PREFIXES = ("non-", "non", "un", "in", "im", "il", "ir", "dis", "anti-", "anti", "de")
_NEG_INITIALS = frozenset(prefix[0] for prefix in _NEG_PREFIXES)

# Axes whose poles mean opposite things. Each group lists the words of one pole; a prompt using a word
# of pole X and another using pole Y of the same axis ask different questions. General English only.
_ANTONYM_AXES: tuple[tuple[str, str], ...] = (
    ("open opened opening opens", "close closed closing closes shut"),
    ("add adding added", "remove removing removed delete deleting deleted"),
    ("include includes including included", "exclude excludes excluding excluded"),
    ("allow allowed allows permitted permit", "ban banned forbid forbidden prohibit prohibited disallowed"),
    ("accept accepted accepting", "reject rejected refuse refused decline declined"),
    ("enable enabled enabling", "disable disabled disabling"),
    ("start started starting begin beginning", "stop stopped stopping end ending finish finishing"),
    ("buy buying bought purchase", "sell selling sold"),
    ("increase increasing raise raising", "decrease decreasing reduce reducing lower lowering"),
    ("before", "after"),
    ("best", "worst"),
    ("most", "least"),
    ("more", "less fewer"),
    ("high", "low"),
    ("highest", "lowest"),
    ("ascending ascend", "descending descend"),
    ("higher", "lower"),
    ("maximum max", "minimum min"),
    ("cheapest", "priciest dearest"),
    ("cheap cheaper", "expensive pricier dearer"),
    ("fastest quickest", "slowest"),
    ("fast faster quick quicker", "slow slower"),
    ("early earlier earliest", "late later latest"),
    ("first", "last"),
    ("import importing imported", "export exporting exported"),
    ("upload uploading uploaded", "download downloading downloaded"),
    ("upgrade upgrading", "downgrade downgrading"),
    ("login signin", "logout signout"),
    ("optin", "optout"),
    ("turnon switchon", "turnoff switchoff"),
    ("subscribe subscribed", "unsubscribe unsubscribed"),
    ("lock locked locking", "unlock unlocked unlocking"),
    ("encrypt encrypted encryption", "decrypt decrypted decryption"),
    ("pros advantages benefits upsides", "cons disadvantages drawbacks downsides risks"),
    ("safe safely", "dangerous unsafe harmful"),
    ("legal lawful lawfully", "illegal unlawful unlawfully"),
    ("hot hotter warm warmer", "cold colder cool cooler"),
    ("big bigger biggest large larger largest", "small smaller smallest little"),
    ("long longer longest", "short shorter shortest"),
    ("heavy heavier", "light lighter"),
    ("eat", "avoid"),
    ("spicy", "mild"),
    ("positive", "negative"),
    ("success successful succeed", "failure fail failed unsuccessful"),
    ("win winning won", "lose losing lost"),
    ("pass passed", "fail failed"),
    ("deposit depositing", "withdraw withdrawing withdrawal"),
    ("credit credited", "debit debited"),
    ("income", "expense expenses"),
    ("inbound incoming", "outbound outgoing"),
    ("input", "output"),
    ("join joining", "leave leaving quit"),
    ("hire hiring", "fire firing"),
    ("connect connecting", "disconnect disconnecting"),
    ("install installing", "uninstall uninstalling"),
    ("mount", "unmount"),
    ("push", "pull"),
    ("send sending sent", "receive receiving received"),
    ("lend lending", "borrow borrowing"),
    ("true", "false"),
    ("yes", "no"),
    ("above", "below"),
    ("over", "under"),
    ("inside", "outside"),
    ("north northern", "south southern"),
    ("east eastern", "west western"),
    ("left", "right"),
    ("male men man boys boy", "female women woman girls girl"),
    ("adult adults", "child children kid kids"),
    ("domestic", "international"),
    ("full-time fulltime", "part-time parttime"),
    ("public", "private"),
    ("online", "offline"),
    ("minimal", "maximal"),
    ("like", "dislike"),
    ("agree", "disagree"),
    ("similar similarities", "different differences"),
    ("strong stronger strength strengths", "weak weaker weakness weaknesses"),
    ("good better", "bad worse"),
    ("easy easier easiest", "hard harder hardest difficult"),
    ("popular", "unpopular"),
    # Roles: the same question asked from the other side has another answer.
    ("landlord landlords", "tenant tenants renter renters"),
    ("employer employers", "employee employees staff worker workers"),
    ("buyer buyers purchaser", "seller sellers vendor vendors"),
    ("teacher teachers", "student students pupil pupils"),
    ("doctor doctors", "patient patients"),
    ("host hosts", "guest guests"),
    ("sender", "recipient receiver"),
    ("lender lenders", "borrower borrowers"),
    ("parent parents", "child children"),
)
_AXIS_OF: dict[str, tuple[int, int]] = {}
for _axis, (_pole_a, _pole_b) in enumerate(_ANTONYM_AXES):
    for _pole, _words in enumerate((_pole_a, _pole_b)):
        for _word in _words.split():
            _AXIS_OF.setdefault(_word, (_axis, _pole))
for _word, _where in list(_AXIS_OF.items()):
    _AXIS_OF.setdefault(_stem(_word), _where)

# Phrasal verbs whose particle carries the meaning; joined into one token before anything else.
_PHRASALS = re.compile(r"\b(log|sign|opt|turn|switch|check|set)\s+(in|on|out|off|up|into)\b", re.IGNORECASE)
_PHRASAL_JOIN = {"into": "in", "up": "up"}

# Words that change nothing about the answer; dropped before the swap rule compares content words.
_STOPWORDS = (
    _wordset(
        """a an the and or but if then so of to in on at by for with from into onto about as than that
    this these those there here it its it's is are was were be been being am do does did doing done
    have has had having can could should would will shall may might must need ought i me my mine
    myself we us our ours you your yours he him his she her they them their it what's whats
    some any each every all such very much many just also too really actually basically quite
    please pls thanks thank thx hi hello hey dear team folks guys ok okay well um uh hmm kindly
    quick question wondering wonder tell let know get got going go want wanted like would've
    i'm im i've ive i'd id i'll you're youre you've we're were they're theyre one's able possible
    anyone someone somebody something somewhere anything way ways exactly currently now
    what which how usually normally typically generally still ever even already simply cheers
    sorry bother silly er erm um umm uh yeah yep between apart good common main typical usual
    best right ideal proper properly correct correctly appropriate normal recommended vs versus
    use using used amount number away feel feeling
    people person persons
    say tell give show share explain describe calculate compute find provide recommend suggest
    convert write please"""
        # Request verbs ("Explain X" / "What is X" / "Give me X") say how to ask, not what.
        # Negations are compared by count; as content words they would make "cannot" differ from "not".
    )
    | _NEGATIONS
)
# "what", "how" and "which" are interchangeable openings ("How much does X cost" = "What does X
# cost"); "when", "where", "who" and "why" stay content words: "when" vs "where" is another question.

_PERSON: dict[str, str] = {}
for _cls, _words in {
    "1": "i me my mine myself we us our ours ourselves i'm i've i'd i'll we're we've",
    "2": "you your yours yourself yourselves you're you've you'd you'll",
    "3": "he him his himself she her hers herself they them their theirs themselves he's she's they're",
}.items():
    for _word in _words.split():
        _PERSON[_word] = _cls

# Small, general synonym groups: a swap inside one group is not a change. Canonical form first.
_SYNONYM_GROUPS = (
    "fast quick rapid speedy",
    "fastest quickest speediest",
    "get obtain receive request",
    "big large huge size",
    "small little tiny",
    "child children kid kids",
    "buy purchase",
    "price cost fee charge",
    "cheap inexpensive affordable",
    "fix repair mend",
    "begin start commence",
    "help assist support",
    "need require",
    "use utilise utilize",
    "method way approach procedure process",
    "car vehicle automobile",
    "weather forecast",
    "film movie",
    "phone telephone mobile cellphone",
    "email e-mail",
    "shop store",
    "job work employment",
    "boss employer manager",
    "doctor gp physician",
    "house home",
    "flat apartment",
    "holiday vacation",
    "rubbish trash garbage waste",
    "cancel terminate",
    "refund reimbursement",
    "change modify alter update switch",
    "make create setup",
    "book reserve",
    "transfer move",
    "show display",
    "find locate",
    "choose pick select",
    "correct right",
    "wrong incorrect",
    "reset restore",
    "difference distinction",
    "explain describe",
    "contact reach",
    "far distance",
    "long length",
    "money cash",
    # Irregular forms and role nouns of one verb: "who wrote X" = "X was written by whom" = "who is the
    # author of X".
    "write wrote written writer author authored",
    "who whom",
    "when soon",
    "take took taken",
    "give gave given",
    "eat ate eaten",
    "drink drank drunk",
    "go went gone",
    "begin began begun",
    "fly flew flown flight flights",
    "choose chose chosen choice",
    "grow grew grown growth",
    "die died dead death",
    "born birth",
    "lose lost loss",
    "sell sold sale",
    # General-English near synonyms that ask the same thing.
    "merge combine",
    "remove delete erase",
    "error bug",
    "high tall height elevation rich",
    "biggest largest",
    "smallest tiniest",
    "easiest simplest",
    "easy simple straightforward basic",
    "symptom sign",
    "cause reason",
    "advice tip tips suggestion recommendation",
    "guide tutorial",
    "improve boost enhance",
    "check verify",
    "allow permit let",
    "instruction step",
    "answer reply respond response",
    "lawyer attorney solicitor",
    "sofa couch",
    "tv television",
    "pc computer",
    "maths math mathematics",
)
_SYNONYM_OF: dict[str, str] = {}
for _group in _SYNONYM_GROUPS:
    _members = _group.split()
    for _word in _members:
        _SYNONYM_OF.setdefault(_word, _members[0])

_CONTRACTIONS = (
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

_QUOTED = re.compile(
    r"\"([^\"\n]{1,200})\"|\u201c([^\u201d\n]{1,200})\u201d|`([^`\n]{1,200})`|(?<![\w])'([^'\n]{1,200})'(?![\w])"
)
_NUMBER = re.compile(r"(?<![\w.])(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d+))?(st|nd|rd|th)?(?![\d])")
_NUMBER_UNIT = re.compile(
    r"(?<![\w.])(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?\s?(%|°[cf]|[a-z]{1,12}(?:/[a-z]{1,2})?)(?![a-z])",
    re.IGNORECASE,
)
_CURRENCY = re.compile(r"[£$€¥₹]")
_CLOCK = re.compile(r"\b(\d{1,2})(?::(\d{2}))?\s?(am|pm)\b", re.IGNORECASE)
_ACRONYM = re.compile(r"^[A-Z0-9&]{2,}s?$")
# All-caps words that are not names.
_NOT_ENTITIES = frozenset(
    {"i", "i'm", "ok", "okay", "pls", "asap", "fyi", "btw", "eli5", "tl;dr", "faq", "pc", "tv", "id"}
)
_GREETING = re.compile(
    r"^\s*(?:(?:hi|hello|hey|hiya|greetings|good\s+(?:morning|afternoon|evening)|morning|afternoon|evening)"
    r"(?:\s+(?:there|team|all|everyone|folks|guys))?|dear\s+\w+)\s*[,!.:;-]+\s*",
    re.IGNORECASE,
)
_PREAMBLE = re.compile(r"\s*([^,:;!?.\n]{1,60})[,:;!-]+\s+")
_PREAMBLE_WORDS = _wordset(
    """sorry to bother you but silly quick question one so ok okay er erm um umm uh yeah yep well hi
    hello hey there team all a just wondering i was excuse me please help"""
)
_SIGN_OFF = re.compile(
    r"[\s,.!;-]*(?:(?:many\s+)?thanks(?:\s+in\s+advance)?|thank\s+you(?:\s+so\s+much)?|thx|cheers|ta)"
    r"[\s.!]*$",
    re.IGNORECASE,
)
_TOKEN = re.compile(r"[\w][\w'\-&+#/.:]*[\w+#]|[\w]", re.UNICODE)
_SENTENCE_GAP = re.compile(r"[.!?:;\n]")
_CODEISH = re.compile(r"[_/\\]|::|\(\)|\w\.\w|[a-z][A-Z]|^\.")
_ROLE_WORDS = {"from": "from", "to": "to", "into": "to", "onto": "to", "than": "than", "instead": "instead"}
# A phrase these open narrows the question ("side effects of X in children", "boil pasta at high
# altitude"); "of" and "to" are left out (too often structure: "capital of", "how to").
_SCOPE_PREPOSITIONS = _wordset(
    "in for at on with without after before during while under over near inside outside within "
    "among via per against by as"
)
_DETERMINERS = _wordset("a an the my your his her our their its this that these those some any")
_OBJECT_MARKERS = _DETERMINERS | _SCOPE_PREPOSITIONS | _wordset("of about")
# "as a list", "in a bulleted list", "in list form": a list as the output's form. "List the planets"
# alone asks for the planets (a request verb), not for a format.
_LIST_FORMAT = re.compile(
    r"\b(?:as|in(?:to)?|with)\s+(?:a\s+)?(?:bullet(?:ed)?\s+|numbered\s+|short\s+|simple\s+)?"
    r"(?:list|lists)\b|\blist\s+form\b",
    re.IGNORECASE,
)
_DOTTED_ACRONYM = re.compile(r"^(?:[A-Za-z]\.)+[A-Za-z]\.?$")
# Arithmetic operators next to a number or a one-letter variable: a sign change is another question
# (x^2 - 5x vs x^2 + 5x). Hyphens inside words ("5-year-old") are not operators.
_OPERATOR = re.compile(
    r"(?:(?<=[\d)a-zA-Z])|(?<=[\d)a-zA-Z] ))([-+*/^=<>\u00d7\u00f7])(?=\s?(?:\d|\(|[a-zA-Z](?![a-zA-Z])))"
)
_ACRONYM_SKIP = _wordset("of the and for")
# The present is the default: "population of Paris" asks what "population of Paris today" asks.
_IMPLICIT_TIMES = frozenset({"today", "now"})
_WORD_SPLIT = re.compile(r"[-/]")


@dataclass(frozen=True, slots=True)
class PromptFeatures:
    """What the guard compares; build with :func:`features` (once per prompt, then cache it)."""

    numbers: tuple[str, ...]
    times: frozenset[str]
    units: frozenset[str]
    entities: tuple[str, ...]
    quoted: frozenset[str]
    code: frozenset[str]
    negations: int
    axes: frozenset[tuple[int, int]]
    formats: frozenset[str]
    persons: frozenset[str]
    words: frozenset[str]
    # Content words (synonyms folded, stemmed) in order, and the surface word of each (for typos).
    content: tuple[str, ...]
    surface: tuple[str, ...]
    positions: tuple[int, ...]  # index of each content word among all words
    # Every word part in order, lower case (for the order rule).
    sequence: tuple[str, ...] = ()
    # The content words sorted (a reordering changes nothing), and the direction words' sides.
    bag: tuple[str, ...] = ()
    sides: tuple[tuple[str, frozenset[str], tuple[str, ...]], ...] = ()
    # Per content word: does it open a phrase after a restricting preposition ("in children")?
    after_preposition: tuple[bool, ...] = ()
    # Content words in an object position (after an article, a possessive or a preposition, or the
    # last one): what the question is about.
    objects: frozenset[str] = frozenset()
    # Arithmetic operators in order of appearance (signs of an equation).
    operators: tuple[str, ...] = ()
    # Acronyms the prompt spells out ("united states of america" -> us, usa, ...), for entity matching.
    initials: frozenset[str] = frozenset()
    # Has an article or a word that means "one" ("a cup" asks what "1 cup" asks).
    article: bool = False
    # Time units named without a period marker ("how many weeks"): compared only when both have some.
    time_units: frozenset[str] = frozenset()
    # The language the prompt is written in (a guess from function words and script), "en" by default.
    language: str = "en"
    # What a sentence-initial question word asks for: time (when, how soon), place (where), person
    # (who), reason (why, how come), quantity (how much/many/long...), manner (how do/can/to...);
    # "" for what/which/none.
    question: str = ""


def _number_value(raw: str, frac: str | None) -> str:
    value = raw.replace(",", "")
    if frac and frac.strip("0"):
        return f"{int(value)}.{frac.rstrip('0')}"
    return str(int(value))


def _scaled(value: str, factor: int) -> str:
    scaled = float(value) * factor
    return str(int(scaled)) if scaled.is_integer() else repr(scaled)


def _cardinal_values(cardinals: Sequence[tuple[int, str]], sequence: Sequence[str]) -> list[str]:
    """Runs of adjacent cardinal words (``and`` may join them) as one value each: twenty-five = 25,
    two hundred and fifty = 250, three thousand = 3000. A lone "one" is an article (left out)."""
    runs: list[list[str]] = []
    last = -2
    for index, word in cardinals:
        joined = index == last + 1 or (index == last + 2 and sequence[last + 1] == "and")
        if runs and joined:
            runs[-1].append(word)
        else:
            runs.append([word])
        last = index
    values: list[str] = []
    for run in runs:
        if run == ["one"]:
            continue
        total = current = 0.0
        for word in run:
            value = float(_NUMBER_WORDS[word])
            if value == 100:
                current = max(current, 1.0) * 100
            elif value >= 1000:
                total += max(current, 1.0) * value
                current = 0.0
            else:
                current += value
        result = total + current
        values.append(str(int(result)) if result.is_integer() else repr(result))
    return values


def _number_word_value(word: str) -> str:
    value = _NUMBER_WORDS[word]
    return str(int(value)) if float(value).is_integer() else repr(value)


def _strip_preamble(text: str) -> str:
    """Drop a leading clause made only of pleasantries ("Sorry, silly question, but ...")."""
    for _ in range(3):
        match = _PREAMBLE.match(text)
        if match is None:
            break
        if not all(word.lower() in _PREAMBLE_WORDS for word in re.findall(r"[\w']+", match.group(1))):
            break
        text = text[match.end() :]
    return text


def _normalize(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).replace("\u2019", "'").replace("\u2018", "'")
    # Greetings, hedges and sign-offs carry no question ("Hi team, quick one: ..." / "... Thanks!").
    text = _SIGN_OFF.sub("", _strip_preamble(_GREETING.sub("", text, count=1)), count=1) or text
    for pattern, replacement in _CONTRACTIONS:
        text = pattern.sub(replacement, text)
    return _PHRASALS.sub(lambda m: m.group(1) + _PHRASAL_JOIN.get(m.group(2).lower(), m.group(2)), text)


def _time_word(word: str) -> str | None:
    if word in _TIME_WORDS:
        return word
    if word.endswith("s") and word[:-1] in _TIME_WORDS:
        return word[:-1]  # "on Sundays" asks about Sunday
    return None


def features(text: str) -> PromptFeatures:
    """Extract the slots of one prompt (see the module docstring). Linear in the prompt's length."""
    text = _normalize(text)
    quoted = frozenset(
        next(group for group in match.groups() if group is not None) for match in _QUOTED.finditer(text)
    )
    numbers: list[str] = []
    units: set[str] = set()
    times: set[str] = set()
    clock_spans: list[tuple[int, int]] = []
    for match in _CLOCK.finditer(text):
        times.add(f"{int(match.group(1))}:{match.group(2) or '00'}{match.group(3).lower()}")
        clock_spans.append(match.span())
    thousands: set[int] = set()  # where "300k" means 300,000
    for match in _NUMBER.finditer(text):
        if not any(start <= match.start() < end for start, end in clock_spans):
            value = _number_value(match.group(1), match.group(2))
            if _THOUSANDS.match(text, match.end()) and not match.group(3):
                thousands.add(match.start())
                value = _scaled(value, 1000)
            numbers.append(value)
    for match in _NUMBER_UNIT.finditer(text):
        unit = _UNITS.get(match.group(1).lower())
        if unit is not None and match.start() not in thousands:
            units.add(unit)
    for symbol in _CURRENCY.findall(text):
        units.add(_UNITS[symbol])
    operators = _operators(text)

    entities: list[str] = []
    code: set[str] = set()
    words: set[str] = set()
    content: list[str] = []
    surface: list[str] = []
    negations = 0
    formats: set[str] = {"list"} if _LIST_FORMAT.search(text) else set()
    persons: set[str] = set()
    axes: set[tuple[int, int]] = set()
    positions: list[int] = []
    cardinals: list[tuple[int, str]] = []  # (index in sequence, word) of cardinal number words
    objects: set[str] = set()
    time_units: set[str] = set()
    question = ""
    after_preposition: list[bool] = []
    preposition_open = False
    sequence: list[str] = []  # every word part, lower case, for the direction roles
    previous_end = 0
    previous_word = ""
    for index, match in enumerate(_TOKEN.finditer(text)):
        at_start = index == 0 or bool(_SENTENCE_GAP.search(text, previous_end, match.start()))
        previous_end = match.end()
        raw = match.group(0).rstrip(".:/")
        if not raw:
            continue
        lower = raw.lower()
        bare = lower[:-2] if lower.endswith("'s") else lower.rstrip("'")
        if _DOTTED_ACRONYM.match(raw):  # U.S. = US, not code
            bare = lower.replace(".", "")
            if raw[0].isupper():
                entities.append(bare)
            words.add(bare)
            sequence.append(bare)
            continue
        parts = [part for part in _WORD_SPLIT.split(bare) if part]
        words.add(bare)
        words.update(parts)
        if "-" in bare:
            words.add(bare.replace("-", ""))  # wi-fi = wifi, e-mail = email
        if _CODEISH.search(raw) and not raw.replace("-", "").replace("'", "").isalpha():
            if not _NUMBER.fullmatch(raw):
                code.add(raw)
            sequence.append(bare)
            continue
        if bare in _FORMAT_WORDS:
            formats.add(_FORMAT_WORDS[bare])
        if bare in _PERSON:
            persons.add(_PERSON[bare])
        if at_start and bare in _QUESTION_CLASS and not question:
            question = _QUESTION_CLASS[bare]
            if bare == "how":
                following = _NEXT_WORD.match(text, match.end())
                question = _HOW_CLASS.get(following.group(1).lower() if following else "", "manner")
        is_entity = (
            raw[0].isupper()
            and bare not in _NOT_ENTITIES
            and (not at_start or bool(_ACRONYM.match(raw)) or any(c.isupper() for c in raw[1:]))
        )
        for part in parts:
            sequence.append(part)
            # Slot words are compared slot by slot; as content words they would count twice.
            slot = False
            if part in _NEGATIONS:
                negations += 1
            if part in _NUMBER_WORDS:
                slot = True
                if part in _CARDINALS:
                    cardinals.append((len(sequence) - 1, part))  # "twenty-five" is one number
                elif part not in _ARTICLE_NUMBERS:  # "one banana" asks what "a banana" asks
                    numbers.append(_number_word_value(part))
            time = _time_word(part)
            if time is not None and (part not in _AMBIGUOUS_TIME or raw[0].isupper()):
                times.add(time)
                slot = True
                is_entity = False  # compared as a time, with plural folding
            unit = _UNITS.get(part)
            standalone = len(part) >= _STANDALONE_UNIT_MIN_LEN and part not in _NOT_STANDALONE_UNITS
            if unit is not None and standalone:
                slot = True
                # "How many hours" asks what "how long" asks; "per hour", "hourly" set a unit.
                if unit not in _TIME_UNITS or part in _PERIOD_WORDS or previous_word in _PERIOD_MARKERS:
                    units.add(unit)
                else:
                    time_units.add(unit)
            if bare in _FORMAT_WORDS or part in _FORMAT_WORDS:
                slot = True
            axis = _AXIS_OF.get(part) or _AXIS_OF.get(_stem(part))
            if axis is not None:
                axes.add(axis)
            canonical = _SYNONYM_OF.get(part, part)
            stem = _stem(_american(canonical))
            canonical = _SYNONYM_OF.get(stem, stem)
            if not slot and part not in _STOPWORDS and canonical not in _STOPWORDS and not part[0].isdigit():
                if content and content[-1] == canonical and positions[-1] == len(sequence) - 2:
                    pass  # "weather forecast" folds to "weather weather": one word, said twice
                else:
                    content.append(canonical)
                    surface.append(part)
                    positions.append(len(sequence) - 1)
                    after_preposition.append(preposition_open)
                    if len(sequence) >= 2 and sequence[-2] in _OBJECT_MARKERS:
                        objects.add(canonical)
            if part in _SCOPE_PREPOSITIONS:
                preposition_open = True
            elif part in _DETERMINERS:
                preposition_open = preposition_open or previous_word == "to"
            else:
                preposition_open = False
            previous_word = part
        if bare in _AXIS_OF:
            axes.add(_AXIS_OF[bare])  # hyphenated poles: full-time / part-time
        if is_entity:
            entities.append(bare)
    numbers.extend(_cardinal_values(cardinals, sequence))
    return PromptFeatures(
        numbers=tuple(sorted(numbers)),
        times=frozenset(times),
        units=frozenset(units),
        entities=tuple(entities),
        quoted=quoted,
        code=frozenset(code),
        negations=negations,
        axes=frozenset(axes),
        formats=frozenset(formats),
        persons=frozenset(persons),
        words=frozenset(words),
        content=tuple(content),
        surface=tuple(surface),
        positions=tuple(positions),
        sequence=tuple(sequence),
        bag=tuple(sorted(content)),
        objects=frozenset(objects | set(content[-1:])),
        time_units=frozenset(time_units),
        question=question,
        language=_language(text, sequence),
        sides=_role_sides(sequence),
        after_preposition=tuple(after_preposition),
        operators=operators,
        initials=_initials(sequence),
        article=bool(words & _ARTICLE_WORDS),
    )


_ARTICLE_WORDS = _wordset("a an one single per each every")
_QUESTION_CLASS = {
    "when": "time", "where": "place", "who": "person", "whom": "person", "whose": "person",
    "why": "reason", "how": "manner",
}  # fmt: skip
# "how" + this word: what is asked for ("how come" = why, "how soon" = when).
_HOW_CLASS = {
    "come": "reason", "soon": "time", "much": "quantity", "many": "quantity", "long": "quantity",
    "often": "quantity", "far": "quantity", "old": "quantity", "big": "quantity", "tall": "quantity",
    "fast": "quantity", "high": "quantity", "large": "quantity", "heavy": "quantity",
}  # fmt: skip
# "How do I find X?" asks what "Where do I find X?" asks.
_COMPATIBLE_QUESTIONS = frozenset({frozenset({"manner", "place"})})
_NEXT_WORD = re.compile(r"\s+(\w+)")

# Function words that mark a prompt written in another language (an answer in that language is
# expected). Words shared with English ("a", "in", "is") are left out.
_LANGUAGE_WORDS: dict[str, frozenset[str]] = {
    "en": _wordset("the is are what how do does of to and for my can why which with this that"),
    "es": _wordset("el los las es son qué cómo cuál cuánto cuándo por para con una del está puedo mi"),
    "fr": _wordset("le les est sont quel quelle comment pourquoi pour avec dans une des du je mon ma"),
    "de": _wordset("der die das ist sind wie was warum ich ein eine nicht mit für auf und mein dem den"),
    "it": _wordset("il gli della che come perché sono una per con del posso mio cosa quale"),
    "pt": _wordset("os um uma são como por que para com do da dos das não posso meu qual"),
    "nl": _wordset("het een zijn hoe wat waarom ik je niet met voor van op mijn welke"),
}
_SCRIPTS = (
    ("zh-ja", re.compile(r"[\u3040-\u30ff\u3400-\u9fff]")),
    ("ko", re.compile(r"[\uac00-\ud7af]")),
    ("ru", re.compile(r"[\u0400-\u04ff]")),
    ("ar", re.compile(r"[\u0600-\u06ff]")),
    ("el", re.compile(r"[\u0370-\u03ff]")),
    ("he", re.compile(r"[\u0590-\u05ff]")),
    ("hi", re.compile(r"[\u0900-\u097f]")),
)


def _language(text: str, sequence: Sequence[str]) -> str:
    """A guess of the prompt's language: a non-Latin script, else the language whose function words
    it uses most (at least two, and more than English ones); "en" otherwise."""
    if not text.isascii():
        letters = sum(c.isalpha() for c in text)
        for name, script in _SCRIPTS:
            if letters and len(script.findall(text)) >= 0.3 * letters:
                return name
    words = set(sequence)
    counts = {name: len(words & marks) for name, marks in _LANGUAGE_WORDS.items()}
    best = max((name for name in counts if name != "en"), key=lambda name: counts[name])
    return best if counts[best] >= 2 and counts[best] > counts["en"] else "en"


def _operators(text: str) -> tuple[str, ...]:
    """Arithmetic operators next to numbers or one-letter variables, in order. A ``-`` or ``/`` counts
    only with a digit on one side or spaces on both ("x - y", "3/4"; not "km/h" or "T-shirt")."""
    found: list[str] = []
    for match in _OPERATOR.finditer(text):
        op = match.group(1)
        if op in "-/":
            start, end = match.start(1), match.end(1)
            before = text[start - 1] if start > 0 else ""
            after = text[end] if end < len(text) else ""
            spaced = before == " " and after == " "
            if not (spaced or before.isdigit() or after.isdigit()):
                continue
        found.append(op)
    return tuple(found)


def _initials(sequence: Sequence[str]) -> frozenset[str]:
    """The acronyms runs of 2 to 5 words spell ("united states of america": us, usa...); "of", "the",
    "and", "for" inside a run are skipped."""
    out: set[str] = set()
    for i, word in enumerate(sequence):
        if word in _ACRONYM_SKIP or not word[:1].isalpha():
            continue
        letters = word[0]
        for follower in sequence[i + 1 : i + 8]:
            if follower in _ACRONYM_SKIP:
                continue
            if not follower[:1].isalpha():
                break
            letters += follower[0]
            out.add(letters)
            if len(letters) == 5:
                break
    return frozenset(out)


def _is_acronym(word: str) -> bool:
    return 2 <= len(word) <= 5 and word.isalpha()


def _missing_entities(a: PromptFeatures, b: PromptFeatures) -> tuple[str, ...]:
    """Entities of ``a`` that do not appear as a word in ``b``, whatever its case there. An acronym
    matches the words it stands for (US / United States), hyphens do not count (Wi-Fi / wifi)."""
    if all(e in b.words for e in a.entities):
        return ()
    b_acronyms = [x for x in b.entities if _is_acronym(x) and x in a.initials]
    missing: list[str] = []
    for e in a.entities:
        if e in b.words or e.replace("-", "") in b.words:
            continue
        if _is_acronym(e) and e in b.initials:
            continue  # US ... "the united states"
        if any(e[0] in x for x in b_acronyms):
            continue  # United States ... US
        missing.append(e)
    return tuple(dict.fromkeys(missing))


def _prefix_negated(a: PromptFeatures, b: PromptFeatures) -> tuple[str, str] | None:
    """A word of ``b`` is a word of ``a`` with a negating prefix: safe/unsafe, members/non-members.
    Returns (the word of ``a``, the prefixed word of ``b``)."""
    found: list[tuple[str, str]] = []
    for word in b.words - a.words:
        if len(word) < 6 or word[0] not in _NEG_INITIALS:
            continue
        for prefix in _NEG_PREFIXES:
            if word.startswith(prefix) and len(word) - len(prefix) >= 4 and word[len(prefix) :] in a.words:
                found.append((word[len(prefix) :], word))
    return min(found) if found else None


def _axes_differ(a: PromptFeatures, b: PromptFeatures) -> tuple[int, frozenset[int], frozenset[int]] | None:
    """The first axis both prompts use with different poles: (axis, poles of ``a``, poles of ``b``)."""
    if a.axes == b.axes or not a.axes or not b.axes:
        return None
    axes_a = {axis for axis, _ in a.axes}
    axes_b = {axis for axis, _ in b.axes}
    for axis in sorted(axes_a & axes_b):
        poles_a = frozenset(pole for ax, pole in a.axes if ax == axis)
        poles_b = frozenset(pole for ax, pole in b.axes if ax == axis)
        if poles_a != poles_b:
            return axis, poles_a, poles_b
    return None


def _edit_distance_at_most(x: str, y: str, limit: int) -> bool:
    """Damerau-Levenshtein (optimal string alignment) distance of ``x`` and ``y`` is <= ``limit``."""
    if abs(len(x) - len(y)) > limit:
        return False
    previous2: list[int] = []
    previous = list(range(len(y) + 1))
    for i in range(1, len(x) + 1):
        current = [i] + [0] * len(y)
        for j in range(1, len(y) + 1):
            cost = 0 if x[i - 1] == y[j - 1] else 1
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and x[i - 1] == y[j - 2] and x[i - 2] == y[j - 1]:
                current[j] = min(current[j], previous2[j - 2] + 1)
        if min(current) > limit:
            return False
        previous2, previous = previous, current
    return previous[-1] <= limit


def _is_typo(x: str, y: str) -> bool:
    """Could ``y`` be ``x`` mistyped? Short words are too easily another word (mild/wild, lock/lick)."""
    shorter, longer = sorted((x, y), key=len)
    if len(shorter) >= 4 and len(longer) == len(shorter) + 1:
        # A doubled letter typed once: aply/apply, acess/access.
        for i in range(1, len(longer)):
            if longer[i] == longer[i - 1] and longer[:i] + longer[i + 1 :] == shorter:
                return True
    if len(shorter) >= 9:
        return _edit_distance_at_most(x, y, 2)
    if len(shorter) >= 6:
        return _edit_distance_at_most(x, y, 1)
    if len(shorter) >= 4 and len(x) == len(y):
        # Only two neighbours swapped (chlid/child).
        diffs = [i for i in range(len(x)) if x[i] != y[i]]
        return len(diffs) == 2 and diffs[1] == diffs[0] + 1 and x[diffs[0]] == y[diffs[1]]
    return False


# (surface words removed, surface words added, opens a restricting phrase)
Block = tuple[tuple[str, ...], tuple[str, ...], bool]


def _changed_blocks(a: PromptFeatures, b: PromptFeatures) -> tuple[list[Block], int]:
    """The changed runs of content words as (surface words removed, surface words added), and how
    many content words are shared. Typos count as the same word."""
    matcher = SequenceMatcher(None, a.content, b.content, autojunk=False)
    blocks: list[Block] = []
    shared = 0
    opcodes = matcher.get_opcodes()
    # Words both prompts have beyond the aligned ones: moved, not changed.
    moved_a: Counter[str] = Counter()
    unaligned = {a.content[i] for tag, i1, i2, _, _ in opcodes if tag != "equal" for i in range(i1, i2)}
    if unaligned & set(b.bag):
        aligned: Counter[str] = Counter()
        for tag, i1, i2, _, _ in opcodes:
            if tag == "equal":
                aligned.update(a.content[i1:i2])
        moved_a = (Counter(a.bag) & Counter(b.bag)) - aligned
    moved_b = Counter(moved_a)
    for tag, i1, i2, j1, j2 in opcodes:
        if tag == "equal":
            shared += i2 - i1
            continue
        removed = list(range(i1, i2))
        added = list(range(j1, j2))
        # A word said elsewhere in the other prompt moved, it did not change ("when can Europe next
        # see..." / "... visible in Europe").
        kept = _unmoved(removed, a.content, moved_a)
        shared += len(removed) - len(kept)
        removed, added = kept, _unmoved(added, b.content, moved_b)
        for i in list(removed):
            j = next((j for j in added if _is_variant(a.surface[i], b.surface[j])), None)
            if j is None:
                j = next((j for j in added if _is_variant(a.content[i], b.content[j])), None)
            if j is not None:
                removed.remove(i)
                added.remove(j)
                shared += 1
        words_removed = tuple(a.surface[i] for i in removed)
        words_added = tuple(b.surface[j] for j in added)
        if _same_phrase(words_removed, words_added, a, b):
            shared += len(removed) or len(added)
            continue
        if removed and added:
            blocks.append((words_removed, words_added, False))
        elif removed and (any(_restricts(a, i) for i in removed) or _modifies(a, removed[-1])):
            blocks.append((words_removed, (), any(_restricts(a, i) for i in removed)))
        elif added and (any(_restricts(b, j) for j in added) or _modifies(b, added[-1])):
            blocks.append(((), words_added, any(_restricts(b, j) for j in added)))
    return blocks, shared


def _spelled(words: Sequence[str]) -> str:
    return "".join(w[0] for w in words if w and w not in _ACRONYM_SKIP)


def _same_phrase(removed: Sequence[str], added: Sequence[str], a: PromptFeatures, b: PromptFeatures) -> bool:
    """The same thing written otherwise: "wi fi" / "wifi", "uk" / "united kingdom", or an acronym the
    other prompt has outside its content words ("the US" / "the united states")."""
    if removed and added and "".join(removed) == "".join(added):
        return True
    for one, other in ((removed, added), (added, removed)):
        if len(one) == 1 and len(other) >= 2 and _is_acronym(one[0]) and _spelled(other) == one[0]:
            return True
    if not removed and len(added) >= 2 and _spelled(added) in a.entities:
        return True
    return not added and len(removed) >= 2 and _spelled(removed) in b.entities


def _unmoved(indices: list[int], words: Sequence[str], moved: Counter[str]) -> list[int]:
    """``indices`` without the words that only moved (each moved occurrence is used once)."""
    kept: list[int] = []
    for i in indices:
        if moved[words[i]] > 0:
            moved[words[i]] -= 1
        else:
            kept.append(i)
    return kept


_SPELLING_ENDINGS = (
    # (British ending, American ending, shortest word it applies to)
    ("ours", "ors", 7), ("oured", "ored", 8), ("ouring", "oring", 9), ("our", "or", 6),  # colour
    ("ourite", "orite", 9), ("ourites", "orites", 10),  # favourite
    ("tres", "ters", 6), ("tre", "ter", 5), ("bres", "bers", 6), ("bre", "ber", 5),  # centre, fibre
    ("yres", "ires", 5), ("yre", "ire", 4),  # tyre
    ("isation", "ization", 9), ("isations", "izations", 10), ("ised", "ized", 7),
    ("ising", "izing", 8), ("ises", "izes", 7), ("ise", "ize", 6),  # organise
    ("ogues", "ogs", 8), ("ogue", "og", 7),  # catalogue
    ("elled", "eled", 7), ("elling", "eling", 8), ("eller", "eler", 7), ("ellers", "elers", 8),
)  # fmt: skip


_SPELLING_END = re.compile(
    "(?:" + "|".join(sorted((e for e, _, _ in _SPELLING_ENDINGS), key=len, reverse=True)) + ")$"
)
_SPELLING_OF = {british: (american, shortest) for british, american, shortest in _SPELLING_ENDINGS}


def _american(word: str) -> str:
    """British spellings folded to American ones (both prompts get the same folding, so a rare wrong
    folding costs nothing)."""
    match = _SPELLING_END.search(word) if len(word) >= 4 else None
    if match is None:
        return word
    american, shortest = _SPELLING_OF[match.group()]
    return word[: match.start()] + american if len(word) >= shortest else word


def _restricts(prompt: PromptFeatures, index: int) -> bool:
    """Does content word ``index`` open a phrase after a restricting preposition ("... in children",
    "... at high altitude", "... without the header")? Such an added phrase narrows the question."""
    return index < len(prompt.after_preposition) and prompt.after_preposition[index]


def _is_variant(x: str, y: str) -> bool:
    """A typo, or another form of one word (differ/difference, install/installation)."""
    if _is_typo(x, y):
        return True
    shorter = min(len(x), len(y))
    common = 0
    while common < shorter and x[common] == y[common]:
        common += 1
    return common >= 5 and common >= 0.8 * shorter


def _modifies(prompt: PromptFeatures, index: int) -> bool:
    """Is content word ``index`` right before another content word (a modifier: "extended warranty",
    "online tax return")? Added words elsewhere ("which city is...", "...to read") rarely narrow the
    question; added modifiers do, so only they count as a change."""
    return index + 1 < len(prompt.positions) and prompt.positions[index + 1] == prompt.positions[index] + 1


# How much of the wording two prompts share (difflib ratio over all their words) for the swap rule
# to apply. A near-miss keeps the sentence and changes a slot ("...to my PC?" / "...to my Mac?":
# 0.8-0.95); a paraphrase rewords it ("How do I rename a local git branch?" / "How can I change the
# name of a local branch in git?": 0.25-0.6). Measured on the tuning sets (benchmarks/semantic).
SWAP_MIN_FRAME = 0.6


def _missing_objects(a: PromptFeatures, b: PromptFeatures) -> tuple[str, ...]:
    """Object words of ``a`` that ``b`` does not have in any form."""
    return tuple(
        sorted(w for w in a.objects if w not in b.bag and not any(_is_variant(w, other) for other in b.bag))
    )


def _frame_below(a: PromptFeatures, b: PromptFeatures, bound: float) -> bool:
    """Is the share of words the two prompts have in common (difflib ratio) below ``bound``? The
    cheap upper bounds answer most pairs."""
    matcher = SequenceMatcher(None, a.sequence, b.sequence, autojunk=False)
    return matcher.real_quick_ratio() < bound or matcher.quick_ratio() < bound or matcher.ratio() < bound


def _swapped(a: PromptFeatures, b: PromptFeatures) -> list[Block] | None:
    """The same sentence with one short run of content words replaced, added or removed: the changed
    runs, or ``None``."""
    if a.bag == b.bag:
        return None  # reordered, not changed
    if _frame_below(a, b, SWAP_MIN_FRAME):
        # Worded otherwise as a whole: the embedding judged the rewording, and a changed verb there
        # is far more often a synonym than a swapped slot. What the question is about must still be
        # the same: an object word of each prompt missing from the other is another question
        # ("tips for remote work" / "share tips on better sleep").
        only_a, only_b = _missing_objects(a, b), _missing_objects(b, a)
        return [(only_a, only_b, False)] if only_a and only_b else None
    blocks, shared = _changed_blocks(a, b)
    if not blocks:
        return None
    sizes = [(len(removed), len(added)) for removed, added, _ in blocks]
    changed = sum(removed + added for removed, added in sizes)
    enough = min(2, len(a.content), len(b.content))  # all of a short prompt is enough
    if shared >= enough and any(restricting and max(len(r), len(d)) <= 3 for r, d, restricting in blocks):
        return blocks  # a phrase that narrows the question ("in children") was added or dropped
    # Rewordings change many words in several places; they are left to the similarity threshold and
    # the slot checks.
    if len(blocks) == 1 and ((shared >= 2 and max(sizes[0]) <= 3) or (shared >= 1 and max(sizes[0]) <= 2)):
        return blocks
    return blocks if shared >= 2 and changed <= max(2, shared // 2) else None


def _role_sides(seq: Sequence[str]) -> tuple[tuple[str, frozenset[str], tuple[str, ...]], ...]:
    """Per direction word (from/to/into/than/instead of): (role, the words up to 5 before it, the
    first two words after it), stopwords and digits left out."""
    sides: list[tuple[str, frozenset[str], tuple[str, ...]]] = []
    for i, word in enumerate(seq):
        role = _ROLE_WORDS.get(word)
        if role is None:
            continue
        before = frozenset(w for w in seq[max(0, i - 5) : i] if w not in _STOPWORDS and not w.isdigit())
        after = tuple(w for w in seq[i + 1 : i + 5] if w not in _STOPWORDS and not w.isdigit())[:2]
        if after:
            sides.append((role, before, after))
    return tuple(sides)


def _order_differs(a: PromptFeatures, b: PromptFeatures) -> tuple[str, str, str] | None:
    """The same words on the other sides of a direction word: from savings to current / from current
    to savings, km to miles / miles to km, X instead of Y / Y instead of X. Returns (role, what
    follows it in ``a``, in ``b``). "How far is X from Y" / "the distance from X to Y" is no swap."""
    for role, before_a, after_a in a.sides:
        for role_b, before_b, after_b in b.sides:
            if role_b != role or after_a == after_b:
                continue
            only_a, only_b = set(after_a) - set(after_b), set(after_b) - set(after_a)
            if only_a and only_b and only_a <= before_b and only_b <= before_a:
                return role, " ".join(after_a), " ".join(after_b)
    return None


# --- refusals -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why the guard refuses a pair: the ``rule`` that fired and the tokens it compared.

    ``cached`` / ``asked``: the tokens of each prompt that differ (normalized: lower case, numbers
    as values, units and formats by their canonical name). ``rule`` is one of :data:`RULES` and is
    safe as a metric label; the tokens are prompt text: keep them out of labels and spans.
    """

    rule: str
    cached: tuple[str, ...] = ()
    asked: tuple[str, ...] = ()

    @property
    def detail(self) -> str:
        """``"cached 'lyon' / asked 'lille'"``: what differs, for logs and tools."""

        def side(tokens: tuple[str, ...]) -> str:
            return ", ".join(repr(t) for t in tokens) if tokens else "-"

        return f"cached {side(self.cached)} / asked {side(self.asked)}"


def _diff(
    a: frozenset[str] | tuple[str, ...], b: frozenset[str] | tuple[str, ...]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """What only ``a`` has and what only ``b`` has (multisets for tuples), sorted."""
    ca, cb = Counter(a), Counter(b)
    return tuple(sorted((ca - cb).elements())), tuple(sorted((cb - ca).elements()))


def _rule_number(a: PromptFeatures, b: PromptFeatures) -> Refusal | None:
    if a.numbers != b.numbers:
        only_a, only_b = _diff(a.numbers, b.numbers)
        # "1 cup" asks what "a cup" / "one cup" asks: a lone 1 against an article is no difference.
        ones_only = not (set(only_a) | set(only_b)) - {"1"} and not (only_a and only_b)
        if not (ones_only and (b.article if only_a else a.article)):
            return Refusal("number", only_a, only_b)
    if a.operators != b.operators:
        return Refusal("number", a.operators, b.operators)
    return None


def _rule_time(a: PromptFeatures, b: PromptFeatures) -> Refusal | None:
    if a.times == b.times:
        return None
    only_a, only_b = _diff(a.times, b.times)
    if not (only_a and only_b) and set(only_a + only_b) <= _IMPLICIT_TIMES:
        return None  # "today" said on one side only: the present is what both ask about
    return Refusal("time", only_a, only_b)


def _rule_unit(a: PromptFeatures, b: PromptFeatures) -> Refusal | None:
    if a.units != b.units:
        return Refusal("unit", *_diff(a.units, b.units))
    # "How many hours" asks what "how long" asks, but not what "how many days" asks.
    if a.time_units and b.time_units and a.time_units != b.time_units:
        return Refusal("unit", *_diff(a.time_units, b.time_units))
    return None


def _rule_quoted(a: PromptFeatures, b: PromptFeatures) -> Refusal | None:
    return Refusal("quoted", *_diff(a.quoted, b.quoted)) if a.quoted != b.quoted else None


def _rule_code(a: PromptFeatures, b: PromptFeatures) -> Refusal | None:
    return Refusal("code", *_diff(a.code, b.code)) if a.code != b.code else None


def _rule_question(a: PromptFeatures, b: PromptFeatures) -> Refusal | None:
    """Both open with a question word and ask for different things: "How much stamp duty do buyers
    pay?" / "When do buyers pay stamp duty?". "What"/"which" ask for anything: never compared."""
    pair = frozenset({a.question, b.question})
    if a.question and b.question and len(pair) == 2 and pair not in _COMPATIBLE_QUESTIONS:
        return Refusal("question", (a.question,), (b.question,))
    return None


def _rule_language(a: PromptFeatures, b: PromptFeatures) -> Refusal | None:
    return Refusal("language", (a.language,), (b.language,)) if a.language != b.language else None


def _rule_format(a: PromptFeatures, b: PromptFeatures) -> Refusal | None:
    return Refusal("format", *_diff(a.formats, b.formats)) if a.formats != b.formats else None


def _rule_entity(a: PromptFeatures, b: PromptFeatures) -> Refusal | None:
    only_a, only_b = _missing_entities(a, b), _missing_entities(b, a)
    return Refusal("entity", only_a, only_b) if only_a or only_b else None


def _rule_negation(a: PromptFeatures, b: PromptFeatures) -> Refusal | None:
    if a.negations != b.negations:
        return Refusal("negation", (f"{a.negations} negations",), (f"{b.negations} negations",))
    twin = _prefix_negated(a, b)
    if twin is not None:
        return Refusal("negation", (twin[0],), (twin[1],))
    twin = _prefix_negated(b, a)
    if twin is not None:
        return Refusal("negation", (twin[1],), (twin[0],))
    return None


def _rule_antonym(a: PromptFeatures, b: PromptFeatures) -> Refusal | None:
    found = _axes_differ(a, b)
    if found is None:
        return None
    axis, poles_a, poles_b = found
    poles = _ANTONYM_AXES[axis]
    return Refusal(
        "antonym",
        tuple(poles[p].split()[0] for p in sorted(poles_a)),
        tuple(poles[p].split()[0] for p in sorted(poles_b)),
    )


def _rule_person(a: PromptFeatures, b: PromptFeatures) -> Refusal | None:
    # Only "me" vs "someone else"; "you" is too often the business being asked ("are you open?").
    persons_a, persons_b = a.persons - {"2"}, b.persons - {"2"}
    if persons_a and persons_b and persons_a != persons_b:
        names = {"1": "first person", "3": "third person"}
        return Refusal(
            "person", tuple(names[p] for p in sorted(persons_a)), tuple(names[p] for p in sorted(persons_b))
        )
    return None


def _rule_order(a: PromptFeatures, b: PromptFeatures) -> Refusal | None:
    found = _order_differs(a, b)
    if found is None:
        return None
    role, word_a, word_b = found
    return Refusal("order", (f"{role} {word_a}",), (f"{role} {word_b}",))


def _rule_swap(a: PromptFeatures, b: PromptFeatures) -> Refusal | None:
    blocks = _swapped(a, b)
    if blocks is None:
        return None
    return Refusal(
        "swap",
        tuple(" ".join(removed) for removed, _, _ in blocks if removed),
        tuple(" ".join(added) for _, added, _ in blocks if added),
    )


_Rule = Callable[[PromptFeatures, PromptFeatures], "Refusal | None"]

# In the order they are checked; the first that fires is the reason.
_RULES: tuple[tuple[str, _Rule], ...] = (
    ("number", _rule_number),
    ("time", _rule_time),
    ("unit", _rule_unit),
    ("quoted", _rule_quoted),
    ("code", _rule_code),
    ("language", _rule_language),
    ("format", _rule_format),
    ("entity", _rule_entity),
    ("negation", _rule_negation),
    ("antonym", _rule_antonym),
    ("person", _rule_person),
    ("order", _rule_order),
    ("question", _rule_question),
    ("swap", _rule_swap),
)
RULES: tuple[str, ...] = tuple(name for name, _ in _RULES)


def check(a: PromptFeatures, b: PromptFeatures, *, swap_rule: bool = True) -> Refusal | None:
    """The first rule on which ``a`` (cached) and ``b`` (asked) differ, with its tokens, or ``None``."""
    for name, rule in _RULES:
        if name == "swap" and not swap_rule:
            continue
        refusal = rule(a, b)
        if refusal is not None:
            return refusal
    return None


def all_refusals(a: PromptFeatures, b: PromptFeatures, *, swap_rule: bool = True) -> tuple[Refusal, ...]:
    """Every rule that fires on the pair, in rule order (for benchmarks: what each rule protects)."""
    found = (rule(a, b) for name, rule in _RULES if swap_rule or name != "swap")
    return tuple(refusal for refusal in found if refusal is not None)


def near_miss(a: PromptFeatures, b: PromptFeatures, *, swap_rule: bool = True) -> str | None:
    """The first slot on which ``a`` and ``b`` differ (the rule of :func:`check`), or ``None``."""
    refusal = check(a, b, swap_rule=swap_rule)
    return None if refusal is None else refusal.rule


def explain(a: str, b: str) -> str | None:
    """Convenience for tools and tests: :func:`near_miss` on two raw prompts."""
    return near_miss(features(a), features(b))


def explain_refusal(a: str, b: str) -> Refusal | None:
    """:func:`check` on two raw prompts: the rule and the differing tokens, or ``None``."""
    return check(features(a), features(b))
