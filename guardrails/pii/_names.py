"""Names and places found from how a text is laid out, not by NER alone.

A small spaCy pipeline misses many names in chat, logs and tables, and without one there is
no NER at all. People announce their names in a few fixed ways, and those are recognizers
here, registered in Presidio's analyzer like any other:

- ``SignatureRecognizer``: the line after a closing ("Best regards,\\nJane Doe", "-- Jane");
- ``SelfIntroductionRecognizer``: "my name is ...", "I'm ...", "je m'appelle ...";
- ``LabelledFieldRecognizer``: a field whose label says what it holds, in a form, a log or
  JSON ("Name: Jane Doe", ``"city": "Leeds"``), an e-mail header's display name, and the
  cells under such a column in CSV, TSV or Markdown tables;
- ``LocationPhraseRecognizer``: the place after "I live in", "originally from", "flew to",
  "je vis à", "komme aus" ...;
- ``StreetAddressRecognizer`` (in ``_addresses``): a street line and the unit, town, region,
  country and postcode parts that follow it;
- ``IntersectionRecognizer``: "the corner of Main Street and 5th Avenue";
- ``GivenNameRecognizer`` and ``PlaceRecognizer`` (in ``_gazetteers``): names with a known
  given name, a title or a middle initial, and countries' names.

Labels and phrases cover English, German, French, Spanish, Italian and Dutch.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from typing import Any

import regex
from presidio_analyzer import AnalysisExplanation, LocalRecognizer, RecognizerResult

from ._cues import Cues, has_cue

__all__ = [
    "IntersectionRecognizer", "LabelledFieldRecognizer", "LayoutRecognizer", "LocationPhraseRecognizer", "SelfIntroductionRecognizer", "SignatureRecognizer",
    "layout_recognizers",
]

# A capitalised word of two or more letters ("Jane", "O'Brien", "Müller-Lüdenscheidt"), or
# an initial ("J."); particles inside a name ("van", "de la").
_WORD = r"\p{Lu}[\p{L}'’\-]*\p{L}"
_PART = rf"(?:{_WORD}|\p{{Lu}}\.)"
_PARTICLE = r"(?:van|von|de|der|den|da|di|del|della|la|le|du|dos|das|ten|ter|bin|al)"
NAME = rf"{_WORD}(?:[ \t]+(?:{_PARTICLE}[ \t]+){{0,2}}{_PART}){{0,3}}"

# Capitalised words that follow "I'm" or "I am" without being a name.
_NOT_NAMES = frozenset(
    """a an the not so very sorry also still just really here there in on at from with using trying looking happy glad
    sure back done ok okay fine new unable able writing calling contacting monday tuesday wednesday thursday friday
    saturday sunday january february march april may june july august september october november december admin
    administrator user customer premium pro enterprise team support service services desk care staff department office
    group your our inc ltd llc gmbh corporation corp company holdings partners associates technologies systems solutions
    consulting bank capital labs terminal gate platform""".split()
)


def _names_no_one(name: str) -> bool:
    """"The Acme Support Team", "Customer Care": a sign-off or a phrase, not a person."""
    return name.isupper() or any(word.lower().strip(".") in _NOT_NAMES for word in name.split())


def _result(recognizer: LocalRecognizer, entity: str, start: int, end: int, score: float, why: str) -> RecognizerResult:
    return RecognizerResult(
        entity_type=entity, start=start, end=end, score=score,
        analysis_explanation=AnalysisExplanation(recognizer=type(recognizer).__name__, original_score=score, textual_explanation=why),
        recognition_metadata={RecognizerResult.RECOGNIZER_NAME_KEY: recognizer.name, RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: recognizer.id},
    )


class LayoutRecognizer(LocalRecognizer):
    """A recognizer that needs no NLP artefacts: one entity, found by layout.

    ``CUES``, when a subclass gives them, are substrings (case-folded) of which every match
    holds one: a text with none is not searched (see ``_cues``)."""

    ENTITIES: tuple[str, ...] = ("PERSON",)
    CUES: Cues = Cues(())

    def __init__(self, supported_language: str = "en") -> None:
        super().__init__(supported_entities=list(self.ENTITIES), supported_language=supported_language, name=type(self).__name__)
        self._memo = threading.local()  # the last text's results, per thread (see finds_any)

    def load(self) -> None:
        pass

    def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[RecognizerResult]:
        return [r for r in self._take(text) if r.entity_type in entities]

    def finds_any(self, text: str) -> bool:
        """Whether ``find`` finds anything in ``text``. The analyzer asks this first (to skip the
        engine when nothing could be found); when the engine then asks ``analyze`` about the
        same text in the same thread, the results are handed over, not searched for again."""
        results = self._search(text)
        self._memo.last = (text, results)
        return bool(results)

    def _search(self, text: str) -> list[RecognizerResult]:
        if self.CUES and not has_cue(text, self.CUES):
            return []
        return list(self.find(text))

    def _take(self, text: str) -> list[RecognizerResult]:
        # Taken once: the engine changes results' scores in place (context words).
        last = getattr(self._memo, "last", None)
        self._memo.last = None
        if last is not None and last[0] == text:
            return last[1]
        return self._search(text)

    def find(self, text: str) -> Iterable[RecognizerResult]:
        raise NotImplementedError


_CLOSINGS = (
    r"best(?: regards| wishes)?|kind regards|warm regards|warmest regards|many thanks|thanks(?: again| a lot)?|thank you|"
    r"regards|cheers|sincerely|yours sincerely|yours truly|yours faithfully|respectfully|cordially|take care|"
    r"mit freundlichen gr(?:ü|ue)(?:ß|ss)en|freundliche gr(?:ü|ue)(?:ß|ss)e|viele gr(?:ü|ue)(?:ß|ss)e|beste gr(?:ü|ue)(?:ß|ss)e|"
    r"liebe gr(?:ü|ue)(?:ß|ss)e|gru(?:ß|ss)|mfg|cordialement|bien cordialement|bien à vous|salutations|amicalement|"
    r"un saludo|saludos(?: cordiales)?|atentamente|cordiali saluti|distinti saluti|saluti|"
    r"met vriendelijke groet(?:en)?|vriendelijke groet(?:en)?|groeten"
)


class SignatureRecognizer(LayoutRecognizer):
    """The name under a closing line, or after a signature dash."""

    SCORE = 0.85
    # A closing of _CLOSINGS (case-folded: "grüße" reads "grüsse"), or a signature dash.
    CUES = Cues((
        "best", "regards", "many thanks", "thank", "cheers", "sincerely", "yours", "respectfully", "cordial", "take care",
        "grüss", "gruess", "gruss", "mfg", "bien à vous", "salutations", "amicalement", "saludo", "atentamente", "saluti",
        "groet", "--", "—", "–",
    ))
    _PATTERNS = (
        # "Best regards,\nJane Doe" (the name alone on its line, a title or company may follow)
        regex.compile(rf"(?im)^[ \t>]*(?:{_CLOSINGS})[ \t]*[,.!]?[ \t]*\r?\n(?:[ \t>]*\r?\n)?[ \t>]*(?-i:({NAME}))[ \t]*,?[ \t]*$"),
        # "Thanks, Jane" at the end of a line
        regex.compile(rf"(?im)(?:^|[.!?][ \t]+)(?:{_CLOSINGS})[ \t]*,[ \t]*(?-i:({NAME}))[ \t]*[.!]?[ \t]*$"),
        # "-- \nJane Doe" or "— Jane"
        regex.compile(rf"(?m)^[ \t]*(?:--|—|–)[ \t]*(?:\r?\n[ \t]*)?({NAME})[ \t]*$"),
    )

    def find(self, text: str) -> Iterator[RecognizerResult]:
        for pattern in self._PATTERNS:
            for match in pattern.finditer(text):
                if _names_no_one(match.group(1)):
                    continue
                yield _result(self, "PERSON", match.start(1), match.end(1), self.SCORE, "name under a closing or signature line")


_UPPER = regex.compile(r"\p{Lu}")
# Words that end a name written in lower case.
_LOWER_STOPS = frozenset(
    """but and or is was are if so because who which that when while since please too tomorrow today tonight later now anytime
    asap again something someone anything what this that by my your saved as back""".split()
)


class SelfIntroductionRecognizer(LayoutRecognizer):
    """"My name is Jane Doe", "I'm Jane", "this is Jane from ...", in six languages."""

    STRONG, WEAK = 0.85, 0.6
    # A word of each cue below (_STRONG, _WEAK, _THIS_IS), case-folded.
    CUES = Cues((
        "name", "call me", "go by", "appelle", "nom est", "hei", "llamo", "nombre", "chiamo", "nome", "heet", "naam",
        "i'm", "i’m", "i am", "bin", "suis", "soy", "sono", "ik ben", "said", "says", "asked", "replied", "shouted",
        "whispered", "this is", "it's", "it’s", "c'est", "hier ist", "aquí", "qui è",
    ))
    _STRONG = regex.compile(
        rf"(?i)\b(?:my name is|my name's|my full name is|name's|call me|i go by|"
        rf"(?:his|her|their|maiden|last|first|family|middle|given|full|sur)[ \t]?name is|name on the (?:account|card) is|"
        rf"je m'appelle|je m’appelle|mon nom est|ich hei(?:ß|ss)e|mein name ist|me llamo|mi nombre es|"
        rf"mi chiamo|il mio nome è|ik heet|mijn naam is)[ \t]+(?-i:({NAME}))"
    )
    # (and who speaks in reported speech: '"...," said Erle to Maurice', "says Izumi")
    _WEAK = regex.compile(rf"(?i)\b(?:i'm|i’m|i am|ich bin|je suis|soy|sono|ik ben|said|says|asked|replied|shouted|whispered)[ \t]+(?-i:({NAME}))")
    _THIS_IS = regex.compile(rf"(?i)\b(?:this is|it's|it’s|c'est|hier ist|aquí|qui è)[ \t]+(?-i:({NAME}))(?=[ \t]*,|[ \t]+(?:from|here|speaking|at|with|von|de|di)\b)")

    # The same cues in a text written all in lower case ("my name is borna jerković"): the
    # one or two words after them, short of a word that names no one.
    _STRONG_LOWER = regex.compile(_STRONG.pattern.replace(rf"(?-i:({NAME}))", r"(\p{Ll}[\p{Ll}'’\-]*\p{Ll}(?:[ \t]+\p{Ll}[\p{Ll}'’\-]*\p{Ll})?)"))

    def find(self, text: str) -> Iterator[RecognizerResult]:
        for match in self._STRONG.finditer(text):
            yield _result(self, "PERSON", match.start(1), match.end(1), self.STRONG, "introduced as a name")
        if not _UPPER.search(text):
            for match in self._STRONG_LOWER.finditer(text):
                words = match.group(1).split()
                while words and words[-1] in _NOT_NAMES | _LOWER_STOPS:
                    words.pop()
                if words and words[0] not in _NOT_NAMES | _LOWER_STOPS:
                    end = match.start(1) + len(" ".join(words)) if len(words) == 1 else match.end(1)
                    yield _result(self, "PERSON", match.start(1), end, self.STRONG, "introduced as a name, in lower case")
        for pattern in (self._WEAK, self._THIS_IS):
            for match in pattern.finditer(text):
                if _names_no_one(match.group(1)):
                    continue
                yield _result(self, "PERSON", match.start(1), match.end(1), self.WEAK, "introduced as a name")


# Words that say where the writer (or the person written about) lives, comes from or goes:
# the place after them is theirs. Not "moved to", "returned to" or "I'm in": a new employer,
# a shop and a department follow those as often as a town.
_PLACE_PHRASES = (
    r"originally from|grew up in|born in|born and raised in|i live in|we live in|(?:he|she|they) lives? in|living in|"
    r"moved here from|moved from|flew to|flying to|flew in from|fly to|arrived at|arrived in|arriving at|arriving in|based in|travel(?:l)?ing to|home ?town(?: is| of)?|"
    r"home city(?: is)?|wohne in|lebe in|komme aus|geboren in|aufgewachsen in|j'habite à|j’habite à|habite à|je vis à|"
    r"originaire de|je viens de|né à|née à|vivo en|soy de|nací en|crecí en|abito a|vivo a|sono nato a|sono nata a|"
    r"woon in|kom uit|geboren in"
)
# A place: capitalised or upper-case words, with the particles inside place names.
_PLACE_WORD = r"\p{Lu}[\p{L}'’\-]*\p{L}"
_PLACE = rf"{_PLACE_WORD}(?:[ \t]+(?:(?:de|del|de la|da|do|dos|das|du|des|di|la|le|les|sur|am|an|im|upon|nad|pod|van|von|aan|den|der)[ \t]+)?{_PLACE_WORD}){{0,3}}"


class LocationPhraseRecognizer(LayoutRecognizer):
    """The place after words that tie a person to it: "I live in Leeds", "originally from
    Reguengos de Monsaraz", "flew to HORTEN", "je vis à Lyon"."""

    ENTITIES = ("LOCATION",)
    SCORE = 0.6
    # A word of each phrase of _PLACE_PHRASES, case-folded.
    CUES = Cues((
        "originally", "grew up", "born", "live", "living", "moved", "flew", "fly", "arriv", "based in", "travel", "home",
        "wohne", "lebe", "komme aus", "geboren", "aufgewachsen", "habite", "je vis", "originaire", "viens", "né à", "née à",
        "vivo", "soy de", "nací", "crecí", "abito", "sono nat", "woon", "kom uit",
    ))
    _PATTERN = regex.compile(rf"(?i)\b(?:{_PLACE_PHRASES})[ \t]+(?-i:({_PLACE}))(?![\p{{L}}\d])")

    def find(self, text: str) -> Iterator[RecognizerResult]:
        for match in self._PATTERN.finditer(text):
            start, end = match.span(1)
            for word in regex.finditer(r"\S+", match.group(1)):
                if word.group(0).lower() in _NOT_NAMES:  # "born in January", "based in Support"
                    end = start + len(match.group(1)[: word.start()].rstrip())
                    break
            if end > start:
                yield _result(self, "LOCATION", start, end, self.SCORE, "place tied to a person")


_STREET_WORD = r"[\p{L}\d][\p{L}\d.'’/\-]*"
_NAMED = regex.compile(r"(?<![\p{L}])[\p{Lu}\d]")
_CORNER_STOPS = frozenset("in on at for after before to with is was and or by near please".split())


class IntersectionRecognizer(LayoutRecognizer):
    """A crossing of two streets: "at the corner of Nieuwe Baan 473 and Inna Loop", "the
    corner of 5th and Main". As precise as a street address, with no house number to find."""

    ENTITIES = ("LOCATION",)
    SCORE = 0.7
    CUES = Cues(("corner",))
    _PATTERN = regex.compile(
        rf"(?i)\b(?:the[ \t]+)?corner[ \t]+of[ \t]+((?:{_STREET_WORD}[ \t]+){{1,6}}?)and[ \t]+({_STREET_WORD}(?:[ \t]+{_STREET_WORD}){{0,4}})"
    )

    def find(self, text: str) -> Iterator[RecognizerResult]:
        for match in self._PATTERN.finditer(text):
            end = match.start(2)
            for word in regex.finditer(_STREET_WORD, match.group(2)):
                token = word.group(0)
                if token.lower() in _CORNER_STOPS:
                    break
                end = match.start(2) + word.end()
                if token.endswith(".") and len(token) > 4:
                    end -= 1  # a full stop ends the sentence ("... and Sieda Radial.")
                    break
            sides = (match.group(1), text[match.start(2) : end])
            # Streets are named ("Main", "5th"); "the corner of the room and the door" is not a place.
            if end > match.start(2) and (all(_NAMED.search(side) for side in sides) or not _UPPER.search(text)):
                yield _result(self, "LOCATION", match.start(), end, self.SCORE, "the corner of two streets")


# What a label or a column header says a field holds.
_LABELS: dict[str, str] = {}
for _label in (
    "name|full name|fullname|full_name|first name|firstname|first_name|given name|last name|lastname|last_name|surname|"
    "family name|customer|customer name|customer_name|contact|contact name|contact_name|employee|employee name|patient|"
    "patient name|account holder|cardholder|card holder|sender|recipient|nom|prénom|prenom|nom complet|vorname|nachname|"
    "familienname|nombre|apellido|apellidos|nombre completo|nome|cognome|nome completo|naam|voornaam|achternaam"
).split("|"):
    _LABELS[_label] = "PERSON"
# Who did what, in tickets, logs and credits ("Assigned to: Jane Doe", "Directed by: ..."):
# a team or a bot may stand there too ("Assigned to: Support Team"), so the value must read
# as a person's name.
_ROLE_LABELS = frozenset(
    "author|reporter|assignee|assigned to|reported by|requested by|created by|written by|directed by|produced by|"
    "signed by|attn|attention".split("|")
)
for _label in _ROLE_LABELS:
    _LABELS[_label] = "PERSON"
for _label in (
    "city|town|address|street|street address|address line 1|address line 2|address1|address2|address_line_1|home address|"
    "billing address|shipping address|delivery address|place of birth|birthplace|ville|adresse|adresse postale|ort|stadt|"
    "wohnort|anschrift|straße|strasse|ciudad|dirección|direccion|domicilio|città|citta|indirizzo|plaats|woonplaats|adres|"
    # a calendar invitation's "When: ... / Where: ..." (Outlook's, and its translations)
    "where|wo|où|dónde|donde|dove|waar"
).split("|"):
    _LABELS[_label] = "LOCATION"
del _label


def _label_entity(header: str) -> str | None:
    key = regex.sub(r"[\s_\-]+", " ", header.strip().strip("\"'`*").strip().lower())
    return _LABELS.get(key) or _LABELS.get(key.replace(" ", "_"))


_LABEL_ALTERNATION = "|".join(sorted((regex.escape(label).replace(r"\ ", r"[ _\-]") for label in _LABELS), key=len, reverse=True))


class LabelledFieldRecognizer(LayoutRecognizer):
    """Fields labelled as a name or a place: ``Name: Jane``, ``"city": "Leeds"``, table
    columns headed so, and an e-mail header's display name."""

    ENTITIES = ("PERSON", "LOCATION")
    SCORE = 0.85
    _FIELD = regex.compile(
        rf"(?im)(?:^|(?<=[\s,;{{(|]))[\"']?({_LABEL_ALTERNATION})[\"']?[ \t]*[:=][ \t]*[\"']?"
        rf"([^\s\"',;|<>{{}}()\[\]][^\n\"';|<>{{}}\[\]]*?)[\"']?[ \t]*(?=$|[,;|}}\]\n]|[ \t]+[\w ]{{1,20}}:|[ \t]*<)"
    )
    _MAIL_HEADER = regex.compile(rf"(?m)^(?:From|To|Cc|Bcc|Reply-To|Von|An|De|À|Para|Da|A|Van|Aan)[ \t]*:[ \t]*\"?({NAME})\"?[ \t]*<")
    _DELIMITERS = ("\t", "|", ";", ",")

    def find(self, text: str) -> Iterator[RecognizerResult]:
        if ":" in text or "=" in text:  # a labelled field and a mail header both need one
            yield from self._fields(text)
        yield from self._table_cells(text)

    def _fields(self, text: str) -> Iterator[RecognizerResult]:
        for match in self._FIELD.finditer(text):
            entity = _label_entity(match.group(1))
            value = match.group(2).rstrip()
            if entity is None or not value or (entity == "PERSON" and not _plausible_name(value)):
                continue
            if _role_label(match.group(1)) and _names_no_one(value):
                continue
            if _label_key(match.group(1)) in _WHERE_LABELS and _ONLINE.search(value):
                continue  # "Where: Microsoft Teams Meeting": no place
            start = match.start(2)
            yield _result(self, entity, start, start + len(value), self.SCORE, f"field labelled as {entity.lower()}")
        for match in self._MAIL_HEADER.finditer(text):
            yield _result(self, "PERSON", match.start(1), match.end(1), self.SCORE, "display name in a mail header")

    def _table_cells(self, text: str) -> Iterator[RecognizerResult]:
        lines = _lines(text)
        index = 0
        while index + 1 < len(lines):  # a header line with no line after it heads no cells
            start, line = lines[index]
            delimiter = next((d for d in self._DELIMITERS if line.count(d) >= 1 + (d == "|")), None)
            columns = _split(line, start, delimiter) if delimiter else []
            wanted = {i: _label_entity(cell) for i, (_, _, cell) in enumerate(columns)}
            wanted = {i: entity for i, entity in wanted.items() if entity}
            index += 1
            if not wanted or len(columns) < 2:
                continue
            while index < len(lines):
                row_start, row = lines[index]
                if regex.fullmatch(r"[\s|:\-+]*", row) and row.strip():
                    index += 1  # a Markdown separator row
                    continue
                cells = _split(row, row_start, delimiter)
                if len(cells) != len(columns):
                    break
                for i, entity in wanted.items():
                    cell_start, cell_end, value = cells[i]
                    if value and (entity != "PERSON" or _plausible_name(value)):
                        yield _result(self, entity, cell_start, cell_end, self.SCORE, f"table column headed as {entity.lower()}")
                index += 1


_WHERE_LABELS = frozenset("where|wo|où|dónde|donde|dove|waar".split("|"))
_ONLINE = regex.compile(r"(?i)\b(?:teams|zoom|webex|skype|meet|meeting|hangouts?|online|virtual|call|remote|tbd|tba|n/a|https?)\b")


def _label_key(header: str) -> str:
    return regex.sub(r"[\s_\-]+", " ", header.strip().strip("\"'`*").strip().lower())


def _role_label(header: str) -> bool:
    return regex.sub(r"[\s_\-]+", " ", header.strip().strip("\"'`*").strip().lower()) in _ROLE_LABELS


def _plausible_name(value: str) -> bool:
    words = value.split()
    return 0 < len(words) <= 5 and any(ch.isalpha() for ch in value) and not any(ch.isdigit() or ch == "@" for ch in value)


def _lines(text: str) -> list[tuple[int, str]]:
    lines, start = [], 0
    for line in text.split("\n"):
        lines.append((start, line))
        start += len(line) + 1
    return lines


def _split(line: str, offset: int, delimiter: str) -> list[tuple[int, int, str]]:
    """Cells of a delimited line with their spans (quoted cells may hold the delimiter)."""
    body_start, body = 0, line
    if delimiter == "|":
        stripped = line.strip()
        body_start = line.find(stripped) + (1 if stripped.startswith("|") else 0)
        body = stripped[1:] if stripped.startswith("|") else stripped
        body = body[:-1] if body.endswith("|") else body
    cells = []
    for match in regex.finditer(rf'[ \t]*(?:"((?:[^"]|"")*)"|([^{regex.escape(delimiter)}\n]*))', body):
        if match.start() > 0 and body[match.start() - 1] != delimiter:
            continue
        group = 1 if match.group(1) is not None else 2
        raw = match.group(group)
        lead = len(raw) - len(raw.lstrip())
        value = raw.strip()
        start = offset + body_start + match.start(group) + lead
        cells.append((start, start + len(value), value))
    return cells


def layout_recognizers(language: str) -> list[LocalRecognizer]:
    from ._addresses import StreetAddressRecognizer
    from ._gazetteers import PlaceRecognizer, GivenNameRecognizer

    return [
        SignatureRecognizer(language), SelfIntroductionRecognizer(language), LabelledFieldRecognizer(language),
        LocationPhraseRecognizer(language), StreetAddressRecognizer(language), IntersectionRecognizer(language), GivenNameRecognizer(language),
        PlaceRecognizer(language),
    ]
