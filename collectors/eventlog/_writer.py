"""SegmentEventLog: the event exporter that writes the hash-chained segments.

Every write happens under an exclusive ``flock`` on ``.writer.lock`` in the log's
directory, so gateway worker processes sharing a directory extend one chain. The lock
file also holds a one-line "head" marker (segment, size, last seq and hash) that each
writer rewrites after every write; a writer that finds a marker it did not write reloads
its state from the segments on disk (the truth) before appending.

A failed write (a full disk) is cut back to the last whole record, keeps the events
pending (up to ``max_pending``, overflow counted through ``on_lost``) and is retried
before the next batch; ``healthy`` says whether the last write succeeded, which a
fail-closed policy checks before serving a request. A torn last line left by a crash is
cut at start-up and the cut is itself recorded (``event_log.recovered``). Retention
deletes whole closed segments whose day is older than ``retention_days`` and records
which (``event_log.retention``) before deleting them; the newest closed segment is kept
whatever its age, because its digest anchors the chain for the next start.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import json
import os
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson
import structlog

from aimsguard.collectors._exporter import Event, ExportResult

from ._format import (
    DIGEST_SCHEMA,
    GENESIS,
    Segment,
    SegmentSummary,
    canonical_ts,
    chained_line,
    digest_hash,
    digest_malformed,
    last_record,
    list_digests,
    list_segments,
    parse_line,
    parse_marker,
    read_digest,
    segment_name,
    segment_summary,
)
from ._signing import Signer

__all__ = ["DEFAULT_MAX_SEGMENT_BYTES", "SegmentEventLog"]

log = structlog.get_logger("aimsguard.collectors")

DEFAULT_MAX_SEGMENT_BYTES = 64 * 1024 * 1024
LOCK_NAME = ".writer.lock"
_CHAIN_OVERHEAD = 170  # bytes the chain fields add to a line
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def _render(event: Event) -> bytes:
    try:
        return orjson.dumps(event if isinstance(event, dict) else dict(event), default=str)
    except TypeError:
        # orjson refuses what is not valid Unicode (a lone surrogate a client sent) and
        # non-string keys; the standard library escapes them, so the record is kept.
        return json.dumps(dict(event), default=str, separators=(",", ":")).encode()


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class SegmentEventLog:
    name = "event_log"

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        fsync: bool = False,
        max_segment_bytes: int = DEFAULT_MAX_SEGMENT_BYTES,
        retention_days: int = 183,
        max_pending: int = 100_000,
        on_lost: Callable[[int], None] | None = None,
        stamp: Mapping[str, Any] | None = None,
        clock: Callable[[], dt.datetime] = _utcnow,
        signer: Signer | None = None,
    ) -> None:
        """``stamp``: fields put on the log's own events (``schema``, ``policy_version``);
        ``signer``: signs each digest (see ``_signing``)."""
        self.directory = Path(directory)
        self._fsync = fsync
        self._max_bytes = max_segment_bytes
        self._retention_days = retention_days
        self._max_pending = max_pending
        self._on_lost = on_lost
        self._stamp = dict(stamp or {})
        self._clock = clock
        self._signer = signer
        self._pending: list[tuple[str, bytes, str | None]] = []  # (day, event JSON, ts) not yet on disk
        self._lock = threading.Lock()
        self._lock_fd: int | None = None
        self._fd: int | None = None
        self._segment: Segment | None = None  # the open segment
        self._size = 0
        # The open segment's digest fields, kept while writing; (index, inode) it belongs to.
        self._summary = SegmentSummary()
        self._summary_of: tuple[int, int] | None = None
        self._first_seq = 0
        self._seq = -1  # last record written
        self._hash = GENESIS
        self._digest_hash = GENESIS  # last digest written
        self._digest_segment: str | None = None
        self._index = 0  # highest segment index in use
        self._last_day = ""
        self._marker: bytes | None = None  # None: reload state from disk before writing
        self._in_retention = False
        self.healthy = True
        self.lost = 0
        with self._lock:
            try:
                with self._exclusive():
                    self._apply_retention()  # the reload (and any crash recovery) runs first
            except OSError as exc:
                self.healthy = False
                self._abandon()
                log.error("event_log_start_failed", error=str(exc), directory=str(self.directory))

    # -- the exporter interface -------------------------------------------------------

    def export(self, batch: Sequence[Event]) -> ExportResult:
        rendered = []
        for event in batch:
            try:
                rendered.append((self._day_of(event), _render(event), canonical_ts(event.get("ts"))))
            except Exception as exc:  # one unrenderable event must not cost the batch
                self._count_lost(1)
                log.error("event_log_render_failed", event=str(event.get("event")), error_type=type(exc).__name__)
        with self._lock:
            self._pending.extend(rendered)
            return self._flush_pending()

    def force_flush(self, timeout: float = 10.0) -> bool:
        with self._lock:
            return not self._pending or self._flush_pending() is ExportResult.SUCCESS

    def shutdown(self) -> None:
        """Write what is pending and close the open segment with its digest."""
        with self._lock:
            if self._pending:
                self._flush_pending()
            try:
                with self._exclusive():
                    if self._segment is not None:
                        self._close_segment()
                        self._write_marker()
            except OSError as exc:
                log.error("event_log_close_failed", error=str(exc), directory=str(self.directory))
            self._abandon()
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None

    def probe(self) -> bool:
        """Check that the directory still takes writes (for readiness when idle)."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            with open(self.directory / ".probe", "w", encoding="utf-8") as handle:
                handle.write("ok")
        except OSError:
            return False
        return True

    @property
    def current_segment(self) -> Path | None:
        return self._segment.path if self._segment is not None else None

    # -- writing ------------------------------------------------------------------------

    def _flush_pending(self) -> ExportResult:
        try:
            with self._exclusive():
                while self._pending:
                    self._write_chunk()
        except OSError as exc:
            self.healthy = False
            self._abandon()
            overflow = len(self._pending) - self._max_pending
            if overflow > 0:
                del self._pending[:overflow]
                self._count_lost(overflow)
            log.error("event_log_write_failed", error=str(exc), pending=len(self._pending), directory=str(self.directory))
            return ExportResult.FAILURE
        self.healthy = True
        return ExportResult.SUCCESS

    def _write_chunk(self) -> None:
        """Append the longest run of pending events that fits the current segment."""
        first_day, first_body, _ = self._pending[0]
        self._segment_for(first_day, len(first_body) + _CHAIN_OVERHEAD)
        assert self._segment is not None
        room = self._max_bytes - self._size
        entries: list[tuple[bytes, str | None]] = []
        for day, body, moment in self._pending:
            room -= len(body) + _CHAIN_OVERHEAD
            if entries and (day > self._segment.day or room < 0):
                break
            entries.append((body, moment))
        self._append(entries)
        del self._pending[: len(entries)]

    def _segment_for(self, day: str, size: int) -> None:
        """Make sure a segment is open that may take an event of ``day`` and ``size``."""
        if self._segment is not None:
            if day <= self._segment.day and (self._size == 0 or self._size + size <= self._max_bytes):
                return
            self._close_segment()
        new_day = max(day, self._last_day)
        self._open_segment(new_day)
        if not self._in_retention:
            self._apply_retention()

    def _append(self, entries: Sequence[tuple[bytes, str | None]]) -> None:
        """Chain and write events: (event JSON, canonical ts) each."""
        seq, prev = self._seq, self._hash
        lines = []
        for body, _ in entries:
            seq += 1
            line, prev = chained_line(seq, prev, body)
            lines.append(line)
        data = b"".join(lines)
        assert self._fd is not None
        try:
            written = 0
            while written < len(data):
                written += os.write(self._fd, data[written:])
            if self._fsync:
                os.fsync(self._fd)
        except OSError:
            # Cut back to the last whole record so a retry never leaves half a line behind.
            try:
                os.ftruncate(self._fd, self._size)
            except OSError:
                pass
            raise
        self._size += len(data)
        self._summary.add(data, (moment for _, moment in entries))
        self._seq, self._hash = seq, prev
        self._write_marker()

    def _write_own(self, kind: str, **fields: Any) -> None:
        """Append one of the log's own events (recovery, retention) straight to the chain."""
        now = self._clock()
        event = {"ts": now.isoformat().replace("+00:00", "Z"), **self._stamp, **fields, "event": kind}
        body = _render(event)
        self._segment_for(now.date().isoformat(), len(body) + _CHAIN_OVERHEAD)
        self._append([(body, canonical_ts(event["ts"]))])

    # -- segments -----------------------------------------------------------------------

    def _open_segment(self, day: str) -> None:
        index = self._index + 1
        path = self.directory / segment_name(day, index)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o640)
        self._segment = Segment(path, day, index)
        self._index, self._last_day = index, day
        self._size, self._first_seq = 0, self._seq + 1
        self._summary, self._summary_of = SegmentSummary(), (index, os.fstat(self._fd).st_ino)
        if self._fsync:
            self._sync_directory()
        self._write_marker()

    def _close_segment(self) -> None:
        segment = self._segment
        assert segment is not None and self._fd is not None
        if self._seq < self._first_seq:
            # Never written to (its first write failed): nothing to attest, so no digest.
            os.close(self._fd)
            self._fd, self._segment = None, None
            if not segment.path.is_symlink() and segment.path.stat().st_size == 0:
                segment.path.unlink()
            return
        if not self._fsync:
            os.fsync(self._fd)  # a digest must never attest to bytes that are not on disk
        os.close(self._fd)
        self._fd, self._segment = None, None
        summary = self._summary
        if summary.size != self._size:  # never expected: the bytes on disk are the truth
            log.error("event_log_summary_out_of_step", segment=segment.name, kept=summary.size, size=self._size)
            summary = segment_summary(segment.path)
        digest: dict[str, Any] = {
            "schema": DIGEST_SCHEMA,
            "segment": segment.name,
            "day": segment.day,
            "index": segment.index,
            "first_seq": self._first_seq,
            "last_seq": self._seq,
            "records": self._seq - self._first_seq + 1,
            "last_hash": self._hash,
            "bytes": summary.size,
            "file_sha256": summary.sha256,
            "previous_segment": self._digest_segment,
            "previous_digest_hash": self._digest_hash,
            "min_ts": summary.earliest,  # the events' time range, for read_events to skip by
            "max_ts": summary.latest,
            "closed_at": self._clock().isoformat().replace("+00:00", "Z"),
        }
        digest["digest_hash"] = digest_hash(digest)
        if self._signer is not None:
            digest["signature"] = self._signer.sign(DIGEST_SCHEMA, digest["digest_hash"])
        temporary = segment.digest_path.with_name("." + segment.digest_path.name + ".tmp")
        with open(temporary, "wb") as handle:
            handle.write(orjson.dumps(digest, option=orjson.OPT_INDENT_2) + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, segment.digest_path)
        self._sync_directory()
        self._digest_hash, self._digest_segment = digest["digest_hash"], segment.name

    def _sync_directory(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    # -- state, shared with other writers through the lock file ----------------------

    def _exclusive(self) -> _Exclusive:
        return _Exclusive(self)

    def _marker_text(self) -> bytes:
        name = self._segment.name if self._segment is not None else "-"
        return f"{self._index} {name} {self._size} {self._seq} {self._hash}\n".encode()

    def _write_marker(self) -> None:
        marker = self._marker_text()
        try:
            assert self._lock_fd is not None
            os.pwrite(self._lock_fd, marker, 0)
            os.ftruncate(self._lock_fd, len(marker))
            self._marker = marker
        except OSError:
            self._marker = None  # reload from the segments next time

    def _segment_intact(self) -> bool:
        """False when the open segment was deleted, replaced or changed behind the writer's back."""
        if self._fd is None:
            return True
        status = os.fstat(self._fd)
        if status.st_nlink > 0 and status.st_size == self._size:
            return True
        log.error("event_log_segment_changed_externally", segment=self._segment.name if self._segment else None)
        return False

    def _abandon(self) -> None:
        """Forget the in-memory state; the next write reloads it from disk."""
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
        self._fd, self._segment, self._marker = None, None, None

    def _expected_head(self) -> tuple[int, str, str] | None:
        """The furthest (seq, hash, who says so) this writer or the lock marker knows was written."""
        heads = []
        if self._seq >= 0:
            heads.append((self._seq, self._hash, "this writer"))
        try:
            marker = parse_marker(os.pread(self._lock_fd, 512, 0)) if self._lock_fd is not None else None
        except OSError:
            marker = None
        if marker is not None and marker[0] >= 0:
            heads.append((marker[0], marker[1], "the lock file's head marker"))
        return max(heads, key=lambda head: head[0], default=None)

    def _reload(self) -> None:
        """Rebuild the chain state from the files on disk, recovering a torn last line.

        The disk is the truth, but not silently: when it is behind what this writer (or the
        lock file's head marker) knows was written, records were cut or a segment deleted
        behind the writers' backs, and the chain goes on with an ``event_log.discontinuity``
        record that verification reports.
        """
        expected = self._expected_head()
        self._abandon()
        segments = list_segments(self.directory)
        digests = list_digests(self.directory)
        self._index = max([s.index for s in segments] + list(digests) + [0])
        self._seq, self._hash, self._digest_hash, self._digest_segment = -1, GENESIS, GENESIS, None
        damaged: tuple[str, str] | None = None
        newest_digest = max(digests, default=None)
        if newest_digest is not None:
            digest = read_digest(digests[newest_digest])
            trouble = "unreadable" if digest is None else digest_malformed(digest)
            if digest is not None and trouble is None:
                self._seq, self._hash = digest["last_seq"], digest["last_hash"]
                self._digest_hash, self._digest_segment = digest["digest_hash"], digest["segment"]
            else:
                # Carry on from the segment's own records; link the next digest to this one's
                # content as far as it can be read, so verification names this digest alone.
                damaged = (digests[newest_digest].name, trouble or "malformed")
                self._continue_from_records(next((s for s in segments if s.index == newest_digest), None))
                self._digest_hash = digest_hash(digest) if digest is not None else GENESIS
                self._digest_segment = digests[newest_digest].name[: -len(".digest.json")] + ".jsonl"
        self._last_day = segments[-1].day if segments else ""
        latest = segments[-1] if segments else None
        cut = None
        if latest is not None and latest.index not in digests:
            cut = self._reopen(latest)
        self._write_marker()
        if cut is not None:
            log.warning("event_log_recovered", segment=latest.name if latest else None, cut_bytes=cut[0])
            self._write_own(
                "event_log.recovered",
                segment=latest.name if latest else None,
                cut_bytes=cut[0],
                cut_sha256=cut[1],
                last_seq=self._seq,
                last_hash=self._hash,
            )
        if damaged is not None:
            log.error("event_log_digest_damaged", digest=damaged[0], problem=damaged[1])
            self._write_own("event_log.digest_damaged", digest=damaged[0], problem=damaged[1], last_seq=self._seq, last_hash=self._hash)
        if expected is not None and (expected[0] > self._seq or (expected[0] == self._seq and expected[1] != self._hash)):
            found_seq, found_hash = self._seq, self._hash
            log.error("event_log_discontinuity", expected_seq=expected[0], found_seq=found_seq, source=expected[2])
            self._write_own(
                "event_log.discontinuity",
                expected_seq=expected[0],
                expected_hash=expected[1],
                found_seq=found_seq,
                found_hash=found_hash,
                source=expected[2],
            )

    def _continue_from_records(self, segment: Segment | None) -> None:
        """Take the chain head from a closed segment's last record (its digest is damaged)."""
        if segment is None:
            return
        try:
            with open(segment.path, "rb") as handle:
                _, last = last_record(handle, os.fstat(handle.fileno()).st_size)
        except OSError:
            return
        if last is not None:
            self._seq, self._hash = last.seq, last.hash

    def _reopen(self, segment: Segment) -> tuple[int, str] | None:
        """Continue an open segment; returns (bytes cut, their sha256) if its last line was torn."""
        fd = os.open(segment.path, os.O_RDWR | os.O_APPEND)
        self._fd, self._segment = fd, segment
        size = os.fstat(fd).st_size
        cut = None
        with open(segment.path, "rb") as handle:
            first = parse_line(handle.readline()) if size else None
            end, last = last_record(handle, size)
        if end < size:
            torn = os.pread(fd, size - end, end)
            os.ftruncate(fd, end)
            cut, size = (len(torn), hashlib.sha256(torn).hexdigest()), end
        self._size = size
        self._catch_up(segment, os.fstat(fd).st_ino, size)
        self._first_seq = first.seq if first is not None else self._seq + 1
        if last is not None:
            self._seq, self._hash = last.seq, last.hash
        return cut

    def _catch_up(self, segment: Segment, inode: int, size: int) -> None:
        """Bring the open segment's summary up to ``size``: read only what other writers
        appended since this one last wrote, or the whole file the first time."""
        if self._summary_of != (segment.index, inode) or self._summary.size > size:
            self._summary, self._summary_of = SegmentSummary(), (segment.index, inode)
        self._summary.read_from(segment.path, size)

    def _apply_retention(self) -> None:
        today = self._clock().date()
        cutoff = (today - dt.timedelta(days=self._retention_days)).isoformat()
        digests = list_digests(self.directory)
        closed = [s for s in list_segments(self.directory) if s.index in digests]
        doomed = [s for s in closed[:-1] if s.day < cutoff]  # the newest closed one anchors the chain
        if not doomed:
            return
        described = []
        for segment in doomed:
            digest = read_digest(digests[segment.index]) or {}
            described.append(
                {key: digest.get(key) for key in ("segment", "index", "day", "first_seq", "last_seq", "records", "last_hash", "digest_hash")}
            )
        self._in_retention = True
        try:
            # Recorded (and on disk) before anything is deleted.
            self._write_own("event_log.retention", retention_days=self._retention_days, cutoff=cutoff, segments=described)
        finally:
            self._in_retention = False
        if not self._fsync and self._fd is not None:
            os.fsync(self._fd)
        for segment in doomed:
            for path in (segment.path, segment.digest_path):
                try:
                    path.unlink()
                except FileNotFoundError:
                    pass
        log.info("event_log_retention", deleted=[s.name for s in doomed], cutoff=cutoff)

    # -- helpers ------------------------------------------------------------------------

    def _day_of(self, event: Event) -> str:
        ts = event.get("ts")
        if isinstance(ts, str) and _DAY.match(ts):
            return ts[:10]
        return self._clock().date().isoformat()

    def _count_lost(self, count: int) -> None:
        self.lost += count
        if self._on_lost is not None:
            self._on_lost(count)


class _Exclusive:
    """Holds the directory's writer lock; reloads the state when another writer moved on."""

    def __init__(self, owner: SegmentEventLog) -> None:
        self._owner = owner

    def __enter__(self) -> None:
        owner = self._owner
        if owner._lock_fd is None:
            owner.directory.mkdir(parents=True, exist_ok=True)
            owner._lock_fd = os.open(owner.directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o640)
        fcntl.flock(owner._lock_fd, fcntl.LOCK_EX)
        try:
            if owner._marker is None or os.pread(owner._lock_fd, 512, 0) != owner._marker or not owner._segment_intact():
                owner._reload()
        except BaseException:
            fcntl.flock(owner._lock_fd, fcntl.LOCK_UN)
            raise

    def __exit__(self, *_: object) -> None:
        if self._owner._lock_fd is not None:
            fcntl.flock(self._owner._lock_fd, fcntl.LOCK_UN)
