"""One finding per stretch of text, chosen by what found it."""

from __future__ import annotations

from typing import Any

__all__ = ["without_overlaps"]

# Entities found from a pattern with a checksum, a validator or a fixed shape win an overlap
# against those found from language (NER, layout): an e-mail address stays one even where
# NER calls part of it a person.
_LANGUAGE_FOUND = frozenset({"PERSON", "LOCATION", "NRP", "ORGANIZATION", "DATE_TIME"})


def without_overlaps(results: list[Any]) -> list[Any]:
    """One entity per stretch of text. Findings of one type that overlap become one (a
    street found by layout and its town found by NER: the whole address). Then pattern-found
    entities (checksums, validators, fixed shapes) beat those found from language (unless an
    unsure one lies inside a longer name or address: then it is part of it), the
    surest first: an e-mail address beats a name found inside it; among language-found
    ones the longest first, so no part of a name or an address is left out."""
    merged: list[Any] = []
    for result in sorted(results, key=lambda r: (r.entity_type, r.start, -r.end)):
        last = merged[-1] if merged else None
        if last is not None and last.entity_type == result.entity_type and result.start < last.end:
            last.end = max(last.end, result.end)
            last.score = max(last.score, result.score)
            continue
        merged.append(result)
    merged = [r for r in merged if not _inside_a_longer_finding(r, merged)]
    kept: list[Any] = []
    for result in sorted(merged, key=_priority):
        if all(result.end <= k.start or result.start >= k.end for k in kept):
            kept.append(result)
    return sorted(kept, key=lambda r: r.start)


# A pattern finding this unsure (a grouped run of digits as a phone) inside a longer finding
# from language is part of that finding: "3369 24" in "3369 24 Clarke Avenue, Apt. 805".
_WEAK_PATTERN = 0.75


def _inside_a_longer_finding(result: Any, results: list[Any]) -> bool:
    return result.entity_type not in _LANGUAGE_FOUND and result.score < _WEAK_PATTERN and any(
        other.entity_type in _LANGUAGE_FOUND and other.start <= result.start and result.end <= other.end
        and other.end - other.start > result.end - result.start
        for other in results
    )


def _priority(result: Any) -> tuple[bool, float, float, int]:
    length = result.end - result.start
    if result.entity_type in _LANGUAGE_FOUND:
        return (True, -length, -result.score, result.start)
    return (False, -result.score, -length, result.start)
