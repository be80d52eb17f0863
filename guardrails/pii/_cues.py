"""Words a recognizer's every match must contain, looked for before its expressions run.

A layout recognizer's expressions are long case-insensitive alternations ("my name is|call
me|je m'appelle|..."), and the ``regex`` module spends microseconds failing them at every
position of a text that holds none of those words (most texts). Looking for a few fixed
substrings in the case-folded text first is far cheaper. Every cue list is registered
(``Cues``), and one pass of an Aho-Corasick automaton (pyahocorasick) finds every registered
cue in a text at once, for all the recognizers that ask about it: ~5 µs for a 300-character
text and its 114 cues, where a search per cue took ~40.

A cue list is sound when every match of the recognizer holds one of its cues once the text
is case-folded: ``str.casefold`` maps every character that the ``regex`` module's
case-insensitive matching relates to an ASCII letter ("ſ", the Kelvin sign) onto that
letter, but for one: "İ" folds to "i" and a combining dot, which ``folded`` drops. So a match
found case-insensitively holds a cue here too (tested, with the cue lists against the
recognizers on the shared test texts).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterable

import ahocorasick

__all__ = ["Cues", "cues_in", "folded", "has_cue"]

_known: set[str] = set()
_automaton: ahocorasick.Automaton | None = None
_lock = threading.Lock()


class Cues(frozenset[str]):
    """A recognizer's cue list (written case-folded), registered for the one-pass search."""

    def __new__(cls, cues: Iterable[str]) -> Cues:
        self = super().__new__(cls, cues)
        if not self <= _known:
            _register(self)
        return self


def _register(cues: frozenset[str]) -> None:
    global _automaton
    if any(not cue for cue in cues):
        raise ValueError("an empty cue would be in every text")
    with _lock:
        _known.update(cues)
        _automaton = None  # built again, with the new cues, when next asked
        cues_in.cache_clear()


def _built() -> ahocorasick.Automaton:
    global _automaton
    with _lock:
        if _automaton is None:
            automaton = ahocorasick.Automaton()
            for cue in _known:
                automaton.add_word(cue, cue)
            automaton.make_automaton()
            _automaton = automaton
        return _automaton


@functools.lru_cache(maxsize=8)
def folded(text: str) -> str:
    """``text`` case-folded, once for all the recognizers that ask about the same text; "İ"
    reads "i", as the ``regex`` module matches it case-insensitively."""
    result = text.casefold()
    return result.replace("i\u0307", "i") if "\u0307" in result else result


@functools.lru_cache(maxsize=8)
def cues_in(text: str) -> frozenset[str]:
    """Every registered cue that the case-folded ``text`` holds, found in one pass."""
    automaton = _built()
    if not len(automaton):
        return frozenset()
    return frozenset(cue for _, cue in automaton.iter(folded(text)))


def has_cue(text: str, cues: Iterable[str]) -> bool:
    """Whether the case-folded ``text`` holds any of ``cues`` (written case-folded)."""
    wanted = cues if isinstance(cues, Cues) else Cues(cues)  # registered before the text is read
    return not cues_in(text).isdisjoint(wanted)
