"""Phone numbers through python-phonenumbers' own matcher, found without a context word.

Presidio's PhoneRecognizer gives every match 0.4, under the usual 0.5 threshold unless a
word such as "phone" stands nearby; "call 415-555-0134" or a UK number in a signature then
passes. Here a number written the way people write phone numbers (an international prefix,
or grouped with spaces, dashes, dots or parentheses) scores above the threshold on its own;
a bare run of digits (an order or account number just as often) keeps Presidio's 0.4 and
needs a context word. A number phonenumbers only calls *possible* (right length, no known
range: "(99) 645-791", test ranges) counts when a phone word stands right before or after it. The matcher runs only on windows around runs of digits: scanning the
whole text once per region is by far the slowest step otherwise.
"""

from __future__ import annotations

import functools
import re

import regex
from collections.abc import Sequence
from typing import Any

import phonenumbers
from presidio_analyzer import AnalysisExplanation, EntityRecognizer, RecognizerResult
from presidio_analyzer.predefined_recognizers import PhoneRecognizer

from ._digits import digit_count, digit_runs

__all__ = ["DEFAULT_PHONE_REGIONS", "RegionalPhoneRecognizer", "digit_windows", "has_phone_digits", "phone_windows"]

# Regions whose national formats are matched; a number with its international prefix
# (+NN or 00NN) is found whatever the list, through any region.
DEFAULT_PHONE_REGIONS: tuple[str, ...] = ("US", "GB", "DE", "FR", "ES", "IT", "NL")
INTERNATIONAL_SCORE = 0.75
GROUPED_SCORE = 0.6
BARE_SCORE = PhoneRecognizer.SCORE  # 0.4: a context word lifts it over the threshold
POSSIBLE_SCORE = 0.55  # only next to a phone word (not "number": order numbers have those too)
_PHONE_WORDS = regex.compile(
    r"(?i)\b(?:phone|tel|tele|telephone|mobile|mob|cell|cellphone|fax|call|ring|text|whatsapp|desk|office|landline|"
    r"handy|telefon|rufnummer|téléphone|portable|teléfono|telefono|móvil|cellulare|telefoon|mobiel)\b"
)
_BEFORE, _AFTER = 30, 12

_DIGIT_RUN = re.compile(r"[+(]?\d[\d\s().\-/]*\d")
_DIGIT = re.compile(r"\d")
_GROUPING = re.compile(r"[\s().\-/]")
_MARGIN = 24  # characters of context kept on each side of a run of digits
_MIN_DIGITS = 3  # phonenumbers calls some 4-digit German numbers valid; 3 leaves a margin
# "ORD-2024-118842", "#415-555-0134": the digits continue an identifier, not a number.
_ID_PREFIX = re.compile(r"[A-Za-z0-9][-_/#.:]$|#$")
_ID_SUFFIX = re.compile(r"^[-_/.][0-9]")


# Letters end a phone number (an extension's digits, after "x"/"ext", count on their own).
_LETTERS = regex.compile(r"\p{L}+")
_INTERNATIONAL = re.compile(r"(?:\+|\b00)\s*\d")


@functools.lru_cache(maxsize=None)
def _shortest_number(region: str, *, local: bool) -> int:
    """The fewest digits a number of ``region`` can have (its national significant number):
    valid ones, or with ``local`` the lengths only dialled locally too (phonenumbers' metadata)."""
    general = phonenumbers.PhoneMetadata.metadata_for_region(region).general_desc
    lengths = [n for n in (*general.possible_length, *(general.possible_length_local_only if local else ())) if n > 0]
    return min(lengths, default=1)


def _longest_number_digits(window: str) -> int:
    """The most digits any number in ``window`` can hold: digits between two letters, whatever
    punctuation (dashes of every kind, dots, brackets) stands among them. An international
    prefix counts as no limit: such a number is found through any region."""
    if _INTERNATIONAL.search(window):
        return 99
    return max((sum(ch.isdigit() for ch in part) for part in _LETTERS.split(window)), default=0)


# What may stand between the digits of one number ("+1 (415) 555-0134", "06.12.34.56.78",
# "0049/30/1234"), with any whitespace.
_JOINERS = frozenset("().-/")


@functools.lru_cache(maxsize=8)
def digit_windows(text: str) -> tuple[tuple[int, int], ...]:
    """Spans around every run of two or more digits joined by whitespace, brackets, dots,
    dashes or slashes (with one "+" or "(" before it), ``_MARGIN`` wider on each side and
    merged where they meet: what ``[+(]?\\d[\\d\\s().\\-/]*\\d`` matches, read off the text's
    runs of digits (found once per text, see _digits) instead of by a search at every
    character. The trigger and the recognizer ask about the same text: found once."""
    windows: list[tuple[int, int]] = []

    def add(start: int, end: int) -> None:
        if start > 0 and text[start - 1] in "+(":
            start -= 1
        start, end = max(0, start - _MARGIN), min(len(text), end + _MARGIN)
        if windows and start <= windows[-1][1]:
            windows[-1] = (windows[-1][0], end)
        else:
            windows.append((start, end))

    number: list[int] = []  # the open number: [start, end, digits]
    for start, end in digit_runs(text):
        if number and all(ch in _JOINERS or ch.isspace() for ch in text[number[1] : start]):
            number[1], number[2] = end, number[2] + end - start
            continue
        if number and number[2] >= 2:
            add(number[0], number[1])
        number = [start, end, end - start]
    if number and number[2] >= 2:
        add(number[0], number[1])
    return tuple(windows)


@functools.lru_cache(maxsize=8)
def phone_windows(text: str) -> tuple[tuple[int, int, int], ...]:
    """The digit windows that hold enough digits for a number, each with its count of digits:
    found once per text for the trigger and the recognizer."""
    if digit_count(text) < _MIN_DIGITS:
        return ()  # no window can hold more digits than the whole text (counted once: _digits)
    counted = ((start, end, len(_DIGIT.findall(text, start, end))) for start, end in digit_windows(text))
    return tuple(window for window in counted if window[2] >= _MIN_DIGITS)


def has_phone_digits(text: str) -> bool:
    return bool(phone_windows(text))


def _score(raw: str) -> float:
    if raw.startswith(("+", "00")):
        return INTERNATIONAL_SCORE
    if _GROUPING.search(raw.strip()):
        return GROUPED_SCORE
    return BARE_SCORE


class RegionalPhoneRecognizer(PhoneRecognizer):
    """PhoneRecognizer with per-format scores, identifier guards and digit windows."""

    def __init__(self, supported_language: str = "en", regions: Sequence[str] = DEFAULT_PHONE_REGIONS, windowed: bool = True) -> None:
        super().__init__(supported_language=supported_language, supported_regions=tuple(regions), leniency=phonenumbers.Leniency.VALID)
        self.windowed = windowed
        self._fewest_valid_digits = min(_shortest_number(region, local=False) for region in self.supported_regions)

    def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[RecognizerResult]:
        if self.windowed:
            windows = phone_windows(text)
        else:
            windows = tuple(w for w in [(0, len(text), len(_DIGIT.findall(text)))] if w[2] >= _MIN_DIGITS)
        results: list[RecognizerResult] = []
        for start, end, digits in windows:  # too few digits for any number the regions call valid: no window
            results.extend(self._in_window(text, start, end, digits))
        return EntityRecognizer.remove_duplicates(results)

    def _in_window(self, text: str, start: int, end: int, digits_in_window: int) -> list[RecognizerResult]:
        window = text[start:end]
        found: dict[tuple[int, int], RecognizerResult] = {}
        near_phone_word = _PHONE_WORDS.search(text, max(0, start - _BEFORE), min(len(text), end + _AFTER)) is not None
        # A national number holds no more digits than its window; in ASCII text every digit is
        # a decimal one, so that count is a bound, and a window too short for any region's valid
        # numbers ("100 GB") needs a phone word for the "possible" tier, or nothing is looked for.
        if (not near_phone_word and digits_in_window < self._fewest_valid_digits and window.isascii()
                and not _INTERNATIONAL.search(window)):
            return []
        tiers = [(self.leniency, None)] + ([(phonenumbers.Leniency.POSSIBLE, POSSIBLE_SCORE)] if near_phone_word else [])
        digits = _longest_number_digits(window)
        for leniency, fixed_score in tiers:
            for region in self.supported_regions:
                if digits < _shortest_number(region, local=leniency is phonenumbers.Leniency.POSSIBLE):
                    continue  # no run of digits here is as long as any number of the region: "100 GB", "in 2024"
                for match in phonenumbers.PhoneNumberMatcher(window, region, leniency=leniency):
                    span = (start + match.start, start + match.end)
                    if span in found or _ID_PREFIX.search(text[max(0, span[0] - 2) : span[0]]) or _ID_SUFFIX.search(text[span[1] : span[1] + 2]):
                        continue
                    if fixed_score is not None and not self._phone_word_near(text, *span):
                        continue
                    found[span] = self._result(span, match, region, fixed_score or _score(match.raw_string))
        return list(found.values())

    @staticmethod
    def _phone_word_near(text: str, start: int, end: int) -> bool:
        return _PHONE_WORDS.search(text, max(0, start - _BEFORE), min(len(text), end + _AFTER)) is not None

    def _result(self, span: tuple[int, int], match: Any, region: str, score: float) -> RecognizerResult:
        return RecognizerResult(
            entity_type=self.supported_entities[0], start=span[0], end=span[1], score=score,
            analysis_explanation=AnalysisExplanation(
                recognizer=type(self).__name__, original_score=score,
                textual_explanation=f"phonenumbers match for region {phonenumbers.region_code_for_number(match.number) or region}",
            ),
            recognition_metadata={RecognizerResult.RECOGNIZER_NAME_KEY: self.name, RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id},
        )
