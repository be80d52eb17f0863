"""What an injection looks like once the disguises are off.

Attackers hide instructions from pattern checks with look-alike letters (Cyrillic "о" for
Latin "o"), zero-width and bidirectional control characters, full-width or styled letters,
leetspeak ("1gn0re"), spaced letters ("i g n o r e"), and encodings (base64, hex). ``views`` returns the text in every
form worth checking: normalised, de-leeted, and each decoded fragment.
"""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata

__all__ = ["normalize", "normalize_lines", "views"]

# Zero-width characters, joiners, word joiners, BOM, soft hyphen, and bidi controls.
_INVISIBLE = re.compile("[\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")
# Cyrillic and Greek letters that look like Latin ones (the ones that matter in practice).
_HOMOGLYPHS = str.maketrans({
    "а": "a", "в": "b", "е": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p", "с": "c", "т": "t", "у": "y",
    "х": "x", "і": "i", "ј": "j", "ѕ": "s", "ԁ": "d", "ɡ": "g", "ӏ": "l", "ԛ": "q", "ԝ": "w",
    "α": "a", "ε": "e", "ι": "i", "κ": "k", "ν": "v", "ο": "o", "ρ": "p", "τ": "t", "υ": "u", "χ": "x", "ѵ": "v",
})
# str.translate looks every character up in a dict (slow); most texts hold no look-alike at all.
_HAS_HOMOGLYPH = re.compile("[" + "".join(chr(code) for code in _HOMOGLYPHS) + "]")
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s", "!": "i", "|": "l"})
_LEET_WORD = re.compile(r"\b(?=[a-z0-9@$!|]*[a-z])(?=[a-z0-9@$!|]*[0-9@$!|])[a-z0-9@$!|]{3,}\b")
# The quick questions below begin with a character class or a literal, so the regular-expression
# engine skips ahead to where they can start instead of trying every position.
# Is there any leet word at all? (a letter next to a digit or symbol)
_LETTER_NEXT_TO_LEET = re.compile(r"[0-9@$!|](?:(?<=[a-z].)|(?=[a-z]))")
_SPACED_LETTERS = re.compile(r"\b(?:\w ){3,}\w\b")  # "i g n o r e"
_ANY_SPACED_LETTERS = re.compile(r" (?<=\b\w )(?:\w ){2,}\w\b")  # the same, asked from its first space
# A run of 16 or more, from its start (a match inside a run is never longer than one from its start).
_BASE64 = re.compile(r"(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{16,}={0,2}")
# Twelve or more hex pairs from a word boundary (written from the first digit: "\b" then a hex digit).
_HEX = re.compile(r"[0-9a-fA-F](?<!\w.)[0-9a-fA-F][\s:]?(?:[0-9a-fA-F]{2}[\s:]?){11,}\b")


def normalize(text: str) -> str:
    """NFKC, invisible characters removed, look-alikes mapped to Latin, lower case, one space."""
    if text.isascii():
        # Most prompts: ASCII is NFKC already and holds no invisible or look-alike characters.
        return " ".join(text.lower().split())
    text = unicodedata.normalize("NFKC", text)
    text = _INVISIBLE.sub("", text)
    text = text.lower()
    if _HAS_HOMOGLYPH.search(text):
        text = text.translate(_HOMOGLYPHS)
    # Accents stay (they matter in French or German), but combining marks alone go.
    return " ".join(text.split())


def normalize_lines(text: str) -> str:
    """``normalize`` line by line, blank lines dropped: a document keeps its lines, where an
    instruction slipped into an e-mail, a table or code stands out (``_learned.DocumentScorer``)."""
    return "\n".join(line for line in map(normalize, text.splitlines()) if line)


def _printable(raw: bytes) -> str | None:
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    letters = sum(c.isalpha() or c.isspace() for c in decoded)
    return decoded if decoded and letters / len(decoded) > 0.8 else None


def _decoded_fragments(text: str) -> list[str]:
    fragments = []
    for match in _BASE64.finditer(text):
        chunk = match.group(0)
        try:
            raw = base64.b64decode(chunk + "=" * (-len(chunk) % 4), validate=True)
        except (binascii.Error, ValueError):
            continue
        if (decoded := _printable(raw)) is not None:
            fragments.append(decoded)
    for match in _HEX.finditer(text):
        try:
            raw = bytes.fromhex(re.sub(r"[\s:]", "", match.group(0)))
        except ValueError:
            continue
        if (decoded := _printable(raw)) is not None:
            fragments.append(decoded)
    return fragments


def views(text: str) -> list[str]:
    """The forms of ``text`` to check: normalised, de-leeted, and decoded fragments (normalised)."""
    normal = normalize(text)
    out = [normal]
    deleeted = normal
    if _LETTER_NEXT_TO_LEET.search(normal):
        deleeted = _LEET_WORD.sub(lambda m: m.group(0).translate(_LEET), deleeted)
    if _ANY_SPACED_LETTERS.search(deleeted):
        deleeted = _SPACED_LETTERS.sub(lambda m: m.group(0).replace(" ", ""), deleeted)
    if deleeted != normal:
        out.append(deleeted)
    out.extend(normalize(fragment) for fragment in _decoded_fragments(text))
    return out
