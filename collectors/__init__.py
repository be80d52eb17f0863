"""Where events go: the bounded event bus and the exporters behind it."""

from ._bus import EventBus
from ._event_log import JsonlEventLog
from ._exporter import Event, EventExporter, ExportResult
from ._memory import InMemoryExporter
from ._metrics import BUCKETS, PrometheusMetrics
from ._traces import TraceExporter

__all__ = [
    "BUCKETS",
    "Event",
    "EventBus",
    "EventExporter",
    "ExportResult",
    "InMemoryExporter",
    "JsonlEventLog",
    "PrometheusMetrics",
    "TraceExporter",
]
