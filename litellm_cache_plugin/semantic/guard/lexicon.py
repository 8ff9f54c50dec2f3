"""The guard's word lists, as data: numbers, times, units, formats, negations, antonym axes,
stopwords, persons, synonyms, question words, function words of other languages. General English
only; built once at import."""

from __future__ import annotations

from litellm_cache_plugin.semantic.guard.forms import word_stem


def wordset(text: str) -> frozenset[str]:
    return frozenset(text.split())


NUMBER_WORDS: dict[str, float] = {
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
CARDINALS = wordset(
    "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety hundred thousand "
    "million billion"
)
# "one" and "second" are often not quantities ("which one", "a second opinion"); they still count, as
# a mismatch then only costs a miss.

TIME_WORDS = wordset(
    "monday tuesday wednesday thursday friday saturday sunday weekday weekend "
    "january february march april may june july august september october november december "
    "today tomorrow yesterday tonight morning afternoon evening night midnight noon "
    "spring summer autumn fall winter christmas easter"
)
# "may", "march", "fall" are also verbs; they count as time words only when capitalized.
AMBIGUOUS_TIME = frozenset({"may", "march", "fall"})

UNITS: dict[str, str] = {}
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
        UNITS[_alias] = _canon
TIME_UNITS = frozenset({"second", "minute", "hour", "day", "week", "month", "year"})
PERIOD_WORDS = wordset("hourly daily weekly fortnightly monthly yearly annual annually fortnight")
PERIOD_MARKERS = wordset("per a an each every")
# "one" and "single" are articles as often as numbers.
ARTICLE_NUMBERS = frozenset({"one", "single"})
# One-letter (and "in", "st", "mi", "p"...) aliases are units only right after a number ("5 m", "3pm"
# is handled as a time); as standalone words they are too often something else.
STANDALONE_UNIT_MIN_LEN = 2
NOT_STANDALONE_UNITS = frozenset({"st", "mi", "min", "mo", "gal", "sec", "hr", "wk", "yr", "in", "am"})

FORMAT_WORDS: dict[str, str] = {}
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
        FORMAT_WORDS[_alias] = _canon

NEGATIONS = wordset(
    "not no never none nobody nothing nowhere neither nor without cannot neednt hardly barely "
    "isnt arent wasnt werent dont doesnt didnt cant couldnt shouldnt wouldnt wont mustnt"
)
NEG_PREFIXES = ("non-", "non", "un", "in", "im", "il", "ir", "dis", "anti-", "anti", "de")
NEG_INITIALS = frozenset(prefix[0] for prefix in NEG_PREFIXES)

# Axes whose poles mean opposite things. Each group lists the words of one pole; a prompt using a word
# of pole X and another using pole Y of the same axis ask different questions. General English only.
ANTONYM_AXES: tuple[tuple[str, str], ...] = (
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
AXIS_OF: dict[str, tuple[int, int]] = {}
for _axis, (_pole_a, _pole_b) in enumerate(ANTONYM_AXES):
    for _pole, _words in enumerate((_pole_a, _pole_b)):
        for _word in _words.split():
            AXIS_OF.setdefault(_word, (_axis, _pole))
for _word, _where in list(AXIS_OF.items()):
    AXIS_OF.setdefault(word_stem(_word), _where)


# Words that change nothing about the answer; dropped before the swap rule compares content words.
STOPWORDS = (
    wordset(
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
    | NEGATIONS
)
# "what", "how" and "which" are interchangeable openings ("How much does X cost" = "What does X
# cost"); "when", "where", "who" and "why" stay content words: "when" vs "where" is another question.

PERSON: dict[str, str] = {}
for _cls, _words in {
    "1": "i me my mine myself we us our ours ourselves i'm i've i'd i'll we're we've",
    "2": "you your yours yourself yourselves you're you've you'd you'll",
    "3": "he him his himself she her hers herself they them their theirs themselves he's she's they're",
}.items():
    for _word in _words.split():
        PERSON[_word] = _cls

# Small, general synonym groups: a swap inside one group is not a change. Canonical form first.
SYNONYM_GROUPS = (
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
SYNONYM_OF: dict[str, str] = {}
for _group in SYNONYM_GROUPS:
    _members = _group.split()
    for _word in _members:
        SYNONYM_OF.setdefault(_word, _members[0])
# All-caps words that are not names.
NOT_ENTITIES = frozenset(
    {"i", "i'm", "ok", "okay", "pls", "asap", "fyi", "btw", "eli5", "tl;dr", "faq", "pc", "tv", "id"}
)
PREAMBLE_WORDS = wordset(
    """sorry to bother you but silly quick question one so ok okay er erm um umm uh yeah yep well hi
    hello hey there team all a just wondering i was excuse me please help"""
)
ROLE_WORDS = {"from": "from", "to": "to", "into": "to", "onto": "to", "than": "than", "instead": "instead"}
# A phrase these open narrows the question ("side effects of X in children", "boil pasta at high
# altitude"); "of" and "to" are left out (too often structure: "capital of", "how to").
SCOPE_PREPOSITIONS = wordset(
    "in for at on with without after before during while under over near inside outside within "
    "among via per against by as"
)
DETERMINERS = wordset("a an the my your his her our their its this that these those some any")
OBJECT_MARKERS = DETERMINERS | SCOPE_PREPOSITIONS | wordset("of about")
ACRONYM_SKIP = wordset("of the and for")
# The present is the default: "population of Paris" asks what "population of Paris today" asks.
IMPLICIT_TIMES = frozenset({"today", "now"})

ARTICLE_WORDS = wordset("a an one single per each every")
QUESTION_CLASS = {
    "when": "time", "where": "place", "who": "person", "whom": "person", "whose": "person",
    "why": "reason", "how": "manner",
}  # fmt: skip
# "how" + this word: what is asked for ("how come" = why, "how soon" = when).
HOW_CLASS = {
    "come": "reason", "soon": "time", "much": "quantity", "many": "quantity", "long": "quantity",
    "often": "quantity", "far": "quantity", "old": "quantity", "big": "quantity", "tall": "quantity",
    "fast": "quantity", "high": "quantity", "large": "quantity", "heavy": "quantity",
}  # fmt: skip
# "How do I find X?" asks what "Where do I find X?" asks.
COMPATIBLE_QUESTIONS = frozenset({frozenset({"manner", "place"})})

# Function words that mark a prompt written in another language (an answer in that language is
# expected). Words shared with English ("a", "in", "is") are left out.
LANGUAGE_WORDS: dict[str, frozenset[str]] = {
    "en": wordset("the is are what how do does of to and for my can why which with this that"),
    "es": wordset("el los las es son qué cómo cuál cuánto cuándo por para con una del está puedo mi"),
    "fr": wordset("le les est sont quel quelle comment pourquoi pour avec dans une des du je mon ma"),
    "de": wordset("der die das ist sind wie was warum ich ein eine nicht mit für auf und mein dem den"),
    "it": wordset("il gli della che come perché sono una per con del posso mio cosa quale"),
    "pt": wordset("os um uma são como por que para com do da dos das não posso meu qual"),
    "nl": wordset("het een zijn hoe wat waarom ik je niet met voor van op mijn welke"),
}
