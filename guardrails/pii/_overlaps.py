"""One finding per stretch of text, chosen by what found it."""

from __future__ import annotations

from typing import Any

__all__ = ["without_overlaps"]

# Entities found from a pattern with a checksum, a validator or a fixed shape win an overlap
# against those found from language (NER, layout): an e-mail address stays one even where
# NER calls part of it a person.
_LANGUAGE_FOUND = frozenset({"PERSON", "LOCATION", "NRP", "ORGANIZATION", "DATE_TIME"})


def without_overlaps(results: list[Any]) -> list[Any]:
    """One entity per stretch of text. Pattern-found entities (checksums, validators, fixed
    shapes) beat those found from language; then the surest, then the longest: an e-mail
    address beats a name found inside it."""
    kept: list[Any] = []
    for result in sorted(results, key=lambda r: (r.entity_type in _LANGUAGE_FOUND, -r.score, -(r.end - r.start), r.start)):
        if all(result.end <= k.start or result.start >= k.end for k in kept):
            kept.append(result)
    return sorted(kept, key=lambda r: r.start)
