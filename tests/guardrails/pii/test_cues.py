"""Cue words before a layout recognizer's expressions: never a finding lost.

A recognizer with ``CUES`` is not searched when the case-folded text holds none of them
(``_cues``). These tests hold the cue lists to the expressions: a phrase of every
alternative, in three cases, is found with the cue gate as without it; case folding relates
at least what the ``regex`` module's case-insensitive matching relates; and on Presidio's own
test texts the gated search finds exactly what the full one does.
"""

import json
import sys
from pathlib import Path

import pytest
import regex

from aimsguard.guardrails.pii._cues import folded, has_cue
from aimsguard.guardrails.pii._names import (
    IntersectionRecognizer,
    LocationPhraseRecognizer,
    SelfIntroductionRecognizer,
    SignatureRecognizer,
    layout_recognizers,
)

CASES = Path(__file__).resolve().parents[2] / "data" / "presidio_cases.jsonl"

# One text per alternative of each recognizer's expressions.
PHRASES = {
    SignatureRecognizer: [
        *(f"See you then.\n\n{closing},\nJane Doe" for closing in (
            "Best", "Best regards", "Best wishes", "Kind regards", "Warm regards", "Warmest regards", "Many thanks", "Thanks",
            "Thanks again", "Thanks a lot", "Thank you", "Regards", "Cheers", "Sincerely", "Yours sincerely", "Yours truly",
            "Yours faithfully", "Respectfully", "Cordially", "Take care", "Mit freundlichen Grüßen", "Mit freundlichen Gruessen",
            "MIT FREUNDLICHEN GRÜẞEN", "Freundliche Grüße", "Viele Grüße", "Beste Grüsse", "Liebe Grüße", "Gruß", "Gruss", "MfG",
            "Cordialement", "Bien cordialement", "Bien à vous", "Salutations", "Amicalement", "Un saludo", "Saludos",
            "Saludos cordiales", "Atentamente", "Cordiali saluti", "Distinti saluti", "Saluti", "Met vriendelijke groet",
            "Met vriendelijke groeten", "Vriendelijke groet", "Groeten",
        )),
        "That is all. Thanks, Jane", "see you then.\n-- \nMarie Dubois", "— Jane", "– Jane Doe",
    ],
    SelfIntroductionRecognizer: [
        *(f"Hello, {cue} Jane Doe." for cue in (
            "my name is", "my name's", "my full name is", "name's", "call me", "I go by", "his name is", "her name is",
            "their name is", "maiden name is", "last name is", "first name is", "family name is", "middle name is",
            "given name is", "full name is", "surname is", "name on the account is", "name on the card is", "je m'appelle",
            "je m’appelle", "mon nom est", "ich heiße", "ich heisse", "ICH HEIẞE", "mein Name ist", "me llamo", "mi nombre es",
            "mi chiamo", "il mio nome è", "ik heet", "mijn naam is", "I'm", "I’m", "I am", "ich bin", "je suis", "soy", "sono",
            "ik ben", "said", "says", "asked", "replied", "shouted", "whispered",
        )),
        *(f"Hello, {cue} Jane, from Acme." for cue in ("this is", "it's", "it’s", "c'est", "hier ist", "aquí", "qui è")),
        "hi, my name is borna jerković",
    ],
    LocationPhraseRecognizer: [
        f"Well, {phrase} Leeds." for phrase in (
            "originally from", "grew up in", "born in", "born and raised in", "I live in", "we live in", "he lives in",
            "she lives in", "they live in", "living in", "moved here from", "moved from", "flew to", "flying to", "flew in from",
            "fly to", "arrived at", "arrived in", "arriving at", "arriving in", "based in", "traveling to", "travelling to",
            "home town", "hometown is", "home town of", "home city", "home city is", "wohne in", "lebe in", "komme aus",
            "geboren in", "aufgewachsen in", "j'habite à", "j’habite à", "habite à", "je vis à", "originaire de", "je viens de",
            "né à", "née à", "vivo en", "soy de", "nací en", "crecí en", "abito a", "vivo a", "sono nato a", "sono nata a",
            "woon in", "kom uit",
        )
    ],
    IntersectionRecognizer: ["meet me at the corner of 5th and Main in an hour", "Corner of Nieuwe Baan 473 and Inna Loop"],
}


def _variants(text: str) -> list[str]:
    return [text, text.upper(), text.title()]


@pytest.mark.parametrize("recognizer_class", list(PHRASES), ids=lambda c: c.__name__)
def test_every_alternative_opens_the_gate_and_is_found_as_without_it(recognizer_class) -> None:
    recognizer = recognizer_class("en")
    for phrase in PHRASES[recognizer_class]:
        assert list(recognizer.find(phrase)), f"{recognizer_class.__name__} finds nothing in {phrase!r}: fix the test phrase"
        for text in _variants(phrase):
            full = [(r.entity_type, r.start, r.end) for r in recognizer.find(text)]
            if full:
                assert has_cue(text, recognizer.CUES), f"a finding in {text!r} but no cue of {recognizer_class.__name__}"
            assert [(r.entity_type, r.start, r.end) for r in recognizer._search(text)] == full


def test_a_text_without_cues_is_not_searched() -> None:
    recognizer = SelfIntroductionRecognizer("en")
    calls = []
    recognizer.find = lambda text: calls.append(text) or iter(())  # type: ignore[method-assign]
    assert recognizer.finds_any("How much is the Pro plan?") is False
    assert calls == []
    assert recognizer.finds_any("Hi, my name is Jane") is False  # the stub finds nothing, but was asked
    assert calls == ["Hi, my name is Jane"]


def test_case_folding_relates_whatever_case_insensitive_matching_relates() -> None:
    # Every character the regex module matches case-insensitively to a cue's character
    # must case-fold to that character; otherwise a match could hold no cue.
    every_character = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c < 0xE000)
    cue_characters = {ch for r in layout_recognizers("en") for cue in r.CUES for ch in cue if not ch.isspace()}
    assert cue_characters
    for ch in sorted(cue_characters):
        assert ch.casefold() == ch, f"cue character {ch!r} is not written case-folded"
        for related in set(regex.findall("(?i)" + regex.escape(ch), every_character)):
            assert folded(related) == ch, f"{related!r} matches {ch!r} case-insensitively but folds to {folded(related)!r}"


def test_on_presidios_test_texts_the_gated_search_finds_what_the_full_one_does() -> None:
    texts = [json.loads(line)["text"] for line in CASES.read_text().splitlines() if line.strip()]
    for recognizer in layout_recognizers("en"):
        if not recognizer.CUES:
            continue
        for text in texts + [t.upper() for t in texts]:
            full = [(r.entity_type, r.start, r.end, r.score) for r in recognizer.find(text)]
            assert [(r.entity_type, r.start, r.end, r.score) for r in recognizer._search(text)] == full, text


def test_every_title_opens_the_title_gate() -> None:
    from aimsguard.guardrails.pii._gazetteers import _TITLE_CUES, _TITLED, _TITLES

    for title in _TITLES.replace("\\.", ".").split("|"):
        for text in _variants(f"Please ask {title}. Jane Doe about it") + _variants(f"Please ask {title} Jane Doe about it"):
            if _TITLED.search(text):
                assert has_cue(text, _TITLE_CUES), text
    assert _TITLED.search("Please ask Sig.ra Jane Rossi") and has_cue("Please ask Sig.ra Jane Rossi", _TITLE_CUES)
    # and the whole recognizer still finds titled names
    from aimsguard.guardrails.pii._gazetteers import GivenNameRecognizer

    assert [(r.start, r.end) for r in GivenNameRecognizer("en").find("Please ask DR. Zyx Quorp")] == [(15, 24)]


def test_cues_registered_after_a_text_was_read_are_found_in_it() -> None:
    from aimsguard.guardrails.pii._cues import Cues, cues_in

    text = "Zebrafinches nest in the Outback"
    assert has_cue(text, Cues(("outback",)))
    assert "zebrafinch" not in cues_in(text)  # remembered for this text: the cues known then
    assert has_cue(text, Cues(("zebrafinch",)))  # registering clears what was remembered
    assert has_cue(text.upper(), ("nest in",)) and not has_cue(text, ("nestle",))  # a plain list is registered on the way
