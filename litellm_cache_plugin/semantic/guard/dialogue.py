"""Word lists for conversations (``semantic/conversation.py``), as data: what makes a chat message
lean on its history (replies, anaphora, continuations, the user's own state) and what small talk
looks like. General English chat wording only; the guard's own lists are in ``lexicon``."""

from __future__ import annotations

import re

from litellm_cache_plugin.semantic.guard.lexicon import wordset

__all__ = [
    "ACKNOWLEDGEMENTS",
    "ANAPHORA",
    "ASIDE_ENDINGS",
    "ASIDE_MARKERS",
    "CHATTER_PHRASES",
    "CHATTER_WORDS",
    "CLOSED_QUESTION_OPENERS",
    "CONTINUATIONS",
    "DEFINITE",
    "FIRST_PERSON",
    "GENERIC_ASKER",
    "INTENT",
    "NOT_ANAPHORIC",
    "OFFER_PHRASES",
    "OFFER_STATEMENT",
    "ORDINAL_REFERENCE",
    "POINTERS",
    "PROFILE",
    "QUESTION_OPENERS",
    "REPLY_OPENERS",
    "REPLY_WORDS",
    "SENTENCE_SPLIT",
    "SHORT_MESSAGE_WORDS",
    "TOPIC_BREAKS",
    "TOPIC_BREAK_WORDS",
    "WORDS",
]

# A message of fewer words than this is a reply or an ellipsis ("cancel it", "the cheaper one").
SHORT_MESSAGE_WORDS = 4

# Words a reply is made of ("yes please", "ok go ahead", "sure, do it"): a message of only these
# answers the assistant's last turn.
REPLY_WORDS = wordset(
    """yes yeah yep yup ya aye no nope nah ok okay k kk sure please pls plz thanks thank you cheers ta
    fine great cool right alright perfect lovely brilliant nice good go ahead do it that this one then
    let's lets sounds done sorted absolutely definitely course of go on proceed confirm confirmed
    agreed deal why not"""
)

# Words that point into the conversation: pronouns and pro-forms whose referent was said before.
ANAPHORA = wordset(
    """it its it's itself that that's this these those they them their theirs themselves they're
    they've he him his himself she her hers herself he's she's one ones there same other others
    another instead then such former latter above both either neither else again too also earlier
    previous aforementioned"""
)

# How a follow-up opens: "and with the TV add-on?", "what about the other one", "ok so how much".
CONTINUATIONS = (
    "and",
    "or",
    "but",
    "so",
    "also",
    "plus",
    "then",
    "what about",
    "how about",
    "what if",
    "and if",
    "ok",
    "okay",
    "right",
    "well",
    "oh",
    "in that case",
    "if so",
    "if not",
)

# Idioms made of anaphora words that point at nothing said before ("at the same time", "instead of
# paying", "one at a time"); the "it" of "is it possible to ...", whose subject is the clause that
# follows (only after an adjective that takes one: "is it going to arrive?" and "is it ready to
# collect?" speak of something said before); existential "there" ("is there a student discount?",
# "there are no fees"); "else" after an indefinite ("can someone else collect it?": "it" still points
# back); a time counted from now ("this year", "next week").
_CLAUSE_ADJECTIVES = (
    r"(?:possible|impossible|ok|okay|safe|legal|illegal|necessary|better|best|cheaper|easier|easy|"
    r"quicker|faster|normal|common|usual|worth|wise|advisable|acceptable|allowed|permitted|free|hard|"
    r"difficult|expensive)"
)
NOT_ANAPHORIC = re.compile(
    r"\b(?:(?:the\s+)?same\s+time|instead\s+of|one\s+at\s+a\s+time|each\s+other"
    rf"|(?:is|was|will\s+be|would\s+be)\s+it\s+{_CLAUSE_ADJECTIVES}\s+to"
    rf"|it(?:'s|\s+is)\s+{_CLAUSE_ADJECTIVES}\s+to"
    r"|(?:is|are|was|were|will|would)\s+there|there(?:'s|\s+is|\s+are|\s+was|\s+were)"
    r"|(?:someone|somebody|anyone|anybody|anything|something|everyone|everything|somewhere|anywhere)"
    r"\s+else"
    r"|(?:this|next|last)\s+(?:year|month|week|weekend|morning|afternoon|evening|summer|winter|spring|autumn))\b"
)

# The user says what they want done ("I'd like to cancel my membership", "can you freeze it?"): an
# elliptical question after it ("How much notice do you need?") is about that, whatever its words.
INTENT = re.compile(
    r"\b(?:i|we)(?:\s+(?:really\s+)?(?:want|wanna|need|plan|intend|wish)|'d\s+like|\s+would\s+like|"
    r"(?:'m|\s+am|'re|\s+are)\s+(?:trying|looking|thinking|planning|hoping|going)\b)"
    r"|\b(?:can|could|would|will)\s+you\b|\bplease\b|\bhelp\s+me\b"
)

# A definite description presupposes its referent is known ("the difference", "the warranty"): in a
# message that names no subject of its own, from the conversation.
DEFINITE = re.compile(r"\bthe\b")

# The user's own state ("my plan", "I pay", "send me"): the answer depends on what they said before.
FIRST_PERSON = wordset(
    "i i'm i've i'd i'll me my mine myself we we're we've we'd we'll us our ours ourselves"
)
# "I"/"we" as the asker of a how-to question ("how do I report a scam call", "can I use Tunely on a
# watch", "if I pay by card"): anyone asking gets the same answer, so it states no user state.
GENERIC_ASKER = re.compile(
    r"\b(?:can|could|do|does|did|should|would|will|may|might|must|shall|if|when)\s+(?:i|we)\b(?!')"
)

# The user says the next question has nothing to do with what came before: "Unrelated question.",
# "Quick general question though.", "actually random q", "one more, a friend asked me". In the user
# turn right before the last message (a short turn of its own) or opening the last message.
TOPIC_BREAKS = (
    "unrelated",
    "general question",
    "general thing",
    "random q",
    "random question",
    "different question",
    "separate question",
    "new question",
    "side question",
    "change of subject",
    "changing the subject",
    "off topic",
    "a friend asked",
    "thing for the future",
)
# The most words such a turn may have: a longer turn says more than "new topic".
TOPIC_BREAK_WORDS = 10
# Pronouns that point back at something said even after a topic break ("Unrelated question." ...
# "can I pause it?"); weaker anaphora ("another network", "the same time", "too") do not.
POINTERS = wordset(
    """it its it's itself that that's this these those they them their theirs they're they've he him
    his she her hers there"""
)

# An aside the user marks as one ("random q, is the Leeds club getting a sauna?", "side note, does
# Harbour still have a branch in Cheltenham?", "do removal vans need parking permits btw?"): the
# sentence holding the marker and the rest of its turn are dropped before the user turns are compared;
# when it opens a run of turns only one conversation has, and the other conversation's turns resume
# after it, the whole run is dropped. An unmarked added sentence is still compared.
ASIDE_MARKERS = (
    "random q",
    "random question",
    "random but",
    "sort of unrelated",
    "unrelated",
    "side note",
    "side question",
    "btw",
    "by the way",
    "off topic",
)
# The markers that may also end the aside ("do removal vans need parking permits btw?").
ASIDE_ENDINGS = ("btw", "by the way")

# "the first one", "the second option", "option 2", "the last slot": a choice among what the
# assistant listed, so the list's order matters.
ORDINAL_REFERENCE = re.compile(
    r"\b(?:the\s+(?:first|second|third|fourth|fifth|last|latter|former|next|other|top|bottom)\b"
    r"|(?:option|choice|number|no\.?|#)\s*\d+\b"
    r"|(?:first|second|third|fourth|fifth|last)\s+(?:one|option|choice)\b)",
    re.IGNORECASE,
)

# Small talk: a sentence with one of these (and no fact, no question) carries nothing to match.
CHATTER_WORDS = wordset(
    """lol lmao lmfao haha hahaha hehe heh rofl xd omg ugh phew yay oops whoops hi hello hey hiya
    morning evening afternoon cheers thanks thank ta"""
)
CHATTER_PHRASES = (
    "hope you",
    "hope your",
    "hope all",
    "bear with me",
    "have a good",
    "have a nice",
    "have a great",
    "fingers crossed",
    "no worries",
    "my bad",
    "sorry to bother",
    "sorry for the",
    "just saying",
)
# A turn made only of these acknowledges and asks nothing ("ok thanks", "done, cheers").
ACKNOWLEDGEMENTS = REPLY_WORDS | wordset(
    """got it makes sense fair enough understood noted cheers ta awesome amazing wonderful excellent
    helpful helps that's thats all for now"""
)

WORDS = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
# Sentence ends, and parentheses (an aside is a sentence of its own).
SENTENCE_SPLIT = re.compile(r"(?<=[.!?;])\s+|\s*\n+\s*|\s*[()]\s*")

# A message that opens with one of these answers the assistant's last turn ("no, nobody has").
REPLY_OPENERS = wordset("yes yeah yep yup ya aye no nope nah sure absolutely definitely please")

# An assistant turn that ends by asking a closed question ("Would you like me to cancel it?", "Shall I
# switch you to annual billing?", "Do you want the 2 pm slot or the 4 pm one?") or making an offer
# ("..., if you like.") sets up what the user's next message agrees to: that message answers it, so
# it is matched as a reply (the offer must be the same), whatever its own words. Wh-questions ("What
# would you like to know?", "How can I help?") ask for a new question and bind nothing.
CLOSED_QUESTION_OPENERS = wordset(
    """would shall should do does did can could may might will is are was were have has want wanna
    fancy"""
)
OFFER_PHRASES = ("if you like", "if you want", "if you'd like", "if you wish", "if you prefer")
# An offer or a recommendation made as a statement, as the assistant turn's last sentence ("I can
# pause it for you instead.", "I'd suggest a one-off payment of £180.", "We could move you to the
# 30GB plan."): "ok, do that" accepts this offer and no other, as "yes please" does a question's.
OFFER_STATEMENT = re.compile(
    r"(?:i|we)(?:'d|\s+would)?\s+(?:(?:also|just|instead)\s+)?"
    r"(?:(?:can|could)(?!\s+(?:see|confirm|tell|check|help|understand|imagine|hear|assure|only|not|n't)\b)"
    r"|suggest|recommend|propose|advise|offer)\b"
    r"|my\s+(?:suggestion|recommendation|advice)\b"
    r"|(?:the\s+)?best\s+(?:option|choice|bet)\s+(?:is|would\s+be)\b"
)

# A sentence that opens with one of these asks (users often leave out the question mark: "how do I
# set up a kids profile on Flixora").
QUESTION_OPENERS = wordset(
    """what what's whats how how's why when where where's who who's whom whose which is are am was were
    can could do does did will would should shall may might has have isn't aren't can't doesn't don't"""
)

# A statement that describes the user (where they live, who they are, what they have or are on, what
# they weigh or earn): it may change the answer to any later question, however unrelated its words
# ("I live in Canada" ... "What is the sales tax on a Tesla?"; "I weigh 11 stone" ... "How many
# calories should I eat a day?").
PROFILE = re.compile(
    r"\b(?:i|we)\s+(?:(?:currently|still|now|also|just)\s+)?(?:live|lived|work|study|moved|own|weigh|earn|earned)\b"
    r"|\b(?:i|we)(?:'m|'re|\s+am|\s+are)\s+(?:(?:currently|still|now|also|just)\s+)?"
    r"(?:living|based|from|moving|relocating|studying|student|working|retired|aged|pregnant|disabled|"
    r"self-employed|a|an|on|in|with|over|under)\b"
    r"|\b(?:i|we)(?:\s+have\s+(?:got\s+)?|'ve\s+(?:got\s+)?|\s+got\s+)"
    r"(?:a|an|\d+|two|three|four|five|six)\b"
    r"|\bmy\s+(?:age|address|postcode|zip|country|home|household|family|partner|wife|husband|kids|children|"
    r"weight|height|salary|income|budget)\b"
    r"|\byears?\s+old\b|\bi'm\s+\d"
)
