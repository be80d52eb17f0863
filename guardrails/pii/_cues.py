"""Words a recognizer's every match must contain, looked for before its expressions run.

A layout recognizer's expressions are long case-insensitive alternations ("my name is|call
me|je m'appelle|..."), and the ``regex`` module spends microseconds failing them at every
position of a text that holds none of those words (most texts). Looking for a few fixed
substrings in the case-folded text first costs about a microsecond for all of them.

A cue list is sound when every match of the recognizer holds one of its cues once the text
is case-folded: ``str.casefold`` maps every character that the ``regex`` module's
case-insensitive matching relates to an ASCII letter ("ſ", the Kelvin sign) onto that
letter, but for one: "İ" folds to "i" and a combining dot, which ``folded`` drops. So a match
found case-insensitively holds a cue here too (tested, with the cue lists against the
recognizers on the shared test texts).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

__all__ = ["folded", "has_cue"]


@functools.lru_cache(maxsize=8)
def folded(text: str) -> str:
    """``text`` case-folded, once for all the recognizers that ask about the same text; "İ"
    reads "i", as the ``regex`` module matches it case-insensitively."""
    result = text.casefold()
    return result.replace("i\u0307", "i") if "\u0307" in result else result


def has_cue(text: str, cues: Iterable[str]) -> bool:
    """Whether the case-folded ``text`` holds any of ``cues`` (written case-folded)."""
    haystack = folded(text)
    for cue in cues:
        if cue in haystack:
            return True
    return False
