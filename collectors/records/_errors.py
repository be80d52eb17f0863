"""Errors of the records store. Database driver errors are translated at the boundary::

    RecordsError
     ├── RecordNotFound       no handoff / incident with that id
     ├── RecordConflict       the record is not in a state that allows the change
     │    └── HandoffConflict  e.g. claiming a ticket someone else has claimed
     └── RecordsUnavailable   the database cannot be reached or refused the work
"""

from __future__ import annotations

__all__ = ["HandoffConflict", "RecordConflict", "RecordNotFound", "RecordsError", "RecordsUnavailable"]


class RecordsError(Exception):
    """Base of the records store's errors."""


class RecordNotFound(RecordsError, LookupError):
    def __init__(self, kind: str, record_id: str) -> None:
        super().__init__(f"no {kind} with id {record_id!r}")
        self.kind = kind
        self.record_id = record_id


class RecordConflict(RecordsError):
    def __init__(self, kind: str, record_id: str, status: str, wanted: str) -> None:
        super().__init__(f"{kind} {record_id!r} is {status}: cannot {wanted}")
        self.record_id = record_id
        self.status = status


class HandoffConflict(RecordConflict):
    def __init__(self, record_id: str, status: str, wanted: str) -> None:
        super().__init__("handoff", record_id, status, wanted)


class RecordsUnavailable(RecordsError):
    """The database failed (down, timed out, locked too long). Callers choose to fail open or closed."""
