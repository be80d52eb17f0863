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

from ._cues import Cues, folded, has_cue
from ._digits import digit_count, digit_runs
from ._names import NAME, LayoutRecognizer, _names_no_one
from ._names import _result as layout_result

__all__ = ["StreetAddressRecognizer"]

_UNIT_WORDS = (
    r"apt|apartment|appt|suite|ste|unit|flat|floor|fl|level|lvl|room|rm|bldg|building|bâtiment|bât|étage|wohnung|piso|puerta|"
    r"planta|depto|dpto|departamento|interior|edif|edificio|andar|sala|lote|appartamento|piano|scala|interno|int"
)
# A capitalised word that is not a unit's ("Suite 5" is a unit, not a town).
_CAP = rf"(?!(?i:{_UNIT_WORDS})\b)\p{{Lu}}[\p{{L}}'’\-]*\p{{L}}(?![\p{{L}}\d])"
_PARTICLES = r"(?:de|del|della|delle|dei|di|da|do|dos|das|du|des|la|le|les|l'|d'|van|von|der|den|het|al|el|y|e|of|the|on|upon|sur|am|an|im|nad|pod)"
# A word of a street's or a town's name: a capitalised word, an ordinal ("5th"), "St." (Saint) before one, a particle
# before one, or one with its article joined ("d'Ouchy", "l'Église").
_NAME_WORD = (
    rf"(?:{_CAP}|\d{{1,3}}(?:st|nd|rd|th)(?![\p{{L}}\d])|(?:St|Ste|Sta|Mt)\.(?=[ \t]+\p{{Lu}})|[dlDL]['’]\p{{Lu}}[\p{{L}}'’\-]*\p{{L}}(?![\p{{L}}\d])"
    rf"|{_PARTICLES}(?=(?:[ \t]+{_PARTICLES})*[ \t]+\p{{Lu}}))"
)
# Street words written as their own word (after the name, or before it).
_AFTER_WORDS = (
    r"street|st|road|rd|avenue|ave|av|lane|ln|drive|dr|boulevard|blvd|court|ct|way|place|pl|square|sq|terrace|close|"
    r"crescent|cres|parkway|pkwy|highway|hwy|circle|cir|trail|row|mews|grove|gardens|walk|hill|park|green|alley|loop|"
    r"route|plaza|path|pike|expressway|freeway|bypass|strasse|straße|str|weg|gasse|platz|allee|ring|chaussee|damm|ufer|"
    r"straat|laan|plein|gracht|kade|steeg|dreef|singel|gade|vej|veien|vegen|vei|gata|gatan|vägen|tie|katu|kuja|tee|"
    r"út|utca|ulica|třída|náměstí"
)
# The long tail of street words (the US Postal Service's list, British, Australian and New
# Zealand ones): ordinary words too ("500 Bonus Points"), so a street line ending in one needs
# more: a unit, a postcode or a line break after it, or a word before it that says where.
_WEAK_AFTER_WORDS = "|".join(
    """roads streets avenues drives lanes courts ways squares terraces trails parkways plazas routes alleys loops annex
    arcade bayou beach bend bluff bluffs bottom branch bridge brook brooks burg burgs camp canyon cape causeway center
    centers centre centres circles cliff cliffs club common commons corner corners course cove coves creek crest crossing
    crossroad crossroads curve dale dam divide estate estates extension extensions falls ferry field fields flats ford
    fords forest forge forges fork forks fort garden gateway glen glens greens groves harbor harbors harbour harbours
    haven heights hills hollow inlet island islands isle junction junctions key keys knoll knolls lake lakes land
    landing light lights lock locks lodge manor manors meadow meadows mill mills mission motorway mount mountain
    mountains neck orchard oval overpass parks pass passage pine pines plain plains point points port ports prairie
    radial ramp ranch rapid rapids ridge ridges river run shoal shoals shore shores skyway spring springs spur spurs
    station stravenue stream summit throughway trace track trafficway tunnel turnpike underpass union unions valley
    valleys viaduct view views village villages ville vista walks well wells approach anchorage quad rise ride reserve
    range parade esplanade promenade quay quays wharf wynd drove chase croft fold garth grange paddock ridgeway yard
    vale glade concourse gate gates heath end side""".split()
)
# Abbreviations count only with their dot ("ul. Miła 53"; the Spanish "al 91" is no street).
_ABBREVIATIONS = r"(?:ul|al|av|avda|bd|bld|pl|os|λ|leof|u|str|ул|пер|пр|просп|ш|бул|наб|пл|вул|пров)\."
_BEFORE_WORDS = (
    r"rue|avenue|avenida|boulevard|chemin|allée|allee|impasse|place|quai|route|calle|carrer|paseo|avinguda|passeig|"
    r"urbanización|urbanizacion|cuesta|cañada|pasaje|glorieta|callejón|callejon|diagonal|privada|circunvalación|calzada|"
    r"prolongación|alameda|passarela|colônia|chácara|rodovia|viela|beco|ladeira|borgo|incrocio|salita|"
    r"bulevardul|aleea|soseaua|șoseaua|calea|drumul|piața|piata|splaiul|intrarea|cesta|stretto|rotonda|acceso|pasadizo|"
    r"sítio|corredor|viaducto|улица|переулок|проспект|шоссе|бульвар|набережная|площадь|вулиця|провулок|площа|шосе|"
    r"plaza|camino|carretera|ronda|travesía|rua|praça|travessa|estrada|largo|via|viale|piazza|piazzale|piazzetta|corso|"
    r"vicolo|strada|contrada|lungomare|rúa|ulica|aleja|plac|osiedle|náměstí|třída|odos|οδός|λεωφόρος"
)
_SUFFIXES = (
    r"straße|strasse|str\.|weg|gasse|platz|allee|damm|ufer|steig|pfad|laan|straat|plein|gracht|kade|steeg|dreef|"
    r"singel|gade|vej|veien|vegen|vei|vegur|gata|gatan|vägen|väg|stræti|straeti|stigur|tie|katu|kuja|polku|tori|"
    r"utca|ulica|allé|stræde|plads|torv|vænge|gränd|stigen|stig|torg|torget|backe|backen|stien|bakken|berget|toppen|engen|"
    r"haugen|åsen|svingen|tunet|stranda|faret|grenda|feltet|kroken|baan|boulevard|bulevardi|puistotie|raitti|kaari|"
    r"rinne|dijk|markt|hof|körút|sétány|moen|eggen|løkka|marka|myra|vollen|bråten|holtet|lunden|kleiva|jordet"
)
# Street words that follow the name as their own word only ("Luite tee 87", "Somogyi út 21.",
# "Dvorni trg 6b"): as the end of a longer word they would be "Committee 3".
_SEPARATE_SUFFIXES = r"tee|út|tér|köz|trg|cesta|obala|šetalište|perivoj|prilaz|podhod|vrh|iela|gatve|cadde|caddesi|sokak|sokağı|prospekt"
# A direction after the street word: "Devon Street West", "5th Avenue NW".
_DIRECTION = r"(?:(?<!\.)[ \t]+(?:North|South|East|West|N|S|E|W|NE|NW|SE|SW)\.?(?![\p{L}\d]))?"
# Spanish "C/ Mayor 3" (calle): the slash ends the word, so it is its own alternative.
_C_SLASH = r"(?<![\p{L}\d])[cC]/"
# "Nr. 91", "No 5", "n° 12" before a house number.
_NUMBER_WORD = r"(?:(?i:nr|no|n°|nº|д|дом|буд)\.?[ \t]*)?"
# Czech, Slovak and South Slavic streets named by an adjective or a possessive ("Dejvická 376",
# "Palackého 376", "Prokopova 9", "Adélčina 2"): surnames end so too, so one needs more (see find).
_ADJECTIVAL = r"á|ého|ova|ovo|evo|ina|ska|ská|cka|ička"
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
# A line may start with quoting or a bullet ("> ", "• ", "* "; "???" where a bullet was lost to
# a wrong encoding).
_QUOTED = r"[ \t>•·▪◦‣*?]"
_BREAK = rf"(?:[ \t]*,[ \t]*(?:\r?\n{_QUOTED}*)?|[ \t]*\r?\n(?:{_QUOTED}*\r?\n)?{_QUOTED}*,?[ \t]*)"

# Street patterns that can start anywhere ("before", "suffix") cost tens of microseconds each to
# fail, and most texts hold no street word at all. So each pattern but the cheap ones names a
# gate, a test of what it cannot match without, read off the text's words (see _open_gates).
_STREETS = (
    # 4821 Oak Ridge Drive, 12 High St., 3911 Fourth Avenue
    # (a weak street word at the end needs more: see StreetAddressRecognizer.find)
    ("after", "after", rf"\b{_LEAD}(?:\d{{1,4}}/)?\d{{1,6}}[a-zA-Z]?[ \t]+(?:{_NAME_WORD}[ \t]+){{1,3}}(?:(?i:{_AFTER_WORDS}|{_WEAK_AFTER_WORDS})\b\.?|(?i:{_ABBREVIATIONS})){_DIRECTION}"),
    # Flat 60\nPaula Court: a unit on the line above a street named without a number
    ("after", "after", rf"(?<![\p{{L}}\d])(?i:{_UNIT_WORDS})\.?[ \t]*\d{{1,5}}[a-zA-Z]?[ \t]*,?[ \t]*\r?\n{_QUOTED}*(?:{_NAME_WORD}[ \t]+){{1,3}}(?i:{_AFTER_WORDS}|{_WEAK_AFTER_WORDS})\b\.?"),
    # Rue de Rivoli 99, Via delle Coste 41, ul. Chrzanowska 61, Λεωφόρος Συγγρού 119, C/ Mayor 3,
    # Strada Giunti, 18, Aleea Cristea Nr. 209
    ("before", "before", rf"(?:\b{_LEAD})?(?<![\p{{L}}])(?:(?i:{_BEFORE_WORDS})\b\.?|(?i:{_ABBREVIATIONS})|{_C_SLASH})[ \t]+(?:{_NAME_WORD},?[ \t]+){{0,4}}{_NUMBER_WORD}{_HOUSE}(?!\d)"),
    # 31 rue de la Hulotais, 12, avenue des Champs-Élysées
    ("before", "before", rf"\b{_LEAD}\d{{1,5}}[a-zA-Z]?,?[ \t]+(?:(?i:{_BEFORE_WORDS})\b|{_C_SLASH})[ \t]+(?:{_NAME_WORD}[ \t]+){{0,4}}{_CAP}"),
    # Hauptstraße 5, Søndergade 52, Kiannonkatu 98
    ("suffix", "suffix", rf"(?:\b{_LEAD})?\b(?:{_CAP}[ \t]+){{1,3}}(?:(?i:{_SUFFIXES}|{_SEPARATE_SUFFIXES}|str)\b|(?i:{_ABBREVIATIONS}))[ \t]+{_HOUSE}(?!\d)"),
    # Lilia-Rossmann-Gasse 815, C. Beerninckstraat 88
    ("suffix", "suffix", rf"(?:\b{_LEAD})?\b(?:\p{{Lu}}\.[ \t]*)?\p{{Lu}}[\p{{L}}\-]{{2,}}(?i:{_SUFFIXES})[ \t]+{_HOUSE}(?!\d)"),
    ("adjectival", "adjectival", rf"(?:\b{_LEAD})?\b\p{{Lu}}\p{{L}}+(?:{_ADJECTIVAL})[ \t]+{_HOUSE}(?!\d)"),
    # 692 Kuuse 53 (needs a part after it)
    ("numbered", "numbered", rf"\b{_LEAD}\d{{1,6}}[ \t]+{_CAP}(?:[ \t]+{_NAME_WORD}){{0,3}}[ \t]+{_HOUSE}(?!\d)"),
    # post boxes and US military addresses
    ("box", "box", r"\b(?:P\.?[ \t]?O\.?[ \t]?Box|Post[ \t]?box|Postfach|Boîte postale|BP|Apartado|Casella postale)[ \t]+\d{1,6}\b"),
    ("box", "military", r"\b(?:(?i:PSC|Unit)[ \t]+\d{1,5},?[ \t]+(?i:Box)|(?i:USNS|USNV|USS|USCGC)[ \t]+\p{Lu}[\p{L}'’\-]*(?:[ \t]+\p{Lu}[\p{L}'’\-]*)?)"
            r"(?:[ \t]+\d{1,5})?[ \t]*(?:,[ \t]*)?\r?\n?[ \t>]*(?i:APO|FPO|DPO)[ \t]+(?i:A[AEP])[ \t]+\d{5}(?:-\d{4})?\b"),
)
_STREET = tuple((kind, gate, regex.compile(pattern)) for kind, gate, pattern in _STREETS)


def _folded_words(alternatives: str) -> frozenset[str]:
    """The letter words of a ``|``-separated list, case-folded, without a trailing dot."""
    return frozenset(word.replace("\\.", "").casefold() for word in alternatives.split("|"))


_AFTER_SET = _folded_words(_AFTER_WORDS)
_WEAK_AFTER_SET = _folded_words(_WEAK_AFTER_WORDS) - _AFTER_SET
# Of those, the words that count things in everyday text ("500 Reward Points", "2 Season Pass").
_EVERYDAY_STREET_WORDS = frozenset(
    """points point ports port centers center centres centre pass passage keys key locks lock lights light course run end side
    track station club land union unions wells well range reserve ride rise yard gate gates views view mission springs
    spring summit chase fold forks fork extensions extension branch bottom divide trace oval quad vista estates estate
    fields field lakes lake river mountains mountain islands island plains plain pines pine meadows mills mill hills
    greens parks walks trails routes ways courts squares lanes drives roads streets avenues plazas loops alleys""".split()
)
_SEPARATE_SUFFIX_SET = _folded_words(_SEPARATE_SUFFIXES)
_C_SLASH_RE = regex.compile(rf"{_C_SLASH}[ \t]")
_BEFORE_SET = _folded_words(_BEFORE_WORDS)
_ABBREVIATION_SET = _folded_words(_ABBREVIATIONS[3:-3])  # "(?:ul|al|...)\\." -> ul, al, ...
_SUFFIX_TUPLE = tuple(sorted(_folded_words(_SUFFIXES) | {"str"}))
_ADJECTIVAL_TUPLE = tuple(_folded_words(_ADJECTIVAL))
_LETTERS = regex.compile(r"\p{L}+")
_SPACE_DIGIT = re.compile(r"[ \t]\d")  # the standard library's re: finds these rare spots fastest
# After a street word that comes first, only name words until the house number ("Rue de Rivoli 99").
_HOUSE_AFTER = regex.compile(r"\.?[ \t]+[\p{L}'’\-,. \t]*\d")
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


def _words_before_numbers(text: str) -> tuple[bool, bool]:
    """Whether a word ending in a street suffix ("Hauptstraße 5", "Hauptstr. 5", "Luite tee 87"),
    and whether one ending as an adjectival street name ("Dejvická 376"), stands right before a
    number: looked for, in one pass, from the few places where a digit follows a space."""
    suffix = adjectival = False
    for match in _SPACE_DIGIT.finditer(text):
        end = match.start()
        while end > 0 and text[end - 1] in " \t":
            end -= 1
        if end > 0 and text[end - 1] == ".":
            end -= 1
        start = end
        while start > 0 and text[start - 1].isalpha():  # isalpha: the letters \p{L} matches
            start -= 1
        if start == end:
            continue
        word = text[start:end].casefold()
        suffix = suffix or word.endswith(_SUFFIX_TUPLE) or word in _SEPARATE_SUFFIX_SET
        adjectival = adjectival or word.endswith(_ADJECTIVAL_TUPLE)
        if suffix and adjectival:
            break
    return suffix, adjectival


def _street_word_first(text: str) -> bool:
    """Whether a street word that comes before its name ("via", "rue", "place": common words
    too) stands where a "before" pattern needs it: a house number after its name, or before it."""
    for match in _LETTERS.finditer(text):
        if match.group().casefold() in _BEFORE_SET and (_HOUSE_AFTER.match(text, match.end()) or _number_before(text, match.start())):
            return True
    return False


_ASCII_LETTER_RUN = re.compile(r"[a-z]+")


def _folded_letter_runs(text: str) -> set[str]:
    """The text's runs of letters (what \\p{L}+ matches), case-folded. An ASCII text's are
    its runs of a-z once folded, found by the standard library's re at half the cost."""
    if text.isascii():
        return set(_ASCII_LETTER_RUN.findall(folded(text)))
    return {word.casefold() for word in _LETTERS.findall(text)}


# After a number: a word, at most three more, and a number ("692 Kuuse 53"), apart by spaces or tabs.
_WORDS_THEN_NUMBER = re.compile(r"[ \t]+(\S)\S*(?:[ \t]+\S+){0,3}?[ \t]+\d")


def _number_name_number(text: str) -> bool:
    """Whether a number stands before a capitalised word and, at most four words on, another
    number, as every "numbered" street line has it: looked for from the ends of the text's
    digit runs (few), where the pattern would be tried at every character."""
    runs = digit_runs(text)
    for _, end in runs[:-1]:
        match = _WORDS_THEN_NUMBER.match(text, end)
        if match is not None and match.group(1).isupper():
            return True
    return False


_BOX_CUES = Cues(("box", "postfach", "boîte", "bp", "apartado", "casella"))
_MILITARY_CUES = Cues(("apo", "fpo", "dpo"))


def _open_gates(text: str) -> dict[str, bool]:
    """Which gated patterns can match ``text``. A street word is a whole run of letters in every
    pattern (a space or a non-letter before it, a word boundary after it), so comparing the
    text's letter runs, case-folded, with the lists is a necessary condition. A street word
    that comes first needs a house number near it, and a suffix word one right after it."""
    words = _folded_letter_runs(text)
    abbreviation = "." in text and not words.isdisjoint(_ABBREVIATION_SET)
    suffix, adjectival = _words_before_numbers(text)
    return {
        "after": abbreviation or not words.isdisjoint(_AFTER_SET) or not words.isdisjoint(_WEAK_AFTER_SET),
        "before": abbreviation or (not words.isdisjoint(_BEFORE_SET) and _street_word_first(text))
        or ("/" in text and _C_SLASH_RE.search(text) is not None),
        "suffix": abbreviation or suffix,
        "adjectival": adjectival,
        "numbered": _number_name_number(text),
        "box": has_cue(text, _BOX_CUES),
        "military": has_cue(text, _MILITARY_CUES),
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
# (or its word alone, when the street line took the unit's number for its own: "Suite 601 1 Aguilar Quad")
_NUMBER = regex.compile(r"\d+")
# Words no street line holds, which read as name words once a lower-case text is capitalised.
_ONE_DIGIT_ORDINAL = regex.compile(r"\d[ \t]+\d{1,3}(?:st|nd|rd|th)(?![\p{L}\d])")
_LOWER_NOT_STREET = frozenset(
    """to that from please until till through and or is are was were for by with returns stay january february march april
    may june july august september october november december monday tuesday wednesday thursday friday saturday sunday""".split()
)
_UNIT_BEFORE = regex.compile(rf"(?:^|(?<=[\s,;:]))({_UNIT}[ \t]*,?[ \t]*(?:\r?\n{_QUOTED}*)?|(?i:{_UNIT_WORDS})\.?[ \t]*#?[ \t]*)\Z")
# Words right before a street line that say it is a place: "at", "to", "address:", "lives on".
_WHERE_BEFORE = regex.compile(
    r"(?i)(?:\b(?:at|to|on|from|near|in|into|address|addresses|is|located|live|lives|living|ship|send|deliver|visit|via|na|ve|v|w|u|adresa|adres|adresu)|[:>\n])[ \t]*\Z"
)


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
            if kind == "after" and _ONE_DIGIT_ORDINAL.match(seen, start, street_end):
                continue  # "finished 3 2nd Place runs": a one-digit count before an ordinal
            if kind == "numbered" and not any(ch.isdigit() or ch == "," for ch in seen[street_end:end]):
                continue  # "3 Release 12\nWindows": only with a unit, a postcode or a comma after it
            if kind == "adjectival" and not (
                seen[start].isdigit() or any(ch.isdigit() or ch == "," for ch in seen[street_end:end])
                or _WHERE_BEFORE.search(seen, max(0, start - 40), start)
            ):
                continue  # "Nováková 20": a surname and an age, unless a house number, a town or "at", "na" go with it
            if lower_case and kind == "after" and not any(ch.isdigit() for ch in seen[street_end:end]):
                continue  # "i walked 5 blocks down the road, then left": in lower case, a unit or postcode too
            if lower_case and not _LOWER_NOT_STREET.isdisjoint(w.casefold() for w in _LETTERS.findall(seen, start, end)):
                continue  # "from 2019 to may 05, 2019", "3 to 9, please": a range, a date, a sentence
            # A unit written before the street line is part of the address ("Suite 601 1 Aguilar Quad", "Flat 20\n26 Scott Street").
            unit = _UNIT_BEFORE.search(seen, max(0, start - 40), start)
            if kind == "after" and unit is None and not self._sure_street(seen, start, street_end, end):
                continue  # "500 Bonus Points", "2 Swiss Francs Bridge": a weak street word and nothing else
            if unit is not None:
                start = unit.start(1)
            end_of_last = end
            yield layout_result(self, "LOCATION", start, end, self.SCORE, "street address")
            before = text[max(0, start - 200) : start]
            if _LINE_START.search(before) and (name := _NAME_ABOVE.search(before)) and len(name.group(1).split()) >= 2:
                if not _names_no_one(name.group(1)):
                    offset = start - len(before)
                    yield layout_result(self, "PERSON", offset + name.start(1), offset + name.end(1), self.NAME_SCORE, "name above an address")

    @staticmethod
    def _sure_street(text: str, start: int, street_end: int, end: int) -> bool:
        """Whether a street line ending in a word of the long tail ("Crest", "Points") is one: a
        unit, postcode or line break after it, or a word before it that says where."""
        last = _LETTERS.findall(text, max(start, street_end - 16), street_end)
        if not last or last[-1].casefold() not in _WEAK_AFTER_SET:
            return True
        if "\n" in text[start:street_end]:
            return True  # a unit on the line above it
        if any(ch.isdigit() or ch == "\n" for ch in text[street_end:end]):
            return True
        if last[-1].casefold() in _EVERYDAY_STREET_WORDS:
            # "upgrade to 2 Season Pass", "in 4 Data Centers", "to 500 Reward Points": a unit or postcode must
            # follow, unless the number reads as a house's (three digits or more, not a round count: "at 08246 Amber Ports").
            numbers = _NUMBER.findall(text, start, street_end)
            if not numbers or len(numbers[-1]) < 3 or numbers[-1].endswith("0"):
                return False
        return _WHERE_BEFORE.search(text, max(0, start - 40), start) is not None

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
