"""How many digits a regular expression's every match holds, and how many a text holds.

A pattern recognizer whose every match needs nine digits (an SSN, an ITIN) cannot match in a
text with eight: counting a text's digits once is cheaper than letting each such pattern
fail on its own (the ``regex`` module spends microseconds on each, at every position).
Runs ask the same of digits in a row: every match of a bank account number holds eight
(``\\b[0-9]{8,17}\\b``), so an answer quoting prices ("20 EUR ... 35 EUR") rules it out,
however many digits it holds in all.
"""

from __future__ import annotations

import functools
from re import _constants as sre  # type: ignore[attr-defined]
from re import _parser as sre_parse  # type: ignore[attr-defined]
from typing import Any, NamedTuple

import regex

__all__ = ["digit_count", "digit_runs", "longest_digit_run", "min_digit_run", "min_digits"]

# The regex module, as the patterns run: its Unicode tables are newer than re's, and a digit
# re does not know (Garay, U+10D40-49) must count, or a pattern matching it would be skipped.
_DIGIT_RUN = regex.compile(r"\d+")
_REPEATS = (sre.MAX_REPEAT, sre.MIN_REPEAT, sre.POSSESSIVE_REPEAT)


def min_digits(pattern: str) -> int:
    """The fewest digits any match of ``pattern`` holds; 0 when it cannot be read (a syntax of
    the ``regex`` module that ``re`` does not parse), which rules nothing out."""
    return _needs(pattern).digits


def min_digit_run(pattern: str) -> int:
    """The longest run of digits in a row that every match of ``pattern`` holds (a lower
    bound: what it cannot read breaks a run); 0 when the pattern cannot be read."""
    return _needs(pattern).longest


class _Needs(NamedTuple):
    """What every match of a pattern (or of a part of one) holds, read from its parse."""

    digits: int  # digits in all
    longest: int  # digits in a row, somewhere
    digits_only: bool  # every character a match consumes is a digit
    length: int  # the fewest characters a match consumes, when digits_only


_UNREAD = _Needs(0, 0, False, 0)  # any character, a back-reference, ...: holds no digit for sure
_ZERO_WIDTH = (sre.AT, sre.ASSERT, sre.ASSERT_NOT)


def _needs(pattern: str) -> _Needs:
    try:
        return _sequence(sre_parse.parse(pattern))
    except Exception:
        return _UNREAD


def _sequence(items: sre_parse.SubPattern | list) -> _Needs:  # type: ignore[type-arg]
    """``_Needs`` of a sequence: digits add up; runs of digits-only items add up (what consumes
    nothing, an anchor or a lookaround, leaves a run whole), any other item ends the run, and
    may hold a longer one inside."""
    digits = longest = current = length = 0
    digits_only = True
    for op, av in items:
        if op in _ZERO_WIDTH:
            continue
        item = _item(op, av)
        digits += item.digits
        if item.digits_only:
            current += item.length
            length += item.length
        else:
            digits_only = False
            current = 0
        longest = max(longest, current, item.longest)
    return _Needs(digits, longest, digits_only, length)


def _item(op: object, av: Any) -> _Needs:
    if op is sre.LITERAL or op is sre.IN:
        # A literal by Python's tables, older than the regex module's: a digit only the latter
        # knows reads as not one here, which still gives lower bounds ("²" is not one to \d).
        digit = chr(av).isdecimal() if op is sre.LITERAL else _only_digits(av)
        return _Needs(int(digit), int(digit), digit, int(digit))
    if op in _REPEATS:
        low, _, sub = av
        inner = _sequence(sub)
        if inner.digits_only:
            return _Needs(low * inner.digits, low * inner.length, True, low * inner.length)
        return _Needs(low * inner.digits, inner.longest if low else 0, False, 0)
    if op is sre.SUBPATTERN:
        return _sequence(av[-1])
    if op is sre.ATOMIC_GROUP:
        return _sequence(av)
    if op is sre.BRANCH:
        branches = [_sequence(branch) for branch in av[1]]
        digits = min(branch.digits for branch in branches)
        if all(branch.digits_only for branch in branches):
            shortest = min(branch.length for branch in branches)
            return _Needs(digits, shortest, True, shortest)
        return _Needs(digits, min(branch.longest for branch in branches), False, 0)
    return _UNREAD


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
    """The spans of the runs of decimal digits in ``text``: what ``\\d`` matches in the ``regex``
    module, any script's, found once for all the recognizers that ask about the same text."""
    return tuple(match.span() for match in _DIGIT_RUN.finditer(text))


@functools.lru_cache(maxsize=8)
def longest_digit_run(text: str) -> int:
    """The most decimal digits in a row in ``text``."""
    return max((end - start for start, end in digit_runs(text)), default=0)


@functools.lru_cache(maxsize=8)
def digit_count(text: str) -> int:
    """The decimal digits in ``text``."""
    return sum(end - start for start, end in digit_runs(text))
