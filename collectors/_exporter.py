"""The exporter interface every collector implements (after the OpenTelemetry SDK's)."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

__all__ = ["Event", "EventExporter", "ExportResult"]

Event = Mapping[str, Any]
"""One flat event record, as built by the runtime's event chain."""


class ExportResult(enum.Enum):
    SUCCESS = "success"
    FAILURE = "failure"


@runtime_checkable
class EventExporter(Protocol):
    """Receives batches of events on the bus's worker thread. Never raises into callers."""

    name: str

    def export(self, batch: Sequence[Event]) -> ExportResult: ...

    def force_flush(self, timeout: float = 10.0) -> bool: ...

    def shutdown(self) -> None: ...
