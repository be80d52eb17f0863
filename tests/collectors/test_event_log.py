"""The hash-chained event log: segments, rotation, crash recovery, retention, full disks, reading."""

import datetime as dt
import json
import os
from pathlib import Path

import httpx
import pytest

from aimsguard.agent import AimsguardMiddleware
from aimsguard.collectors import ExportResult, SegmentEventLog, read_events, verify_event_log
from aimsguard.collectors.eventlog import list_segments

needs_dev_full = pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full to simulate a full disk")


def _event(n: int, day: str = "2026-11-26", **fields: object) -> dict:
    return {"event": "exchange", "ts": f"{day}T10:00:00.000001Z", "schema": "aimsguard.event/1", "policy_version": "p1", "n": n, **fields}


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _clock(day: str):
    return lambda: dt.datetime.fromisoformat(f"{day}T12:00:00+00:00")


def test_each_record_is_a_json_line_that_carries_the_hash_of_the_one_before(tmp_path: Path) -> None:
    log = SegmentEventLog(tmp_path, clock=_clock("2026-11-26"))
    assert log.export([_event(1), _event(2)]) is ExportResult.SUCCESS
    (segment,) = list_segments(tmp_path)
    first, second = _lines(segment.path)
    assert first["n"] == 1 and first["_chain"]["seq"] == 0 and first["_chain"]["prev"] == "0" * 64
    assert second["_chain"]["prev"] == first["_chain"]["hash"] and second["_chain"]["seq"] == 1
    assert [e["n"] for e in read_events(tmp_path)] == [1, 2]
    assert "_chain" not in next(read_events(tmp_path))


def test_segments_rotate_by_day_and_size_and_each_closed_one_gets_a_chained_digest(tmp_path: Path) -> None:
    log = SegmentEventLog(tmp_path, max_segment_bytes=2000, clock=_clock("2026-11-27"))
    padding = "x" * 300
    log.export([_event(i, pad=padding) for i in range(8)] + [_event(8, "2026-11-27")])
    log.shutdown()
    segments = list_segments(tmp_path)
    assert [s.day for s in segments][-1] == "2026-11-27" and len(segments) >= 4
    assert all(s.path.stat().st_size <= 2000 for s in segments)
    digests = [json.loads(s.digest_path.read_text()) for s in segments]
    assert digests[0]["previous_digest_hash"] == "0" * 64
    for before, after in zip(digests, digests[1:]):
        assert after["previous_digest_hash"] == before["digest_hash"] and after["first_seq"] == before["last_seq"] + 1
    assert sum(d["records"] for d in digests) == 9
    assert [e["n"] for e in read_events(tmp_path)] == list(range(9))
    report = verify_event_log(tmp_path)
    assert report.ok and report.records == 9 and report.segments == len(segments)


def test_a_restart_continues_the_chain_in_a_new_segment(tmp_path: Path) -> None:
    first = SegmentEventLog(tmp_path, clock=_clock("2026-11-26"))
    first.export([_event(1)])
    first.shutdown()
    second = SegmentEventLog(tmp_path, clock=_clock("2026-11-26"))
    second.export([_event(2)])
    second.shutdown()
    assert len(list_segments(tmp_path)) == 2
    assert verify_event_log(tmp_path).ok and [e["n"] for e in read_events(tmp_path)] == [1, 2]


def test_two_writers_sharing_a_directory_extend_one_chain(tmp_path: Path) -> None:
    """Gateway workers share the policy's directory; the lock keeps one chain."""
    a = SegmentEventLog(tmp_path, clock=_clock("2026-11-26"))
    b = SegmentEventLog(tmp_path, clock=_clock("2026-11-26"))
    for n in range(6):
        (a if n % 2 else b).export([_event(n)])
    a.shutdown()
    b.export([_event(6)])
    b.shutdown()
    report = verify_event_log(tmp_path)
    assert report.ok, report.problems
    assert [e["n"] for e in read_events(tmp_path)] == list(range(7))


def test_a_crash_leaves_a_torn_line_that_is_cut_recorded_and_verifies_as_a_recovery(tmp_path: Path) -> None:
    crashed = SegmentEventLog(tmp_path, clock=_clock("2026-11-26"))
    crashed.export([_event(1), _event(2)])
    segment = crashed.current_segment
    torn = b'{"event":"exchange","ts":"2026-11-26T10:00:01Z","n":3,"_cha'
    with open(segment, "ab") as handle:  # the process died half-way through a write
        handle.write(torn)
    report = verify_event_log(tmp_path)
    assert report.ok and any("incomplete last line" in n for n in report.notices)

    restarted = SegmentEventLog(tmp_path, stamp={"schema": "aimsguard.event/1", "policy_version": "p1"}, clock=_clock("2026-11-26"))
    restarted.export([_event(4)])
    restarted.shutdown()
    events = list(read_events(tmp_path))
    assert [e.get("n") for e in events] == [1, 2, None, 4]
    recovered = events[2]
    assert recovered["event"] == "event_log.recovered" and recovered["segment"] == segment.name
    assert recovered["cut_bytes"] == len(torn) and recovered["policy_version"] == "p1" and recovered["schema"] == "aimsguard.event/1"
    report = verify_event_log(tmp_path)
    assert report.ok, report.problems
    assert any("a crash left a torn record" in n for n in report.notices)


def test_retention_deletes_old_segments_and_records_which_so_verification_still_passes(tmp_path: Path) -> None:
    old = SegmentEventLog(tmp_path, clock=_clock("2026-01-01"))
    for day in ("2026-01-01", "2026-01-02", "2026-01-03"):
        old.export([_event(1, day), _event(2, day)])
    old.shutdown()
    assert len(list_segments(tmp_path)) == 3

    # Half a year later, at start-up: the two oldest go; the newest closed one anchors the chain.
    later = SegmentEventLog(tmp_path, retention_days=30, clock=_clock("2026-07-01"))
    remaining = [s.day for s in list_segments(tmp_path)]
    assert remaining[:1] == ["2026-01-03"] and "2026-01-01" not in remaining and "2026-01-02" not in remaining
    (retention,) = [e for e in read_events(tmp_path) if e["event"] == "event_log.retention"]
    assert [s["day"] for s in retention["segments"]] == ["2026-01-01", "2026-01-02"]
    assert all(len(s["digest_hash"]) == 64 for s in retention["segments"]) and retention["retention_days"] == 30
    later.export([_event(3, "2026-07-01")])
    later.shutdown()
    report = verify_event_log(tmp_path)
    assert report.ok, report.problems
    assert report.deleted_by_retention == 2


def test_retention_also_runs_when_the_day_rolls_over(tmp_path: Path) -> None:
    today = ["2026-03-01"]
    log = SegmentEventLog(tmp_path, retention_days=10, clock=lambda: _clock(today[0])())
    log.export([_event(1, "2026-03-01")])
    log.export([_event(2, "2026-03-02")])
    today[0] = "2026-03-20"
    log.export([_event(3, "2026-03-20")])
    assert [s.day for s in list_segments(tmp_path)] == ["2026-03-02", "2026-03-20"]
    log.shutdown()
    assert verify_event_log(tmp_path).ok


def test_read_events_filters_by_time_and_skips_whole_days(tmp_path: Path) -> None:
    log = SegmentEventLog(tmp_path, clock=_clock("2026-11-29"))
    for day in ("2026-11-26", "2026-11-27", "2026-11-28"):
        log.export([_event(1, day), _event(2, day)])
    # A late event stamped the day before lands at the head of the next day's segment.
    log.export([_event(3, "2026-11-29"), _event(9, "2026-11-28")])
    log.shutdown()
    pick = lambda **kw: [(e["ts"][:10], e["n"]) for e in read_events(tmp_path, **kw)]  # noqa: E731
    assert pick(since=dt.datetime(2026, 11, 27), until=dt.datetime(2026, 11, 28)) == [("2026-11-27", 1), ("2026-11-27", 2)]
    assert pick(since=dt.date(2026, 11, 28), until=dt.date(2026, 11, 29)) == [("2026-11-28", 1), ("2026-11-28", 2), ("2026-11-28", 9)]
    assert pick(since=dt.datetime(2026, 11, 29, tzinfo=dt.UTC)) == [("2026-11-29", 3)]


@needs_dev_full
def test_a_full_disk_loses_nothing_and_the_records_are_written_once_it_recovers(tmp_path: Path) -> None:
    log = SegmentEventLog(tmp_path, clock=_clock("2026-11-26"))
    log.export([_event(0)])
    log.shutdown()
    target = tmp_path / "events-2026-11-26-000002.jsonl"
    target.symlink_to("/dev/full")  # the next segment: every write fails with ENOSPC
    log = SegmentEventLog(tmp_path, clock=_clock("2026-11-26"))
    assert log.export([_event(1), _event(2)]) is ExportResult.FAILURE
    assert not log.healthy
    target.unlink()
    assert log.export([_event(3)]) is ExportResult.SUCCESS
    assert log.healthy
    log.shutdown()
    assert [e["n"] for e in read_events(tmp_path)] == [0, 1, 2, 3]
    assert verify_event_log(tmp_path).ok


@needs_dev_full
def test_the_retry_buffer_is_bounded_and_overflow_is_counted(tmp_path: Path) -> None:
    (tmp_path / "events-2026-11-26-000001.jsonl").symlink_to("/dev/full")
    lost: list[int] = []
    log = SegmentEventLog(tmp_path, max_pending=3, on_lost=lost.append, clock=_clock("2026-11-26"))
    log.export([_event(i) for i in range(5)])
    assert log.lost == 2 and lost == [2]


def test_fsync_mode_writes_durably_and_verifies(tmp_path: Path) -> None:
    log = SegmentEventLog(tmp_path, fsync=True, clock=_clock("2026-11-26"))
    assert log.export([_event(i) for i in range(512)]) is ExportResult.SUCCESS
    log.shutdown()
    assert verify_event_log(tmp_path).records == 512


def test_a_lone_surrogate_is_kept_rather_than_losing_the_batch(tmp_path: Path) -> None:
    log = SegmentEventLog(tmp_path, clock=_clock("2026-11-26"))
    assert log.export([_event(1, model="\ud800"), _event(2)]) is ExportResult.SUCCESS
    log.shutdown()
    assert [e["n"] for e in read_events(tmp_path)] == [1, 2]
    assert verify_event_log(tmp_path).ok


@needs_dev_full
@pytest.mark.anyio
@pytest.mark.parametrize(("fail_mode", "status"), [("closed", 503), ("open", 200)])
async def test_a_failing_event_log_refuses_requests_only_when_the_policy_fails_closed(make_guard, events, fail_mode, status) -> None:
    def set_fail_mode(data):
        data["event_log"]["fail_mode"] = fail_mode

    guard = make_guard(set_fail_mode)
    guard.flush()
    segment = guard.event_log.current_segment
    segment.unlink()
    segment.symlink_to("/dev/full")
    guard.events.emit("probe")
    guard.flush()
    assert not guard.event_log.healthy

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b'{"choices": [{"index": 0, "message": {"content": "ok"}}]}'})

    transport = httpx.ASGITransport(app=AimsguardMiddleware(app, guard=guard))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.post("/v1/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == status
    if status == 503:
        assert response.json()["error"]["code"] == "event_log_unavailable"


def test_the_guard_writes_its_events_through_the_chained_log(make_guard) -> None:
    guard = make_guard(lambda data: data["event_log"].update(max_segment_bytes=65536, retention_days=400))
    guard.events.emit("probe", system="support-bot")
    guard.close()
    kinds = [e["event"] for e in read_events(guard.event_log.directory)]
    assert kinds[:1] == ["policy.loaded"] and "probe" in kinds
    assert verify_event_log(guard.event_log.directory).ok


def test_read_events_window_edges_are_exact_whatever_form_the_timestamp_takes(tmp_path: Path) -> None:
    stamps = [
        "2026-09-30T23:59:59.999999Z",  # just before
        "2026-10-01T00:00:00.000000Z",  # the first instant: in
        "2026-10-01T00:00:00Z",  # no fraction: in (parsed, not compared as text)
        "2026-10-01T01:30:00+02:00",  # 23:30 the day before in UTC: out
        "2026-10-31T23:59:59.999999Z",  # the last instant: in
        "2026-11-01T00:00:00.000000Z",  # until is exclusive: out
        "not a time",  # unreadable: out
    ]
    log = SegmentEventLog(tmp_path, clock=_clock("2026-10-01"))
    log.export([{"event": "x", "ts": ts, "n": n} for n, ts in enumerate(stamps)])
    log.shutdown()
    found = [e["n"] for e in read_events(tmp_path, since=dt.date(2026, 10, 1), until=dt.date(2026, 11, 1))]
    assert found == [1, 2, 4]


def test_records_cut_from_the_open_segment_while_the_writer_runs_are_recorded_as_a_discontinuity(tmp_path: Path) -> None:
    log = SegmentEventLog(tmp_path, clock=_clock("2026-11-26"))
    for n in range(5):
        log.export([_event(n)])
    segment = log.current_segment
    segment.write_bytes(b"".join(segment.read_bytes().splitlines(keepends=True)[:3]))  # seq 3 and 4 cut
    log.export([_event(9)])
    log.shutdown()
    events = list(read_events(tmp_path))
    assert [e.get("n") for e in events] == [0, 1, 2, None, 9]
    gap = events[3]
    assert gap["event"] == "event_log.discontinuity" and (gap["expected_seq"], gap["found_seq"]) == (4, 2)
    problems = verify_event_log(tmp_path).problems
    assert [(p.kind, p.seq) for p in problems] == [("discontinuity", 3)]


def test_a_newest_segment_deleted_with_its_digest_is_caught_by_the_head_marker(tmp_path: Path) -> None:
    log = SegmentEventLog(tmp_path, clock=_clock("2026-11-27"))
    for day in ("2026-11-26", "2026-11-27"):
        log.export([_event(1, day), _event(2, day)])
    log.shutdown()
    newest = list_segments(tmp_path)[-1]
    newest.path.unlink()
    newest.digest_path.unlink()
    report = verify_event_log(tmp_path)
    assert [(p.kind, p.segment) for p in report.problems] == [("truncated", None)] and "seq 3" in report.problems[0].detail
    # A writer starting on it carries on, and records what it found.
    restarted = SegmentEventLog(tmp_path, clock=_clock("2026-11-27"))
    restarted.export([_event(3, "2026-11-27")])
    restarted.shutdown()
    (gap,) = [e for e in read_events(tmp_path) if e["event"] == "event_log.discontinuity"]
    assert (gap["expected_seq"], gap["found_seq"], gap["source"]) == (3, 1, "the lock file's head marker")
    assert [p.kind for p in verify_event_log(tmp_path).problems] == ["discontinuity"]


@pytest.mark.parametrize("damage", [{"last_hash": 5}, {"last_seq": "a"}, {"first_seq": 1.5}])
def test_the_writer_starts_past_a_malformed_newest_digest_and_records_it(tmp_path: Path, damage: dict) -> None:
    from aimsguard.collectors.eventlog._format import digest_hash

    log = SegmentEventLog(tmp_path, clock=_clock("2026-11-26"))
    log.export([_event(1), _event(2)])
    log.shutdown()
    digest_path = list_segments(tmp_path)[-1].digest_path
    digest = {**json.loads(digest_path.read_text()), **damage}
    digest["digest_hash"] = digest_hash(digest)
    digest_path.write_text(json.dumps(digest))
    report = verify_event_log(tmp_path)
    assert [p.kind for p in report.problems] == ["digest mismatch"] and "malformed" in report.problems[0].detail

    restarted = SegmentEventLog(tmp_path, clock=_clock("2026-11-26"))
    assert restarted.healthy
    restarted.export([_event(3)])
    restarted.shutdown()
    events = list(read_events(tmp_path))
    assert [e.get("n") for e in events] == [1, 2, None, 3] and events[2]["event"] == "event_log.digest_damaged"
    assert [json.loads(line)["_chain"]["seq"] for s in list_segments(tmp_path) for line in s.path.read_text().splitlines()] == [0, 1, 2, 3]
    report = verify_event_log(tmp_path)  # the damaged digest alone is named; the chain runs on
    assert [(p.kind, p.segment) for p in report.problems] == [("digest mismatch", digest_path.name.replace(".digest.json", ".jsonl"))]


def test_read_events_finds_a_late_event_written_after_the_segments_of_later_days(tmp_path: Path) -> None:
    log = SegmentEventLog(tmp_path, clock=_clock("2026-12-02"))
    log.export([_event(1, "2026-11-30"), _event(2, "2026-12-01"), _event(3, "2026-12-02")])
    log.export([_event(4, "2026-11-30")])  # stamped Nov 30, written into Dec 2's segment
    log.export([_event(5, "2026-12-03")])
    log.shutdown()
    digests = [json.loads(s.digest_path.read_text()) for s in list_segments(tmp_path)]
    assert (digests[2]["min_ts"], digests[2]["max_ts"]) == ("2026-11-30T10:00:00.000001Z", "2026-12-02T10:00:00.000001Z")
    november = [e["n"] for e in read_events(tmp_path, since=dt.date(2026, 11, 1), until=dt.date(2026, 12, 1))]
    assert november == [1, 4]
    assert [e["n"] for e in read_events(tmp_path, since=dt.date(2026, 12, 3))] == [5]


def test_a_digest_is_kept_while_writing_and_closing_reads_back_only_what_other_writers_appended(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from aimsguard.collectors.eventlog._format import SegmentSummary, segment_summary

    read: list[int] = []
    original = SegmentSummary.read_from

    def counting(self: SegmentSummary, path: Path, end: int) -> None:
        read.append(end - self.size)
        original(self, path, end)

    monkeypatch.setattr(SegmentSummary, "read_from", counting)
    alone = SegmentEventLog(tmp_path / "alone", clock=_clock("2026-11-26"))
    for n in range(50):
        alone.export([_event(n, ts=f"2026-11-26T{n * 7 % 24:02d}:00:00.000000Z")])  # out of order
    alone.shutdown()
    assert sum(read) == 0  # never read back
    [segment] = list_segments(tmp_path / "alone")
    digest, fresh = json.loads(segment.digest_path.read_text()), segment_summary(segment.path)
    assert (digest["file_sha256"], digest["bytes"], digest["min_ts"], digest["max_ts"]) == (
        fresh.sha256, segment.path.stat().st_size, "2026-11-26T00:00:00.000000Z", "2026-11-26T23:00:00.000000Z"
    ) == (fresh.sha256, fresh.size, fresh.earliest, fresh.latest)

    read.clear()
    a = SegmentEventLog(tmp_path / "shared", clock=_clock("2026-11-26"))
    b = SegmentEventLog(tmp_path / "shared", clock=_clock("2026-11-26"))
    for n in range(20):
        (a if n % 2 else b).export([_event(n)])
    a.shutdown()
    b.shutdown()
    [segment] = list_segments(tmp_path / "shared")
    assert 0 < sum(read) <= segment.path.stat().st_size  # each byte read at most once, by the other writer
    assert verify_event_log(tmp_path / "shared").ok
