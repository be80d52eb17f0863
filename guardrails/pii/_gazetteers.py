"""People and countries found from lists shipped in a package, where NER misses them.

A small spaCy pipeline misses most names it has not seen ("Einojuhani Pyysalo", "Zak
shouted at Scott"), and without one there is no NER at all. A person's name has a shape
that needs no model:

- a title before it (the title stays in the text): "Mrs. Kathrine Filemonsen DDS", "Dr.
  Jennifer Holst", "ms. Quinzia";
- a known given name with a surname after it: "Sigrid Nyström", "Nikolaj N Møller",
  "Shane M Culp". The given names are Faker's per-locale lists (MIT; dozens of countries),
  read once at start-up; nothing is downloaded;
- a middle initial between two capitalised words: "Ravil G Yefimov", "Faina D. Yefremova";
- with NER on, a known given name alone that the tagger calls a proper noun ("Zak shouted
  at Scott"): the tagger tells "Will" the name from "will" the verb; or one that opens a
  line of dialogue ("Ella: What a wife.");
- in a text written all in lower case, a known given name and the word after it
  ("follow up with patricia desrosiers");
- ``companies``: where a text names a company rather than people, so that what NER took for
  a person or a place there is left alone: a firm named by three surnames (at most one of
  them also a given name, or any names with a singular verb after them: "Lopez, Santos and
  Coleman is a design agency"), "Thomas and Sons", the employer after "I work for" ("I
  work for Flightstats"), and a person's company ("Margaret S. Stouffer of Guidestar",
  "Panjiva's Riku Andou"; only NER's people there: "Jane Doe of Leeds" keeps its town);
- ``PlaceRecognizer``: a country's English name ("Tunisia", "Czech Republic"), from
  Faker's address lists, except as an adjective after "a"/"an" ("an Brazil bank"); with
  NER on, a town in Faker's per-country town lists (Finnish, Danish, Dutch, Belgian,
  Italian, Czech ... municipalities) that the tagger calls a proper noun ("at the
  University of Porvoo"; not "Best regards", though Best is a Dutch town).

What is never a name here: a name followed by a house number is a street ("Peter
Zuidhove 188"); words that name a company, a place or a thing end a name ("Jane Street",
"Morgan Bank").
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from collections.abc import Iterable, Iterator
from typing import Any

import regex
from presidio_analyzer import RecognizerResult

from ._addresses import _QUOTED
from ._cues import Cues, has_cue
from ._names import _NOT_NAMES, _PARTICLE, LayoutRecognizer, _result

__all__ = ["GivenNameRecognizer", "PlaceRecognizer", "companies", "country_names", "given_names", "town_names", "without_companies"]

# Given names that are as often ordinary capitalised words (a month, a verb at the start of
# a sentence, a colour, a direction): never a name's start on their own say-so.
_COMMON_WORDS = frozenset(
    """will may june april august march grace hope faith joy rose summer autumn winter dawn mark bill art guy king page
    lane dale chase hunter mason major sterling christian sunny sky max angel unique precious royal prince star can us
    an so in on do go be me my we it is as at no or to up the and but for not all any are was has had him her his its
    one see new old long young green brown white black gray grey park north south east west general river mercy
    constance justice liberty happy honey cash son sun baby ever else sage made per joke love job jet owe el loan till bent
    peace wage toy said olive soon""".split()
)
# Words that end a name: what follows them is a company, place or thing, not a surname.
_ORG_WORDS = frozenset(
    """inc ltd llc plc gmbh ag sa corporation corp company co holdings partners associates technologies systems solutions
    consulting capital group street st road rd avenue ave lane drive way place square court park bridge boulevard blvd route trail mall city
    town county state university college school hospital church club hotel airport station center centre bank fund
    foundation institute museum library orchestra band records studio studios media news press software labs games
    motors airlines insurance energy investments investment trust ventures brands foods pharma health
    apt apartment suite unit flat floor room bldg building""".split()
)
_NOT_SURNAMES = _NOT_NAMES | _ORG_WORDS | frozenset({"and", "or", "of", "for"})
_FAKER_PERSON = "faker.providers.person"
# The "en" locale holds a long tail of US baby names that are mostly surnames and words
# ("Davis", "Young", "General"); the country locales (en_US, en_GB, ...) hold the usual ones.
_SKIPPED_LOCALES = frozenset({"en"})


def _person_words(attributes: tuple[str, ...], *, one_word: bool) -> set[str]:
    """Case-folded names from the ``attributes`` lists of Faker's person providers (each
    provider's own class attributes, not inherited ones), over the locales kept here."""
    providers = importlib.import_module(_FAKER_PERSON)
    names: set[str] = set()
    for module in pkgutil.iter_modules(providers.__path__):
        if module.name in _SKIPPED_LOCALES:
            continue
        provider = importlib.import_module(f"{_FAKER_PERSON}.{module.name}").Provider
        for attribute in attributes:
            value = provider.__dict__.get(attribute)
            if isinstance(value, (list, tuple, dict, set, frozenset)):
                names.update(name.casefold() for name in value if len(name) >= 2 and not (one_word and " " in name))
    return names


@functools.lru_cache(maxsize=1)
def given_names() -> frozenset[str]:
    """Case-folded given names from Faker's person providers, less common words."""
    names = _person_words(("first_names", "first_names_male", "first_names_female", "first_names_nonbinary"), one_word=False)
    return frozenset(names - _COMMON_WORDS)


@functools.lru_cache(maxsize=1)
def surnames() -> frozenset[str]:
    """Case-folded surnames from Faker's person providers (the same locales as the given
    names), less common words and words that end a name."""
    names = _person_words(("last_names", "last_names_male", "last_names_female"), one_word=True)
    return frozenset(names - _COMMON_WORDS - _NOT_SURNAMES)


_WORD = r"\p{Lu}[\p{Ll}'’\-]*\p{Ll}"  # "Jane", "O'Brien", "Nyström"; not "USA"
_INITIAL = r"\p{Lu}\.?(?![\p{L}\d])"
_GAP = r"[ \t]+"
_TITLES = (
    r"mr|mrs|ms|miss|mx|dr|prof|sir|dame|madam|mme|mlle|herr|frau|sr|sra|srta|dhr|mevr|sig|sig\.ra"
)
_SUFFIX = r"(?:,?[ \t]+(?:jr|sr|ii|iii|iv|phd|md|dds|dvm|esq)\.?(?![\p{L}\d]))?"
# A word of each title, case-folded: a text with none has no titled name (see _cues).
_TITLE_CUES = Cues(("mr", "ms", "miss", "mx", "dr", "prof", "sir", "dame", "madam", "mme", "mlle", "herr", "frau", "sr", "dhr", "mevr", "sig"))
# A title and the capitalised words after it (an initial too).
_TITLED = regex.compile(
    rf"(?<![\p{{L}}\d])(?i:{_TITLES})\.?{_GAP}({_WORD}(?:{_GAP}(?:{_PARTICLE}{_GAP})?(?:{_WORD}|{_INITIAL})){{0,3}})(?i:{_SUFFIX})"
)
# Any capitalised word: a given name is looked up, then what follows it is read.
_CAPITALISED = regex.compile(rf"(?<![\p{{L}}\d'’\-])({_WORD})(?![\p{{L}}\d])")
_NEXT = regex.compile(rf"{_GAP}(?:({_PARTICLE}){_GAP})?({_WORD}|{_INITIAL})")
_HOUSE_NUMBER = regex.compile(r"[ \t]*,?[ \t]*\d")
# Two capitalised words with a middle initial between them.
_INITIALLED = regex.compile(rf"(?<![\p{{L}}\d])({_WORD}){_GAP}(\p{{Lu}})(\.?){_GAP}({_WORD})(?![\p{{L}}\d])")
_HAS_UPPER = regex.compile(r"\p{Lu}")
_LOWER_WORD = r"\p{Ll}[\p{Ll}'’\-]*\p{Ll}"
_LOWER_FULL = regex.compile(rf"(?<![\p{{L}}\d'’\-])({_LOWER_WORD})(?:{_GAP}(\p{{Ll}}))?{_GAP}({_LOWER_WORD})(?![\p{{L}}\d])")
# "Ella: What a wife." or 'Sara:"I'm ...': a name opening a line, then a colon.
_SPEAKER = regex.compile(rf"(?m)^[ \t>]*({_WORD})[ \t]*:(?![/\d])")
# The first word of "Plan B Options", "Vitamin D Levels", "Type A Personality".
_NOT_FIRST = frozenset(
    """plan type vitamin class grade section chapter part phase level room building block hepatitis war category group
    team series model version tier option zone gate terminal exhibit appendix schedule form floor unit wing area row
    seat platform track channel camera player size batch lot line route""".split()
)


def _joined(token: Any) -> bool:
    """A word in a hyphenated or longer name ("Fritz-Armstrong", "Smith Ltd.") or after a house
    number ("5850 Jana Nerudy"): not a person alone."""
    doc, i = token.doc, token.i
    after = doc[i + 1] if i + 1 < len(doc) else None
    before = doc[i - 1] if i > 0 else None
    return (after is not None and (after.text in "-‐–" and not token.whitespace_ or after.text.casefold().strip(".") in _ORG_WORDS)) or (
        before is not None and (before.text in "-‐–" and not before.whitespace_ or before.like_num)
    )


class GivenNameRecognizer(LayoutRecognizer):
    """A person named by a title, a known given name with a surname, or a middle initial."""

    TITLED, FULL, INITIALLED, ALONE = 0.8, 0.7, 0.65, 0.6

    def __init__(self, supported_language: str = "en") -> None:
        super().__init__(supported_language)
        self._given = given_names()
        self._surnames = surnames()

    def find(self, text: str) -> Iterator[RecognizerResult]:
        for match in _TITLED.finditer(text) if has_cue(text, _TITLE_CUES) else ():
            if not any(w.casefold().strip(".") in _NOT_SURNAMES for w in match.group(1).split()):
                # The title stays: "Dr. <PERSON_1>" still says who the text is about.
                yield _result(self, "PERSON", match.start(1), match.end(), self.TITLED, "a name after a title")
        capitalised = list(_CAPITALISED.finditer(text))
        for match in capitalised:
            if match.group(1).casefold() not in self._given:
                continue
            end = self._surname_end(text, match.end())
            if end > match.end():
                yield _result(self, "PERSON", match.start(), end, self.FULL, "a known given name and a surname")
        if not capitalised and not _HAS_UPPER.search(text):  # (a capitalised word holds an upper-case letter)
            for match in _LOWER_FULL.finditer(text, overlapped=True):
                first, last = match.group(1), match.group(3)
                # In lower case nothing sets a name apart from words ("olive garden", "made you"): the
                # second word must be a known surname too ("patricia desrosiers").
                if first in self._given and last in self._surnames:
                    yield _result(self, "PERSON", match.start(), match.end(), self.FULL, "a known given name and a surname, in lower case")
        for match in _SPEAKER.finditer(text) if ":" in text else ():
            if match.group(1).casefold() in self._given:
                yield _result(self, "PERSON", match.start(1), match.end(1), self.ALONE, "a known given name opening a line of dialogue")
        for match in _INITIALLED.finditer(text):
            first, initial, dot, last = match.group(1, 2, 3, 4)
            if first.casefold() in _NOT_FIRST or {first.casefold(), last.casefold()} & _NOT_SURNAMES:
                continue
            if initial in "AI" and not dot and first.casefold() not in self._given:
                continue  # "Book A Table", "Did I Say": an article or a pronoun
            if _HOUSE_NUMBER.match(text, match.end()):
                continue
            yield _result(self, "PERSON", match.start(), match.end(), self.INITIALLED, "a middle initial between two names")

    def _surname_end(self, text: str, position: int) -> int:
        """Where the surname after a given name ends (``position`` when none follows)."""
        end = last_word = position
        for _ in range(3):
            following = _NEXT.match(text, end)
            if following is None or following.group(2).casefold().strip(".") in _NOT_SURNAMES:
                break
            end = following.end()
            if len(following.group(2).rstrip(".")) > 1:
                last_word = end  # a name ends on a word, never on an initial or a particle
        end = last_word
        if end > position and _HOUSE_NUMBER.match(text, end):
            return position  # "Peter Zuidhove 188": a street
        return end

    def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[RecognizerResult]:
        if "PERSON" not in entities:
            return []
        found = list(self._take(text))  # what the pre-check found, or a search now
        doc = getattr(nlp_artifacts, "tokens", None)
        if doc is not None and doc.has_annotation("TAG"):
            for token in doc:
                if token.ent_type_ == "PERSON":
                    continue  # NER found it already: one finding is enough
                if token.pos_ == "PROPN" and token.text[:1].isupper() and token.text.casefold() in self._given and not _joined(token):
                    start, end = token.idx, token.idx + len(token.text)
                    if not any(r.start <= start and end <= r.end for r in found):
                        found.append(_result(self, "PERSON", start, end, self.ALONE, "a known given name, a proper noun"))
        return found


@functools.lru_cache(maxsize=1)
def country_names() -> frozenset[str]:
    """Countries' English names from Faker's address provider, a bracketed aside dropped
    ("Slovakia (Slovak Republic)" gives "Slovakia")."""
    provider = importlib.import_module("faker.providers.address.en_US").Provider
    return frozenset(regex.sub(r"\s*\(.*\)$", "", name) for name in provider.countries)


@functools.lru_cache(maxsize=1)
def town_names() -> frozenset[str]:
    """Towns from Faker's per-country address providers (those that list real ones), less
    common words and names of two letters."""
    providers = importlib.import_module("faker.providers.address")
    towns: set[str] = set()
    for module in pkgutil.iter_modules(providers.__path__):
        provider = importlib.import_module(f"faker.providers.address.{module.name}").Provider
        for attribute in ("cities", "city_names"):
            value = provider.__dict__.get(attribute)
            if isinstance(value, (list, tuple, set, frozenset)):
                towns.update(name for name in value if isinstance(name, str) and len(name) >= 3)
    return frozenset(name for name in towns if name.casefold() not in _COMMON_WORDS)


def _by_first_word(names: Iterable[str]) -> dict[str, list[str]]:
    """Names by their first word, case-folded, longest first: one dictionary lookup per word
    of the text, not one alternation of thousands of names run over it."""
    table: dict[str, list[str]] = {}
    for name in sorted(names, key=len, reverse=True):
        table.setdefault(name.split()[0].casefold(), []).append(name)
    return table


class PlaceRecognizer(LayoutRecognizer):
    """A country's name, capitalised or in capitals; with the tagger, a known town."""

    ENTITIES = ("LOCATION",)
    SCORE = 0.6

    def __init__(self, supported_language: str = "en") -> None:
        super().__init__(supported_language)
        self._by_first = _by_first_word(country_names())
        self._towns = _by_first_word(town_names())

    def find(self, text: str) -> Iterator[RecognizerResult]:
        for word in _CAPITALISED_ANY.finditer(text):
            candidates = self._by_first.get(word.group(0).casefold())
            if candidates is None:
                continue
            start = word.start()
            for name in candidates:
                found = text[start : start + len(name)]
                if (found == name or found.isupper() and found == name.upper()) and not _LETTER_OR_DIGIT.match(text, start + len(name)):
                    if not _ADJECTIVE_ARTICLE.search(text, 0, start):  # "an Brazil bank": an adjective
                        yield _result(self, "LOCATION", start, start + len(name), self.SCORE, "a country's name")
                        yield from self._town_above(text, start, start + len(name))
                    break

    def _town_above(self, text: str, start: int, end: int) -> Iterator[RecognizerResult]:
        """The town on the line above a country that ends an address block ("Salumäe\n Estonia
        62031", "ALFRICK\nUnited Kingdom"): the country alone on its line (a postcode may follow)."""
        if not _COUNTRY_LINE_END.match(text, end):
            return
        window = max(0, start - 120)
        town = _TOWN_ABOVE.search(text, window, start)
        if town is None or any(w.casefold().strip(".") in _NOT_SURNAMES for w in town.group(1).split()):
            return  # not a town's line ("Acme Holdings\nGermany", "Thanks\nSpain")
        yield _result(self, "LOCATION", town.start(1), town.end(1), self.SCORE, "the town above a country in an address")

    def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[RecognizerResult]:
        if "LOCATION" not in entities:
            return []
        found = list(self._take(text))  # what the pre-check found, or a search now
        doc = getattr(nlp_artifacts, "tokens", None)
        if doc is None or not doc.has_annotation("TAG"):
            return found
        for token in doc:
            if token.pos_ != "PROPN" or not token.text[:1].isupper() or token.ent_type_ in ("GPE", "LOC"):
                continue  # not a proper noun, or NER found the place already
            start = token.idx
            for name in self._towns.get(token.text.casefold(), ()):
                end = start + len(name)
                if text[start:end].casefold() == name.casefold() and not _LETTER_OR_DIGIT.match(text, end):
                    if not any(r.start < end and start < r.end for r in found):
                        found.append(_result(self, "LOCATION", start, end, self.SCORE, "a known town, a proper noun"))
                    break
        return found


_CAPITALISED_ANY = regex.compile(r"(?<![\p{L}\d])\p{Lu}[\p{L}'’\-]*")
_LETTER_OR_DIGIT = regex.compile(r"[\p{L}\d]")
_ADJECTIVE_ARTICLE = regex.compile(r"(?i)(?<![\p{L}])an?[ \t]+$")
# A line of an address block: quoting or a bullet, then the line.
_LINE_LEAD = rf"{_QUOTED}*"
_COUNTRY_LINE_END = regex.compile(r"[ \t]*(?:\([\p{L} ]+\))?[ \t]*,?[ \t]*(?:[A-Z\d][A-Z\d \-]{2,9})?[ \t]*(?:\r?\n|\Z)")
_TOWN_WORD = r"\p{Lu}[\p{L}'’\-.]*\p{L}"
_TOWN_ABOVE = regex.compile(
    rf"(?:^|\n){_LINE_LEAD}({_TOWN_WORD}(?:[ \t]+(?:(?:de|del|de la|da|do|dos|das|du|des|di|la|le|les|sur|am|an|im|upon|u|v|nad|pod|van|von|aan|den|der)[ \t]+)?{_TOWN_WORD}){{0,3}})"
    rf"[ \t]*,?[ \t]*(?:[A-Z\d][A-Z\d \-]{{2,9}})?[ \t]*\r?\n(?:[ \t>]*\r?\n)?{_LINE_LEAD}\Z"
)


_ANY_WORD = r"\p{L}[\p{L}'’\-]*\p{L}"
# "Hawkins, Richardson and Santana" (in lower case too), "Thomas and Sons", "Smith & Co".
_FIRM = regex.compile(
    rf"(?<!,[ \t]*)(?<![\p{{L}}\d])({_ANY_WORD}),[ \t]*({_ANY_WORD}),?[ \t]+(?:and|&)[ \t]+({_ANY_WORD})(?![ \t]*,[ \t]*{_ANY_WORD})(?![\p{{L}}\d])"
    rf"|(?<![\p{{L}}\d])({_WORD})[ \t]+(?:and|&)[ \t]+(?:Sons|Daughters|Brothers|Partners|Associates|Co)\b\.?"
)
_COMPANY_WORD = rf"{_WORD}(?:-{_WORD})*"
# "The address of Evidera is ...", "the headquarters of Acme": what has an address of its own is a company.
_ADDRESS_OF = regex.compile(
    rf"(?i:\bthe[ \t]+(?:(?:postal|street|office|mailing)[ \t]+)?(?:address|headquarters|head office|website|web site)[ \t]+of)[ \t]+"
    rf"({_COMPANY_WORD}(?:[ \t]+{_COMPANY_WORD}){{0,3}})"
)
_EMPLOYER_CUES = ("work", "employ", "year", "month", "intern", "job", "position", "role")
_SINGULAR_VERB = regex.compile(r"[ \t]+(?:is|was|has)\b")
# The employer after "I work for", "she works at", "employed by".
# Also where someone spent time in a job: "spent a year at Sigfig", "the following year at
# Numedii", "interned at", "a job at".
_EMPLOYER = regex.compile(
    rf"(?i:\b(?:work(?:s|ed|ing)?[ \t]+(?:for|at)|employed[ \t]+(?:by|at)|employer[ \t]+is|years?[ \t]+at|months?[ \t]+at|"
    rf"intern(?:s|ed|ing)?[ \t]+at|(?:job|position|role|internship)[ \t]+at))[ \t]+"
    rf"({_WORD}(?:[ \t]+{_WORD}){{0,3}})"
)
# A name that a sentence says is a company: "Standard And Poors is a design agency",
# "Ramsey-Johnson is an Swedish multinational investment bank". The kind of business ends its
# phrase ("a bank teller" is a person's job, not a company).
_ORG_NOUNS = (
    r"company|agency|firm|bank|startup|start-up|corporation|conglomerate|multinational|manufacturer|retailer|consultancy|"
    r"organi[sz]ation|nonprofit|non-profit|charity|business|brand|label|publisher|airline|insurer|enterprise|subsidiary|"
    r"cooperative|co-op|franchise|marketplace|chain|outlet|supplier|vendor|carrier|utility"
)
_IS_A_COMPANY = regex.compile(
    rf"(?<![\p{{L}}\d])({_COMPANY_WORD}(?:[ \t]+(?:(?i:and|&|of)[ \t]+)?{_COMPANY_WORD}){{0,3}})[ \t]+(?:is|was|has been)[ \t]+"
    rf"(?:an?|the|one of the)[ \t]+(?:[\p{{L}}\-]+[ \t]+){{0,4}}?(?i:{_ORG_NOUNS})(?:s|es)?"
    rf"(?=[ \t]*(?:[,.;:!?)]|$)|[ \t]+(?:based|that|which|with|in|from|headquartered|founded|and|for|offering|specializing|specialising|providing|serving|owned|operating|on)\b)"
)
# A person's company: "Margaret S. Stouffer of Guidestar", "Panjiva's Riku Andou" (the name
# begins with a known given name). What NER calls a person there is the company; a place
# stays one ("Jane Doe of Leeds").
_FULL_NAME = rf"{_WORD}(?:[ \t]+(?:{_INITIAL}|{_WORD})){{1,3}}"
_OF_COMPANY = regex.compile(rf"(?<![\p{{L}}\d])({_FULL_NAME})[ \t]+of[ \t]+({_COMPANY_WORD}(?:[ \t]+{_COMPANY_WORD}){{0,2}})")
_COMPANYS = regex.compile(rf"(?<![\p{{L}}\d])({_WORD}(?:[ \t]+{_WORD}){{0,2}})['’]s?[ \t]+({_FULL_NAME})")
# Findings from language that a company's name overrides (not a layout rule's: "I work at
# Acme. Regards, Jane Doe" keeps Jane).
_OVERRIDDEN = frozenset({"SpacyRecognizer", "NameRepeats"})
# What goes inside each kind of span: everything that overlaps it, NER's people and places
# inside it, NER's people inside it.
ALL, NER, NER_PEOPLE = "all", "ner", "ner-people"


def companies(text: str) -> list[tuple[int, int, str]]:
    """Spans naming a company, each with what goes inside it: everything (a firm of
    surnames), NER's people and places (an employer, who may still be a person: "I work for
    Jane Doe" is kept), or NER's people (a person's company)."""
    given = given_names()
    spans: list[tuple[int, int, str]] = []
    lowered = text.lower()
    firms = _FIRM.finditer(text) if "and" in lowered or "&" in text else ()
    employers = _EMPLOYER.finditer(text) if any(cue in lowered for cue in _EMPLOYER_CUES) else ()
    for match in firms:
        words = [w for w in match.groups() if w]
        # "Anna, Bob and Carl" are people; a firm's surnames may hold one given name ("Coleman").
        if text[: match.start()].rstrip().endswith(":"):
            continue  # "our 3 founders: Monjeau, Graves and Reed": an enumeration of people
        # "Lopez, Santos and Coleman is a design agency": one thing, whatever the names.
        one_thing = _SINGULAR_VERB.match(text, match.end()) is not None
        if match.group(4) is not None or one_thing or sum(w.casefold() in given for w in words) < 2:
            spans.append((match.start(), match.end(), ALL))
    if "address" in lowered or "headquarters" in lowered or "website" in lowered:
        for match in _ADDRESS_OF.finditer(text):
            spans.append((match.start(1), match.end(1), NER))
    if " is " in text or " was " in text or " has been " in text:
        for match in _IS_A_COMPANY.finditer(text):
            spans.append((match.start(1), match.end(1), NER))
    for match in employers:
        first = match.group(1).split()[0]
        if first.casefold() not in given:
            spans.append((match.start(1), match.end(1), NER))
    if " of " in text:
        for match in _OF_COMPANY.finditer(text, overlapped=True):
            if match.group(1).split()[0].casefold() in given and match.group(2).split()[0].casefold() not in given:
                spans.append((match.start(2), match.end(2), NER_PEOPLE))
    if "'" in text or "’" in text:
        for match in _COMPANYS.finditer(text, overlapped=True):
            if match.group(2).split()[0].casefold() in given and match.group(1).split()[-1].casefold() not in given:
                spans.append((match.start(1), match.end(1), NER_PEOPLE))
    return spans


def _addressees(text: str, results: list[Any]) -> list[tuple[int, int, str]]:
    """The line above a street address, when it is one word that is no given name: a company
    ("Kyruus\n\n9791 Markt 84"); a person is addressed by a given name and a surname."""
    spans = []
    for result in results:
        if (result.recognition_metadata or {}).get(RecognizerResult.RECOGNIZER_NAME_KEY) != "StreetAddressRecognizer":
            continue
        above = _ONE_WORD_ABOVE.search(text, max(0, result.start - 80), result.start)
        if above is not None and above.group(1).casefold() not in given_names():
            spans.append((above.start(1), above.end(1), NER))
    return spans


_ONE_WORD_ABOVE = regex.compile(r"(?:^|\n)[ \t>]*(\p{Lu}[\p{L}\-]*\p{L})[ \t]*\r?\n(?:[ \t>]*\r?\n)?[ \t>]*\Z")


def without_companies(text: str, results: list[Any]) -> list[Any]:
    """``results`` less the people and places found inside a company's name (see ``companies``)."""
    if not any(r.entity_type in ("PERSON", "LOCATION") for r in results):
        return results  # nothing a company's name could hold: its spans are not looked for
    spans = companies(text)
    if "\n" in text and any(r.entity_type == "LOCATION" for r in results):
        spans += _addressees(text, results)
    if not spans:
        return results

    def goes(result: Any, start: int, end: int, kind: str) -> bool:
        if kind == ALL:  # a firm's name overrides what overlaps it ("Williamson Orchestra")
            return result.start < end and start < result.end
        source = (result.recognition_metadata or {}).get(RecognizerResult.RECOGNIZER_NAME_KEY, "")
        inside = start <= result.start and result.end <= end and source in _OVERRIDDEN
        return inside and (kind == NER or result.entity_type == "PERSON")

    return [r for r in results if r.entity_type not in ("PERSON", "LOCATION") or not any(goes(r, *span) for span in spans)]
