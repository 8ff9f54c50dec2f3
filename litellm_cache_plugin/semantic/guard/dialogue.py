"""Word lists for conversations (``semantic/conversation.py``), as data: what makes a chat message
lean on its history (replies, anaphora, continuations, the user's own state) and what small talk
looks like. General English chat wording only; the guard's own lists are in ``lexicon``."""

from __future__ import annotations

import re

from litellm_cache_plugin.semantic.guard.lexicon import wordset

__all__ = [
    "ACKNOWLEDGEMENTS",
    "ANAPHORA",
    "CHATTER_PHRASES",
    "CHATTER_WORDS",
    "CLOSED_QUESTION_OPENERS",
    "CONTINUATIONS",
    "FIRST_PERSON",
    "OFFER_PHRASES",
    "ORDINAL_REFERENCE",
    "REPLY_OPENERS",
    "REPLY_WORDS",
    "SENTENCE_SPLIT",
    "SHORT_MESSAGE_WORDS",
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

# The user's own state ("my plan", "I pay", "send me"): the answer depends on what they said before.
FIRST_PERSON = wordset(
    "i i'm i've i'd i'll me my mine myself we we're we've we'd we'll us our ours ourselves"
)

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
