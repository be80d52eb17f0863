"""Names the recognizers found, found again: the same person elsewhere in the text, and the
other names in a list with them.

- A name found once is the same person where it appears again, whole or in part: "Nikolaj
  Petrussen ... Nikolaj", "directed by Maciej Borkowski and starring Borkowski".
- In a list of capitalised names ("Hleb, Sheila, Donna and Shane", "Marrero and Murphy"),
  when most of the items (one of two) were found as names, the others are names too.

Both only add PERSON findings next to those the analyzer made; the thresholds and the overlap
rules then treat them as any other.
"""

from __future__ import annotations

from typing import Any

import regex
from presidio_analyzer import AnalysisExplanation, RecognizerResult

from ._names import _NOT_NAMES as _PHRASE_WORDS

__all__ = ["more_of_the_same_people"]

SCORE = 0.6
_NAME_WORD = regex.compile(r"\p{Lu}[\p{Ll}'’\-]*\p{Ll}[\p{Ll}'’\-]*")  # "Nikolaj", "O'Brien"; not "USA" or "I"
_ITEM = r"\p{Lu}[\p{L}'’\-]*\p{L}(?:[ \t]+(?:\p{Lu}[\p{L}'’\-]*\p{L}|\p{Lu}\.?(?!\p{L}))){0,2}"
_LIST = regex.compile(
    rf"(?<![\p{{L}}\d])({_ITEM})((?:[ \t]*,[ \t]*{_ITEM})*),?[ \t]+(?:and|&|und|et|y|e|en|och|og)[ \t]+({_ITEM})(?![\p{{L}}\d])"
)
_ITEM_IN_LIST = regex.compile(_ITEM)
_WORD_START = regex.compile(r"(?<![\p{L}\d])\p{Lu}")
_LETTER_OR_DIGIT = regex.compile(r"[\p{L}\d]")
_NOT_NAMES = _PHRASE_WORDS | frozenset(
    """the this that these those and but for with from into about after before monday tuesday wednesday thursday friday
    saturday sunday january february march april june july august september october november december mr mrs ms
    dr miss sir madam dear hello thanks regards best sons brothers partners associates company co corp holdings
    systems technologies solutions consulting""".split()
)


def _result(start: int, end: int, why: str) -> RecognizerResult:
    return RecognizerResult(
        entity_type="PERSON", start=start, end=end, score=SCORE,
        analysis_explanation=AnalysisExplanation(recognizer="NameRepeats", original_score=SCORE, textual_explanation=why),
        recognition_metadata={RecognizerResult.RECOGNIZER_NAME_KEY: "NameRepeats", RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: "NameRepeats"},
    )


def _covered(start: int, end: int, results: list[Any]) -> bool:
    return any(r.start <= start and end <= r.end for r in results)


def _overlaps(start: int, end: int, results: list[Any]) -> bool:
    return any(r.start < end and start < r.end for r in results)


def more_of_the_same_people(text: str, results: list[Any], threshold: float) -> list[Any]:
    """``results`` and the PERSON findings they imply (see the module's docstring)."""
    people = [r for r in results if r.entity_type == "PERSON" and r.score >= threshold]
    if not people:
        return results
    added: list[Any] = []
    others = [r for r in results if r.entity_type != "PERSON"]
    # The same name again, or one of its words on its own.
    words = {
        w.group(0) for r in people for w in _NAME_WORD.finditer(text, r.start, r.end)
        if len(w.group(0)) >= 3 and w.group(0).lower() not in _NOT_NAMES
    }
    if words:
        # Each word starts with a capital: try them, longest first, where a capitalised word
        # starts (compiling an alternation of this text's names cost more than the search).
        ordered = sorted(words, key=len, reverse=True)
        last_end = 0
        for candidate in _WORD_START.finditer(text):
            start = candidate.start()
            if start < last_end:
                continue
            for word in ordered:
                end = start + len(word)
                if text.startswith(word, start) and not _LETTER_OR_DIGIT.match(text, end):
                    last_end = end
                    if not _covered(start, end, people + added) and not _overlaps(start, end, others):
                        added.append(_result(start, end, "a name found elsewhere in the text"))
                    break
    # The other items of a list of names.
    found = people + added
    for match in _LIST.finditer(text):
        items = [(m.start(), m.end()) for m in _ITEM_IN_LIST.finditer(text, match.start(), match.end())]
        named = [item for item in items if _overlaps(*item, found)]
        if not (len(items) == 2 and len(named) == 1 or len(named) >= 2 and 2 * len(named) > len(items)):
            continue  # "Anna and Bob": one of two; longer lists: most of them
        for start, end in items:
            if (start, end) in named or _overlaps(start, end, others) or text[start:end].lower() in _NOT_NAMES:
                continue
            added.append(_result(start, end, "in a list of names"))
    return results + added
