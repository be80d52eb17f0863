"""The tamper-evident event log: hash-chained segment files with chained digests.

``SegmentEventLog`` writes (an event exporter), ``read_events`` reads the events back
in order, ``verify_event_log`` checks the chain and names what was changed, removed,
reordered, truncated or deleted. The file format is described in ``_format``.
"""

from ._format import GENESIS, Segment, list_segments
from ._read import read_events
from ._verify import Problem, VerificationReport, verify_event_log
from ._writer import DEFAULT_MAX_SEGMENT_BYTES, SegmentEventLog

__all__ = [
    "DEFAULT_MAX_SEGMENT_BYTES",
    "GENESIS",
    "Problem",
    "Segment",
    "SegmentEventLog",
    "VerificationReport",
    "list_segments",
    "read_events",
    "verify_event_log",
]
