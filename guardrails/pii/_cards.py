"""Payment card numbers: every card network's length, and a mistyped card next to its word.

Presidio's CreditCardRecognizer matches 13–17 digits starting with 1, 3, 4, 5 or 6 and keeps
them only when the Luhn checksum holds. On public data (bench/bench_pii.py) the cards it
missed all had a valid checksum: 19-digit Visa, Mastercard's 2221–2720 range, JCB's 15-digit
2131/1800 and 12-digit Maestro numbers lie outside its pattern. ``PaymentCardRecognizer``
replaces it:

- 13–19 digits with a valid checksum and a card network's prefix (Presidio's 1, 3, 4, 5, 6,
  plus Mastercard 2221–2720, Mir 2200–2204, JCB 2131/1800): a card, 1.0, no context needed;
- 12 digits (Maestro, prefix 5 or 6) with a valid checksum: a card only next to a card word;
- a card-shaped number whose checksum fails (a network prefix, 13–19 digits, grouped as cards
  are printed or not at all) is a card too when a card word stands next to it: a card with one
  digit mistyped still carries fifteen of the holder's digits, and a user who writes "my card
  4012 8888 8888 1882" has told us what it is. Without the word, a failed checksum is an order
  or tracking number as often as a card, and is left alone. Presidio's own test labels say the
  opposite for such a number after "my credit card number is"; aimsguard redacts it.
"""

from __future__ import annotations

from typing import Any

import regex
from presidio_analyzer import AnalysisExplanation, LocalRecognizer, RecognizerResult

__all__ = ["PaymentCardRecognizer", "luhn_valid"]

VALID_SCORE = 1.0
CONTEXT_SCORE = 0.6  # a mistyped card or a 12-digit Maestro, next to a card word

# Digits with at most one space or dash between groups; not inside a longer run of digits
# or an identifier ("ORD-4111111111111111").
_CANDIDATE = regex.compile(r"(?<![\w\-./])\d(?:[ \-]?\d){11,18}(?![\w]|[\-.]\d)")
_CARD_WORDS = regex.compile(
    r"(?i)\b(?:(?:credit|debit|payment|bank|prepaid|gift)?[ \-]?cards?|card(?:holder|[ \-]?no|[ \-]?number)|cc|ccn|pan|"
    r"visa|master[ \-]?card|amex|american express|discover|jcb|diners(?: club)?|maestro|union[ \-]?pay|mir|"
    r"kreditkarte|karte|kartennummer|carte(?: bancaire| de crédit| bleue)?|cb|tarjeta|carta(?: di credito)?|"
    r"creditcard|kaart|pinpas)\b"
)
_BEFORE, _AFTER = 40, 20


def luhn_valid(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _network_prefix(digits: str) -> bool:
    """A card network's issuer prefix for a number of this length (ISO/IEC 7812 ranges)."""
    first, length = digits[0], len(digits)
    if first in "3456":
        return True
    if first == "1":
        return length >= 14  # UATP, JCB 1800 (Presidio's pattern: any 1xxx but 13 digits)
    if first == "2":
        four = int(digits[:4])
        return 2221 <= four <= 2720 or 2200 <= four <= 2204 or four == 2131
    return False


def _grouped_like_a_card(raw: str) -> bool:
    """Ungrouped, or in groups as cards are printed (4-4-4-4, 4-6-5, 4-4-4-4-3...): the first
    group four digits, the others three to six, one kind of separator."""
    groups = regex.split(r"[ \-]", raw)
    if len(groups) == 1:
        return True
    if (" " in raw) == ("-" in raw) or len(groups[0]) != 4:
        return False
    return all(3 <= len(group) <= 6 for group in groups[1:-1]) and 1 <= len(groups[-1]) <= 6


class PaymentCardRecognizer(LocalRecognizer):
    """CREDIT_CARD: checksum and network prefix, or a card word beside a card-shaped number."""

    def __init__(self, supported_language: str = "en") -> None:
        super().__init__(supported_entities=["CREDIT_CARD"], supported_language=supported_language, name=type(self).__name__)

    def load(self) -> None:
        pass

    def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[RecognizerResult]:
        results = []
        for match in _CANDIDATE.finditer(text):
            raw = match.group(0)
            digits = raw.replace(" ", "").replace("-", "")
            if not _network_prefix(digits) or not _grouped_like_a_card(raw):
                continue
            valid = luhn_valid(digits)
            if valid and len(digits) >= 13:
                score, why = VALID_SCORE, "card number: network prefix and checksum"
            elif self._card_word_near(text, match.start(), match.end()) and (valid or len(digits) >= 13):
                score, why = CONTEXT_SCORE, "card number next to a card word" + ("" if valid else " (checksum fails: mistyped)")
            else:
                continue
            results.append(self._result(match.start(), match.end(), score, why))
        return results

    @staticmethod
    def _card_word_near(text: str, start: int, end: int) -> bool:
        before = text[max(0, start - _BEFORE) : start]
        after = text[end : end + _AFTER]
        return _CARD_WORDS.search(before) is not None or _CARD_WORDS.search(after) is not None

    def _result(self, start: int, end: int, score: float, why: str) -> RecognizerResult:
        return RecognizerResult(
            entity_type="CREDIT_CARD", start=start, end=end, score=score,
            analysis_explanation=AnalysisExplanation(recognizer=type(self).__name__, original_score=score, textual_explanation=why),
            recognition_metadata={RecognizerResult.RECOGNIZER_NAME_KEY: self.name, RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id},
        )
