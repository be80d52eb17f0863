"""The records store: the handoff queue, incident records, stop switches and decisions sampled for review (SQLAlchemy 2 + Alembic)."""

from ._deadlines import IncidentCategory, report_deadline
from ._errors import HandoffConflict, RecordConflict, RecordNotFound, RecordsError, RecordsUnavailable
from ._records import Handoff, HandoffStatus, Incident, IncidentSeverity, IncidentStatus, ReviewLabel, ReviewLabelValue, ReviewSample
from ._store import MANUAL_RULE, IncidentUpdate, RecordsStore

__all__ = [
    "MANUAL_RULE",
    "Handoff",
    "HandoffConflict",
    "HandoffStatus",
    "Incident",
    "IncidentCategory",
    "IncidentSeverity",
    "IncidentStatus",
    "IncidentUpdate",
    "RecordConflict",
    "RecordNotFound",
    "RecordsError",
    "RecordsStore",
    "RecordsUnavailable",
    "ReviewLabel",
    "ReviewLabelValue",
    "ReviewSample",
    "report_deadline",
]
