"""verify_event_log: walk every segment, rehash every record, check the digests.

It names each problem by segment, line and sequence number and says what happened:
``changed`` (a record no longer matches its hash, or a record was replaced), ``removed``
(records missing inside a segment), ``reordered``, ``truncated`` (a closed segment ends
before its digest says), ``segment deleted`` (a gap in the chain between segments, or a
digest whose segment is gone, with no ``event_log.retention`` record naming it),
``segments reordered`` (a later segment holds the records missing before an earlier one),
``digest mismatch`` (including a digest that is malformed or describes another file) and
``digest missing``; ``discontinuity`` when a writer found the log behind what it had
written and recorded that (``event_log.discontinuity``), and ``truncated`` when the log
ends before the head marker the writers keep in ``.writer.lock``. A torn last line of the
open segment that the marker does not count is a notice, not a problem: it is what a crash
mid-write leaves, and the writer cuts it at its next start and records that as
``event_log.recovered``. One the marker counts was cut after it was written: ``truncated``.

A digest is checked against the file it sits next to: its name, index and day, the
previous segment, the record range, the last hash, the byte count and ``file_sha256``.
Runs of out-of-place records are reported as one line with their range.

Limits (as for any unsigned hash chain): someone who can rewrite every later record and
digest (and the lock file's marker) can forge a consistent log. Two things close that gap:
signed digests checked with ``public_key`` (``digest unsigned``, ``signature invalid``), and
an anchor (``anchor_event_log``) kept elsewhere, whose record the log must still hold.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ._anchor import anchored_value
from ._format import (
    ANCHOR_SCHEMA,
    DIGEST_SCHEMA,
    GENESIS,
    Segment,
    digest_hash,
    digest_malformed,
    iter_lines,
    list_digests,
    list_segments,
    parse_marker,
    read_digest,
    split_line,
)
from ._signing import check_signature

__all__ = ["Problem", "VerificationReport", "verify_event_log"]


@dataclass(frozen=True, slots=True)
class Problem:
    kind: str
    segment: str | None
    detail: str
    line: int | None = None
    seq: int | None = None

    def __str__(self) -> str:
        where = [self.segment or "(log)"]
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.seq is not None:
            where.append(f"seq {self.seq}")
        return f"{' '.join(where)}: {self.kind}: {self.detail}"


@dataclass
class VerificationReport:
    directory: Path
    segments: int = 0
    records: int = 0
    problems: list[Problem] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    last_seq: int | None = None
    last_hash: str | None = None
    last_digest_hash: str | None = None
    deleted_by_retention: int = 0
    signed_digests: int = 0  # digests whose signature was checked and holds

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class _Gap:
    first: int
    last: int
    segment: str
    line: int
    boundary: bool = False  # the gap is at the start of a segment (a whole segment missing)
    found: int = 0  # the seq found where the gap starts


@dataclass
class _Run:
    """Consecutive out-of-place records, reported as one problem."""

    kind: str
    segment: str
    first_line: int
    first_seq: int
    last_seq: int
    describe: Callable[[int, int], str]  # (first seq, last seq) -> detail
    key: object


@dataclass(frozen=True, slots=True)
class _SegmentWalk:
    records: int
    first: int | None
    last: int | None
    last_hash: bytes | None
    torn: bool
    size: int
    sha256: str


class _Walker:
    def __init__(self, directory: Path) -> None:
        self.report = VerificationReport(directory)
        self.expected: int | None = None  # next seq; None: take the next record as the baseline
        self.prev: bytes | None = None  # hash the next record must link to
        self.gaps: list[_Gap] = []
        self.started = False  # a line of the log has been seen
        self.head: tuple[int, bytes, str] | None = None  # first record: seq, prev, segment
        self.retained: dict[int, dict[str, Any]] = {}  # segment index -> retention entry
        self.run: _Run | None = None

    def problem(self, kind: str, segment: str | None, detail: str, line: int | None = None, seq: int | None = None) -> None:
        self.report.problems.append(Problem(kind, segment, detail, line, seq))

    def walk_segment(self, segment: Segment) -> _SegmentWalk:
        """Check each record of one segment."""
        records, first, last, torn = 0, None, None, False
        boundary = True
        size = 0
        name = segment.name
        expected, prev = self.expected, self.prev
        sha256 = hashlib.sha256
        file_hash = sha256()
        with open(segment.path, "rb", buffering=1 << 20) as handle:
            for number, line in enumerate(handle, 1):
                size += len(line)
                file_hash.update(line)
                parts = split_line(line)
                if parts is None or not line.endswith(b"\n"):
                    if not line.endswith(b"\n"):
                        torn = True
                        break
                    self.flush_run()
                    self.started = True
                    self.problem("changed", name, "the line is not a chained record (its chain fields are missing or damaged)", number)
                    expected, prev, boundary = None, None, False
                    continue
                seq, link, this, body = parts
                if sha256(b"%d:%s\n%s" % (seq, link, body)).hexdigest().encode() != this:
                    self.flush_run()
                    if not self.started:
                        self.started, self.head = True, (seq, link, name)
                    self.problem("changed", name, "the record does not match its hash", number, seq)
                    expected, prev, boundary = None, this, False
                    continue
                records += 1
                if first is None:
                    first = seq
                last = seq
                if b'"event":"event_log.' in body:
                    self.own_event(body, name, number, seq)
                if seq == expected and link == prev:  # the usual case
                    if self.run is not None:
                        self.flush_run()
                    expected, prev, boundary = seq + 1, this, False
                    continue
                if expected is not None and seq < expected:
                    self.out_of_place(seq, expected, name, number)
                    boundary = False
                    continue
                self.flush_run()
                if not self.started:
                    self.started, self.head = True, (seq, link, name)
                elif expected is None:
                    if prev is not None and link != prev:
                        self.problem("changed", name, "the record does not link to the one before it", number, seq)
                elif seq == expected:
                    self.problem("changed", name, f"seq {seq - 1} was replaced: this record links to a different one", number, seq)
                else:  # seq > expected: records are missing here
                    self.gaps.append(_Gap(expected, seq - 1, name, number, boundary, seq))
                expected, prev, boundary = seq + 1, this, False
        self.flush_run()
        self.expected, self.prev = expected, prev
        last_hash = prev if last is not None else None
        return _SegmentWalk(records, first, last, last_hash, torn, size, file_hash.hexdigest())

    def out_of_place(self, seq: int, expected: int, segment: str, line: int) -> None:
        """A record whose seq came before: it fills a gap left earlier, or it is a repeat."""
        kind, key, describe = "reordered", "repeat", lambda a, b: "a sequence number that already appeared earlier"
        for gap in self.gaps:
            if gap.first <= seq <= gap.last:
                if gap.boundary:
                    kind, key = "segments reordered", gap
                    before = gap.segment
                    describe = lambda a, b: f"these records belong before {before}, which starts at seq {gap.found}"  # noqa: E731
                else:
                    key = gap
                    describe = lambda a, b: f"found after seq {expected - 1}"  # noqa: E731
                # Split the gap around the record that turned up.
                self.gaps.remove(gap)
                if gap.first < seq:
                    self.gaps.append(_Gap(gap.first, seq - 1, gap.segment, gap.line, gap.boundary, gap.found))
                if seq < gap.last:
                    self.gaps.append(_Gap(seq + 1, gap.last, gap.segment, gap.line, gap.boundary, gap.found))
                break
        run = self.run
        if run is not None and run.segment == segment and run.last_seq + 1 == seq and run.kind == kind and (
            run.key == key or (isinstance(key, _Gap) and isinstance(run.key, _Gap) and run.key.segment == key.segment)
        ):
            run.last_seq = seq
            return
        self.flush_run()
        self.run = _Run(kind, segment, line, seq, seq, describe, key)

    def flush_run(self) -> None:
        run, self.run = self.run, None
        if run is None:
            return
        detail = run.describe(run.first_seq, run.last_seq)
        if run.last_seq > run.first_seq:
            count = run.last_seq - run.first_seq + 1
            detail = f"seq {run.first_seq}..{run.last_seq} ({count} records from this line on): {detail}"
        self.problem(run.kind, run.segment, detail, run.first_line, run.first_seq)

    def own_event(self, body: bytes, segment: str, line: int, seq: int) -> None:
        try:
            event = orjson.loads(body)
        except orjson.JSONDecodeError:
            return
        kind = event.get("event")
        if kind == "event_log.retention":
            for entry in event.get("segments") or []:
                if isinstance(entry, dict) and isinstance(entry.get("index"), int):
                    self.retained[entry["index"]] = entry
        elif kind == "event_log.recovered":
            self.report.notices.append(
                f"{segment} line {line}: a crash left a torn record in {event.get('segment')};"
                f" {event.get('cut_bytes')} bytes were cut at the next start (recorded)"
            )
        elif kind == "event_log.discontinuity":
            # Evidence, not noise: records the writers had written were gone when one reloaded.
            self.problem(
                "discontinuity",
                segment,
                f"a writer found the log ending at seq {event.get('found_seq')} although {event.get('source')}"
                f" had seen seq {event.get('expected_seq')} written; records were cut or a segment deleted",
                line,
                seq,
            )
        elif kind == "event_log.digest_damaged":
            self.report.notices.append(
                f"{segment} line {line}: a writer found the digest {event.get('digest')} damaged ({event.get('problem')}) and continued"
            )


def _read_marker(directory: Path) -> tuple[int, str] | None:
    try:
        with open(directory / ".writer.lock", "rb") as handle:
            return parse_marker(handle.read(512))
    except OSError:
        return None


def verify_event_log(
    directory: str | os.PathLike[str],
    *,
    public_key: Ed25519PublicKey | None = None,
    anchor: Mapping[str, Any] | None = None,
) -> VerificationReport:
    """Check the whole log in ``directory``; ``report.ok`` is False when anything was tampered with.

    With ``public_key``, every digest must carry a valid signature by that key. With
    ``anchor`` (as ``anchor_event_log`` made it, kept elsewhere), the log must still hold
    the record it names, unchanged.
    """
    walker = _Walker(Path(directory))
    report = walker.report
    # Read before the segments: a writer appending meanwhile only moves the files ahead of it.
    marker = _read_marker(Path(directory))
    segments = list_segments(Path(directory))
    digest_paths = list_digests(Path(directory))
    present = {s.index for s in segments}
    report.segments = len(segments)
    previous_digest: str | None = None  # hash of the previous present digest
    previous_name: str | None = None
    previous_misplaced = False
    first_digest: tuple[str, dict[str, Any] | None] | None = None
    torn_at_end = False
    for position, segment in enumerate(segments):
        is_last = position == len(segments) - 1
        problems_before = len(report.problems)
        walk = walker.walk_segment(segment)
        last, torn = walk.last, walk.torn
        report.records += walk.records
        record_problems = len(report.problems) > problems_before or any(gap.segment == segment.name for gap in walker.gaps)
        segment_deleted_before = any(gap.segment == segment.name and gap.boundary for gap in walker.gaps)
        digest = read_digest(digest_paths[segment.index]) if segment.index in digest_paths else None
        if segment.index in digest_paths and digest is None:
            walker.problem("digest mismatch", segment.name, "the digest file is unreadable")
        elif digest is not None and (malformed := digest_malformed(digest)) is not None:
            walker.problem("digest mismatch", segment.name, f"malformed: {malformed}")
            digest = None  # nothing in it can be trusted
        if segment.index in digest_paths and digest is None:
            previous_digest = None  # nor chained to
            first_digest = first_digest or (segment.name, None)
        if digest is None:
            if torn:
                note = f"{segment.name}: incomplete last line (an interrupted write; the writer cuts it at its next start)"
                if is_last:
                    report.notices.append(note)
                    torn_at_end = True
                else:
                    walker.problem("truncated", segment.name, "the last line is incomplete")
            if not is_last and segment.index not in digest_paths:
                walker.problem("digest missing", segment.name, "a segment that is not the newest has no digest")
            previous_name, previous_misplaced = segment.name, False
            continue
        if first_digest is None:
            first_digest = (segment.name, digest)
        if digest_hash(digest) != digest["digest_hash"]:
            walker.problem("digest mismatch", segment.name, "the digest file was altered (its own hash does not match)")
            previous_digest, previous_name, previous_misplaced = digest["digest_hash"], segment.name, False
            continue  # its values are not to be trusted, nor resynchronised to
        if public_key is not None:
            wrong = check_signature(public_key, DIGEST_SCHEMA, digest["digest_hash"], digest.get("signature"))
            if wrong is not None:
                walker.problem("digest unsigned" if "signature" not in digest else "signature invalid", segment.name, wrong)
            else:
                report.signed_digests += 1
        misplaced = _check_identity(walker, segment, digest, None if segment_deleted_before else previous_name)
        if previous_digest is not None and digest["previous_digest_hash"] != previous_digest:
            if not (segment_deleted_before or misplaced or previous_misplaced):
                walker.problem("digest mismatch", segment.name, f"it does not chain to the digest of {previous_name}")
        previous_digest, previous_name, previous_misplaced = digest["digest_hash"], segment.name, misplaced
        report.last_digest_hash = previous_digest
        digest_last = digest["last_seq"]
        resync = record_problems
        if ((last is None or last < digest_last) and not record_problems) or torn:
            found = "no records" if last is None else f"seq {last}"
            missing = digest_last - (last if last is not None else digest["first_seq"] - 1)
            walker.problem(
                "truncated",
                segment.name,
                f"it ends at {found}{' and a partial line' if torn else ''}; its digest says seq {digest_last} ({missing} records missing at the end)",
            )
            resync = True
        elif not record_problems and (
            digest["bytes"] != walk.size
            or digest["records"] != walk.records
            or digest["last_hash"].encode() != walk.last_hash
            or digest["first_seq"] != walk.first
            or digest["last_seq"] != last
            or digest["file_sha256"] != walk.sha256
        ):
            what = "records were appended after it was closed" if last is not None and last > digest_last else "the file does not match its digest"
            walker.problem("digest mismatch", segment.name, what)
            resync = True
        if resync and not misplaced and (walker.expected is None or digest_last + 1 >= walker.expected):
            # Carry on from where the (intact) digest says the segment ended, so one damaged
            # segment does not make the next one look damaged too. Not from a digest that
            # describes another file, nor backwards (reordered records leave the walk ahead).
            walker.expected, walker.prev = digest_last + 1, digest["last_hash"].encode()
    _check_head(walker, segments, first_digest)
    _check_orphan_digests(walker, digest_paths, present)
    for gap in sorted(walker.gaps, key=lambda g: g.first):
        span = f"seq {gap.first}" if gap.first == gap.last else f"seq {gap.first}..{gap.last}"
        if gap.boundary:
            walker.problem("segment deleted", gap.segment, f"records {span} before this segment are missing (a whole segment is gone)", gap.line, gap.found)
        else:
            walker.problem("removed", gap.segment, f"record {span} is missing before this line", gap.line, gap.first)
    report.last_seq = walker.expected - 1 if walker.expected is not None else None
    report.last_hash = walker.prev.decode() if walker.prev is not None else None
    report.deleted_by_retention = len(walker.retained)
    _check_marker(walker, marker, torn_at_end)
    if anchor is not None:
        if public_key is not None and (wrong := check_signature(public_key, ANCHOR_SCHEMA, anchored_value(anchor), anchor.get("signature"))):
            walker.problem("anchor", None, f"the anchor's signature: {wrong}")
        _check_anchor(walker, segments, anchor)
    return report


def _check_identity(walker: _Walker, segment: Segment, digest: dict[str, Any], previous_name: str | None) -> bool:
    """Does the digest describe this file (name, index, day, predecessor)? Reports it if not."""
    wrong = [
        f"{key} {digest[key]!r} (the file: {actual!r})"
        for key, actual in (("segment", segment.name), ("index", segment.index), ("day", segment.day))
        if digest[key] != actual
    ]
    if previous_name is not None and digest.get("previous_segment") != previous_name:
        wrong.append(f"previous_segment {digest.get('previous_segment')!r} (the file before it: {previous_name!r})")
    if wrong:
        walker.problem("digest mismatch", segment.name, "it describes another segment: " + "; ".join(wrong))
    return bool(wrong)


def _check_marker(walker: _Walker, marker: tuple[int, str] | None, torn_at_end: bool) -> None:
    """The writers' head marker must not be ahead of the log: if it is, the end was cut.

    A torn last line is a crash only when the marker does not count it: a writer rewrites the
    marker after its write completed, so a record the marker counts was written whole, and
    its missing second half was cut afterwards (or, with ``fsync`` off, lost to a power cut).
    """
    report = walker.report
    if marker is None or marker[0] < 0:
        return
    seq, head = marker
    last = report.last_seq if report.last_seq is not None else -1
    if seq > last or (seq == last and head != report.last_hash):
        cut = "the end of the newest segment is cut mid-record" if torn_at_end else "records at the end, or the newest segment, are gone"
        walker.problem(
            "truncated",
            None,
            f"the writers' head marker in .writer.lock says seq {seq} was written; the log ends at seq {last} ({cut})",
        )


def _check_anchor(walker: _Walker, segments: list[Segment], anchor: Mapping[str, Any]) -> None:
    """The record an anchor names must still be in the log, with the same hash."""
    seq, expected = anchor.get("last_seq"), anchor.get("last_hash")
    if not isinstance(seq, int) or not isinstance(expected, str):
        walker.problem("anchor", None, "the anchor names no last_seq and last_hash")
        return
    if seq < 0:
        return  # anchored an empty log
    for segment in reversed(segments):  # the anchored record is usually in one of the newest
        starts_after = False
        try:
            for number, line in enumerate(iter_lines(segment.path), 1):
                parts = split_line(line)
                if parts is None:
                    continue
                if parts[0] > seq and number == 1:
                    starts_after = True  # an older segment holds it
                    break
                if parts[0] == seq:
                    if parts[2].decode("ascii", "replace") != expected:
                        walker.problem("changed", segment.name, f"the anchor says seq {seq} has hash {expected}; this record differs", number, seq)
                    return
        except OSError:
            continue
        if not starts_after:
            break  # the segment that would hold it does not
    if any(entry.get("last_seq", -1) >= seq for entry in walker.retained.values()):
        walker.report.notices.append(f"the anchored record seq {seq} was in a segment deleted by retention (as recorded)")
        return
    walker.problem("truncated", None, f"the anchor says seq {seq} (hash {expected}) was written; the log no longer holds it")


def _check_head(walker: _Walker, segments: list[Segment], first_digest: tuple[str, dict[str, Any] | None] | None) -> None:
    """The oldest segment left must start the chain, or follow one that retention deleted."""
    if walker.head is not None:
        seq, link, name = walker.head
        prev = link.decode("ascii", "replace")
        if (seq, prev) != (0, GENESIS):
            if any(e.get("last_seq") == seq - 1 and e.get("last_hash") == prev for e in walker.retained.values()):
                pass
            else:
                walker.problem("segment deleted", name, f"records seq 0..{seq - 1} before the oldest segment are gone with no retention record")
                return
    if first_digest is not None and first_digest[1] is not None:  # a damaged one is reported already
        name, digest = first_digest
        previous = digest.get("previous_digest_hash")
        if previous != GENESIS and not any(e.get("digest_hash") == previous for e in walker.retained.values()):
            walker.problem("segment deleted", name, "the digest before this one is gone with no retention record")


def _check_orphan_digests(walker: _Walker, digest_paths: dict[int, Path], present: set[int]) -> None:
    for index, path in sorted(digest_paths.items()):
        if index in present or index in walker.retained:
            continue
        digest = read_digest(path) or {}
        walker.problem(
            "segment deleted",
            str(digest.get("segment", path.name)),
            f"the segment file is gone but its digest remains (seq {digest.get('first_seq')}..{digest.get('last_seq')})",
        )
