"""read_events: the events of the log in write order, without the chain fields.

It streams one segment at a time and skips whole segments that ``since``/``until``
exclude: a closed segment by the time range of its events that its digest records
(``min_ts``/``max_ts``), so an event stamped late (written after later days' segments
were opened) is still found. The day in a segment's name is only a lower bound (a
segment of day D holds no event stamped after D) and is used to skip segments that end
before ``since`` when their digest has no time range. Segments without a usable digest
(the open one) are always read. Lines that are not chained
records (a torn last line, damage) are skipped: ``verify_event_log`` is what reports them.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ._format import Segment, format_ts, is_canonical_ts, iter_lines, list_digests, list_segments, loads_event, read_valid_digest

__all__ = ["read_events"]

_CHAIN = b',"_chain":{"seq":'


def _utc(moment: dt.datetime | dt.date | None) -> dt.datetime | None:
    if moment is None:
        return None
    if not isinstance(moment, dt.datetime):
        moment = dt.datetime(moment.year, moment.month, moment.day)
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


def _event_time(event: dict[str, Any]) -> dt.datetime | None:
    try:
        return _utc(dt.datetime.fromisoformat(event["ts"]))
    except (KeyError, TypeError, ValueError):
        return None


def _in_window(event: dict[str, Any], start: dt.datetime | None, end: dt.datetime | None, bounds: tuple[str, str]) -> bool:
    ts = event.get("ts")
    # Timestamps in the canonical form compare as strings, in order: parsing a million of
    # them costs a report seconds. Any other form is parsed.
    if is_canonical_ts(ts):
        return bounds[0] <= ts < bounds[1]
    moment = _event_time(event)
    return moment is not None and (start is None or moment >= start) and (end is None or moment < end)


def _outside(segment: Segment, digests: dict[int, Path], first_day: str, bounds: tuple[str, str]) -> bool:
    """True when no event of the segment can be in the window (bounds: canonical start, end)."""
    digest = read_valid_digest(digests[segment.index]) if segment.index in digests else None
    if digest is not None and digest.get("segment") == segment.name and "max_ts" in digest:
        earliest, latest = digest.get("min_ts"), digest.get("max_ts")
        # No timestamped event at all: nothing in it can be in a window.
        return earliest is None or latest is None or latest < bounds[0] or earliest >= bounds[1]
    return segment.day < first_day


def read_events(
    directory: str | os.PathLike[str],
    *,
    since: dt.datetime | dt.date | None = None,
    until: dt.datetime | dt.date | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield the events with ``since <= ts < until`` (naive times are UTC), oldest first."""
    start, end = _utc(since), _utc(until)
    first_day = start.date().isoformat() if start else ""
    filtered = start is not None or end is not None
    bounds = (format_ts(start) if start else "", format_ts(end) if end else "\uffff")
    digests = list_digests(Path(directory)) if filtered else {}
    for segment in list_segments(Path(directory)):
        if filtered and _outside(segment, digests, first_day, bounds):
            continue
        try:
            lines = iter_lines(segment.path)
            for line in lines:
                at = line.rfind(_CHAIN)
                body = line[:at] + b"}" if at > 0 else (b"{}" if line.startswith(b'{"_chain":') else None)
                if body is None or not line.endswith(b"\n"):
                    continue
                event = loads_event(body)
                if event is None:
                    continue
                if filtered and not _in_window(event, start, end, bounds):
                    continue
                yield event
        except FileNotFoundError:
            continue  # deleted by retention while we were reading
