"""Presidio's AnalyzerEngine, asked only about what a text can contain.

Same recognizers, same scores, same context boosting, same overlap resolution as a stock
AnalyzerEngine — the engine itself does the analysis. What changes is how much of it runs:

- an entity is analysed only when one of its recognizers could match: a pattern
  recognizer whose regular expressions find nothing in the text returns nothing, and
  characters every match needs (an "@", a digit) rule most texts out before any search;
- the phone recognizer (python-phonenumbers, scanning the whole text once per region, by
  far the slowest) looks only at windows around runs of digits.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import regex

from presidio_analyzer import AnalyzerEngine, EntityRecognizer, PatternRecognizer, RecognizerRegistry, RecognizerResult
from presidio_analyzer.predefined_recognizers import PhoneRecognizer

from ._offline import blank_nlp_engine, make_tldextract_offline, spacy_nlp_engine

__all__ = ["PRESIDIO_REGEX_FLAGS", "PiiAnalyzer", "WindowedPhoneRecognizer", "predefined_recognizers_for", "shared_analyzer"]

# The flags AnalyzerEngine.analyze hands pattern recognizers by default.
PRESIDIO_REGEX_FLAGS = regex.DOTALL | regex.MULTILINE | regex.IGNORECASE
_DIGIT_RUN = re.compile(r"[+(]?\d[\d\s().\-/]*\d")
_DOT_LETTER = re.compile(r"\.[a-z]", re.IGNORECASE)
_DIGIT = re.compile(r"\d")
_PHONE_MARGIN = 24  # characters of context kept on each side of a run of digits
_PHONE_MIN_DIGITS = 3  # phonenumbers calls some 4-digit German numbers valid; 3 leaves a margin


class WindowedPhoneRecognizer(PhoneRecognizer):
    """PhoneRecognizer run on windows around runs of digits instead of the whole text."""

    def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[RecognizerResult]:
        results: list[RecognizerResult] = []
        for start, end in _digit_windows(text):
            if len(_DIGIT.findall(text, start, end)) < _PHONE_MIN_DIGITS:
                continue  # too few digits for any number the supported regions call valid
            for result in super().analyze(text[start:end], entities, None):
                result.start += start
                result.end += start
                results.append(result)
        return EntityRecognizer.remove_duplicates(results)


def _digit_windows(text: str) -> list[tuple[int, int]]:
    windows: list[tuple[int, int]] = []
    for match in _DIGIT_RUN.finditer(text):
        start, end = max(0, match.start() - _PHONE_MARGIN), min(len(text), match.end() + _PHONE_MARGIN)
        if windows and start <= windows[-1][1]:
            windows[-1] = (windows[-1][0], end)
        else:
            windows.append((start, end))
    return windows


def predefined_recognizers_for(language: str, entities: Iterable[str]) -> list[EntityRecognizer]:
    """Presidio's predefined recognizers (including those its default registry leaves off)
    for the given entities, instantiated with their defaults."""
    from presidio_analyzer import predefined_recognizers as module

    wanted = set(entities)
    found: list[EntityRecognizer] = []
    for name in module.__all__:
        cls = getattr(module, name)
        if not (isinstance(cls, type) and issubclass(cls, EntityRecognizer)) or cls is PhoneRecognizer:
            continue
        try:
            recognizer = cls(supported_language=language)
        except Exception:  # needs arguments, models or a service: not a plain predefined recognizer
            continue
        if wanted & set(recognizer.supported_entities):
            found.append(recognizer)
    return found


Trigger = Callable[[str], bool]
"""Whether a recognizer could find anything in a text, decided cheaply."""


def _always(_: str) -> bool:
    return True  # NER and custom recognizers: cannot tell, always run


def _has_phone_digits(text: str) -> bool:
    return any(len(_DIGIT.findall(text, start, end)) >= _PHONE_MIN_DIGITS for start, end in _digit_windows(text))


def _has_digit(text: str) -> bool:
    return _DIGIT.search(text) is not None


# Characters every match of these entities' predefined patterns must contain: testing
# for them first spares the (slow to fail) regular expressions most everyday text.
# The shared Presidio test cases check that findings stay identical to the stock engine.
_NECESSARY: dict[str, Callable[[str], bool]] = {
    "EMAIL_ADDRESS": lambda text: "@" in text,
    "CREDIT_CARD": _has_digit,
    "CRYPTO": _has_digit,
    "IBAN_CODE": _has_digit,
    "US_SSN": _has_digit,
    "US_ITIN": _has_digit,
    "US_BANK_NUMBER": _has_digit,
    "UK_NHS": _has_digit,
    "IP_ADDRESS": lambda text: ":" in text or _has_digit(text),
    "MAC_ADDRESS": lambda text: ":" in text or "-" in text or "." in text,
    "UUID": lambda text: "-" in text,
    "DATE_TIME": _has_digit,
    "US_DRIVER_LICENSE": _has_digit,
    "US_PASSPORT": _has_digit,
    "MEDICAL_LICENSE": _has_digit,
    # Every URL pattern needs a dot followed by a top-level domain; a sentence's full stop is
    # followed by a space. The URL expressions are the slowest to fail, so this one pays.
    "URL": lambda text: _DOT_LETTER.search(text) is not None,
}


def _trigger(recognizer: EntityRecognizer) -> Trigger:
    if isinstance(recognizer, WindowedPhoneRecognizer):
        return _has_phone_digits
    if isinstance(recognizer, PatternRecognizer) and recognizer.patterns and not recognizer.deny_list:
        # The `regex` module, as Presidio's PatternRecognizer uses: same syntax, same matches.
        patterns = tuple(regex.compile(p.regex, flags=PRESIDIO_REGEX_FLAGS) for p in recognizer.patterns)
        necessary = [_NECESSARY[e] for e in recognizer.supported_entities if e in _NECESSARY]
        first = necessary[0] if len(necessary) == len(recognizer.supported_entities) == 1 else _always
        return lambda text: first(text) and any(p.search(text) for p in patterns)
    return _always


class PiiAnalyzer:
    """One language's analyzer, built once at start-up, offline."""

    def __init__(
        self,
        language: str = "en",
        entities: Sequence[str] | None = None,
        ner_model: str | None = None,
        score_threshold: float = 0.0,
    ) -> None:
        make_tldextract_offline()
        # Presidio warns about every recognizer of another language it skips: noise at start-up.
        logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)
        self.language = language
        self.score_threshold = score_threshold
        self.nlp_engine = spacy_nlp_engine(language, ner_model) if ner_model else blank_nlp_engine(language)
        registry = RecognizerRegistry(supported_languages=[language])
        registry.load_predefined_recognizers(languages=[language], nlp_engine=self.nlp_engine if ner_model else None)
        if not ner_model:  # the blank tokenizer has no NER: no NER recognizer either
            registry.recognizers = [r for r in registry.recognizers if r.name != "SpacyRecognizer"]
        known = {e for r in registry.recognizers for e in r.supported_entities}
        if entities is not None:
            missing = [e for e in entities if e not in known]
            registry.recognizers.extend(predefined_recognizers_for(language, missing))
        registry.recognizers = [
            WindowedPhoneRecognizer(supported_language=language) if type(r) is PhoneRecognizer else r for r in registry.recognizers
        ]
        self.engine = AnalyzerEngine(registry=registry, nlp_engine=self.nlp_engine, supported_languages=[language])
        supported = {e for r in registry.recognizers for e in r.supported_entities}
        if entities is not None:
            unknown = sorted(set(entities) - supported)
            if unknown:
                raise ValueError(f"no recognizer for {unknown} in language {language!r}" + (
                    "; PERSON, LOCATION, NRP and ORGANIZATION need an NER model (settings.ner_model)" if set(unknown) & _NER_ENTITIES else ""
                ))
        self.entities = sorted(supported if entities is None else set(entities))
        self._warm_up()
        self._triggers: dict[str, list[Trigger]] = {}
        for recognizer in registry.recognizers:
            for entity in recognizer.supported_entities:
                if entity in self.entities:
                    self._triggers.setdefault(entity, []).append(_trigger(recognizer))

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
        candidates = [
            entity
            for entity in (self.entities if entities is None else entities)
            if any(could_match(text) for could_match in self._triggers.get(entity, ()))
        ]
        if not candidates:
            return []
        return self.engine.analyze(
            text, language=self.language, entities=candidates, score_threshold=self.score_threshold,
            allow_list=list(allow_list) if allow_list else None,
        )


_NER_ENTITIES = {"PERSON", "LOCATION", "NRP", "ORGANIZATION", "GPE"}


@functools.lru_cache(maxsize=16)
def shared_analyzer(language: str, entities: tuple[str, ...] | None, ner_model: str | None, score_threshold: float) -> PiiAnalyzer:
    """One analyzer per configuration and process: it holds no per-request state, and
    building one (Presidio's registry, spaCy) takes a good part of a second."""
    return PiiAnalyzer(language, entities, ner_model, score_threshold)
