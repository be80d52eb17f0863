"""Where events go: the bounded event bus and the exporters behind it."""

from ._bus import EventBus
from ._event_log import JsonlEventLog
from ._exporter import Event, EventExporter, ExportResult
from ._memory import InMemoryExporter

__all__ = ["Event", "EventBus", "EventExporter", "ExportResult", "InMemoryExporter", "JsonlEventLog"]
