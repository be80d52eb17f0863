"""Presidio's AnalyzerEngine, with aimsguard's recognizer set, asked only about what a text can contain.

The engine does the analysis: Presidio's recognizers, scores, context boosting. aimsguard
changes which recognizers it holds and how much of it runs:

- the recognizers: cards by network prefix and checksum, or a card word (``_cards``); phones through phonenumbers' matcher per configured region, scored by
  format (``_phone``); e-mail addresses on any domain and passports after their keyword
  (``_ids``); names and places from layout (``_names``); a spaCy pipeline's NER when the
  policy names one;
- an entity is analysed only when one of its recognizers could match: a pattern recognizer
  whose regular expressions find nothing in the text returns nothing, and what every match
  needs (an "@", so many digits, so many digits in a row) rules most texts out before any
  search; a layout recognizer is asked itself (it needs no tokens). A text no recognizer
  could match in never reaches the engine: spaCy's tokenizer, the context words and the
  engine's bookkeeping cost about 0.2 ms per short text (issue 11);
- ``find`` analyses the NFKC form of a text and maps the spans back, never lets a URL
  stand inside an e-mail address, ends a name at a line break, and finds a name again where
  it repeats or stands in a list of names (``_people``).
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import regex
import structlog

from presidio_analyzer import AnalyzerEngine, EntityRecognizer, PatternRecognizer, RecognizerRegistry, RecognizerResult
from presidio_analyzer.predefined_recognizers import CreditCardRecognizer, EmailRecognizer, PhoneRecognizer

from ._cards import PaymentCardRecognizer
from ._cues import Cues, has_cue
from ._digits import digit_count, digit_runs, longest_digit_run, min_digit_run, min_digits
from ._gazetteers import without_companies
from ._ids import MailAddressRecognizer, PassportRecognizer
from ._names import LayoutRecognizer, layout_recognizers
from ._normalize import nfkc
from ._people import more_of_the_same_people
from ._offline import blank_nlp_engine, make_tldextract_offline, spacy_nlp_engine
from ._phone import DEFAULT_PHONE_REGIONS, RegionalPhoneRecognizer, has_phone_digits

__all__ = ["DEFAULT_ENTITIES", "NER_ENTITIES", "PRESIDIO_REGEX_FLAGS", "PiiAnalyzer", "predefined_recognizers_for", "shared_analyzer"]

log = structlog.get_logger("aimsguard.guardrails")

# The flags AnalyzerEngine.analyze hands pattern recognizers by default.
PRESIDIO_REGEX_FLAGS = regex.DOTALL | regex.MULTILINE | regex.IGNORECASE
_DOT_LETTER = re.compile(r"\.[a-z]", re.IGNORECASE)
_ADDRESS_RUN = re.compile(r"[13][^\W_]{25}")  # \w holds every character [a-zA-HJ-NP-Z0-9] matches ignoring case


def _licence_hint(text: str) -> bool:
    """Whether a licence form could be here: a run of digits with a letter (what [^\\W\\d_]
    matches) or "]" right before it, a letter right after it, or six digits. Read from the
    digit runs (few) rather than by a search that tests every character for a letter."""
    for start, end in digit_runs(text):
        if end - start >= 6:
            return True
        if start > 0 and ((before := text[start - 1]) == "]" or (before.isalnum() and not before.isdecimal())):
            return True
        if end < len(text) and (after := text[end]).isalnum() and not after.isdecimal():
            return True
    return False


# What a check looks for unless the policy lists its entities: data that identifies a person
# or reaches them. Not DATE_TIME, ORGANIZATION or NRP: dates, product and company names and
# nationalities fill ordinary support messages, and redacting them breaks the answer.
DEFAULT_ENTITIES: tuple[str, ...] = (
    "EMAIL_ADDRESS", "PHONE_NUMBER", "PERSON", "LOCATION", "CREDIT_CARD", "IBAN_CODE", "US_SSN", "US_ITIN", "US_PASSPORT",
    "PASSPORT", "US_BANK_NUMBER", "US_DRIVER_LICENSE", "UK_NHS", "MEDICAL_LICENSE", "IP_ADDRESS", "CRYPTO", "URL",
)
NER_ENTITIES = frozenset({"PERSON", "LOCATION", "NRP", "ORGANIZATION", "GPE", "DATE_TIME"})


def predefined_recognizers_for(language: str, entities: Iterable[str]) -> list[EntityRecognizer]:
    """Presidio's predefined recognizers (including those its default registry leaves off)
    for the given entities, instantiated with their defaults."""
    from presidio_analyzer import predefined_recognizers as module

    wanted = set(entities)
    found: list[EntityRecognizer] = []
    for name in module.__all__:
        cls = getattr(module, name)
        if not (isinstance(cls, type) and issubclass(cls, EntityRecognizer)) or cls in (PhoneRecognizer, EmailRecognizer, CreditCardRecognizer):
            continue
        try:
            recognizer = cls(supported_language=language)
        except Exception:  # needs arguments, models or a service: not a plain predefined recognizer
            continue
        if wanted & set(recognizer.supported_entities):
            found.append(recognizer)
    return found


# Recognizers that read the text alone (no tokens, no NER): could_find may ask them directly.
_WITHOUT_NLP = (PatternRecognizer, RegionalPhoneRecognizer, LayoutRecognizer, PassportRecognizer, PaymentCardRecognizer)

Trigger = Callable[[str], bool]
"""Whether a recognizer could find anything in a text, decided cheaply."""


def _always(_: str) -> bool:
    return True  # NER and custom recognizers: cannot tell, always run


def _has_digit(text: str) -> bool:
    return digit_count(text) > 0  # counted once per text for every trigger that asks (see _digits)


def _digit_dot_digit(text: str) -> bool:
    """Whether a digit, a dot and a digit stand in a row (every IPv4 form has them)."""
    runs = digit_runs(text)
    return any(after_start == end + 1 and text[end] == "." for (_, end), (after_start, _) in zip(runs, runs[1:]))


# What [A-Z] matches case-insensitively, in the regex module and in re (a superset of both).
_IBAN_LETTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ\u0130\u0131\u017f\u212a")


def _iban_hint(text: str) -> bool:
    """Whether two letters stand right before two digits, as every IBAN begins: read from the
    digit runs (few), not by a search that tests every character."""
    return any(
        end - start >= 2 and start >= 2 and text[start - 1] in _IBAN_LETTERS and text[start - 2] in _IBAN_LETTERS
        for start, end in digit_runs(text)
    )


# Characters every match of these entities' predefined patterns must contain: testing
# for them first spares the (slow to fail) regular expressions most everyday text.
# The shared Presidio test cases check that findings stay identical to the stock engine.
_NECESSARY: dict[str, Callable[[str], bool]] = {
    "EMAIL_ADDRESS": lambda text: "@" in text,
    "CREDIT_CARD": _has_digit,
    # Every address is a "1" or "3" (after "bc" or not) then 25 or more letters or digits: the
    # standard library's re finds that superset at C speed, where the pattern is slow to fail.
    "CRYPTO": lambda text: ("1" in text or "3" in text) and _ADDRESS_RUN.search(text) is not None,
    "IBAN_CODE": _iban_hint,
    "US_SSN": _has_digit,
    "US_ITIN": _has_digit,
    "US_BANK_NUMBER": _has_digit,
    "UK_NHS": _has_digit,
    # IPv6 forms hold a ":", every IPv4 form a digit, a dot and a digit.
    "IP_ADDRESS": lambda text: ":" in text or _digit_dot_digit(text),
    # Every licence form is one token holding a letter beside a digit, or six digits in a row
    # (and "A-Z]]" then digits: a typo in Presidio's list, matched literally).
    "US_DRIVER_LICENSE": _licence_hint,
    "MAC_ADDRESS": lambda text: ":" in text or "-" in text or "." in text,
    "UUID": lambda text: "-" in text,
    "DATE_TIME": _has_digit,
    "US_PASSPORT": _has_digit,
    "MEDICAL_LICENSE": _has_digit,
    # Every URL pattern needs a dot followed by a top-level domain; a sentence's full stop is
    # followed by a space. The URL expressions are the slowest to fail, so this one pays.
    "URL": lambda text: _DOT_LETTER.search(text) is not None,
}


_TWELVE_DIGITS = re.compile(r"\d(?:[ \-]?\d){11}")


def _has_twelve_digits(text: str) -> bool:
    return digit_count(text) >= 12 and _TWELVE_DIGITS.search(text) is not None


_PASSPORT_CUES = Cues(("pas", "document"))  # passport, pasaporte, paspoort, travel document


def _mentions_passport(text: str) -> bool:
    return has_cue(text, _PASSPORT_CUES)


def _trigger(recognizer: EntityRecognizer) -> Trigger:
    if isinstance(recognizer, RegionalPhoneRecognizer):
        return has_phone_digits
    if isinstance(recognizer, PassportRecognizer):
        return _mentions_passport
    if isinstance(recognizer, PaymentCardRecognizer):
        return _has_twelve_digits
    if isinstance(recognizer, LayoutRecognizer):
        # Its own search, which needs no NLP artefacts: a text nobody lays a name or place
        # out in (most) then skips the engine, and spaCy's tokenizer, altogether.
        return recognizer.finds_any
    if isinstance(recognizer, PatternRecognizer) and recognizer.patterns and not recognizer.deny_list:
        # The `regex` module, as Presidio's PatternRecognizer uses: same syntax, same matches.
        patterns = tuple(regex.compile(p.regex, flags=PRESIDIO_REGEX_FLAGS) for p in recognizer.patterns)
        necessary = [_NECESSARY[e] for e in recognizer.supported_entities if e in _NECESSARY]
        first = necessary[0] if len(necessary) == len(recognizer.supported_entities) == 1 else _always
        # An SSN needs nine digits, four of them in a row; a bank account eight in a row: most
        # texts have fewer (a price, a date).
        digits = min(min_digits(p.regex) for p in recognizer.patterns)
        run = min(min_digit_run(p.regex) for p in recognizer.patterns)
        if digits > 1:  # (a run of two or more digits needs as many digits in all)
            return lambda text: (
                digit_count(text) >= digits and longest_digit_run(text) >= run
                and first(text) and any(p.search(text) for p in patterns)
            )
        return lambda text: first(text) and any(p.search(text) for p in patterns)
    return _always


def _tolerate_unreadable_digits(recognizer: PatternRecognizer) -> None:
    """A match whose checksum its validator cannot compute counts as neither validated nor
    invalidated (the pattern's own score stands), instead of failing the whole check, whose
    fail mode would then refuse the request. The patterns run with the ``regex`` module, whose
    ``\\d`` knows digits newer than Python's Unicode tables: ``int()`` raises on them
    (Presidio's medical licence validator on "AB" and seven Garay digits)."""
    for name in ("validate_result", "invalidate_result"):
        judge = getattr(recognizer, name)

        def tolerant(pattern_text: str, judge: Callable[[str], bool | None] = judge, name: str = name) -> bool | None:
            try:
                return judge(pattern_text)
            except ValueError:
                log.warning("pii_validator_failed", recognizer=recognizer.name, check=name)  # never the text
                return None

        setattr(recognizer, name, tolerant)


class PiiAnalyzer:
    """One language's analyzer, built once at start-up, offline.

    ``entities`` None means ``DEFAULT_ENTITIES``. ``phone_regions`` are the regions whose
    national formats phonenumbers matches. ``analyze`` is the engine's view of a text;
    ``find`` is what a check uses (NFKC, spans in the original, no URL inside an e-mail).
    """

    def __init__(
        self,
        language: str = "en",
        entities: Sequence[str] | None = None,
        ner_model: str | None = None,
        score_threshold: float = 0.0,
        phone_regions: Sequence[str] = DEFAULT_PHONE_REGIONS,
    ) -> None:
        make_tldextract_offline()
        # Presidio warns about every recognizer of another language it skips: noise at start-up.
        logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)
        self.language = language
        self.score_threshold = score_threshold
        self.nlp_engine = spacy_nlp_engine(language, ner_model) if ner_model else blank_nlp_engine(language)
        wanted = list(DEFAULT_ENTITIES if entities is None else entities)
        registry = RecognizerRegistry(supported_languages=[language])
        registry.load_predefined_recognizers(languages=[language], nlp_engine=self.nlp_engine if ner_model else None)
        if not ner_model:  # the blank tokenizer has no NER: no NER recognizer either
            registry.recognizers = [r for r in registry.recognizers if r.name != "SpacyRecognizer"]
        # aimsguard's own phone, e-mail and card recognizers replace Presidio's (see _phone, _ids, _cards).
        registry.recognizers = [
            r for r in registry.recognizers if not isinstance(r, (PhoneRecognizer, EmailRecognizer, CreditCardRecognizer))
        ]
        registry.recognizers.extend([
            PaymentCardRecognizer(supported_language=language),
            RegionalPhoneRecognizer(supported_language=language, regions=phone_regions),
            MailAddressRecognizer(supported_language=language),
            PassportRecognizer(supported_language=language),
            *layout_recognizers(language),
        ])
        known = {e for r in registry.recognizers for e in r.supported_entities}
        registry.recognizers.extend(predefined_recognizers_for(language, [e for e in wanted if e not in known]))
        for recognizer in registry.recognizers:
            if isinstance(recognizer, PatternRecognizer):
                _tolerate_unreadable_digits(recognizer)
        supported = {e for r in registry.recognizers for e in r.supported_entities}
        unknown = sorted(set(wanted) - supported)
        if unknown:
            raise ValueError(f"no recognizer for {unknown} in language {language!r}" + (
                "; NRP, ORGANIZATION and DATE_TIME need an NER model (settings.ner_model)" if set(unknown) & NER_ENTITIES else ""
            ))
        self.engine = AnalyzerEngine(registry=registry, nlp_engine=self.nlp_engine, supported_languages=[language])
        self.entities = sorted(wanted)
        self._warm_up()
        # Each recognizer of the analyzer's entities: its trigger (asked once per text, whatever
        # entities it finds), whether it is then asked itself (it needs no NLP artefacts, and
        # its trigger is not already its own search, as a layout recognizer's is), and the
        # entities it finds.
        self._entity_set = frozenset(self.entities)
        screened = [
            (recognizer, entities)
            for recognizer in registry.recognizers
            for entities in [frozenset(recognizer.supported_entities) & frozenset(self.entities)]
            if entities
        ]
        self._screens = [
            (_trigger(r), r, isinstance(r, _WITHOUT_NLP) and not isinstance(r, LayoutRecognizer), entities) for r, entities in screened
        ]
        # An NER recognizer (or another that needs tokens) could find something anywhere.
        self._needs_nlp = any(not isinstance(r, _WITHOUT_NLP) and _trigger(r) is _always for r, _ in screened)

    def _warm_up(self) -> None:
        """Run every recognizer once: Presidio compiles patterns and spaCy sets up on first
        use (tens of milliseconds), which would otherwise land on the first user's request
        and could overrun its time budget."""
        sample = "Warm-up: a.b@example.com, +1 212-555-0123, 4111 1111 1111 1111, https://example.com, 192.0.2.1, 2020-01-01."
        self.engine.analyze(sample, language=self.language, entities=self.entities)

    def analyze(self, text: str, entities: Sequence[str] | None = None, allow_list: Sequence[str] | None = None) -> list[RecognizerResult]:
        """What Presidio's engine finds in ``text``, asked only about the entities some
        recognizer could find there. The engine always sees the whole text: the context
        words that raise a score can lie far from the entity."""
        wanted = self.entities if entities is None else entities
        fired = self._candidates(text, self._entity_set if entities is None else frozenset(entities))
        candidates = [entity for entity in wanted if entity in fired]
        if not candidates:
            return []
        return self.engine.analyze(
            text, language=self.language, entities=candidates, score_threshold=self.score_threshold,
            allow_list=list(allow_list) if allow_list else None,
        )

    def _candidates(self, text: str, asked: frozenset[str], first: bool = False) -> set[str]:
        """The asked entities some recognizer could find in ``text``: its pre-check passes, and
        a recognizer that needs no NLP artefacts (patterns, phones, passports, layout) finds
        something when asked itself. The engine only ever keeps, rescores or drops what its
        recognizers return, so an entity no recognizer returns is one the engine cannot find:
        a text with a number in it (most answers) then skips the engine, which costs ten times
        the recognizer. Where one finds something, the engine asks it again (a phone's costs
        ~20 µs twice; layout recognizers hand their results over). ``first``: stop at the first."""
        fired: set[str] = set()
        for trigger, recognizer, ask, found in self._screens:
            # Not asked when nothing it finds is wanted, or all of that is a candidate already.
            if not (found & asked) <= fired and trigger(text) and (not ask or recognizer.analyze(text, self.entities, None)):
                fired |= found
                if first:
                    break
        return fired

    def could_find(self, text: str) -> bool:
        """Whether ``find`` could find anything in ``text``; False is certain (see ``_candidates``).
        The engine is not asked, so no worker process is needed to clear a text."""
        if self._needs_nlp:
            return True
        return bool(self._candidates(nfkc(text).text, self._entity_set, first=True))

    def find(self, text: str, allow_list: Sequence[str] | None = None) -> list[RecognizerResult]:
        """What a check acts on: the findings in the NFKC form of ``text``, with spans in
        ``text`` itself, and no URL found inside an e-mail address. Overlaps between other
        findings remain (thresholds decide first; see ``without_overlaps``)."""
        normalized = nfkc(text)
        results = self.analyze(normalized.text, allow_list=allow_list)
        if "PERSON" in self.entities:
            results = more_of_the_same_people(normalized.text, results, self.score_threshold)
        results = without_companies(normalized.text, results)
        mails = [r for r in results if r.entity_type == "EMAIL_ADDRESS"]
        kept = []
        for result in results:
            if result.entity_type == "URL" and any(r.start < result.end and result.start < r.end for r in mails):
                continue  # "bob.sm" in bob.smith@corp.example is part of the address, never a URL
            if result.entity_type == "PERSON":
                # NER runs a name on into the next line of a signature block ("Jane Doe\nAcme",
                # "Jane Doe\nCable line installer"): a name ends at the line break.
                line_break = normalized.text.find("\n", result.start, result.end)
                if line_break > result.start:
                    result.end = len(normalized.text[:line_break].rstrip())
            result.start, result.end = normalized.span_in_original(result.start, result.end)
            kept.append(result)
        return kept


@functools.lru_cache(maxsize=16)
def shared_analyzer(
    language: str, entities: tuple[str, ...] | None, ner_model: str | None, score_threshold: float,
    phone_regions: tuple[str, ...] = DEFAULT_PHONE_REGIONS,
) -> PiiAnalyzer:
    """One analyzer per configuration and process: it holds no per-request state, and
    building one (Presidio's registry, spaCy) takes a good part of a second."""
    return PiiAnalyzer(language, entities, ner_model, score_threshold, phone_regions)
