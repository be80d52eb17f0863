"""How many digits a regular expression's every match holds, and how many a text holds.

A pattern recognizer whose every match needs nine digits (an SSN, an ITIN) cannot match in a
text with eight: counting a text's digits once is cheaper than letting each such pattern
fail on its own (the ``regex`` module spends microseconds on each, at every position).
"""

from __future__ import annotations

import functools
import re
from re import _constants as sre  # type: ignore[attr-defined]
from re import _parser as sre_parse  # type: ignore[attr-defined]

__all__ = ["digit_count", "digit_runs", "min_digits"]

_DIGIT_RUN = re.compile(r"\d+")
_REPEATS = (sre.MAX_REPEAT, sre.MIN_REPEAT, sre.POSSESSIVE_REPEAT)


def min_digits(pattern: str) -> int:
    """The fewest digits any match of ``pattern`` holds; 0 when it cannot be read (a syntax of
    the ``regex`` module that ``re`` does not parse), which rules nothing out."""
    try:
        return _min_digits(sre_parse.parse(pattern))
    except Exception:
        return 0


def _min_digits(items: sre_parse.SubPattern | list) -> int:  # type: ignore[type-arg]
    total = 0
    for op, av in items:
        if op is sre.LITERAL:
            total += chr(av).isdigit()
        elif op is sre.IN:
            total += _only_digits(av)
        elif op in _REPEATS:
            low, _, sub = av
            total += low * _min_digits(sub)
        elif op is sre.SUBPATTERN:
            total += _min_digits(av[-1])
        elif op is sre.ATOMIC_GROUP:
            total += _min_digits(av)
        elif op is sre.BRANCH:
            total += min(_min_digits(branch) for branch in av[1])
        # Anything else (lookarounds, anchors, back-references, any character) holds no digit for sure.
    return total


def _only_digits(members: list) -> bool:  # type: ignore[type-arg]
    """Whether a character set matches digits only (``\\d``, ``[0-9]``, ``[2-7]``)."""
    if not members or members[0][0] is sre.NEGATE:
        return False
    for op, av in members:
        if op is sre.CATEGORY and av is sre.CATEGORY_DIGIT:
            continue
        if op is sre.RANGE and 0x30 <= av[0] <= av[1] <= 0x39:
            continue
        if op is sre.LITERAL and 0x30 <= av <= 0x39:
            continue
        return False
    return True


@functools.lru_cache(maxsize=8)
def digit_runs(text: str) -> tuple[tuple[int, int], ...]:
    """The spans of the runs of decimal digits in ``text`` (any script's: what ``\\d`` matches),
    found once for all the recognizers that ask about the same text."""
    return tuple(match.span() for match in _DIGIT_RUN.finditer(text))


@functools.lru_cache(maxsize=8)
def digit_count(text: str) -> int:
    """The decimal digits in ``text``."""
    return sum(end - start for start, end in digit_runs(text))
