"""Claim-to-evidence alignment: is one claim backed by one passage, fact by fact?

A claim is cut into clauses; each fact in a clause (a number with its unit, a price per
period, a capitalised name, a word such as "unlimited" or "free") must be found in the
evidence *attached to the same things*: the evidence clause that holds the fact (with the
passage's heading, the earlier clauses of its sentence, and the sentence before when this
one starts with "It"/"They"/...) must also hold every word of the claim's clause that the
passage uses anywhere. "Monthly plans can be refunded within 30 days" against "Annual plans
can be refunded within 30 days. Monthly plans are not refunded." fails: "30 days" is there,
but with "annual", while "monthly" sits in another sentence.

Paraphrase is met by stemming (PyStemmer, the Snowball English stemmer), arithmetic on the
passage's figures (20 EUR a month is 240 EUR a year; sums, differences, ratios and
percentages of two figures of one unit), and yes/no answers by reading the question as the
claim. A clause and the evidence clause it matches best must agree on negation.
"""

from __future__ import annotations

import functools
import itertools
import re
import unicodedata
from dataclasses import dataclass

import Stemmer

__all__ = ["Assessment", "Fact", "PassageAnalysis", "analyse_passage", "assess_claim", "content_words", "facts_of", "says_not", "stem"]

_STEMMER = Stemmer.Stemmer("english")
ALIGN_TOLERANCE = 0  # words of a claim's clause the passage has, but elsewhere than where that clause is said
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|(?<=[a-z0-9)][.!?])(?=[A-Z])|\n+")
# A full stop after these is not the end of a sentence: "Mr. Burns", "St. Olaf", "J. R. R. Tolkien".
_ABBREVIATION = re.compile(
    r"(?:\b(?:mr|mrs|ms|dr|prof|st|mt|jr|sr|vs|v|nr|approx|inc|ltd|corp|dept|fig|e\.g|i\.e|etc)|(?<![^\W\d_])[A-Z])\.$",
    re.IGNORECASE)
# Clause boundaries: ";" and a comma or dash before a conjunction or a new subject.
_ABBREVIATION_REACH = 8  # the longest abbreviation ("approx.") and the character before it
_CLAUSE = re.compile(r"\s*;\s*|,\s+(?=(?:while|whereas|but|and|or|then)\b)|\s+and\s+(?=(?:we|you|i|it|they|then|the|our|your)\b)|\s+(?:while|whereas)\s+|\s+[—–-]\s+|:\s+", re.IGNORECASE)
_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)?")
_NEGATION = frozenset(["not", "no", "never", "none", "cannot", "can't", "won't", "isn't", "aren't", "doesn't", "don't", "didn't", "wasn't", "weren't", "without", "nor", "n't",
                       "except", "excluding", "exclude", "excludes", "excluded", "unavailable"])
_NEW_SUBJECT = frozenset(["a", "an", "the", "our", "your", "their", "its", "his", "her", "each", "every", "all", "some"])
_OWN_SUBJECT = frozenset(["we", "you", "i", "it", "they", "he", "she", "there", "this", "these", "that", "those", "a", "an", "the", "our", "your", "their"])
_PRONOUN_START = frozenset(["it", "its", "they", "their", "them", "this", "these", "that", "those", "both", "each", "either", "he", "she", "his", "her", "there"])
_STOP = frozenset(
    ["a", "an", "the", "and", "or", "but", "if", "of", "to", "in", "on", "at", "for", "with", "by", "from", "as", "is", "are", "was", "were", "be", "been", "being", "it", "its", "this", "that", "these", "those", "you", "your", "yours", "we", "our", "us", "i", "me", "my", "he", "she", "they", "them", "their", "his", "her", "do", "does", "did", "so", "than", "then", "there", "here", "can", "will", "would", "should", "could", "may", "might", "must", "shall", "about", "into", "over", "under", "up", "down", "out", "very", "just", "also", "only", "all", "any", "each", "per", "has", "have", "had", "get", "gets", "got", "which", "what", "when", "where", "who", "whom", "whose", "how", "yes", "also", "well", "really", "please", "oh", "yeah", "ok", "okay", "sure", "like", "i'm", "it's", "that's", "there's", "you're", "we're", "they're", "one's",
     # filler and function words that say nothing a passage must hold in one place ("some", "during", "in fact")
     "some", "such", "even", "still", "too", "though", "actually", "indeed", "quite", "pretty", "rather", "during", "through", "upon", "via"]
)
_NUMBER_WORDS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10,
    "eleven": 11, "twelve": 12, "fifteen": 15, "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60,
    "ninety": 90, "hundred": 100, "once": 1, "twice": 2, "single": 1, "dozen": 12,
}
# Words that state an amount or a polarity: "unlimited" where the evidence says "one" is as
# wrong as a wrong number.
_QUANTITY_WORDS = frozenset(["unlimited", "free", "never", "always", "instantly", "immediately", "lifetime"])
_UNITS = {
    "%": "%", "percent": "%", "per cent": "%",
    "$": "usd", "usd": "usd", "dollar": "usd", "dollars": "usd", "€": "eur", "eur": "eur", "euro": "eur", "euros": "eur",
    "£": "gbp", "gbp": "gbp", "pound": "gbp", "pounds": "gbp",
    "day": "day", "days": "day", "business day": "day", "business days": "day", "working day": "day", "working days": "day",
    "week": "week", "weeks": "week", "month": "month", "months": "month", "year": "year", "years": "year",
    "hour": "hour", "hours": "hour", "h": "hour", "hr": "hour", "hrs": "hour", "minute": "minute", "minutes": "minute",
    "min": "minute", "mins": "minute", "second": "second", "seconds": "second",
    "kb": "kb", "mb": "mb", "gb": "gb", "tb": "tb", "user": "user", "users": "user", "seat": "user", "seats": "user",
    "am": "am", "a.m.": "am", "pm": "pm", "p.m.": "pm",
}
_UNIT_PATTERN = "|".join(sorted((re.escape(u) for u in _UNITS if u not in "$€£"), key=len, reverse=True))
_NUMBER = re.compile(
    # First, where a figure can start at all (a currency sign, a space, a digit, a number word's
    # first letter): the rest is tried at few places instead of at every character.
    r"(?=[$€£\s\d]|\b[zotfsenhd])"
    rf"(?P<cur>[$€£])?\s?(?P<num>\d{{1,3}}(?:,\d{{3}})+(?:\.\d+)?|\d+(?:[.:]\d+)?|\b(?:{'|'.join(_NUMBER_WORDS)})\b(?!-))"
    rf"(?:\s?(?P<unit>{_UNIT_PATTERN})\b|(?P<pct>%))?"
    r"(?:\s*(?:/|per|a|an|each|every)\s*(?P<per>day|week|month|year|hour|user|seat)\b)?",
    re.IGNORECASE,
)
# How many of the smaller unit make one of the larger: 20 EUR a month is 240 EUR a year.
_CONVERSIONS = {("year", "month"): 12, ("year", "week"): 52, ("week", "day"): 7, ("month", "day"): 30, ("year", "day"): 365,
                ("day", "hour"): 24, ("hour", "minute"): 60, ("minute", "second"): 60, ("tb", "gb"): 1000, ("gb", "mb"): 1000}


@dataclass(frozen=True, slots=True)
class Fact:
    kind: str  # "number", "name" or "quantity"
    key: str  # what must be found: a name or quantity word, or a number's text
    value: float | None = None
    unit: str = ""
    per: str = ""


@dataclass(frozen=True, slots=True)
class Assessment:
    """How one claim fares against one passage."""

    support: float  # share of the claim's content words in the passage
    missing: int  # facts the passage does not have, nor can be computed from its figures
    misattached: int  # facts the passage has, but with other things than the claim says
    negation_mismatch: bool  # the claim says "not" where its evidence does not, or the reverse
    personal: bool = False  # the speaker's own experience or taste, which no passage backs

    def supported(self, min_support: float) -> bool:
        return (self.support >= min_support and not self.missing and not self.misattached and not self.negation_mismatch
                and not self.personal)


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence of ``text``; abbreviations and initials do not end one."""
    spans: list[tuple[int, int]] = []
    start = 0
    for boundary in _SENTENCE_END.finditer(text):
        # Only the last few characters can be an abbreviation: searched there, in place (a
        # search of the whole sentence so far tried every position of it, at every full stop).
        end = boundary.start()
        if boundary.group(0).startswith("\n") or not _ABBREVIATION.search(text, max(start, end - _ABBREVIATION_REACH), end):
            spans.append((start, boundary.start()))
            start = boundary.end()
    spans.append((start, len(text)))
    return [(a, b) for a, b in spans if text[a:b].strip()]


def sentences(text: str) -> list[str]:
    return [text[a:b] for a, b in sentence_spans(text)]


def stem(word: str) -> str:
    return _STEMMER.stemWord(word.lower())


def _fold(text: str) -> str:
    """``text`` without accents: "Kīlauea" is "Kilauea", "Pokémon" is "Pokemon", "Zürich" is
    "Zurich" (an answer often drops them). ASCII text, nearly all of it, is returned as it is."""
    if text.isascii():
        return text
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


@functools.lru_cache(maxsize=65_536)
def _words(text: str) -> tuple[str, ...]:
    """Lower-case words without accents (a clause is read for its stems, anchors, raw words and facts: cut once)."""
    return tuple(_WORD.findall(_fold(text).lower().replace("’", "'")))


def _root(stem: str) -> str:
    """A stem without the endings that make a noun of a verb, which the Snowball stemmer keeps
    on short words: "dancer" and "danced", "creation" and "creates", "player" and "plays" meet."""
    if len(stem) < 6:
        return stem
    if stem.endswith("er"):
        return stem[:-2]
    return stem[:-3] if stem.endswith(("tion", "sion")) else stem


def _raw(text: str) -> frozenset[str]:
    """Lower-case words, and each possessive without its "'s" ("Nixon's" holds "nixon")."""
    words = _words(text)
    return frozenset(words) | {w[:-2] for w in words if w.endswith("'s")}


@functools.lru_cache(maxsize=65_536)
def _light(word: str) -> str:
    """A word without its plural, possessive, verb ("-ed", "-ing") or "-able" ending, and
    nothing more: "refunded" and "refundable" are "refund", but "monthly" stays apart from
    "month" (a stemmer joins them; a swap lives in that gap)."""
    word = word.removesuffix("'s")
    if word.endswith("ies") and len(word) > 4:
        word = word[:-3] + "y"
    elif word.endswith(("ses", "xes", "ches", "shes")):
        word = word[:-2]
    elif word.endswith("s") and not word.endswith(("ss", "us", "is")) and len(word) > 3:
        word = word[:-1]
    for suffix, shortest in (("able", 7), ("ible", 7), ("ing", 6), ("ed", 5)):
        if word.endswith(suffix) and len(word) >= shortest:
            return word[: -len(suffix)]
    return _root(word)


@functools.lru_cache(maxsize=65_536)
def anchor_words(text: str) -> frozenset[str]:
    """The words a fact is said about, lightly normalised (see ``_light``)."""
    return frozenset(_light(w) for w in _words(text) if w not in _STOP and not w.isdigit())


@functools.lru_cache(maxsize=65_536)
def content_words(text: str) -> frozenset[str]:
    """Stems of the words that carry meaning (not stop words, not bare numbers)."""
    return frozenset(map(_root, _STEMMER.stemWords([w for w in _words(text) if w not in _STOP and not w.isdigit()])))


def _number(text: str) -> float | None:
    text = text.lower()
    if text in _NUMBER_WORDS:
        return float(_NUMBER_WORDS[text])
    if ":" in text:
        return None  # a time of day is compared as text
    return float(text.replace(",", ""))


_HAS_AMOUNT = re.compile(rf"[\d$€£]|\b(?:{'|'.join(_NUMBER_WORDS)})\b", re.IGNORECASE)


@functools.lru_cache(maxsize=65_536)
def facts_of(text: str) -> frozenset[Fact]:
    text = _fold(text)
    facts: set[Fact] = set()
    for match in _NUMBER.finditer(text) if _HAS_AMOUNT.search(text) else ():
        number = match.group("num")
        if match.group("cur") is None and match.group("unit") is None and not match.group("pct") and number.lower() in ("one", "single", "a"):
            continue  # "one of the plans" is not an amount
        unit = _UNITS.get((match.group("cur") or match.group("unit") or match.group("pct") or "").lower(), "")
        per = _UNITS.get((match.group("per") or "").lower(), "")
        facts.add(Fact("number", number.lower(), _number(number), unit, per))
    facts |= {Fact("quantity", w) for w in _words(text) if w in _QUANTITY_WORDS}
    for sentence in sentences(text):
        tokens = sentence.split()
        for token in tokens[1:]:  # the first word of a sentence is capitalised anyway
            word = token.strip(".,;:!?()\"'’“”[]")
            if word[:1].isupper() and word.isalpha() and word.lower() not in _STOP and word.lower() not in _UNITS:
                facts.add(Fact("name", word.lower()))
    return frozenset(facts)


@dataclass(frozen=True, slots=True)
class _Clause:
    sentence: int
    words: frozenset[str]  # stems
    anchors: frozenset[str]  # lightly normalised words, for attachment
    raw: frozenset[str]  # lower-case words, for names
    facts: frozenset[Fact]
    negated: bool
    leads_with_pronoun: bool
    new_subject: bool  # opens with "a"/"the"/a name: says something of another thing than the clause before


def _clauses(text: str) -> tuple[_Clause, ...]:
    clauses = []
    for index, sentence in enumerate(sentences(text)):
        for part in _CLAUSE.split(sentence):
            if not part.strip():
                continue
            words = _words(part)
            clauses.append(_Clause(index, content_words(part), anchor_words(part), _raw(part), facts_of(part),
                                   any(w in _NEGATION or w.endswith("n't") for w in words),
                                   bool(words) and words[0] in _PRONOUN_START,
                                   bool(words) and (words[0] in _NEW_SUBJECT or part.strip()[:1].isupper())))
    return tuple(clauses)


@dataclass(frozen=True, slots=True)
class PassageAnalysis:
    """A passage as alignment reads it: its words, its clauses with what each is said about, its figures."""

    title: frozenset[str]
    words: frozenset[str]
    anchors: frozenset[str]
    raw: frozenset[str]
    clauses: tuple[_Clause, ...]
    contexts: tuple[tuple[frozenset[str], frozenset[str], frozenset[str]], ...]
    numbers: tuple[Fact, ...]


_TABLE_ROW = re.compile(r"^\s*\|(.+)\|\s*$", re.MULTILINE)


def _table_header(text: str) -> frozenset[str]:
    """The words of a Markdown table's header row: each row is a sentence of its own, and
    what its cells are (price, refund window) is said in the header."""
    row = _TABLE_ROW.search(text)
    return anchor_words(row.group(1)) if row else frozenset()


def analyse_passage(title: str, text: str) -> PassageAnalysis:
    """A passage read for alignment (~0.15-0.3 ms): the grounding check reads its knowledge
    base's passages ahead, when it is loaded; others are read when first met (``_passage``)."""
    clauses = _clauses(text)
    return PassageAnalysis(
        title=content_words(title),
        words=content_words(title) | content_words(text),
        anchors=anchor_words(title) | anchor_words(text),
        raw=_raw(f"{title} {text}"),
        clauses=clauses,
        contexts=_contexts(anchor_words(title), clauses, _table_header(text)),
        numbers=tuple(f for c in clauses for f in c.facts if f.kind == "number" and f.value is not None),
    )


# Passages met before being read ahead (or outside a knowledge base) are read once and remembered.
_passage = functools.lru_cache(maxsize=16_384)(analyse_passage)


def _same_number(claim: Fact, evidence: Fact) -> bool:
    if claim.value is None or evidence.value is None:
        return claim.key == evidence.key
    return claim.value == evidence.value and (not claim.unit or not evidence.unit or claim.unit == evidence.unit) and (
        not claim.per or not evidence.per or claim.per == evidence.per)


def _converted(claim: Fact, evidence: Fact) -> bool:
    """The claim's figure is the evidence's in another unit or period (months and years, hours and minutes)."""
    if claim.value is None or evidence.value is None:
        return False
    if claim.per and evidence.per and claim.unit == evidence.unit and claim.per != evidence.per:
        for (big, small), factor in _CONVERSIONS.items():
            if (claim.per, evidence.per) == (big, small) and abs(claim.value - evidence.value * factor) < 1e-6:
                return True
            if (claim.per, evidence.per) == (small, big) and abs(claim.value * factor - evidence.value) < 1e-6:
                return True
    if claim.unit and evidence.unit and claim.unit != evidence.unit and claim.per == evidence.per:
        for (big, small), factor in _CONVERSIONS.items():
            if (claim.unit, evidence.unit) == (small, big) and abs(claim.value - evidence.value * factor) < 1e-6:
                return True
            if (claim.unit, evidence.unit) == (big, small) and abs(claim.value * factor - evidence.value) < 1e-6:
                return True
    return False


def _computed(claim: Fact, numbers: tuple[Fact, ...]) -> bool:
    """The claim's figure is a sum, difference, product, ratio or percentage of two of the passage's figures."""
    if claim.value is None:
        return False
    target = claim.value
    for a, b in itertools.permutations(numbers, 2):
        assert a.value is not None and b.value is not None
        same_unit = a.unit == b.unit and (not claim.unit or claim.unit in (a.unit, "%"))
        candidates = []
        if same_unit and claim.unit != "%":
            candidates += [a.value + b.value, a.value - b.value]
        if not a.unit or not b.unit or a.per == b.unit or b.per == a.unit:
            candidates.append(a.value * b.value)  # 20 EUR per user x 5 users
        if b.value:
            if claim.unit == "%" and same_unit:
                candidates += [a.value / b.value * 100, (a.value - b.value) / b.value * 100]
            elif same_unit and not claim.unit:
                candidates.append(a.value / b.value)  # "three times as much"
        if any(abs(c - target) <= max(0.051, abs(target) * 0.005) for c in candidates):
            return True
    return False


def _context(passage: PassageAnalysis, index: int, claim_words: frozenset[str]) -> frozenset[str]:
    """What a fact in clause ``index`` is said about: its run of clauses (up to one that names
    a new subject: "; a downgrade ..."), the heading, and the sentence before when the
    sentence opens with a pronoun ("It includes ..."). When the run says nothing the claim
    does not ("; the link is valid for 30 minutes"), it leans on its whole sentence."""
    run, sentence, own = passage.contexts[index]
    return sentence if own <= claim_words else run


def _contexts(title: frozenset[str], clauses: tuple[_Clause, ...], header_words: frozenset[str] = frozenset()) -> tuple[tuple[frozenset[str], frozenset[str], frozenset[str]], ...]:
    """Per clause: (its run's context, its sentence's context, its run's own words)."""
    contexts = []
    header = frozenset(header_words)
    for index, clause in enumerate(clauses):
        same = [i for i, c in enumerate(clauses) if c.sentence == clause.sentence]
        first, last = index, index
        while first > same[0] and not clauses[first].new_subject:
            first -= 1
        while last < same[-1] and not clauses[last + 1].new_subject:
            last += 1
        own = frozenset(w for c in clauses[first:last + 1] for w in c.anchors)
        shared = set(title) | header
        if clauses[same[0]].leads_with_pronoun:
            shared |= {w for c in clauses if c.sentence == clause.sentence - 1 for w in c.anchors}
        sentence = frozenset(shared | {w for i in same for w in clauses[i].anchors})
        contexts.append((frozenset(shared | own), sentence, own - title))
    return tuple(contexts)


def _matches(fact: Fact, clause: _Clause) -> bool:
    if fact.kind == "number":
        return any(f.kind == "number" and _same_number(fact, f) for f in clause.facts)
    return fact.key in clause.raw


def says_not(text: str) -> bool:
    """``text`` has a word of negation or exclusion ("not", "never", "excludes", "can't"); not
    "no", which a question holds as often in a name or a rank ("No Fences", "No. 1")."""
    return any((w in _NEGATION and w not in ("no", "none", "nor")) or w.endswith("n't") for w in _words(text))


def _polarity_differs(words: frozenset[str], part_negated: bool, passage: PassageAnalysis, *, bare: bool = False) -> bool:
    """The evidence clause closest to a claim's clause (its stems ``words``) says the opposite:
    the claim says "not" and it does not, or the reverse ("covers water damage" against "it
    excludes water damage"). A tie between a clause that agrees and one that does not counts
    against the claim; not for a ``bare`` answer ("Barton Mine."), whose one or two names
    often stand in a clause of each kind: only a closer clause that says the opposite counts."""
    if not words:
        return False
    agree = max((len(words & c.words) for c in passage.clauses if c.negated == part_negated), default=0)
    oppose = max((len(words & c.words) for c in passage.clauses if c.negated != part_negated), default=0)
    return oppose >= max(2, len(words) // 2) and (oppose > agree if bare else oppose >= agree)


@dataclass(frozen=True, slots=True)
class _ClaimClause:
    """A claim's clause, read once whatever the passages it is held against."""

    anchors: frozenset[str]  # its words lightly normalised, with the names it inherits
    words: frozenset[str]  # stems, for negation
    negated: bool  # says "not" itself
    facts: tuple[tuple[Fact, frozenset[str]], ...]  # each fact with its own words (not what it is said about)


@functools.lru_cache(maxsize=16_384)
def _claim_parts(claim: str) -> tuple[_ClaimClause, ...]:
    return tuple(
        _ClaimClause(anchor_words(part) | names, content_words(part), any(w in _NEGATION or w.endswith("n't") for w in _words(part)),
                     tuple((fact, frozenset(_light(w) for w in _words(fact.key))) for fact in facts_of(part)))
        for part, names in _claim_clauses(claim))


@functools.lru_cache(maxsize=16_384)
def _claim_clauses(claim: str) -> tuple[tuple[str, frozenset[str]], ...]:
    """The claim's clauses, each with the names of the clause before when its own subject is
    elided ("The Pro plan costs 20 EUR, and includes ...")."""
    parts = [p for p in _CLAUSE.split(claim) if p and p.strip()] or [claim]
    clauses, names = [], frozenset[str]()
    for index, part in enumerate(parts):
        words = _words(part)
        own_subject = index == 0 or (words and words[0] in _OWN_SUBJECT)
        clauses.append((part, frozenset() if own_subject else names))
        names = frozenset(_light(f.key) for f in facts_of(part) if f.kind == "name") or names
    return tuple(clauses)


def assess_claim(claim: str, title: str, text: str, *, negated: bool = False, whole_clauses: bool = True, bare: bool = False,
                 analysis: PassageAnalysis | None = None) -> Assessment:
    """Score ``claim`` against one passage (``title`` and ``text``). ``negated`` turns the
    claim around (a "No" answer to a yes/no question, or a short answer to a question that
    asks what is not: "What does the warranty exclude?"). ``whole_clauses=False`` skips the
    rule that a clause be said in one place (a question often joins two: "Were both X and Y
    authors?"); its facts must still be in place. ``bare``: a short answer ("Delhi."), read
    for negation as ``_polarity_differs`` says. ``analysis``: the passage as ``analyse_passage``
    read it already, if it was."""
    passage = passage_of(title, text, analysis)
    support = word_support(claim, passage)
    missing = misattached = 0
    mismatch = False
    for part in _claim_parts(claim):
        clause_words = part.anchors
        anchors = clause_words & passage.anchors
        combined = False  # a figure computed from two places ("10 GB more than Starter") is said in neither alone
        for fact, own_words in part.facts:
            holders = [i for i, c in enumerate(passage.clauses) if _matches(fact, c)]
            if not holders:
                derived = fact.kind == "number" and (
                    any(_converted(fact, n) for n in passage.numbers) or _computed(fact, passage.numbers))
                if not derived and not (fact.kind != "number" and fact.key in passage.raw):
                    missing += 1
                combined |= derived
                continue
            if fact.kind == "name":
                continue  # a name is what other facts attach to
            anchors_here = anchors - own_words
            if anchors_here and not any(anchors_here <= _context(passage, i, clause_words) for i in holders):
                misattached += 1
        # The clause as a whole must be said in one place: "an upgrade takes effect at the end
        # of the period" mixes the upgrade's clause with the downgrade's.
        if whole_clauses and anchors and passage.clauses and not combined and min(
                len(anchors - _context(passage, i, clause_words)) for i in range(len(passage.clauses))) > ALIGN_TOLERANCE:
            misattached += 1
        mismatch |= _polarity_differs(part.words, negated != part.negated, passage, bare=bare)
    return Assessment(support, missing, misattached, mismatch)


def passage_of(title: str, text: str, analysis: PassageAnalysis | None = None) -> PassageAnalysis:
    """A passage as read for alignment: ``analysis`` when it was read ahead, else read now (once)."""
    return analysis if analysis is not None else _passage(title, text)


def word_support(claim: str, passage: PassageAnalysis) -> float:
    """The share of ``claim``'s content words (stems) that ``passage`` has, to four places:
    cheap next to the rest of ``assess_claim``, and an upper bound on what it scores."""
    claim_words = content_words(claim)
    return round(len(claim_words & passage.words) / len(claim_words), 4) if claim_words else 1.0
