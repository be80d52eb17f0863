"""The on-disk format of the event log: segment and digest names, chained lines, digests.

A segment ``events-YYYY-MM-DD-NNNNNN.jsonl`` holds one event per line, the event's own
JSON with a ``_chain`` object appended as its last key::

    {"event":"exchange",...,"_chain":{"seq":41,"prev":"<hex>","hash":"<hex>"}}

``hash`` = sha256 over ``"<seq>:<prev>\\n"`` followed by the event's JSON exactly as
written (the line without the ``_chain`` key), so verification rehashes the bytes on
disk without parsing or re-rendering them, and ``jq``/``grep`` still work on the files.
Sequence numbers and the chain run on across segments; the index ``NNNNNN`` runs on
across days. A closed segment gets ``events-YYYY-MM-DD-NNNNNN.digest.json``: its record
range, last record hash, the sha256 of the whole file and the previous digest's hash, and,
when the writer has a signing key, an Ed25519 ``signature`` over its ``digest_hash``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import orjson

__all__ = [
    "DIGEST_SCHEMA",
    "GENESIS",
    "ChainFields",
    "Segment",
    "digest_hash",
    "list_segments",
    "parse_line",
    "record_hash",
    "segment_name",
    "split_line",
]

GENESIS = "0" * 64
"""The ``prev`` of the very first record and the ``previous_digest_hash`` of the first digest."""

DIGEST_SCHEMA = "aimsguard.event-log-digest/1"
ANCHOR_SCHEMA = "aimsguard.event-log-anchor/1"

_SEGMENT = re.compile(r"^events-(\d{4}-\d{2}-\d{2})-(\d{6,})\.jsonl$")
_CHAIN_KEY = b'"_chain":{"seq":'


@dataclass(frozen=True, slots=True)
class Segment:
    """One segment file (and where its digest lives, whether or not it exists)."""

    path: Path
    day: str
    index: int

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def digest_path(self) -> Path:
        return self.path.with_name(self.path.name[: -len(".jsonl")] + ".digest.json")


class ChainFields(NamedTuple):
    seq: int
    prev: str
    hash: str
    body: bytes  # the event's JSON as written, without the chain fields


def segment_name(day: str, index: int) -> str:
    return f"events-{day}-{index:06d}.jsonl"


def list_segments(directory: Path) -> list[Segment]:
    """Every segment file in ``directory``, in write order (by index)."""
    found = []
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return []
    for entry in entries:
        match = _SEGMENT.match(entry.name)
        if match:
            found.append(Segment(Path(entry.path), match[1], int(match[2])))
    return sorted(found, key=lambda s: s.index)


def list_digests(directory: Path) -> dict[int, Path]:
    """Digest files by segment index (a digest may outlive its segment)."""
    found: dict[int, Path] = {}
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return {}
    for entry in entries:
        if entry.name.endswith(".digest.json"):
            match = _SEGMENT.match(entry.name[: -len(".digest.json")] + ".jsonl")
            if match:
                found[int(match[2])] = Path(entry.path)
    return found


def parse_marker(text: bytes) -> tuple[int, str] | None:
    """(last seq, last hash) from the writer's head marker in ``.writer.lock``, or None.

    The marker is ``<index> <open segment or -> <size> <last seq> <last hash>``.
    """
    parts = text.split()
    if len(parts) != 5:
        return None
    try:
        seq = int(parts[3])
    except ValueError:
        return None
    head = parts[4].decode("ascii", "replace")
    return (seq, head) if len(head) == 64 else None


def record_hash(seq: int, prev: str, body: bytes) -> str:
    digest = hashlib.sha256(b"%d:%s\n" % (seq, prev.encode()))
    digest.update(body)
    return digest.hexdigest()


def chained_line(seq: int, prev: str, body: bytes) -> tuple[bytes, str]:
    """The line to write for ``body`` (an event's JSON object) and its record hash."""
    this = record_hash(seq, prev, body)
    chain = b'"_chain":{"seq":%d,"prev":"%s","hash":"%s"}}\n' % (seq, prev.encode(), this.encode())
    # An empty object has no member to follow with a comma.
    line = b"{" + chain if body == b"{}" else body[:-1] + b"," + chain
    return line, this


def split_line(line: bytes) -> tuple[int, bytes, bytes, bytes] | None:
    """(seq, prev hash, record hash, event JSON) of a segment line; None if it is not one.

    The chain fields have a fixed layout at the end of the line,
    ``...,"_chain":{"seq":<digits>,"prev":"<64 hex>","hash":"<64 hex>"}}``, so they are
    sliced out rather than parsed: verification reads every line of the log through here.
    """
    end = len(line) - 1 if line.endswith(b"\n") else len(line)
    at = line.rfind(_CHAIN_KEY, max(0, end - 190), end - 150)
    if at < 1 or line[end - 150 : end - 141] != b',"prev":"' or line[end - 77 : end - 67] != b'","hash":"' or line[end - 3 : end] != b'"}}':
        return None
    digits = line[at + 16 : end - 150]
    # Canonical digits only: the hash covers the number, so "012" must not pass for "12".
    if not digits.isdigit() or (digits[0] == 48 and len(digits) > 1):
        return None
    before = line[at - 1]
    if before == 44:  # ","
        body = line[: at - 1] + b"}"
    elif before == 123 and at == 1:  # "{": the event was an empty object
        body = b"{}"
    else:
        return None
    return int(digits), line[end - 141 : end - 77], line[end - 67 : end - 3], body


def parse_line(line: bytes) -> ChainFields | None:
    """Like ``split_line``, with the hashes as text."""
    parts = split_line(line)
    if parts is None:
        return None
    seq, prev, this, body = parts
    return ChainFields(seq, prev.decode("ascii", "replace"), this.decode("ascii", "replace"), body)


def digest_hash(digest: Mapping[str, Any]) -> str:
    """sha256 over the digest's fields (sorted keys), its own ``digest_hash`` and the
    ``signature`` over it left out."""
    fields = {key: value for key, value in digest.items() if key not in ("digest_hash", "signature")}
    return hashlib.sha256(orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)).hexdigest()


def read_digest(path: Path) -> dict[str, Any] | None:
    """A digest file's fields, or None when it is missing or unreadable."""
    try:
        data = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


_HASH_FIELDS = ("last_hash", "file_sha256", "previous_digest_hash", "digest_hash")
_INT_FIELDS = ("index", "first_seq", "last_seq", "records", "bytes")
_TEXT_FIELDS = ("segment", "day")
_OPTIONAL_TEXT_FIELDS = ("previous_segment", "min_ts", "max_ts")  # min/max_ts: absent in older digests


def _is_hash(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def digest_malformed(digest: Mapping[str, Any]) -> str | None:
    """What is wrong with the types of a digest's fields, or None when they are all usable.

    Everything that reads a digest (verification, the writer's reload, ``read_events``)
    checks this first, so a hand-edited ``"last_seq": "a"`` is reported, not a crash.
    """
    wrong = [key for key in _HASH_FIELDS if not _is_hash(digest.get(key))]
    wrong += [key for key in _INT_FIELDS if not isinstance(digest.get(key), int) or isinstance(digest.get(key), bool)]
    wrong += [key for key in _TEXT_FIELDS if not isinstance(digest.get(key), str)]
    wrong += [key for key in _OPTIONAL_TEXT_FIELDS if digest.get(key) is not None and not isinstance(digest.get(key), str)]
    return f"field(s) {', '.join(wrong)} missing or of the wrong type" if wrong else None


def read_valid_digest(path: Path) -> dict[str, Any] | None:
    """A digest whose fields have the right types, or None (missing, unreadable or malformed)."""
    digest = read_digest(path)
    return digest if digest is not None and digest_malformed(digest) is None else None


def is_canonical_ts(value: Any) -> bool:
    """True for a ``ts`` already in the runtime's own form (structlog's ISO, UTC, microseconds),
    e.g. 2026-11-26T20:24:44.363010Z: such timestamps compare as text, in order, unparsed."""
    return isinstance(value, str) and len(value) == 27 and value[19] == "." and value[26] == "Z"


def format_ts(moment: dt.datetime) -> str:
    """A UTC datetime in the canonical form (see ``is_canonical_ts``)."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_ts(value: Any) -> str | None:
    """An event's ``ts`` as a UTC timestamp in one fixed form (so they compare as text), or None."""
    if not isinstance(value, str):
        return None
    if is_canonical_ts(value):
        return value
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return format_ts(moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC))


def loads_event(body: bytes) -> Any:
    """An event's JSON, or None when it does not parse.

    orjson first (fast); the standard library reads what orjson refuses: a lone
    surrogate, which the writer keeps, escaped.
    """
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(body)
    except ValueError:
        return None


class SegmentSummary:
    """What a segment's digest says of its bytes, kept while they are written: the sha256 of
    the file, its size and the earliest and latest event ``ts``.

    The time range goes into the digest so ``read_events`` can skip a segment only when none
    of its events can fall in the window (a late event stamped the day before still lands in
    today's segment). The writer feeds it what it appends (``add``), so closing a segment
    costs no re-read; bytes another writer appended are read once (``read_from``).
    """

    __slots__ = ("_hash", "size", "earliest", "latest")

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self.size = 0
        self.earliest: str | None = None
        self.latest: str | None = None

    def add(self, data: bytes, moments: Iterable[str | None]) -> None:
        """Bytes appended to the file, and the canonical ``ts`` of each event in them."""
        self._hash.update(data)
        self.size += len(data)
        for moment in moments:
            if moment is not None:
                self.earliest = moment if self.earliest is None or moment < self.earliest else self.earliest
                self.latest = moment if self.latest is None or moment > self.latest else self.latest

    def read_from(self, path: Path, end: int) -> None:
        """Take in the file's bytes from ``self.size`` up to ``end`` (whole lines)."""
        carry = b""
        with open(path, "rb") as handle:
            handle.seek(self.size)
            remaining = end - self.size  # bounded: a device file never ends
            while remaining > 0 and (chunk := handle.read(min(1 << 20, remaining))):
                remaining -= len(chunk)
                *lines, carry = (carry + chunk).split(b"\n")
                self.add(chunk, (_line_ts(line) for line in lines))

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()


def _line_ts(line: bytes) -> str | None:
    parts = split_line(line)
    if parts is None:
        return None
    event = loads_event(parts[3])
    return canonical_ts(event.get("ts")) if isinstance(event, dict) else None


def segment_summary(path: Path) -> SegmentSummary:
    """A segment file's summary, read from disk."""
    summary = SegmentSummary()
    summary.read_from(path, os.stat(path).st_size)
    return summary


def iter_lines(path: Path) -> Iterator[bytes]:
    with open(path, "rb", buffering=1 << 20) as handle:
        yield from handle


def last_record(handle: Any, size: int) -> tuple[int, Any]:
    """(offset just past the last newline, the last parseable record before it)."""
    block = 1 << 16
    position = size
    tail = b""
    end = None
    while position > 0:
        start = max(0, position - block)
        handle.seek(start)
        tail = handle.read(position - start) + tail
        position = start
        if end is None:
            newline = tail.rfind(b"\n")
            if newline < 0:
                continue
            end = start + newline + 1
        lines = tail[: end - position].split(b"\n")
        # lines[0] may be partial unless we reached the start of the file.
        candidates = lines if position == 0 else lines[1:]
        for line in reversed(candidates):
            if line:
                record = parse_line(line)
                if record is not None:
                    return end, record
        if len(tail) > (64 << 20):
            break
        block *= 2
    return (end if end is not None else 0), None
