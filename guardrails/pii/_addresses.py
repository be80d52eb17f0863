"""Postal addresses: a street line, then the unit, town, region, country and postcode after it,
and the addressee's name on the line above.

A street line is one of:

- a house number, capitalised words and a street word: "4821 Oak Ridge Drive", "12 High St.";
- a street word first, then its name and number: "Rue de Rivoli 99", "Via delle Coste 41",
  "ul. Chrzanowska 61", "Avda. Rio Nalon 58";
- one word ending in a street word, then its number: "Hauptstraße 5", "Søndergade 52",
  "Kiannonkatu 98", "Hlíðarvegur 97", "Parijsstraat 8";
- "number Word(s) number" ("692 Kuuse 53"): only with a unit, a postcode or a comma-separated
  town after it ("5 Windows 10", "3 Release 12\nWindows" are no addresses);
- a post box or a US military address: "P.O. Box 287", "PSC 6293, Box 8158 / APO AP 04336",
  "Unit 7349 Box 6067 / DPO AE 99081", "USNS Møller / FPO AA 85844".

A number just before the street line belongs to it ("370 3911 Fourth Avenue"). After it, the
parts of the address follow, separated by commas, line breaks (quoted with ">" in a reply,
or with a blank line between) or, after a unit, spaces: units ("Suite 501", "Apt. 4B"),
towns and regions of capitalised or upper-case words ("Port Whangarei", "BASHALL TOWN",
"Cyprus (Greek)"), region codes ("TX", "ON"), postcodes ("YO1 7HH", "10115 Berlin",
"Estonia 62488"). A line with a colon ("Mobile: ...") or a closing ("Thanks") is not a part.
A text written all in lower case is read as if each word were capitalised ("255 hersnapvej 18,
københavn"); there, "number words street-word" needs a unit or a postcode after it.

Street words cover English, German, French, Spanish, Portuguese, Italian, Dutch, the Nordic
languages, Finnish, Estonian, Polish, Czech and Hungarian.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import regex
from presidio_analyzer import RecognizerResult

from ._digits import digit_count
from ._names import NAME, LayoutRecognizer, _names_no_one
from ._names import _result as layout_result

__all__ = ["StreetAddressRecognizer"]

_UNIT_WORDS = r"apt|apartment|appt|suite|ste|unit|flat|floor|fl|room|rm|bldg|building|bâtiment|bât|étage|wohnung|piso|puerta|scala|interno|int"
# A capitalised word that is not a unit's ("Suite 5" is a unit, not a town).
_CAP = rf"(?!(?i:{_UNIT_WORDS})\b)\p{{Lu}}[\p{{L}}'’\-]*\p{{L}}(?![\p{{L}}\d])"
_PARTICLES = r"(?:de|del|della|delle|dei|di|da|do|dos|das|du|des|la|le|les|l'|d'|van|von|der|den|het|al|el|y|e|of|the|on|upon|sur|am|an|im|nad|pod)"
_NAME_WORD = rf"(?:{_CAP}|{_PARTICLES}(?=(?:[ \t]+{_PARTICLES})*[ \t]+\p{{Lu}}))"
# Street words written as their own word (after the name, or before it).
_AFTER_WORDS = (
    r"street|st|road|rd|avenue|ave|av|lane|ln|drive|dr|boulevard|blvd|court|ct|way|place|pl|square|sq|terrace|close|"
    r"crescent|cres|parkway|pkwy|highway|hwy|circle|cir|trail|row|mews|grove|gardens|walk|hill|park|green|alley|loop|"
    r"route|plaza|path|pike|expressway|freeway|bypass|strasse|straße|str|weg|gasse|platz|allee|ring|chaussee|damm|ufer|"
    r"straat|laan|plein|gracht|kade|steeg|dreef|singel|gade|vej|veien|vegen|vei|gata|gatan|vägen|tie|katu|kuja|tee|"
    r"út|utca|ulica|třída|náměstí"
)
# Abbreviations count only with their dot ("ul. Miła 53"; the Spanish "al 91" is no street).
_ABBREVIATIONS = r"(?:ul|al|av|avda|bd|bld|pl|os|λ|leof|u|str)\."
_BEFORE_WORDS = (
    r"rue|avenue|avenida|boulevard|chemin|allée|allee|impasse|place|quai|route|calle|c/|carrer|paseo|"
    r"plaza|camino|carretera|ronda|travesía|rua|praça|travessa|estrada|largo|via|viale|piazza|piazzale|piazzetta|corso|"
    r"vicolo|strada|contrada|lungomare|rúa|ulica|aleja|plac|osiedle|náměstí|třída|odos|οδός|λεωφόρος"
)
_SUFFIXES = (
    r"straße|strasse|str\.|weg|gasse|platz|allee|damm|ufer|steig|pfad|laan|straat|plein|gracht|kade|steeg|dreef|"
    r"singel|gade|vej|veien|vegen|vei|vegur|gata|gatan|vägen|väg|stræti|straeti|stigur|tie|katu|kuja|polku|tori|"
    r"utca|ulica"
)
_HOUSE = r"\d{1,5}[a-zA-Z]?(?:[/\-]\d{1,4}[a-zA-Z]?)?\.?"
_LEAD = r"(?:(?<![\-/.:#])\d{1,6}[ \t]+)?"  # not the end of an identifier ("2024-118 Route 66")
_UNIT = rf"(?:(?i:{_UNIT_WORDS})\.?[ \t]*#?[ \t]*\d{{1,5}}[a-zA-Z]?|#[ \t]*\d{{1,5}}[a-zA-Z]?)"
_POSTCODE = (
    r"(?:[A-Z]{1,2}\d[A-Z\d]?[ \t]?\d[A-Z]{2}"  # UK
    r"|[A-Z]\d[A-Z][ \t]?\d[A-Z]\d"  # Canada
    r"|\d{4}[ \t]?[A-Z]{2}(?![\p{L}])"  # Netherlands
    r"|(?:[A-Z]{1,2}-)?\d{2,3}[ \t\-]?\d{2,3}(?:-\d{4})?(?![ \t\-]*\d))"  # 10115, 75008, 123 45, 00-950, 78701-1234
)
_STATE = r"[A-Z]{2,3}(?![\p{L}])"
_PLACE = (
    rf"(?:{_POSTCODE}(?:[ \t]+{_CAP}(?:[ \t]+{_CAP}){{0,2}})?"
    rf"|{_CAP}(?:[ \t]+{_NAME_WORD}){{0,4}}(?:[ \t]*\([\p{{L}} ]+\))?(?:[ \t]+(?:{_POSTCODE}))?)"
)
_NOT_A_PART = r"(?!\p{L}+(?:[ \t]\p{L}+)?[ \t]*:|(?i:thanks|thank|regards|best|cheers|sincerely|kind|many|tel|phone|mobile|fax|email|e-mail|web|website|cell)\b)"
# A comma, a line break (a reply's ">" quoting, a blank line) or both, between two parts.
_BREAK = r"(?:[ \t]*,[ \t]*(?:\r?\n[ \t>]*)?|[ \t]*\r?\n(?:[ \t>]*\r?\n)?[ \t>]*,?[ \t]*)"

# Street patterns that can start anywhere ("before", "suffix") cost tens of microseconds each to
# fail, and most texts hold no street word at all. So each pattern but the cheap ones names a
# gate, a test of what it cannot match without, read off the text's words (see _open_gates).
_STREETS = (
    # 4821 Oak Ridge Drive, 12 High St., 3911 Fourth Avenue
    ("after", "after", rf"\b{_LEAD}\d{{1,6}}[a-zA-Z]?[ \t]+(?:{_NAME_WORD}[ \t]+){{1,3}}(?:(?i:{_AFTER_WORDS})\b\.?|(?i:{_ABBREVIATIONS}))"),
    # Rue de Rivoli 99, Via delle Coste 41, ul. Chrzanowska 61, Λεωφόρος Συγγρού 119
    ("before", "before", rf"(?:\b{_LEAD})?(?<![\p{{L}}])(?:(?i:{_BEFORE_WORDS})\b\.?|(?i:{_ABBREVIATIONS}))[ \t]+(?:{_NAME_WORD}[ \t]+){{0,4}}{_HOUSE}(?!\d)"),
    # 31 rue de la Hulotais, 12, avenue des Champs-Élysées
    ("before", "before", rf"\b{_LEAD}\d{{1,5}}[a-zA-Z]?,?[ \t]+(?i:{_BEFORE_WORDS})\b[ \t]+(?:{_NAME_WORD}[ \t]+){{0,4}}{_CAP}"),
    # Hauptstraße 5, Søndergade 52, Kiannonkatu 98
    ("suffix", "suffix", rf"(?:\b{_LEAD})?\b(?:{_CAP}[ \t]+){{1,3}}(?:(?i:{_SUFFIXES}|str)|(?i:{_ABBREVIATIONS}))[ \t]+{_HOUSE}(?!\d)"),
    ("suffix", "suffix", rf"(?:\b{_LEAD})?\b\p{{Lu}}\p{{L}}{{2,}}(?i:{_SUFFIXES})[ \t]+{_HOUSE}(?!\d)"),
    # 692 Kuuse 53 (needs a part after it; starts at a number: cheap to fail)
    ("numbered", None, rf"\b{_LEAD}\d{{1,6}}[ \t]+{_CAP}(?:[ \t]+{_NAME_WORD}){{0,3}}[ \t]+{_HOUSE}(?!\d)"),
    # post boxes and US military addresses (each starts with its own words: no gate)
    ("box", None, r"\b(?:P\.?[ \t]?O\.?[ \t]?Box|Post[ \t]?box|Postfach|Boîte postale|BP|Apartado|Casella postale)[ \t]+\d{1,6}\b"),
    ("box", None, r"\b(?:PSC[ \t]+\d{1,5},?[ \t]+Box|Unit[ \t]+\d{1,5},?[ \t]+Box|(?:USNS|USNV|USS|USCGC)[ \t]+\p{Lu}[\p{L}'’\-]*(?:[ \t]+\p{Lu}[\p{L}'’\-]*)?)"
            r"(?:[ \t]+\d{1,5})?[ \t]*(?:,[ \t]*)?\r?\n?[ \t>]*(?:APO|FPO|DPO)[ \t]+A[AEP][ \t]+\d{5}(?:-\d{4})?\b"),
)
_STREET = tuple((kind, gate, regex.compile(pattern)) for kind, gate, pattern in _STREETS)


def _folded_words(alternatives: str) -> frozenset[str]:
    """The letter words of a ``|``-separated list, case-folded, without a trailing dot. ("c/"
    is left out: a word boundary must follow it, then a space, so no pattern matches it.)"""
    return frozenset(word.replace("\\.", "").casefold() for word in alternatives.split("|") if "/" not in word)


_AFTER_SET = _folded_words(_AFTER_WORDS)
_BEFORE_SET = _folded_words(_BEFORE_WORDS)
_ABBREVIATION_SET = _folded_words(_ABBREVIATIONS[3:-3])  # "(?:ul|al|...)\\." -> ul, al, ...
_SUFFIX_TUPLE = tuple(sorted(_folded_words(_SUFFIXES) | {"str"}))
_LETTERS = regex.compile(r"\p{L}+")
_SPACE_DIGIT = re.compile(r"[ \t]\d")  # the standard library's re: finds these rare spots fastest
# After a street word that comes first, only name words until the house number ("Rue de Rivoli 99").
_HOUSE_AFTER = regex.compile(r"\.?[ \t]+[\p{L}'’\- \t]*\d")
_ASCII_LETTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _number_before(text: str, start: int) -> bool:
    """Whether ``text`` has a house number, then spaces, right before ``start`` ("31 rue", "12, avenue")."""
    i = start
    while i > 0 and text[i - 1] in " \t":
        i -= 1
    if i == start:
        return False
    if i > 0 and text[i - 1] == ",":
        i -= 1
    if i > 1 and text[i - 1] in _ASCII_LETTERS:
        i -= 1
    return i > 0 and text[i - 1].isdecimal()


def _suffix_before_number(text: str) -> bool:
    """Whether a word ending in a street suffix stands right before a number ("Hauptstraße 5",
    "Hauptstr. 5"): looked for from the few places where a digit follows a space."""
    for match in _SPACE_DIGIT.finditer(text):
        end = match.start()
        while end > 0 and text[end - 1] in " \t":
            end -= 1
        if end > 0 and text[end - 1] == ".":
            end -= 1
        start = end
        while start > 0 and text[start - 1].isalpha():  # isalpha: the letters \p{L} matches
            start -= 1
        if start < end and text[start:end].casefold().endswith(_SUFFIX_TUPLE):
            return True
    return False


def _street_word_first(text: str) -> bool:
    """Whether a street word that comes before its name ("via", "rue", "place": common words
    too) stands where a "before" pattern needs it: a house number after its name, or before it."""
    for match in _LETTERS.finditer(text):
        if match.group().casefold() in _BEFORE_SET and (_HOUSE_AFTER.match(text, match.end()) or _number_before(text, match.start())):
            return True
    return False


def _open_gates(text: str) -> dict[str, bool]:
    """Which gated patterns can match ``text``. A street word is a whole run of letters in every
    pattern (a space or a non-letter before it, a word boundary after it), so comparing the
    text's letter runs, case-folded, with the lists is a necessary condition. A street word
    that comes first needs a house number near it, and a suffix word one right after it."""
    words = {word.casefold() for word in _LETTERS.findall(text)}
    abbreviation = "." in text and not words.isdisjoint(_ABBREVIATION_SET)
    return {
        "after": abbreviation or not words.isdisjoint(_AFTER_SET),
        "before": abbreviation or (not words.isdisjoint(_BEFORE_SET) and _street_word_first(text)),
        "suffix": abbreviation or _suffix_before_number(text),
    }


def _street_lines(text: str, gated: bool = True) -> list[tuple[int, int, str]]:
    """Every street line any pattern finds, as (start, -end, kind): where they overlap, the
    earliest, then the longest sorts first. ``gated`` False runs every pattern (for tests)."""
    passed = _open_gates(text) if gated else None
    return sorted(
        (m.start(), -m.end(), kind)
        for kind, gate, pattern in _STREET
        if passed is None or gate is None or passed[gate]
        for m in pattern.finditer(text)
    )


_TAIL_PART = regex.compile(rf"{_BREAK}{_NOT_A_PART}(?:{_UNIT}|{_PLACE}|{_STATE})|[ \t]+{_UNIT}")
_AFTER_UNIT = regex.compile(rf"[ \t]+{_NOT_A_PART}(?:{_PLACE}|{_STATE})")
_WORD_START = regex.compile(r"\b\p{Ll}")
# The line just above an address that starts a line (a blank line or a reply's ">" between):
# the addressee's name, when it reads as one ("Maureen Thibault", "Mijail C Adomo").
_NAME_ABOVE = regex.compile(rf"(?m)^[ \t>]*({NAME})[ \t]*,?[ \t]*\r?\n(?:[ \t>]*\r?\n)?[ \t>]*\Z")
_LINE_START = regex.compile(r"(?:^|\n)[ \t>]*\Z")


def _capitalised(text: str) -> str:
    """A lower-case text with each word's first letter upper-cased, the same length."""
    return _WORD_START.sub(lambda m: upper if len(upper := m.group(0).upper()) == 1 else m.group(0), text)


class StreetAddressRecognizer(LayoutRecognizer):
    """LOCATION: a street line and the address parts after it."""

    ENTITIES = ("LOCATION", "PERSON")
    SCORE = 0.7
    NAME_SCORE = 0.6
    MAX_PARTS = 8

    def find(self, text: str) -> Iterator[RecognizerResult]:
        if digit_count(text) == 0:  # every street line has a number (counted once per text: _digits)
            return
        lower_case = not any(ch.isupper() for ch in text)
        seen = _capitalised(text) if lower_case else text
        candidates = _street_lines(seen)
        end_of_last = -1
        for start, negative_end, kind in candidates:
            if start < end_of_last:
                continue
            street_end = -negative_end
            end, parts = self._tail(seen, street_end)
            if kind == "numbered" and not any(ch.isdigit() or ch == "," for ch in seen[street_end:end]):
                continue  # "3 Release 12\nWindows": only with a unit, a postcode or a comma after it
            if lower_case and kind == "after" and not any(ch.isdigit() for ch in seen[street_end:end]):
                continue  # "i walked 5 blocks down the road, then left": in lower case, a unit or postcode too
            end_of_last = end
            yield layout_result(self, "LOCATION", start, end, self.SCORE, "street address")
            before = text[max(0, start - 200) : start]
            if _LINE_START.search(before) and (name := _NAME_ABOVE.search(before)) and len(name.group(1).split()) >= 2:
                if not _names_no_one(name.group(1)):
                    offset = start - len(before)
                    yield layout_result(self, "PERSON", offset + name.start(1), offset + name.end(1), self.NAME_SCORE, "name above an address")

    def _tail(self, text: str, end: int) -> tuple[int, int]:
        parts = 0
        after_unit = False
        while parts < self.MAX_PARTS:
            match = _TAIL_PART.match(text, end) or (_AFTER_UNIT.match(text, end) if after_unit else None)
            if match is None or match.end() == end:
                break
            after_unit = regex.search(rf"{_UNIT}$", match.group(0)) is not None
            end = match.end()
            parts += 1
        return end, parts
