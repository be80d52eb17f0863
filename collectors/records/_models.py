"""The tables of the records store (SQLAlchemy 2 typed declarative models).

Only the store touches these: it hands out frozen copies (``Handoff``, ``Incident``),
never live ORM rows. The schema is created and changed by the Alembic migrations in
``migrations/``; keep them in step with this file (``alembic check`` style test).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, ForeignKey, Index, Integer, String, Text, TypeDecorator, UniqueConstraint
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = ["ApiKeyRow", "Base", "HandoffRow", "IncidentRow", "PolicyEvidenceRow", "ReviewLabelRow", "ReviewSampleRow", "RevokedSessionRow", "SystemSwitchRow", "UtcDateTime"]


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every database (SQLite keeps no zone: stored as naive UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the records store; use an aware UTC datetime")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UtcDateTime, dict[str, Any]: JSON, list[Any]: JSON}


class HandoffRow(Base):
    """A conversation handed to a person (EU AI Act Art. 14): the human fallback queue."""

    __tablename__ = "handoffs"
    __table_args__ = (Index("ix_handoffs_status_created", "status", "created_at"), Index("ix_handoffs_system", "system"))

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    system: Mapped[str] = mapped_column(String(64))
    request_id: Mapped[str] = mapped_column(String(128))
    conversation_id: Mapped[str] = mapped_column(String(128))
    principal: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text, default="")
    verdicts: Mapped[list[Any]] = mapped_column(default=list)
    conversation: Mapped[list[Any]] = mapped_column(default=list)  # redacted messages only
    created_at: Mapped[datetime]
    claimed_by: Mapped[str | None] = mapped_column(String(200))
    claimed_at: Mapped[datetime | None]
    answer: Mapped[str | None] = mapped_column(Text)
    answered_at: Mapped[datetime | None]
    note: Mapped[str] = mapped_column(Text, default="")
    closed_at: Mapped[datetime | None]


class IncidentRow(Base):
    """A nonconformity (ISO 42001 10.2) or serious incident (EU AI Act Art. 73)."""

    __tablename__ = "incidents"
    __table_args__ = (Index("ix_incidents_system_rule_status", "system", "rule", "status"), Index("ix_incidents_status", "status"))

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    system: Mapped[str] = mapped_column(String(64))
    rule: Mapped[str] = mapped_column(String(64))
    severity: Mapped[str] = mapped_column(String(16))
    title: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text, default="")
    reporter: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16))
    first_seen: Mapped[datetime]
    last_seen: Mapped[datetime]
    count: Mapped[int] = mapped_column(Integer, default=0)
    event_ids: Mapped[list[Any]] = mapped_column(default=list)
    serious: Mapped[bool] = mapped_column(Boolean, default=False)
    category: Mapped[str | None] = mapped_column(String(32))
    report_deadline: Mapped[datetime | None]
    acknowledged_by: Mapped[str | None] = mapped_column(String(200))
    acknowledged_at: Mapped[datetime | None]
    resolved_by: Mapped[str | None] = mapped_column(String(200))
    resolved_at: Mapped[datetime | None]
    cause: Mapped[str | None] = mapped_column(Text)
    corrective_action: Mapped[str | None] = mapped_column(Text)


class SystemSwitchRow(Base):
    """The stop switch of one AI system (EU AI Act Art. 14(4)(e))."""

    __tablename__ = "system_switches"

    system: Mapped[str] = mapped_column(String(64), primary_key=True)
    stopped: Mapped[bool] = mapped_column(Boolean, default=False)
    changed_by: Mapped[str] = mapped_column(String(200))
    changed_at: Mapped[datetime]
    reason: Mapped[str] = mapped_column(Text, default="")


class RevokedSessionRow(Base):
    """A console session ended by signing out: refused by every replica until it would have
    expired anyway. Only a hash of the session id is kept."""

    __tablename__ = "console_revoked_sessions"
    __table_args__ = (Index("ix_console_revoked_sessions_expires", "expires_at"),)

    session_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    revoked_at: Mapped[datetime]
    expires_at: Mapped[datetime]


class ReviewSampleRow(Base):
    """One check's decision on one exchange, drawn for people to judge (ISO 42001 9.1).

    ``content`` holds only what the event log's ``exchange`` event held (null when content
    is not logged or was withheld); ``inclusion_p`` is the chance this decision had of
    being drawn, so estimates weight it by ``1 / inclusion_p``."""

    __tablename__ = "review_samples"
    __table_args__ = (
        Index("ix_review_samples_status_created", "status", "created_at"),
        Index("ix_review_samples_system_check", "system", "guardrail", "created_at"),
        Index("ix_review_samples_request", "request_id"),
        Index("ix_review_samples_decided", "decided_at"),  # the effectiveness gauges' window
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    system: Mapped[str] = mapped_column(String(64))
    guardrail: Mapped[str] = mapped_column(String(64))  # the check's id in the policy
    stage: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(16))
    score: Mapped[float] = mapped_column(default=0.0)
    reasons: Mapped[list[Any]] = mapped_column(default=list)
    findings: Mapped[list[Any]] = mapped_column(default=list)  # kinds and positions, never text
    request_id: Mapped[str] = mapped_column(String(128))
    policy_version: Mapped[str] = mapped_column(String(80), default="")
    content: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    content_note: Mapped[str] = mapped_column(Text, default="")
    decided_at: Mapped[datetime]  # the exchange's time
    created_at: Mapped[datetime]
    inclusion_p: Mapped[float] = mapped_column(default=1.0)
    labels_wanted: Mapped[int] = mapped_column(Integer, default=1)
    status: Mapped[str] = mapped_column(String(16))  # open | done


class ReviewLabelRow(Base):
    """A reviewer's judgement of a sampled decision: right, wrong or unsure."""

    __tablename__ = "review_labels"
    __table_args__ = (UniqueConstraint("sample_id", "reviewer", name="uq_review_labels_sample_reviewer"), Index("ix_review_labels_labelled", "labelled_at"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    sample_id: Mapped[str] = mapped_column(String(64), ForeignKey("review_samples.id", ondelete="CASCADE"))
    reviewer: Mapped[str] = mapped_column(String(200))
    label: Mapped[str] = mapped_column(String(16))
    labelled_at: Mapped[datetime]


class PolicyEvidenceRow(Base):
    """What a shadow run or a replay showed of a candidate policy version before it came
    into force (ISO 42001 A.6.2.4/A.6.2.5 change control): the before/after table."""

    __tablename__ = "policy_evidence"
    __table_args__ = (Index("ix_policy_evidence_version", "candidate_version"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # replay | shadow
    candidate_version: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime]
    body: Mapped[dict[str, Any]] = mapped_column(JSON)


class ApiKeyRow(Base):
    """A virtual API key of one AI system: the public id, a SHA-256 of the secret (never the
    secret), the caller's limits, and when and by whom it was made and revoked."""

    __tablename__ = "api_keys"
    __table_args__ = (Index("ix_api_keys_system", "system"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    system: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200), default="")
    secret_hash: Mapped[str] = mapped_column(String(64))
    rpm: Mapped[int | None] = mapped_column(Integer)
    tokens_per_day: Mapped[int | None] = mapped_column(Integer)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime]
    revoked_by: Mapped[str | None] = mapped_column(String(200))
    revoked_at: Mapped[datetime | None]
