"""Tampering with the event log: verification names each change, and a clean log verifies."""

import datetime as dt
import json
from pathlib import Path

import pytest

from aimsguard.collectors import SegmentEventLog, verify_event_log
from aimsguard.collectors.eventlog import list_segments

DAYS = ("2026-11-20", "2026-11-21", "2026-11-22", "2026-11-23")
PER_SEGMENT = 10


def _build(directory: Path, *, close: bool = True) -> SegmentEventLog:
    """Four segments (one per day) of ten records each: seq 0-9, 10-19, 20-29, 30-39."""
    log = SegmentEventLog(directory, clock=lambda: dt.datetime(2026, 11, 23, 12, tzinfo=dt.UTC))
    for day in DAYS:
        log.export([{"event": "exchange", "ts": f"{day}T10:00:0{n}Z", "system": "bot", "request_id": f"r{n}", "n": n} for n in range(PER_SEGMENT)])
    if close:
        log.shutdown()
    return log


def _segment(directory: Path, position: int) -> Path:
    return list_segments(directory)[position].path


def _found(directory: Path) -> list[tuple[str, str | None, int | None, int | None]]:
    return [(p.kind, p.segment, p.line, p.seq) for p in verify_event_log(directory).problems]


def _edit_lines(path: Path, edit) -> None:
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(edit(lines)))


def test_a_clean_log_verifies(tmp_path: Path) -> None:
    _build(tmp_path)
    report = verify_event_log(tmp_path)
    assert report.ok and report.problems == []
    assert (report.records, report.segments, report.last_seq) == (40, 4, 39)
    assert report.last_digest_hash == json.loads(list_segments(tmp_path)[-1].digest_path.read_text())["digest_hash"]


def test_a_flipped_byte_is_named_by_segment_line_and_seq(tmp_path: Path) -> None:
    _build(tmp_path)
    path = _segment(tmp_path, 1)
    data = bytearray(path.read_bytes())
    line_start = sum(len(line) for line in data.splitlines(keepends=True)[:3])
    at = data.index(b'"request_id":"r3"', line_start) + len('"request_id":"r')
    data[at] ^= 0x01  # r3 -> r2: still valid JSON, a different record
    path.write_bytes(bytes(data))
    assert _found(tmp_path) == [("changed", path.name, 4, 13)]


def test_a_deleted_record_is_named(tmp_path: Path) -> None:
    _build(tmp_path)
    path = _segment(tmp_path, 1)
    _edit_lines(path, lambda lines: lines[:4] + lines[5:])  # seq 14
    ((kind, segment, line, seq),) = _found(tmp_path)
    assert (kind, segment, seq) == ("removed", path.name, 14) and line == 5


def test_two_swapped_records_are_named(tmp_path: Path) -> None:
    _build(tmp_path)
    path = _segment(tmp_path, 1)
    _edit_lines(path, lambda lines: [*lines[:2], lines[3], lines[2], *lines[4:]])  # seq 12 <-> 13
    assert _found(tmp_path) == [("reordered", path.name, 4, 12)]


def test_a_truncated_segment_is_named(tmp_path: Path) -> None:
    _build(tmp_path)
    path = _segment(tmp_path, 1)
    _edit_lines(path, lambda lines: lines[:7])  # seq 17-19 cut off
    ((kind, segment, _, _),) = _found(tmp_path)
    assert (kind, segment) == ("truncated", path.name)
    assert "3 records missing" in str(verify_event_log(tmp_path).problems[0])


def test_a_segment_cut_mid_line_is_named_as_truncated(tmp_path: Path) -> None:
    _build(tmp_path)
    path = _segment(tmp_path, 2)
    path.write_bytes(path.read_bytes()[:-40])
    assert [(k, s) for k, s, _, _ in _found(tmp_path)] == [("truncated", path.name)]


def test_a_deleted_segment_is_named(tmp_path: Path) -> None:
    _build(tmp_path)
    gone = list_segments(tmp_path)[1]
    gone.path.unlink()
    gone.digest_path.unlink()
    problems = verify_event_log(tmp_path).problems
    assert [(p.kind, p.segment, p.seq) for p in problems] == [("segment deleted", _segment(tmp_path, 1).name, 20)]
    assert "seq 10..19" in problems[0].detail


def test_a_deleted_segment_whose_digest_remains_is_named(tmp_path: Path) -> None:
    _build(tmp_path)
    gone = list_segments(tmp_path)[1]
    gone.path.unlink()
    problems = verify_event_log(tmp_path).problems
    assert {p.kind for p in problems} == {"segment deleted"}
    assert any(p.segment == gone.name for p in problems)


def test_deleting_the_oldest_segment_without_a_retention_record_is_named(tmp_path: Path) -> None:
    _build(tmp_path)
    oldest = list_segments(tmp_path)[0]
    oldest.path.unlink()
    oldest.digest_path.unlink()
    assert [(k, s) for k, s, _, _ in _found(tmp_path)] == [("segment deleted", _segment(tmp_path, 0).name)]


def test_an_altered_digest_is_named(tmp_path: Path) -> None:
    _build(tmp_path)
    digest_path = list_segments(tmp_path)[2].digest_path
    digest = json.loads(digest_path.read_text())
    digest["records"] = 9
    digest_path.write_text(json.dumps(digest))
    assert [(k, s) for k, s, _, _ in _found(tmp_path)] == [("digest mismatch", list_segments(tmp_path)[2].name)]


def test_a_record_appended_to_a_closed_segment_is_named(tmp_path: Path) -> None:
    _build(tmp_path)
    first, second = list_segments(tmp_path)[:2]
    # Copy a valid record of the next segment onto the end of a closed one.
    with open(first.path, "ab") as handle:
        handle.write(second.path.read_bytes().splitlines(keepends=True)[0])
    kinds = {k for k, *_ in _found(tmp_path)}
    assert kinds and kinds <= {"digest mismatch", "reordered"}


@pytest.mark.parametrize("close", [True, False])
def test_a_changed_record_in_the_newest_segment_is_named(tmp_path: Path, close: bool) -> None:
    _build(tmp_path, close=close)
    path = _segment(tmp_path, 3)
    _edit_lines(path, lambda lines: [*lines[:5], lines[5].replace(b'"n":5', b'"n":6'), *lines[6:]])
    assert _found(tmp_path) == [("changed", path.name, 6, 35)]


def test_a_torn_line_in_the_open_segment_is_a_crash_not_tampering(tmp_path: Path) -> None:
    _build(tmp_path, close=False)
    path = _segment(tmp_path, 3)
    path.write_bytes(path.read_bytes()[:-30])
    report = verify_event_log(tmp_path)
    assert report.ok and len(report.notices) == 1 and report.records == 39
