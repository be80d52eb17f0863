"""Where events go: the bounded event bus and the exporters behind it."""

from ._bias import BiasMonitor
from ._bus import EventBus
from ._exporter import Event, EventExporter, ExportResult
from ._fairness import FairnessConfig, FairnessEvaluation, FairnessSource, FairnessThresholds
from ._memory import InMemoryExporter
from ._metrics import BUCKETS, PrometheusMetrics
from ._objectives import Comparison, ObjectiveConfig, ObjectiveMetric
from ._review import ReviewConfig, ReviewSampler
from ._traces import TraceExporter
from .eventlog import SegmentEventLog, VerificationReport, read_events, verify_event_log

__all__ = [
    "BUCKETS",
    "BiasMonitor",
    "Comparison",
    "Event",
    "EventBus",
    "EventExporter",
    "ExportResult",
    "FairnessConfig",
    "FairnessEvaluation",
    "FairnessSource",
    "FairnessThresholds",
    "InMemoryExporter",
    "ObjectiveConfig",
    "ObjectiveMetric",
    "PrometheusMetrics",
    "ReviewConfig",
    "ReviewSampler",
    "SegmentEventLog",
    "TraceExporter",
    "VerificationReport",
    "read_events",
    "verify_event_log",
]
