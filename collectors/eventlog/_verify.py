"""verify_event_log: walk every segment, rehash every record, check the digests.

It names each problem by segment, line and sequence number and says what happened:
``changed`` (a record no longer matches its hash, or a record was replaced), ``removed``
(records missing inside a segment), ``reordered``, ``truncated`` (a closed segment ends
before its digest says), ``segment deleted`` (a gap in the chain between segments, or a
digest whose segment is gone, with no ``event_log.retention`` record naming it),
``digest mismatch`` and ``digest missing``. A torn last line of the open segment is a
notice, not a problem: it is what a crash leaves, and the writer cuts it at its next
start and records that as ``event_log.recovered``.

Every byte of a segment is covered by a record hash or fixed by the format, so when every
record checks out and the byte count, record count and last hash match the digest, the
file is the one the digest describes; the digest's ``file_sha256`` (for ``sha256sum``-style
checks by other tools) needs no second pass here.

Limits (as for any unsigned hash chain): someone who can rewrite every later record and
digest can forge a consistent log, and records cut from the end of the open segment
leave no trace. Keep the head (``last_hash`` / ``last_digest_hash``) somewhere else to
close both gaps.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from ._format import GENESIS, Segment, digest_hash, list_digests, list_segments, read_digest, split_line

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

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class _Gap:
    first: int
    last: int
    segment: str
    line: int


class _Walker:
    def __init__(self, directory: Path) -> None:
        self.report = VerificationReport(directory)
        self.expected: int | None = None  # next seq; None: take the next record as the baseline
        self.prev: bytes | None = None  # hash the next record must link to
        self.gaps: list[_Gap] = []
        self.head: tuple[int, bytes, str] | None = None  # first record: seq, prev, segment
        self.retained: dict[int, dict[str, Any]] = {}  # segment index -> retention entry

    def problem(self, kind: str, segment: str | None, detail: str, line: int | None = None, seq: int | None = None) -> None:
        self.report.problems.append(Problem(kind, segment, detail, line, seq))

    def walk_segment(self, segment: Segment) -> tuple[int, int | None, int | None, bytes | None, bool, int]:
        """Check each record; returns (records, first seq, last seq, last hash, torn, bytes)."""
        records, first, last, torn = 0, None, None, False
        boundary = True
        size = 0
        name = segment.name
        expected, prev = self.expected, self.prev
        sha256 = hashlib.sha256
        with open(segment.path, "rb", buffering=1 << 20) as handle:
            for number, line in enumerate(handle, 1):
                size += len(line)
                parts = split_line(line)
                if parts is None or not line.endswith(b"\n"):
                    if not line.endswith(b"\n"):
                        torn = True
                        break
                    self.problem("changed", name, "the line is not a chained record (its chain fields are missing or damaged)", number)
                    expected, prev, boundary = None, None, False
                    continue
                seq, link, this, body = parts
                if sha256(b"%d:%s\n%s" % (seq, link, body)).hexdigest().encode() != this:
                    self.problem("changed", name, "the record does not match its hash", number, seq)
                    expected, prev, boundary = None, this, False
                    continue
                records += 1
                if first is None:
                    first = seq
                last = seq
                if b'"event":"event_log.' in body:
                    self.own_event(body, name, number)
                if seq == expected and link == prev:  # the usual case
                    expected, prev, boundary = seq + 1, this, False
                    continue
                if self.head is None:
                    self.head = (seq, link, name)
                elif expected is None:
                    if prev is not None and link != prev:
                        self.problem("changed", name, "the record does not link to the one before it", number, seq)
                elif seq == expected:
                    self.problem("changed", name, f"seq {seq - 1} was replaced: this record links to a different one", number, seq)
                elif seq > expected:
                    if boundary:
                        self.problem(
                            "segment deleted",
                            name,
                            f"records seq {expected}..{seq - 1} before this segment are missing (a whole segment is gone)",
                            number,
                            seq,
                        )
                    else:
                        self.gaps.append(_Gap(expected, seq - 1, name, number))
                else:
                    self.out_of_place(seq, expected, name, number)
                    boundary = False
                    continue
                expected, prev, boundary = seq + 1, this, False
        self.expected, self.prev = expected, prev
        return records, first, last, prev if last is not None else None, torn, size

    def out_of_place(self, seq: int, expected: int, segment: str, line: int) -> None:
        for gap in self.gaps:
            if gap.first <= seq <= gap.last:
                self.problem("reordered", segment, f"found after seq {expected - 1}", line, seq)
                # Split the gap around the record that turned up.
                self.gaps.remove(gap)
                if gap.first < seq:
                    self.gaps.append(_Gap(gap.first, seq - 1, gap.segment, gap.line))
                if seq < gap.last:
                    self.gaps.append(_Gap(seq + 1, gap.last, gap.segment, gap.line))
                return
        self.problem("reordered", segment, "a sequence number that already appeared earlier", line, seq)

    def own_event(self, body: bytes, segment: str, line: int) -> None:
        try:
            event = orjson.loads(body)
        except orjson.JSONDecodeError:
            return
        if event.get("event") == "event_log.retention":
            for entry in event.get("segments") or []:
                if isinstance(entry, dict) and isinstance(entry.get("index"), int):
                    self.retained[entry["index"]] = entry
        elif event.get("event") == "event_log.recovered":
            self.report.notices.append(
                f"{segment} line {line}: a crash left a torn record in {event.get('segment')};"
                f" {event.get('cut_bytes')} bytes were cut at the next start (recorded)"
            )


def verify_event_log(directory: str | os.PathLike[str]) -> VerificationReport:
    """Check the whole log in ``directory``; ``report.ok`` is False when anything was tampered with."""
    walker = _Walker(Path(directory))
    report = walker.report
    segments = list_segments(Path(directory))
    digest_paths = list_digests(Path(directory))
    present = {s.index for s in segments}
    report.segments = len(segments)
    previous_digest: str | None = None  # hash of the previous present digest
    previous_name: str | None = None
    first_digest: tuple[str, dict[str, Any]] | None = None
    for position, segment in enumerate(segments):
        is_last = position == len(segments) - 1
        problems_before = len(report.problems)
        records, first, last, last_hash, torn, size = walker.walk_segment(segment)
        report.records += records
        digest = read_digest(digest_paths[segment.index]) if segment.index in digest_paths else None
        if segment.index in digest_paths and digest is None:
            walker.problem("digest mismatch", segment.name, "the digest file is unreadable")
        if digest is None:
            if torn:
                note = f"{segment.name}: incomplete last line (an interrupted write; the writer cuts it at its next start)"
                if is_last:
                    report.notices.append(note)
                else:
                    walker.problem("truncated", segment.name, "the last line is incomplete")
            if not is_last and segment.index not in digest_paths:
                walker.problem("digest missing", segment.name, "a segment that is not the newest has no digest")
            previous_name = segment.name
            continue
        if first_digest is None:
            first_digest = (segment.name, digest)
        if digest_hash(digest) != digest.get("digest_hash"):
            walker.problem("digest mismatch", segment.name, "the digest file was altered (its own hash does not match)")
        elif previous_digest is not None and digest.get("previous_digest_hash") != previous_digest:
            if not any(p.kind == "segment deleted" for p in report.problems[problems_before:]):
                walker.problem("digest mismatch", segment.name, f"it does not chain to the digest of {previous_name}")
        previous_digest, previous_name = str(digest.get("digest_hash")), segment.name
        report.last_digest_hash = previous_digest
        digest_last = digest.get("last_seq")
        record_problems = len(report.problems) > problems_before or any(gap.segment == segment.name for gap in walker.gaps)
        if isinstance(digest_last, int) and (last is None or last < digest_last) and not record_problems or torn:
            found = "no records" if last is None else f"seq {last}"
            walker.problem(
                "truncated",
                segment.name,
                f"it ends at {found}{' and a partial line' if torn else ''}; its digest says seq {digest_last}"
                f" ({digest_last - (last if last is not None else digest.get('first_seq', 0) - 1)} records missing at the end)"
                if isinstance(digest_last, int)
                else "its last line is incomplete",
            )
            record_problems = True
        elif not record_problems and (
            digest.get("bytes") != size
            or digest.get("records") != records
            or (digest.get("last_hash") or "").encode() != last_hash
            or digest.get("first_seq") != first
        ):
            what = "records were appended after it was closed" if isinstance(digest_last, int) and last is not None and last > digest_last else "the file does not match its digest"
            walker.problem("digest mismatch", segment.name, what)
        if record_problems and isinstance(digest_last, int):
            # Carry on from where the digest says the segment ended, so one damaged
            # segment does not make the next one look damaged too.
            walker.expected, walker.prev = digest_last + 1, str(digest.get("last_hash")).encode()
    _check_head(walker, segments, first_digest)
    _check_orphan_digests(walker, digest_paths, present)
    for gap in sorted(walker.gaps, key=lambda g: g.first):
        span = f"seq {gap.first}" if gap.first == gap.last else f"seq {gap.first}..{gap.last}"
        walker.problem("removed", gap.segment, f"record {span} is missing before this line", gap.line, gap.first)
    report.last_seq = walker.expected - 1 if walker.expected is not None else None
    report.last_hash = walker.prev.decode() if walker.prev is not None else None
    report.deleted_by_retention = len(walker.retained)
    return report


def _check_head(walker: _Walker, segments: list[Segment], first_digest: tuple[str, dict[str, Any]] | None) -> None:
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
    if first_digest is not None:
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
