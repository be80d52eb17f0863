"""The records the store hands out: frozen copies, never live ORM rows."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ._models import HandoffRow, IncidentRow, ReviewLabelRow, ReviewSampleRow

__all__ = ["Handoff", "HandoffStatus", "Incident", "IncidentSeverity", "IncidentStatus", "ReviewLabel", "ReviewLabelValue", "ReviewSample"]


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


class ReviewLabelValue(str, enum.Enum):
    """A reviewer's judgement of a check's decision: for an action, right is a true
    positive and wrong a false positive; for an allow, right is a true negative and wrong
    a false negative (the check missed something)."""

    RIGHT = "right"
    WRONG = "wrong"
    UNSURE = "unsure"


@dataclass(frozen=True, slots=True)
class ReviewLabel:
    reviewer: str
    label: ReviewLabelValue
    labelled_at: datetime


@dataclass(frozen=True, slots=True)
class ReviewSample:
    id: str
    system: str
    guardrail: str
    stage: str
    action: str
    score: float
    reasons: list[str]
    findings: list[dict[str, Any]]
    request_id: str
    policy_version: str
    content: dict[str, Any] | None
    content_note: str
    decided_at: datetime
    created_at: datetime
    inclusion_p: float
    labels_wanted: int
    status: str
    labels: tuple[ReviewLabel, ...] = ()

    @property
    def acted(self) -> bool:
        return self.action != "allow"

    @classmethod
    def from_row(cls, row: ReviewSampleRow, labels: list[ReviewLabelRow] | tuple[()] = ()) -> ReviewSample:
        return cls(
            id=row.id, system=row.system, guardrail=row.guardrail, stage=row.stage, action=row.action, score=row.score,
            reasons=list(row.reasons), findings=list(row.findings), request_id=row.request_id, policy_version=row.policy_version,
            content=row.content, content_note=row.content_note, decided_at=row.decided_at, created_at=row.created_at,
            inclusion_p=row.inclusion_p, labels_wanted=row.labels_wanted, status=row.status,
            labels=tuple(ReviewLabel(l.reviewer, ReviewLabelValue(l.label), l.labelled_at) for l in sorted(labels, key=lambda l: (l.labelled_at, l.id))),
        )
