"""Presidio recognizers tuned where the stock ones miss what a user would call personal data.

- ``MailAddressRecognizer``: Presidio's e-mail pattern, but an address on a domain that is
  not a public suffix (``bob.smith@corp.example``, ``jane@intranet.local``) is still an
  address. Stock Presidio drops it, and its URL recognizer then finds ``bob.sm`` inside.
- ``PassportRecognizer``: a passport number next to the word for passport. Presidio's
  per-country patterns score 0.05–0.1, under any sensible threshold even with context;
  passport numbers have no checksum, so the keyword is what makes them one.
"""

from __future__ import annotations

from typing import Any

import regex
import tldextract
from presidio_analyzer import AnalysisExplanation, LocalRecognizer, Pattern, RecognizerResult
from presidio_analyzer.predefined_recognizers import EmailRecognizer

__all__ = ["MailAddressRecognizer", "PassportRecognizer"]


class MailAddressRecognizer(EmailRecognizer):
    """E-mail addresses: 1.0 on a public suffix, 0.75 on any other domain."""

    UNLISTED_DOMAIN_SCORE = 0.75

    def __init__(self, supported_language: str = "en") -> None:
        super().__init__(
            patterns=[Pattern("Email (any domain)", EmailRecognizer.PATTERNS[0].regex, self.UNLISTED_DOMAIN_SCORE)],
            supported_language=supported_language,
        )

    def validate_result(self, pattern_text: str) -> bool | None:
        # True raises the score to 1.0; None keeps the pattern's score (False would drop it).
        return True if tldextract.extract(pattern_text).fqdn else None


_KEYWORDS = (
    r"passport|passport no\.?|passport number|passport #|passport#|travel document|reisepass|pass-?nr\.?|passnummer|"
    r"passeport|n° de passeport|numéro de passeport|pasaporte|n[úu]mero de pasaporte|passaporto|numero di passaporto|"
    r"paspoort|paspoortnummer"
)


class PassportRecognizer(LocalRecognizer):
    """A 6–9 character document number within a few words after a passport keyword."""

    SCORE = 0.85
    _PATTERN = regex.compile(
        rf"(?i)\b(?:{_KEYWORDS})\b(?:[ \t]*(?:is|was|ist|est|es|è|is|no\.?|nr\.?|number|nummer|numéro|número|numero|n°|#|:|=|-)){{0,3}}"
        rf"[ \t]*[:#]?[ \t]*(?-i:\b([A-Z0-9](?=[A-Z0-9]{{5,8}}\b)(?=[A-Z]*[0-9])[A-Z0-9]{{5,8}})\b)"
    )

    def __init__(self, supported_language: str = "en") -> None:
        super().__init__(supported_entities=["PASSPORT"], supported_language=supported_language, name=type(self).__name__)

    def load(self) -> None:
        pass

    def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[RecognizerResult]:
        return [
            RecognizerResult(
                entity_type="PASSPORT", start=match.start(1), end=match.end(1), score=self.SCORE,
                analysis_explanation=AnalysisExplanation(recognizer=type(self).__name__, original_score=self.SCORE,
                                                         textual_explanation="document number after a passport keyword"),
                recognition_metadata={RecognizerResult.RECOGNIZER_NAME_KEY: self.name, RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id},
            )
            for match in self._PATTERN.finditer(text)
        ]
