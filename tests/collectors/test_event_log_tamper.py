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


def test_the_second_half_of_the_last_record_cut_is_named_when_the_writers_head_counts_it(tmp_path: Path) -> None:
    _build(tmp_path, close=False)
    path = _segment(tmp_path, 3)
    path.write_bytes(path.read_bytes()[:-30])
    report = verify_event_log(tmp_path)
    assert [(p.kind, p.segment) for p in report.problems] == [("truncated", None)]
    assert "seq 39 was written; the log ends at seq 38 (the end of the newest segment is cut mid-record)" in report.problems[0].detail


def test_a_torn_line_the_writers_head_does_not_count_is_a_crash_not_tampering(tmp_path: Path) -> None:
    _build(tmp_path, close=False)
    path = _segment(tmp_path, 3)
    with open(path, "ab") as handle:  # a write the process died in: the marker is rewritten only after it
        handle.write(b'{"event":"exchange","ts":"2026-11-23T10:00:10Z","n":10,"_ch')
    report = verify_event_log(tmp_path)
    assert report.ok and len(report.notices) == 1 and report.records == 40


def _rechain_from(path: Path, position: int, edit) -> None:
    """Edit one record and recompute its hash and every later hash in the file (a careful forger)."""
    from aimsguard.collectors.eventlog._format import chained_line, split_line

    lines = path.read_bytes().splitlines(keepends=True)
    prev = split_line(lines[position])[1].decode()
    for at in range(position, len(lines)):
        seq, _, _, body = split_line(lines[at])
        lines[at], prev = chained_line(seq, prev, edit(body) if at == position else body)
    path.write_bytes(b"".join(lines))


def test_a_rechained_segment_is_blamed_alone_not_the_one_after_it(tmp_path: Path) -> None:
    _build(tmp_path)
    path = _segment(tmp_path, 1)
    _rechain_from(path, 3, lambda body: body.replace(b'"n":3', b'"n":4'))
    assert _found(tmp_path) == [("digest mismatch", path.name, None, None)]


def test_a_digest_altered_to_a_wrong_type_is_named_alone_and_does_not_crash(tmp_path: Path) -> None:
    from aimsguard.collectors.eventlog._format import digest_hash

    _build(tmp_path)
    digest_path = list_segments(tmp_path)[1].digest_path
    digest = {**json.loads(digest_path.read_text()), "last_hash": 5}
    digest_path.write_text(json.dumps(digest))  # its own hash no longer matches
    assert _found(tmp_path) == [("digest mismatch", _segment(tmp_path, 1).name, None, None)]
    digest["digest_hash"] = digest_hash(digest)
    digest["first_seq"] = "a"
    digest["digest_hash"] = digest_hash(digest)
    digest_path.write_text(json.dumps(digest))  # rehashed, so only the types betray it
    problems = verify_event_log(tmp_path).problems
    assert [(p.kind, p.segment) for p in problems] == [("digest mismatch", _segment(tmp_path, 1).name)]
    assert problems[0].detail.startswith("malformed") and "first_seq" in problems[0].detail and "last_hash" in problems[0].detail


def test_swapped_segments_are_one_reordering_not_a_deletion(tmp_path: Path) -> None:
    _build(tmp_path)
    second, third = list_segments(tmp_path)[1:3]
    for a, b in ((second.path, third.path), (second.digest_path, third.digest_path)):
        parked = a.with_name("parked")
        a.rename(parked)
        b.rename(a)
        parked.rename(b)
    problems = verify_event_log(tmp_path).problems
    kinds = [p.kind for p in problems]
    assert "segment deleted" not in kinds and kinds.count("segments reordered") == 1
    (moved,) = [p for p in problems if p.kind == "segments reordered"]
    assert (moved.segment, moved.line, moved.seq) == (third.name, 1, 10) and "seq 10..19" in moved.detail
    # Each digest now sits next to a file it does not describe.
    assert {p.segment for p in problems if p.kind == "digest mismatch"} == {second.name, third.name}


def test_a_run_of_repeated_records_is_one_problem(tmp_path: Path) -> None:
    _build(tmp_path)
    path = _segment(tmp_path, 1)
    _edit_lines(path, lambda lines: [*lines[:6], *lines[1:4], *lines[6:]])  # seq 11-13 again after seq 15
    problems = verify_event_log(tmp_path).problems
    assert [(p.kind, p.line, p.seq) for p in problems if p.kind == "reordered"] == [("reordered", 7, 11)]
    assert "seq 11..13" in problems[0].detail


def test_editing_the_first_record_is_a_change_not_a_deleted_segment(tmp_path: Path) -> None:
    _build(tmp_path)
    path = _segment(tmp_path, 0)
    _edit_lines(path, lambda lines: [lines[0].replace(b'"n":0', b'"n":7'), *lines[1:]])
    assert _found(tmp_path) == [("changed", path.name, 1, 0)]


@pytest.mark.parametrize(
    ("field", "value"),
    [("segment", "events-2026-11-20-000009.jsonl"), ("index", 9), ("day", "2026-11-19"), ("file_sha256", "0" * 64), ("last_seq", 18), ("previous_segment", "elsewhere.jsonl")],
)
def test_a_rehashed_digest_describing_another_file_is_named(tmp_path: Path, field: str, value: object) -> None:
    from aimsguard.collectors.eventlog._format import digest_hash

    _build(tmp_path)
    digest_path = list_segments(tmp_path)[3].digest_path
    digest = {**json.loads(digest_path.read_text()), field: value}
    digest["digest_hash"] = digest_hash(digest)
    digest_path.write_text(json.dumps(digest))
    assert {(k, s) for k, s, _, _ in _found(tmp_path)} == {("digest mismatch", _segment(tmp_path, 3).name)}
