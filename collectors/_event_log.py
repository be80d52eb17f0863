"""The event log: one JSON object per line, one file per UTC day.

Rendering uses structlog's JSONRenderer, so a record looks the same whether it came
through the bus or through structlog elsewhere. A failed write keeps the lines (up to
``max_pending``) and retries them before the next batch, so a full disk loses nothing
until that buffer overflows; ``healthy`` tells the runtime whether the last write
succeeded, which is what a fail-closed policy checks before serving a request.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import orjson
import structlog

from ._exporter import Event, ExportResult

__all__ = ["JsonlEventLog"]

log = structlog.get_logger("aimsguard.collectors")


def _dumps(event: object, **_: object) -> str:
    try:
        return orjson.dumps(event, default=str).decode()
    except TypeError:
        # orjson refuses what is not valid Unicode (a lone surrogate a client sent);
        # the standard library escapes it, so the record is kept rather than lost.
        return json.dumps(event, default=str, separators=(",", ":"))


class JsonlEventLog:
    name = "event_log"

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        fsync: bool = False,
        max_pending: int = 100_000,
        on_lost: Callable[[int], None] | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._fsync = fsync
        self._max_pending = max_pending
        self._on_lost = on_lost
        # orjson, as structlog's docs advise for speed: rendering runs on the worker thread,
        # but it still competes with the request path for the interpreter.
        self._render = structlog.processors.JSONRenderer(serializer=_dumps)
        self._pending: list[tuple[str, str]] = []  # (day, line) not yet on disk
        self._lock = threading.Lock()
        self.healthy = True
        self.lost = 0

    def path_for_day(self, day: str) -> Path:
        return self.directory / f"events-{day}.jsonl"

    def export(self, batch: Sequence[Event]) -> ExportResult:
        lines = []
        for event in batch:
            try:
                lines.append((str(event.get("ts", ""))[:10] or "undated", self._render(None, "", dict(event))))
            except Exception as exc:  # one unrenderable event must not cost the batch
                self._count_lost(1)
                log.error("event_log_render_failed", event=str(event.get("event")), error_type=type(exc).__name__)
        with self._lock:
            self._pending.extend(lines)
            try:
                self._write_pending()
            except OSError as exc:
                self.healthy = False
                overflow = len(self._pending) - self._max_pending
                if overflow > 0:
                    del self._pending[:overflow]
                    self._count_lost(overflow)
                log.error("event_log_write_failed", error=str(exc), pending=len(self._pending), directory=str(self.directory))
                return ExportResult.FAILURE
            self.healthy = True
            return ExportResult.SUCCESS

    def _count_lost(self, count: int) -> None:
        self.lost += count
        if self._on_lost is not None:
            self._on_lost(count)

    def _write_pending(self) -> None:
        by_day: dict[str, list[str]] = {}
        for day, line in self._pending:
            by_day.setdefault(day, []).append(line)
        for day, lines in by_day.items():
            with open(self.path_for_day(day), "a", encoding="utf-8") as handle:
                handle.write("\n".join(lines) + "\n")
                handle.flush()
                if self._fsync:
                    os.fsync(handle.fileno())
            # Written days leave the buffer at once, so a later failing day cannot duplicate them.
            self._pending = [(d, line) for d, line in self._pending if d != day]

    def probe(self) -> bool:
        """Check that the directory still takes writes (for readiness when idle)."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            with open(self.directory / ".probe", "w", encoding="utf-8") as handle:
                handle.write("ok")
        except OSError:
            return False
        return True

    def force_flush(self, timeout: float = 10.0) -> bool:
        with self._lock:
            if not self._pending:
                return True
            try:
                self._write_pending()
            except OSError:
                return False
            self.healthy = True
            return True

    def shutdown(self) -> None:
        self.force_flush()
