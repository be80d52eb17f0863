"""The records the store hands out: frozen copies, never live ORM rows."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ._models import HandoffRow, IncidentRow

__all__ = ["Handoff", "HandoffStatus", "Incident", "IncidentSeverity", "IncidentStatus"]


class HandoffStatus(str, enum.Enum):
    QUEUED = "queued"
    CLAIMED = "claimed"
    ANSWERED = "answered"
    RETURNED = "returned"  # back to the bot
    CLOSED = "closed"


class IncidentStatus(str, enum.Enum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class IncidentSeverity(str, enum.Enum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


@dataclass(frozen=True, slots=True)
class Handoff:
    id: str
    system: str
    request_id: str
    conversation_id: str
    principal: str | None
    status: HandoffStatus
    reason: str
    verdicts: list[dict[str, Any]]
    conversation: list[dict[str, str]]
    created_at: datetime
    claimed_by: str | None
    claimed_at: datetime | None
    answer: str | None
    answered_at: datetime | None
    note: str
    closed_at: datetime | None

    @classmethod
    def from_row(cls, row: HandoffRow) -> Handoff:
        return cls(
            id=row.id, system=row.system, request_id=row.request_id, conversation_id=row.conversation_id,
            principal=row.principal, status=HandoffStatus(row.status), reason=row.reason, verdicts=list(row.verdicts),
            conversation=list(row.conversation), created_at=row.created_at, claimed_by=row.claimed_by,
            claimed_at=row.claimed_at, answer=row.answer, answered_at=row.answered_at, note=row.note, closed_at=row.closed_at,
        )


@dataclass(frozen=True, slots=True)
class Incident:
    id: str
    system: str
    rule: str
    severity: IncidentSeverity
    title: str
    description: str
    reporter: str | None
    status: IncidentStatus
    first_seen: datetime
    last_seen: datetime
    count: int
    event_ids: list[str]
    serious: bool
    category: str | None
    report_deadline: datetime | None
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    resolved_by: str | None
    resolved_at: datetime | None
    cause: str | None
    corrective_action: str | None

    @classmethod
    def from_row(cls, row: IncidentRow) -> Incident:
        return cls(
            id=row.id, system=row.system, rule=row.rule, severity=IncidentSeverity(row.severity), title=row.title,
            description=row.description, reporter=row.reporter, status=IncidentStatus(row.status), first_seen=row.first_seen,
            last_seen=row.last_seen, count=row.count, event_ids=list(row.event_ids), serious=row.serious, category=row.category,
            report_deadline=row.report_deadline, acknowledged_by=row.acknowledged_by, acknowledged_at=row.acknowledged_at,
            resolved_by=row.resolved_by, resolved_at=row.resolved_at, cause=row.cause, corrective_action=row.corrective_action,
        )
