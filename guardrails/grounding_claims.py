"""Which sentences of an answer are claims about the knowledge base, and what each one claims.

A claim is a sentence that states something the knowledge base could back. Not claims: small
talk ("Happy to help!"), questions back to the user, and sentences of fewer than two content words
("Yes it was!", "Nice one."). What is said *around* a
statement does not make it less of one, and is taken off before it is checked:

- a lead of small talk or assent: "Sure, the Pro plan costs ...", "Wow, that's cool. ...";
- a hedge: "I'm not sure, but the Pro plan costs ..." claims the price all the same (the
  hedge's "not" is not the statement's negation);
- a frame that reports a fact: "I know that ...", "I've heard that ...", "I read that ...",
  "I think ...", "It seems that ...", "It's interesting that ...";
- a question that tells: "Did you know that the Pro plan costs 25 EUR?" states the price
  as surely as a sentence does, and is checked as one.

A bare "Yes"/"No" stands for the question it answers, and a short answer such as "Delhi."
is one claim, read with its question's polarity ("Water damage." to "What does the warranty
exclude?").
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from .grounding_align import content_words, says_not, sentence_spans

__all__ = ["Claim", "claims_of", "statement_of"]

_SMALL_TALK = re.compile(
    r"^(?:hi|hello|hey|thanks?|thank you|you're welcome|happy to help|glad to help|sure|of course|certainly|great|"
    r"no problem|good question|i hope (?:this|that) helps|let me know|is there anything else|have a (?:nice|great) day|"
    r"best regards|kind regards|cheers|i don't know|i'm not sure|i am not sure)\b",
    re.IGNORECASE,
)
_YES_NO = re.compile(r"^(?P<word>yes|no|yep|nope|correct|right|indeed)\b[,.!:;]?\s*", re.IGNORECASE)
_QUESTION_LEAD = re.compile(
    rf"^(?:is|are|was|were|do|does|did|can|could|will|would|should|has|have|had)\s+", re.IGNORECASE)
_APOSTROPHE = r"\s?['’]\s?"  # "I've", "I 've" (tokenised text), "I’ve"
_I = rf"(?:i|i{_APOSTROPHE}(?:ve|m|d)|i (?:have|am|had|also|really|actually|just|do|did)(?: (?:also|really|actually|just))?)"
# Words said before a statement that do not change what it states.
_LEAD = re.compile(
    rf"^(?:[\s,.!:;-]+|(?:(?:hi|hello|hey)(?: there)?|sure|sure thing|of course|certainly|great|cool|nice|wow|oh|ah|well|yes|yeah|yea|yep|ok|okay|"
    r"right|true|indeed|good|exactly|absolutely|interesting|awesome|amazing|also|and|so|actually|me too|same here|"
    r"good question|i agree|i see|hmm+|haha|lol|but|unfortunately|sadly|(?:i'm|i am|we're|we are) (?:sorry|afraid)(?: that)?|sorry|"
    rf"i(?:{_APOSTROPHE}d| would) (?:love|like|be (?:happy|glad)) to (?:help|assist)(?: you)?(?: with (?:that|this))?)\b[\s,.!:;-]*)+",
    re.IGNORECASE)
# A hedge before "but": what follows "but" is the statement ("I'm not sure, but it opened in 1901").
_HEDGE = re.compile(
    rf"^(?:{_I}\s?(?:not|n't|do not|don't|do n't|am not|'m not)\s(?:(?:entirely|really|totally|quite|completely)\s)?(?:sure|certain|know)|not sure|no idea|"
    r"i have no idea|i don't know|i do n't know|i do not)\b(?:[^.!?]{0,60}?\bbut\b[\s,]*|(?:\s\w+){0,2}\s?,\s*(?=i\b))",
    re.IGNORECASE)
_TRAILING_REACH = 40  # the longest trailing frame, with its comma and full stop
# A frame after the statement: "Meryl Streep as well, I believe."
_TRAILING = re.compile(
    rf"[\s,]*\b(?:{_I}\s(?:believe|think|guess|suppose)|i{_APOSTROPHE}m not sure|not sure|lol|haha|in fact)[\s.!]*$", re.IGNORECASE)
# A frame that reports what follows as a fact.
_REPORT = re.compile(
    rf"^(?:{_I}\s(?:know|knew|heard|hear|read|learned|learnt|believe|think|thought|guess|recall|remember|understand|"
    r"found out|was surprised to (?:learn|read|hear)|was told|saw|noticed)(?: (?:somewhere|once|recently|online))?"
    r"|it\s?(?:seems|sounds|appears)(?: like)?|apparently|fun fact|"
    r"(?:it|that)\s?(?:is|'s|was) (?:(?:so|pretty|very|really|quite) )?(?:interesting|cool|funny|amazing|crazy|surprising|fascinating|neat|wild|strange|weird)"
    r"(?: (?:to (?:know|think|see|learn|read|hear)))?)"
    r"(?:\s(?:that|how|about)(?!\s?['’]))?\b[\s,:]*",
    re.IGNORECASE)
# A question that states a fact: "Did you know (that) ...?"
_TELLING = re.compile(
    r"(?:^|,\s*)(?:did|do|have|had) you (?:ever )?(?:know|knew|heard|hear|read|realize|realise)(?: (?:that|about|why))?\s+"
    r"(?!(?:who|what|when|where|why|how|which|if|whether|of|it|that|this|them|him|her|anything|about)\b)",
    re.IGNORECASE)
_ASKS = re.compile(r"^(?:is|are|was|were|do|does|did|can|could|will|would|should|has|have|had|who|what|when|where|why|how|which)\b",
                   re.IGNORECASE)
# The speaker's own experience or taste: "I love comic books", "I've been there twice", "I'm
# from Canada", "my favourite is ...". An assistant has none, so such a sentence is made up
# (FaithDial's annotators count it as a hallucination; none of its supported train replies
# has one). Not "I'd love to help": a wish or an offer is not an experience.
_ADVERBS = r"(?:\s(?:also|really|just|actually|totally|absolutely|still|never|always|once|recently|personally|do|did))*"
_PERSONAL = re.compile(
    rf"\bi{_ADVERBS}\s(?:like|liked|love|loved|enjoy|enjoyed|hate|hated|prefer|preferred|adore|watched|went|visited|played|"
    rf"grew up|lived|ate|tried|own|owned)\b"
    rf"|\bi(?:{_APOSTROPHE}ve|\shave|\shad){_ADVERBS}\s(?:been|seen|watched|visited|tried|played|eaten|owned|lived|grown up)\b"
    rf"|\bi(?:{_APOSTROPHE}m|\sam){_ADVERBS}\s(?:from|a (?:(?:big|huge|total|massive) )?(?:fan|\w+head)|into)\b|\bi{_ADVERBS}\slive\sin\b"
    r"|\bmy\s(?:favou?rite|mom|mother|dad|father|family|kids?|son|daughter|wife|husband|brother|sister|friends?|dog|cat)\b",
    re.IGNORECASE)
# A question tagged onto a statement: the statement before it is still said.
_TAG_QUESTION = re.compile(
    r"\s*,\s*(?:(?:do|did|does|have|has|are|is|were|was|would|can|could|will|who|what|which|how|where|when|why)\b|right\b|"
    r"is n't it|isn't it)[^,]*\?$",
    re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Claim:
    """A statement of the answer to check: where it is, what it says, and whether it is a "No"."""

    start: int
    end: int
    text: str
    negated: bool = False  # a "No" to a yes/no question: the question's statement, denied
    from_question: bool = False  # a bare yes/no: the question's words stand for the claim
    short_answer: bool = False  # "Delhi.": no verb of its own, it answers its question
    question_says_not: bool = False  # ... and that question asks what is not ("What does it exclude?")
    personal: bool = False  # the speaker's own experience or taste ("I love this movie"): no knowledge base backs it


def statement_of(sentence: str) -> str | None:
    """What ``sentence`` states, without the leads, hedges and frames around it; None for a
    question that asks rather than tells, or for small talk."""
    text = sentence.strip()
    if text.endswith("?"):
        body = _LEAD.sub("", text)
        telling = _TELLING.search(body)  # "Did you know (that) ...?", "..., did you know ...?"
        if telling:
            return body[telling.end():].rstrip("? ").strip() or None
        tagged = _TAG_QUESTION.search(body)  # "It opened in 1901, have you been there?"
        if tagged and tagged.start() and not _ASKS.match(body):
            return statement_of(body[:tagged.start()])
        return None
    for _ in range(3):  # "Well, I'm not sure, but I think ..."
        before = text
        text = _LEAD.sub("", text)
        text = _YES_NO.sub("", text)
        text = _HEDGE.sub("", text)
        text = _REPORT.sub("", text)
        trailing = _TRAILING.search(text, max(0, len(text) - _TRAILING_REACH))  # searched at the end only
        text = text[:trailing.start()] if trailing else text
        if text == before:
            break
    if not text or _SMALL_TALK.match(text):
        return None
    return text


@functools.lru_cache(maxsize=16_384)
def _read(sentence: str) -> tuple[str | None, bool, int]:
    """A sentence read once (a streamed answer's sentences are read again at each release):
    its statement, whether it is personal, and how many content words the statement has."""
    statement = statement_of(sentence)
    # A question is personal only in what it states ("..., my favourite, who is yours?").
    personal = bool(_PERSONAL.search(statement or "" if sentence.endswith("?") else sentence))
    return statement, personal, len(content_words(statement)) if statement is not None else 0


# Enough to check: two content words ("Elsa leaves"; chosen on the public train split:
# three let made-up short sentences pass, "He was really old", one flags chit-chat). "He was 89"
# is not (tried, with a number or name as one of two words: it flags more right replies than wrong).
_STATES = 2
# An answer that is one sentence of fewer words than this is a short answer ("Water damage."):
# it is read with its question's polarity.
_SHORT = 3


def claims_of(answer: str, question: str | None = None) -> list[Claim]:
    """The claims of ``answer``; ``question`` lets a bare yes/no or a short answer be checked."""
    claims = []
    spans = sentence_spans(answer)
    for start, end in spans:
        part = answer[start:end]
        sentence = part.strip()
        yes_no = _YES_NO.match(sentence)
        statement, personal, words = _read(sentence)
        if personal:
            claims.append(Claim(start, start + len(part), sentence, personal=True))
            continue
        if words >= _STATES:
            assert statement is not None
            if words < _SHORT and question and len(spans) == 1:  # "Water damage.": read with its question's polarity
                claims.append(Claim(start, start + len(part), statement, short_answer=True, question_says_not=says_not(question)))
            else:
                claims.append(Claim(start, start + len(part), statement))
        elif yes_no and question and _QUESTION_LEAD.match(question.strip()):
            statement = _QUESTION_LEAD.sub("", question.strip()).rstrip("?")
            claims.append(Claim(start, start + len(part), statement, negated=yes_no.group("word").lower() in ("no", "nope"),
                                from_question=True))
    stripped = answer.strip()
    if not claims and question and stripped and not _SMALL_TALK.match(stripped) and not stripped.endswith("?") and content_words(stripped):
        claims.append(Claim(answer.find(stripped), answer.find(stripped) + len(stripped), stripped,  # a short answer: "Delhi."
                            short_answer=True, question_says_not=says_not(question)))
    return claims
