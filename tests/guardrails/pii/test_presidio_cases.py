"""Presidio's own recognizer test cases: the same findings through aimsguard's pre-checks as without.

The cases come from Presidio's test suite (tests/data/presidio_cases.jsonl, copied from the
project's shared evaluation set; source and licence in tests/data/SOURCES.md). Both sides
use the same recognizers and the same offline NLP engine: a stock AnalyzerEngine whose phone
recognizer scans the whole text, and aimsguard's analyzer with its cheap pre-checks and
windowed phone search.
"""

import json
from collections import Counter
from pathlib import Path

import pytest
from presidio_analyzer import AnalyzerEngine, RecognizerRegistry

from aimsguard.guardrails.pii._analyzer import PiiAnalyzer, predefined_recognizers_for
from aimsguard.guardrails.pii._phone import RegionalPhoneRecognizer

CASES = Path(__file__).resolve().parents[2] / "data" / "presidio_cases.jsonl"


def _cases() -> list[dict]:
    return [json.loads(line) for line in CASES.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def engines():
    cases = _cases()
    wanted = sorted({c["entity"] for c in cases})
    stock_registry = RecognizerRegistry(supported_languages=["en"])
    stock_registry.load_predefined_recognizers(languages=["en"])
    covered = {e for r in stock_registry.recognizers for e in r.supported_entities}
    covered |= {e for r in predefined_recognizers_for("en", wanted) for e in r.supported_entities}
    entities = [e for e in wanted if e in covered]
    ours = PiiAnalyzer("en", entities)
    recognizers = [
        RegionalPhoneRecognizer(regions=r.supported_regions, windowed=False) if isinstance(r, RegionalPhoneRecognizer) else r
        for r in ours.engine.registry.recognizers
    ]
    stock = AnalyzerEngine(registry=RecognizerRegistry(recognizers=recognizers, supported_languages=["en"]), nlp_engine=ours.nlp_engine, supported_languages=["en"])
    return cases, ours, stock, set(entities)


def _spans(results) -> list[tuple]:
    return sorted((r.entity_type, r.start, r.end, round(r.score, 6)) for r in results)


def test_aimsguard_finds_exactly_what_presidio_finds_on_presidios_cases(engines) -> None:
    cases, ours, stock, covered = engines
    differences = []
    agree_with_labels: Counter[str] = Counter()
    for case in cases:
        if case["entity"] not in covered:
            continue
        mine = _spans(ours.analyze(case["text"], entities=[case["entity"]]))
        theirs = _spans(stock.analyze(case["text"], language="en", entities=[case["entity"]], score_threshold=0.0))
        if mine != theirs:
            differences.append((case["id"], mine, theirs))
        agree_with_labels[str(sorted([s[1], s[2]] for s in mine) == sorted(case["expected"]))] += 1
    assert differences == []
    compared = sum(agree_with_labels.values())
    print(f"\n{compared} cases compared, all identical; spans equal to the test labels: {agree_with_labels['True']}")
    assert compared >= 900, f"only {compared} cases had a recognizer"
    # Not the point of this test (that is parity), but a regression guard: the labels of
    # Presidio's tests mostly hold under the offline engine too.
    assert agree_with_labels["True"] / compared > 0.99, agree_with_labels


@pytest.mark.parametrize(
    ("text", "entity"),
    [
        ("Phone: 1640 now", "PHONE_NUMBER"),  # phonenumbers calls some 4-digit German numbers valid
        ("Phone: 1689 please", "PHONE_NUMBER"),
        ("Call me on my phone, " + "if it is to be of any use to you and them, " * 9 + "at 212 555 0123 .", "PHONE_NUMBER"),
        ("my social security number, " + "which I only tell people that I really do trust, " * 8 + "is 078-05-1120", "US_SSN"),
    ],
)
def test_edge_cases_found_by_review_stay_identical(engines, text: str, entity: str) -> None:
    _, ours, stock, _ = engines
    assert _spans(ours.analyze(text, entities=[entity])) == _spans(stock.analyze(text, language="en", entities=[entity], score_threshold=0.0))


LAYOUT_TEXTS = [
    "Best regards,\nJane Doe",
    "Thanks, Jane",
    "Hi, my name is Jane van der Berg and I'm Tom",
    "Name: Jane Doe, city: Leeds",
    '{"full_name": "Jane Doe", "city": "Leeds"}',
    "From: Jane Doe <jane@example.com>",
    "name,city\nJane Doe,Leeds\nTom Roe,York",
    "| Name | City |\n|---|---|\n| Jane Doe | Leeds |",
    "id,name",  # a header with no row under it
    "Ship it to 12 High Street, York, YO1 7HH",
    "Hauptstraße 5, 10115 Berlin",
    "How much is the Pro plan?",
    "The Pro plan costs 20 EUR per user per month, billed monthly.",
]


@pytest.fixture(scope="module")
def default_engines():
    """aimsguard's analyzer with the default entities, and a stock engine over its recognizers."""
    ours = PiiAnalyzer("en")
    recognizers = [
        RegionalPhoneRecognizer(regions=r.supported_regions, windowed=False) if isinstance(r, RegionalPhoneRecognizer) else r
        for r in ours.engine.registry.recognizers
    ]
    stock = AnalyzerEngine(registry=RecognizerRegistry(recognizers=recognizers, supported_languages=["en"]), nlp_engine=ours.nlp_engine, supported_languages=["en"])
    return ours, stock


@pytest.mark.parametrize("text", LAYOUT_TEXTS)
def test_names_and_places_from_layout_stay_identical(default_engines, text: str) -> None:
    ours, stock = default_engines
    for entity in ("PERSON", "LOCATION"):
        assert _spans(ours.analyze(text, entities=[entity])) == _spans(stock.analyze(text, language="en", entities=[entity], score_threshold=0.0))
    assert _spans(ours.analyze(text)) == _spans(stock.analyze(text, language="en", entities=sorted(ours.entities), score_threshold=0.0))


def test_a_text_no_recognizer_could_match_in_never_reaches_the_engine(default_engines, monkeypatch: pytest.MonkeyPatch) -> None:
    ours, _ = default_engines
    asked: list[str] = []
    real = ours.engine.analyze
    monkeypatch.setattr(ours.engine, "analyze", lambda text, **kw: asked.append(text) or real(text, **kw))
    assert ours.analyze("How much is the Pro plan? The Pro plan costs 20 EUR per user per month.") == []
    assert asked == []
    # Numbers set off the phone pre-check, but no recognizer returns anything when asked itself.
    assert ours.analyze("Pro includes 100 GB of storage for 240 EUR a year, or 2,400 EUR for ten seats.") == []
    assert asked == []
    assert [r.entity_type for r in ours.analyze("Best regards,\nJane Doe")] == ["PERSON"]
    assert asked == ["Best regards,\nJane Doe"]


def test_could_find_is_false_only_where_find_finds_nothing(engines, default_engines) -> None:
    """could_find clears a text without the engine (and without a worker process): it may
    answer True where nothing is found, never False where something is."""
    cases, _, _, _ = engines
    ours, _ = default_engines
    texts = [case["text"] for case in cases] + LAYOUT_TEXTS + ["The Pro plan costs 20 EUR; 100 GB of storage, 3 seats."]
    cleared = [text for text in texts if not ours.could_find(text)]
    assert [text for text in cleared if ours.find(text)] == []
    assert len(cleared) >= 50  # it does clear texts: ordinary ones, and numbers that are no phone or card
    assert "The Pro plan costs 20 EUR; 100 GB of storage, 3 seats." in cleared


def test_a_layout_recognizer_searches_a_text_once_when_it_finds_something(default_engines, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its pre-check is its own search: the engine, asked next, is handed those results."""
    from aimsguard.guardrails.pii._names import SelfIntroductionRecognizer

    ours, _ = default_engines
    searched: list[str] = []
    real = SelfIntroductionRecognizer.find
    monkeypatch.setattr(SelfIntroductionRecognizer, "find", lambda self, text: searched.append(text) or real(self, text))
    text = "Hi, my name is Jane Doe and I need help."
    first = _spans(ours.analyze(text))
    assert ("PERSON", 15, 23) in [(e, s, t) for e, s, t, *_ in first] and searched == [text]
    assert _spans(ours.analyze(text)) == first  # asked again: the same findings (the handed-over ones are not reused)
    assert searched == [text, text]
