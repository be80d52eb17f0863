"""Where events go: the bounded event bus and the exporters behind it."""

from ._bias import BiasMonitor
from ._bus import EventBus
from ._exporter import Event, EventExporter, ExportResult
from ._fairness import FairnessConfig, FairnessEvaluation, FairnessSource, FairnessThresholds
from ._memory import InMemoryExporter
from ._metrics import BUCKETS, PrometheusMetrics
from ._objectives import Comparison, ObjectiveConfig, ObjectiveMetric
from ._review import ReviewConfig, ReviewSampler
from ._state import Count, MemoryState, RedisState, State, StateError, open_state
from ._traces import TraceExporter
from .eventlog import SegmentEventLog, VerificationReport, read_events, verify_event_log

__all__ = [
    "BUCKETS",
    "BiasMonitor",
    "Comparison",
    "Count",
    "Event",
    "EventBus",
    "EventExporter",
    "ExportResult",
    "FairnessConfig",
    "FairnessEvaluation",
    "FairnessSource",
    "FairnessThresholds",
    "InMemoryExporter",
    "MemoryState",
    "ObjectiveConfig",
    "ObjectiveMetric",
    "PrometheusMetrics",
    "RedisState",
    "ReviewConfig",
    "ReviewSampler",
    "SegmentEventLog",
    "State",
    "StateError",
    "TraceExporter",
    "VerificationReport",
    "open_state",
    "read_events",
    "verify_event_log",
]
