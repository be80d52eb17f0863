import re

import pytest

from aimsguard.guardrails.pii._digits import digit_count, longest_digit_run, min_digit_run, min_digits


@pytest.mark.parametrize(
    ("pattern", "digits"),
    [
        (r"\b([0-9]{5})-([0-9]{4})\b", 9),  # Presidio's SSN form
        (r"(?:[2-9]\d{2})-\d{4}", 7),
        (r"\d{3}(?=\d{4})", 3),  # a lookahead consumes nothing
        (r"12|a", 0),  # the branch without a digit
        (r"(?:ab\d){2,5}", 2),
        (r"[0-9a-f]{8}", 0),  # hex: letters too
        (r"[^0-9]{3}", 0),
        (r"\p{L}+\d{9}", 0),  # the regex module's syntax: unread, rules nothing out
    ],
)
def test_the_fewest_digits_a_match_holds(pattern: str, digits: int) -> None:
    assert min_digits(pattern) == digits


RUN_CASES = [
    (r"\b([0-9]{5})-([0-9]{4})\b", 5),  # Presidio's SSN form: the longer run
    (r"\b[0-9]{8,17}\b", 8),  # a bank account: anchors leave the run whole
    (r"\d{3}(?=\d{4})\d{2}", 5),  # so does a lookahead
    (r"\d{3}[- ]?\d{4}", 4),  # an optional separator may be there: it ends the run
    (r"(?:\d{2}|\d{3})\d", 3),  # the shorter branch
    (r"(?:ab\d{3}){2}", 3),  # inside a repeated group
    (r"(?:ab\d{3})?", 0),  # an optional group holds nothing for sure
    (r"9\d{7}|[a-z]{2}\d{7}", 7),  # Presidio's medical licence: the weaker alternative
    (r"(?:12|a)\d", 1),
    (r"\d\w\d", 1),  # \w may be a digit, or not
    (r"[0-9a-f]{8}", 0),
    (r"\p{L}+\d{9}", 0),  # the regex module's syntax: unread, rules nothing out
]


@pytest.mark.parametrize(("pattern", "run"), RUN_CASES)
def test_the_longest_run_of_digits_every_match_holds(pattern: str, run: int) -> None:
    assert min_digit_run(pattern) == run


@pytest.mark.parametrize(("pattern", "run"), [case for case in RUN_CASES if "\\p" not in case[0]])
def test_no_match_holds_a_shorter_run_than_the_bound(pattern: str, run: int) -> None:
    texts = ["12345-6789", "123 4567", "1234567", "ab123ab456", "9 12345678", "xy1234567", "12a3", "1a2", "123a", "ab12"]
    for text in texts:
        for match in re.finditer(pattern, text):
            assert longest_digit_run(match.group(0)) >= run, (pattern, match.group(0))


def test_the_longest_run_of_a_text() -> None:
    assert longest_digit_run("The Pro plan costs 20 EUR, 135 EUR a year") == 3
    assert longest_digit_run("no digits") == 0


def test_digits_of_any_script_are_counted_as_regex_counts_them() -> None:
    assert digit_count("The Pro plan costs 20 EUR") == 2
    assert digit_count("١٢٣ and 45") == 5  # Arabic-Indic digits match \\d too
    # Garay digits (Unicode 16): the regex module's \\d matches them, Python 3.11's re does not.
    garay = "".join(map(chr, range(0x10D41, 0x10D48)))
    assert digit_count(f"ITIN 9{garay}") == 8 and longest_digit_run(f"ITIN 9{garay}") == 8


def test_a_number_in_digits_only_the_regex_module_knows_is_still_found() -> None:
    """The pre-checks count digits as the patterns read them: an ITIN written partly in Garay
    digits is found, not ruled out by a count made with older Unicode tables."""
    from aimsguard.guardrails.pii._analyzer import PiiAnalyzer

    garay = "".join(map(chr, range(0x10D40, 0x10D4A)))
    text = f"ITIN 9{garay[1:3]}7{garay[1:6]} (forms 1 2 3 4 5 6 7 8 9)"
    analyzer = PiiAnalyzer("en", ["US_ITIN"])
    assert analyzer.could_find(text)
    assert [(r.entity_type, r.start, r.end) for r in analyzer.find(text)] == [("US_ITIN", 5, 14)]


def test_the_licence_hint_reads_digit_runs_as_its_old_expression_did() -> None:
    import re

    from aimsguard.guardrails.pii._analyzer import _licence_hint

    expression = re.compile(r"[^\W\d_]\d|\d[^\W\d_]|\d{6}|\]\d")  # the hint as a search, for comparison
    texts = [
        "", "no digits", "A1234567", "1234 5678", "123456", "12345", "x]1", "[A-Z]]123", "4 ever", "4ever", "B2B",
        "call 555 0134", "ß1", "1ß", "²1", "1²", "١٢٣٤٥٦", "1_2", "_1", "1 a", "9-9", "Z\u0301 1", "a\u03011",
    ]
    assert [_licence_hint(text) for text in texts] == [expression.search(text) is not None for text in texts]


def test_a_validator_that_cannot_read_the_digits_does_not_fail_the_check() -> None:
    """Presidio's medical licence validator calls int() on the match: on Garay digits it raises.
    The match then keeps its pattern's own score (lifted by the context word "licence"), and the
    analysis goes on."""
    from aimsguard.guardrails.pii._analyzer import PiiAnalyzer

    garay = "".join(map(chr, range(0x10D41, 0x10D48)))
    analyzer = PiiAnalyzer("en", ["MEDICAL_LICENSE", "EMAIL_ADDRESS"])
    found = analyzer.find(f"licence AB{garay}, write to ann@example.org")
    assert sorted(r.entity_type for r in found) == ["EMAIL_ADDRESS", "MEDICAL_LICENSE"]
