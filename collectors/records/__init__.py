"""The records store: the handoff queue, incident records, stop switches, decisions sampled for review and virtual API keys (SQLAlchemy 2 + Alembic)."""

from ._deadlines import IncidentCategory, report_deadline
from ._keys import KEY_PREFIX, ApiKey, parse_key, secret_matches
from ._errors import HandoffConflict, RecordConflict, RecordNotFound, RecordsError, RecordsUnavailable
from ._records import Handoff, HandoffStatus, Incident, IncidentSeverity, IncidentStatus, ReviewLabel, ReviewLabelValue, ReviewSample
from ._store import MANUAL_RULE, IncidentUpdate, RecordsStore

__all__ = [
    "ApiKey",
    "Handoff",
    "HandoffConflict",
    "HandoffStatus",
    "Incident",
    "IncidentCategory",
    "IncidentSeverity",
    "IncidentStatus",
    "IncidentUpdate",
    "KEY_PREFIX",
    "MANUAL_RULE",
    "RecordConflict",
    "RecordNotFound",
    "RecordsError",
    "RecordsStore",
    "RecordsUnavailable",
    "ReviewLabel",
    "ReviewLabelValue",
    "ReviewSample",
    "parse_key",
    "report_deadline",
    "secret_matches",
]
