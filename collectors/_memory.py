"""An exporter that keeps events in memory: for tests and for the SDK's own inspection."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from ._exporter import Event, ExportResult

__all__ = ["InMemoryExporter"]


class InMemoryExporter:
    name = "memory"

    def __init__(self) -> None:
        self._events: list[Event] = []
        self._lock = threading.Lock()

    def export(self, batch: Sequence[Event]) -> ExportResult:
        with self._lock:
            self._events.extend(batch)
        return ExportResult.SUCCESS

    def events(self, kind: str | None = None) -> list[Event]:
        with self._lock:
            return [e for e in self._events if kind is None or e.get("event") == kind]

    def clear(self) -> None:
        with self._lock:
            self._events.clear()

    def force_flush(self, timeout: float = 10.0) -> bool:
        return True

    def shutdown(self) -> None:
        pass
