import pytest

from aimsguard.guardrails.pii._digits import digit_count, min_digits


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


def test_digits_of_any_script_are_counted_as_regex_counts_them() -> None:
    assert digit_count("The Pro plan costs 20 EUR") == 2
    assert digit_count("١٢٣ and 45") == 5  # Arabic-Indic digits match \\d too


def test_the_licence_hint_reads_digit_runs_as_its_old_expression_did() -> None:
    import re

    from aimsguard.guardrails.pii._analyzer import _licence_hint

    expression = re.compile(r"[^\W\d_]\d|\d[^\W\d_]|\d{6}|\]\d")  # the hint as a search, for comparison
    texts = [
        "", "no digits", "A1234567", "1234 5678", "123456", "12345", "x]1", "[A-Z]]123", "4 ever", "4ever", "B2B",
        "call 555 0134", "ß1", "1ß", "²1", "1²", "١٢٣٤٥٦", "1_2", "_1", "1 a", "9-9", "Z\u0301 1", "a\u03011",
    ]
    assert [_licence_hint(text) for text in texts] == [expression.search(text) is not None for text in texts]
