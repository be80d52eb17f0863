"""NFKC before matching, with every character of the result traced back to the original.

Full-width letters, ligatures and compatibility forms (``ｊａｎｅ＠ｅｘａｍｐｌｅ．ｏｒｇ``,
``①``) would slip past patterns written for ASCII. The recognizers see the NFKC form; the
spans they report are mapped back so the redaction covers the original characters.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

__all__ = ["Normalized", "nfkc"]


@dataclass(frozen=True, slots=True)
class Normalized:
    text: str
    # For each character of ``text``: the original span it came from (None: the same text).
    origin: tuple[tuple[int, int], ...] | None = None

    def span_in_original(self, start: int, end: int) -> tuple[int, int]:
        if self.origin is None or start >= end:
            return start, end
        return self.origin[start][0], self.origin[end - 1][1]


def nfkc(text: str) -> Normalized:
    """The NFKC form of ``text`` and where each of its characters came from."""
    if text.isascii() or unicodedata.is_normalized("NFKC", text):
        return Normalized(text)
    # Normalise one cluster at a time (a starter and the combining marks after it), so each
    # output character belongs to exactly one stretch of the input. For the rare scripts
    # where a starter composes with the one before it (Hangul jamo), the per-cluster form
    # is still a normalised text, only not byte-identical to the whole-text NFKC.
    pieces: list[str] = []
    origin: list[tuple[int, int]] = []
    start = 0
    for index in range(1, len(text) + 1):
        if index < len(text) and unicodedata.combining(text[index]):
            continue
        piece = unicodedata.normalize("NFKC", text[start:index])
        pieces.append(piece)
        origin.extend([(start, index)] * len(piece))
        start = index
    return Normalized("".join(pieces), tuple(origin))
