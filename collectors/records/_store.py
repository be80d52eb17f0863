"""RecordsStore: handoffs, incidents, stop switches and review samples in one SQL database (SQLAlchemy 2).

SQLite (a file, WAL mode) for one process; PostgreSQL by URL when replicas share the
records. All methods are synchronous and short: call them from async code through a
thread (``anyio.to_thread.run_sync``). The schema is managed by Alembic: ``upgrade()``
brings a database to head, safely when several replicas start at once.

Concurrency: a ticket is handed out once. ``claim`` is a conditional UPDATE checked by
the row it returns; ``claim_next`` picks its row with ``FOR UPDATE SKIP LOCKED`` on
PostgreSQL (so racing reviewers take different tickets instead of queueing on one), and
relies on SQLite running one writer at a time. Writes on SQLite take the write lock at
``BEGIN IMMEDIATE`` so a read-then-write transaction never fails half-way with "busy".
"""

from __future__ import annotations

import functools
import hashlib
import secrets
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, NamedTuple, ParamSpec, TypeVar

from sqlalchemy import Engine, create_engine, delete, event, func, inspect, select, text, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.orm import Session
from sqlalchemy.pool import StaticPool

from .._effectiveness import StratumTotal
from ._deadlines import IncidentCategory, report_deadline
from ._errors import HandoffConflict, RecordConflict, RecordNotFound, RecordsError, RecordsUnavailable
from ._keys import ApiKey, new_key
from ._models import ApiKeyRow, Base, HandoffRow, IncidentRow, PolicyEvidenceRow, ReviewLabelRow, ReviewSampleRow, RevokedSessionRow, SystemSwitchRow
from ._records import Handoff, HandoffStatus, Incident, IncidentSeverity, IncidentStatus, ReviewLabelValue, ReviewSample

__all__ = ["IncidentUpdate", "RecordsStore"]

P = ParamSpec("P")
T = TypeVar("T")

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "aimsguard_alembic_version"
_UPGRADE_LOCK = 0x4149_4D53  # pg advisory lock key for migrations ("AIMS")
MANUAL_RULE = "manual"


class IncidentUpdate(NamedTuple):
    incident: Incident
    opened: bool  # False: the events were folded into an incident already open


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _translated(method: Callable[P, T]) -> Callable[P, T]:
    """Driver errors become RecordsUnavailable / RecordsError (httpx-style, at the boundary)."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return method(*args, **kwargs)
        except (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError) as exc:
            raise RecordsUnavailable(f"the records database failed: {type(exc.orig if hasattr(exc, 'orig') else exc).__name__}") from exc
        except sa_exc.SQLAlchemyError as exc:
            raise RecordsError(f"the records database refused the change: {type(exc).__name__}") from exc

    return wrapper


class RecordsStore:
    """Shared records of human oversight: the handoff queue, incidents, stop switches."""

    def __init__(
        self,
        url: str,
        *,
        connect_timeout_s: float = 5.0,
        busy_timeout_s: float = 10.0,
        pool_timeout_s: float = 5.0,
        statement_timeout_s: float = 10.0,
        echo: bool = False,
    ) -> None:
        """``pool_timeout_s`` bounds the wait for a free connection and ``statement_timeout_s``
        (PostgreSQL) a statement or lock wait: the store is called from the event bus's worker
        and the request path, which a slow database must not stall for long."""
        parsed = make_url(url)
        self.dialect = parsed.get_backend_name()
        self.url = parsed.render_as_string(hide_password=True)  # for messages; never the password
        kwargs: dict[str, Any] = {"echo": echo}
        if self.dialect == "sqlite":
            database = parsed.database or ""
            in_memory = database in ("", ":memory:") or database.startswith("file::memory:")
            if not in_memory:
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"timeout": busy_timeout_s, "check_same_thread": False}
            if in_memory:
                kwargs["poolclass"] = StaticPool  # one shared connection, or each would see its own empty database
            else:
                kwargs["pool_timeout"] = pool_timeout_s
        elif self.dialect == "postgresql":
            timeout_ms = max(1, round(statement_timeout_s * 1000))
            given = parsed.query.get("options", "")  # the URL's own options (e.g. search_path) are kept
            options = " ".join([*([given] if isinstance(given, str) else given), f"-c statement_timeout={timeout_ms} -c lock_timeout={timeout_ms}"])
            kwargs["connect_args"] = {"connect_timeout": max(1, round(connect_timeout_s)), "options": options.strip()}
            kwargs["pool_pre_ping"] = True
            kwargs["pool_timeout"] = pool_timeout_s
            kwargs["pool_size"] = 5
        self.engine: Engine = create_engine(parsed, **kwargs)
        if self.dialect == "sqlite":
            _sqlite_setup(self.engine, in_memory)
        # Writes get BEGIN IMMEDIATE on SQLite (see the module docstring); harmless elsewhere.
        self._writer = self.engine.execution_options(aimsguard_write=True)

    # -- lifecycle -------------------------------------------------------------------

    @_translated
    def upgrade(self) -> None:
        """Run the Alembic migrations to head. Idempotent; replicas may call it together."""
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        with self._writer.begin() as connection:
            if self.dialect == "postgresql":
                # Replicas starting together wait for the first one's migration: longer than a statement.
                connection.execute(text("SET LOCAL statement_timeout = '120s'"))
                connection.execute(text("SET LOCAL lock_timeout = '120s'"))
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _UPGRADE_LOCK})
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
            # A database whose tables were dropped but whose version table says "head" gets
            # the missing tables from the models (which are the head schema).
            missing = [table for name, table in Base.metadata.tables.items() if not inspect(connection).has_table(name)]
            if missing:
                Base.metadata.create_all(connection, tables=missing)

    @_translated
    def missing_tables(self) -> list[str]:
        """The store's tables the database does not have (all of them before the first upgrade,
        or after the database was recreated empty)."""
        with self.engine.connect() as connection:
            present = set(inspect(connection).get_table_names())
        return sorted(set(Base.metadata.tables) - present)

    @_translated
    def revision(self) -> str | None:
        """The schema revision the database is at (None before the first upgrade)."""
        from alembic.runtime.migration import MigrationContext

        with self.engine.connect() as connection:
            return MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE}).get_current_revision()

    def dispose(self) -> None:
        """Close the connection pool (``close`` is the handoff transition)."""
        self.engine.dispose()

    @contextmanager
    def _write(self) -> Iterator[Session]:
        with Session(self._writer, expire_on_commit=False) as session, session.begin():
            yield session

    @contextmanager
    def _read(self) -> Iterator[Session]:
        with Session(self.engine) as session, session.begin():
            yield session

    # -- handoffs --------------------------------------------------------------------

    @_translated
    def create_handoff(
        self,
        *,
        system: str,
        request_id: str,
        conversation_id: str,
        principal: str | None,
        reason: str,
        verdicts: Sequence[dict[str, Any]],
        conversation: Sequence[dict[str, str]],
    ) -> Handoff:
        """Queue a ticket. ``conversation`` must already be redacted: it is stored as given."""
        row = HandoffRow(
            id="hnd_" + secrets.token_urlsafe(18),
            system=system,
            request_id=request_id,
            conversation_id=conversation_id,
            principal=principal or None,
            status=HandoffStatus.QUEUED.value,
            reason=reason,
            verdicts=list(verdicts),
            conversation=[dict(m) for m in conversation],
            created_at=_now(),
            note="",
        )
        with self._write() as session:
            session.add(row)
        return Handoff.from_row(row)

    @_translated
    def get_handoff(self, handoff_id: str) -> Handoff | None:
        with self._read() as session:
            row = session.get(HandoffRow, handoff_id)
            return Handoff.from_row(row) if row is not None else None

    @_translated
    def list_handoffs(self, *, status: HandoffStatus | str | None = None, system: str | None = None, limit: int = 100) -> list[Handoff]:
        """Oldest first: the order a queue is worked in."""
        query = select(HandoffRow).order_by(HandoffRow.created_at, HandoffRow.id).limit(limit)
        if status is not None:
            query = query.where(HandoffRow.status == HandoffStatus(status).value)
        if system is not None:
            query = query.where(HandoffRow.system == system)
        with self._read() as session:
            return [Handoff.from_row(row) for row in session.scalars(query)]

    @_translated
    def queued_counts(self) -> dict[str, int]:
        """Queued tickets per system (for the ``aimsguard_handoffs_queued`` gauge)."""
        query = select(HandoffRow.system, func.count()).where(HandoffRow.status == HandoffStatus.QUEUED.value).group_by(HandoffRow.system)
        with self._read() as session:
            return {system: count for system, count in session.execute(query)}

    @_translated
    def claim(self, handoff_id: str, reviewer: str) -> Handoff:
        """Take one queued ticket; HandoffConflict if it is not queued (someone was faster)."""
        return self._transition(
            handoff_id,
            HandoffRow.status == HandoffStatus.QUEUED.value,
            {"status": HandoffStatus.CLAIMED.value, "claimed_by": reviewer, "claimed_at": _now()},
            "claim it",
        )

    @_translated
    def claim_next(self, reviewer: str, *, system: str | None = None) -> Handoff | None:
        """Take the oldest queued ticket (of one system, or any); None when the queue is empty."""
        oldest = select(HandoffRow.id).where(HandoffRow.status == HandoffStatus.QUEUED.value)
        if system is not None:
            oldest = oldest.where(HandoffRow.system == system)
        # SKIP LOCKED: a ticket another reviewer is taking right now is passed over, not waited for.
        oldest = oldest.order_by(HandoffRow.created_at, HandoffRow.id).limit(1).with_for_update(skip_locked=True)
        statement = (
            update(HandoffRow)
            .where(HandoffRow.id == oldest.scalar_subquery(), HandoffRow.status == HandoffStatus.QUEUED.value)
            .values(status=HandoffStatus.CLAIMED.value, claimed_by=reviewer, claimed_at=_now())
            .returning(HandoffRow)
            .execution_options(synchronize_session=False)
        )
        with self._write() as session:
            row = session.scalars(statement).one_or_none()
            return Handoff.from_row(row) if row is not None else None

    @_translated
    def answer(self, handoff_id: str, reviewer: str, text: str) -> Handoff:
        """The person's answer for the user; only the reviewer who claimed the ticket may give it."""
        if not text.strip():
            raise ValueError("an answer needs some text")
        return self._transition(
            handoff_id,
            (HandoffRow.status == HandoffStatus.CLAIMED.value) & (HandoffRow.claimed_by == reviewer),
            {"status": HandoffStatus.ANSWERED.value, "answer": text, "answered_at": _now()},
            f"answer it as {reviewer!r} (claim it first)",
        )

    @_translated
    def return_to_bot(self, handoff_id: str, reviewer: str, note: str = "") -> Handoff:
        return self._transition(
            handoff_id,
            (HandoffRow.status == HandoffStatus.CLAIMED.value) & (HandoffRow.claimed_by == reviewer),
            {"status": HandoffStatus.RETURNED.value, "note": note, "closed_at": _now()},
            f"return it to the bot as {reviewer!r} (claim it first)",
        )

    @_translated
    def close(self, handoff_id: str, reviewer: str, note: str = "") -> Handoff:
        """Close a ticket in any state but closed; a claimed one only by its reviewer."""
        allowed = (HandoffRow.status != HandoffStatus.CLOSED.value) & (
            (HandoffRow.status != HandoffStatus.CLAIMED.value) | (HandoffRow.claimed_by == reviewer)
        )
        return self._transition(handoff_id, allowed, {"status": HandoffStatus.CLOSED.value, "note": note, "closed_at": _now()}, "close it")

    def _transition(self, handoff_id: str, condition: Any, values: dict[str, Any], wanted: str) -> Handoff:
        statement = (
            update(HandoffRow)
            .where(HandoffRow.id == handoff_id, condition)
            .values(**values)
            .returning(HandoffRow)
            .execution_options(synchronize_session=False)
        )
        with self._write() as session:
            row = session.scalars(statement).one_or_none()
            if row is not None:
                return Handoff.from_row(row)
            current = session.get(HandoffRow, handoff_id)
            if current is None:
                raise RecordNotFound("handoff", handoff_id)
            raise HandoffConflict(handoff_id, current.status, wanted)

    # -- incidents -------------------------------------------------------------------

    @_translated
    def record_incident_events(
        self,
        *,
        system: str,
        rule: str,
        severity: IncidentSeverity | str,
        title: str,
        event_ids: Sequence[str],
        serious: bool = False,
        category: IncidentCategory | str | None = None,
        now: datetime | None = None,
        fold_window_s: float = 3600.0,
        max_event_ids: int = 200,
    ) -> IncidentUpdate:
        """Fold events into the unresolved incident of this rule and system seen within
        ``fold_window_s``, or open a new one. ``count`` counts each event id once, also past
        ``max_event_ids``; the ids kept are the first and the latest (see ``_link``)."""
        now = now or _now()
        severity = IncidentSeverity(severity).value
        serious, category = _classified(serious, category)
        with self._write() as session:
            if self.dialect == "postgresql":
                # Replicas folding the same rule at once must not open two incidents.
                session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": zlib.crc32(f"{system}\0{rule}".encode()) - 2**31})
            row = session.scalars(
                select(IncidentRow)
                .where(
                    IncidentRow.system == system,
                    IncidentRow.rule == rule,
                    IncidentRow.status != IncidentStatus.RESOLVED.value,
                    IncidentRow.last_seen >= now - timedelta(seconds=fold_window_s),
                )
                .order_by(IncidentRow.last_seen.desc())
                .limit(1)
            ).one_or_none()
            if row is not None:
                row.event_ids, added = _link(row.event_ids, event_ids, max_event_ids)
                row.count += max(added, 1 if not event_ids else 0)
                row.last_seen = max(row.last_seen, now)
                return IncidentUpdate(Incident.from_row(row), opened=False)
            ids, added = _link([], event_ids, max_event_ids)
            row = IncidentRow(
                id="inc_" + secrets.token_urlsafe(12),
                system=system,
                rule=rule,
                severity=severity,
                title=title,
                description="",
                reporter=None,
                status=IncidentStatus.OPEN.value,
                first_seen=now,
                last_seen=now,
                count=max(added, 1),
                event_ids=ids,
                serious=serious,
                category=category,
                report_deadline=report_deadline(now, category) if serious else None,
            )
            session.add(row)
            return IncidentUpdate(Incident.from_row(row), opened=True)

    @_translated
    def report_incident(
        self,
        *,
        system: str,
        title: str,
        severity: IncidentSeverity | str,
        reporter: str,
        description: str = "",
        serious: bool = False,
        category: IncidentCategory | str | None = None,
    ) -> Incident:
        """A manual report (a person saw something): always a new record."""
        if not title.strip():
            raise ValueError("an incident needs a title")
        now = _now()
        serious, category = _classified(serious, category)
        row = IncidentRow(
            id="inc_" + secrets.token_urlsafe(12),
            system=system,
            rule=MANUAL_RULE,
            severity=IncidentSeverity(severity).value,
            title=title,
            description=description,
            reporter=reporter,
            status=IncidentStatus.OPEN.value,
            first_seen=now,
            last_seen=now,
            count=1,
            event_ids=[],
            serious=serious,
            category=category,
            report_deadline=report_deadline(now, category) if serious else None,
        )
        with self._write() as session:
            session.add(row)
        return Incident.from_row(row)

    @_translated
    def get_incident(self, incident_id: str) -> Incident | None:
        with self._read() as session:
            row = session.get(IncidentRow, incident_id)
            return Incident.from_row(row) if row is not None else None

    @_translated
    def list_incidents(
        self, *, status: IncidentStatus | str | None = None, system: str | None = None, limit: int = 100
    ) -> list[Incident]:
        """Most recently seen first."""
        query = select(IncidentRow).order_by(IncidentRow.last_seen.desc(), IncidentRow.id).limit(limit)
        if status is not None:
            query = query.where(IncidentRow.status == IncidentStatus(status).value)
        if system is not None:
            query = query.where(IncidentRow.system == system)
        with self._read() as session:
            return [Incident.from_row(row) for row in session.scalars(query)]

    @_translated
    def acknowledge_incident(self, incident_id: str, user: str) -> Incident:
        return self._incident_transition(
            incident_id,
            IncidentRow.status == IncidentStatus.OPEN.value,
            {"status": IncidentStatus.ACKNOWLEDGED.value, "acknowledged_by": user, "acknowledged_at": _now()},
            "acknowledge it",
        )

    @_translated
    def resolve_incident(self, incident_id: str, user: str, *, cause: str, corrective_action: str) -> Incident:
        """Close an incident with its cause and corrective action (ISO 42001 10.2): both required."""
        if not cause.strip() or not corrective_action.strip():
            raise ValueError("resolving an incident needs its cause and the corrective action taken")
        return self._incident_transition(
            incident_id,
            IncidentRow.status != IncidentStatus.RESOLVED.value,
            {
                "status": IncidentStatus.RESOLVED.value,
                "resolved_by": user,
                "resolved_at": _now(),
                "cause": cause,
                "corrective_action": corrective_action,
            },
            "resolve it",
        )

    def _incident_transition(self, incident_id: str, condition: Any, values: dict[str, Any], wanted: str) -> Incident:
        statement = (
            update(IncidentRow)
            .where(IncidentRow.id == incident_id, condition)
            .values(**values)
            .returning(IncidentRow)
            .execution_options(synchronize_session=False)
        )
        with self._write() as session:
            row = session.scalars(statement).one_or_none()
            if row is not None:
                return Incident.from_row(row)
            current = session.get(IncidentRow, incident_id)
            if current is None:
                raise RecordNotFound("incident", incident_id)
            raise RecordConflict("incident", incident_id, current.status, wanted)

    # -- stop switches -----------------------------------------------------------------

    @_translated
    def set_stopped(self, system: str, stopped: bool, *, by: str, reason: str = "") -> None:
        values = {"system": system, "stopped": stopped, "changed_by": by, "changed_at": _now(), "reason": reason}
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
        statement = insert(SystemSwitchRow).values(**values)
        statement = statement.on_conflict_do_update(index_elements=["system"], set_={k: v for k, v in values.items() if k != "system"})
        with self._write() as session:
            session.execute(statement)

    @_translated
    def stopped_systems(self) -> set[str]:
        with self._read() as session:
            return set(session.scalars(select(SystemSwitchRow.system).where(SystemSwitchRow.stopped.is_(True))))

    # -- review samples (issue 16) --------------------------------------------------------

    @_translated
    def add_review_samples(self, samples: Sequence[dict[str, Any]]) -> list[str]:
        """Queue decisions drawn for review; each dict holds ReviewSampleRow's fields but
        ``id``, ``created_at`` and ``status``. Content must already be what the event log holds."""
        now = _now()
        rows = [ReviewSampleRow(id="rs_" + secrets.token_urlsafe(12), created_at=now, status="open", **sample) for sample in samples]
        if rows:
            with self._write() as session:
                session.add_all(rows)
        return [row.id for row in rows]

    @_translated
    def get_review_sample(self, sample_id: str) -> ReviewSample | None:
        with self._read() as session:
            row = session.get(ReviewSampleRow, sample_id)
            if row is None:
                return None
            labels = list(session.scalars(select(ReviewLabelRow).where(ReviewLabelRow.sample_id == sample_id)))
            return ReviewSample.from_row(row, labels)

    @_translated
    def next_review_sample(self, reviewer: str, *, system: str | None = None) -> ReviewSample | None:
        """The oldest open sample this reviewer has not labelled (a double-labelled one goes
        to a second reviewer); None when there is nothing left for them."""
        mine = select(ReviewLabelRow.sample_id).where(ReviewLabelRow.reviewer == reviewer)
        query = (
            select(ReviewSampleRow.id)
            .where(ReviewSampleRow.status == "open", ReviewSampleRow.id.not_in(mine))
            .order_by(ReviewSampleRow.created_at, ReviewSampleRow.id)
            .limit(1)
        )
        if system is not None:
            query = query.where(ReviewSampleRow.system == system)
        with self._read() as session:
            sample_id = session.scalars(query).one_or_none()
        return self.get_review_sample(sample_id) if sample_id is not None else None

    @_translated
    def label_review_sample(self, sample_id: str, reviewer: str, label: ReviewLabelValue | str) -> ReviewSample:
        """Record one reviewer's label; a sample is done once it has the labels it wants.
        RecordConflict when this reviewer labelled it already or it is done."""
        value = ReviewLabelValue(label).value
        with self._write() as session:
            row = session.get(ReviewSampleRow, sample_id, with_for_update=True)  # racing reviewers take turns (PostgreSQL)
            if row is None:
                raise RecordNotFound("review sample", sample_id)
            labels = list(session.scalars(select(ReviewLabelRow).where(ReviewLabelRow.sample_id == sample_id)))
            if any(l.reviewer == reviewer for l in labels):
                raise RecordConflict("review sample", sample_id, "labelled by you", "label it again")
            if row.status != "open":
                raise RecordConflict("review sample", sample_id, row.status, "label it")
            new = ReviewLabelRow(sample_id=sample_id, reviewer=reviewer, label=value, labelled_at=_now())
            session.add(new)
            labels.append(new)
            if len(labels) >= row.labels_wanted:
                row.status = "done"
            session.flush()
            return ReviewSample.from_row(row, labels)

    @_translated
    def review_samples(
        self, *, since: datetime | None = None, until: datetime | None = None, system: str | None = None, labelled_only: bool = False
    ) -> list[ReviewSample]:
        """Samples of decisions taken in [since, until), with their labels, oldest first."""
        query = select(ReviewSampleRow).order_by(ReviewSampleRow.decided_at, ReviewSampleRow.id)
        if since is not None:
            query = query.where(ReviewSampleRow.decided_at >= since)
        if until is not None:
            query = query.where(ReviewSampleRow.decided_at < until)
        if system is not None:
            query = query.where(ReviewSampleRow.system == system)
        if labelled_only:
            query = query.where(ReviewSampleRow.id.in_(select(ReviewLabelRow.sample_id)))
        with self._read() as session:
            rows = list(session.scalars(query))
            labels: dict[str, list[ReviewLabelRow]] = {}
            ids = [row.id for row in rows]
            for start in range(0, len(ids), 500):
                for label in session.scalars(select(ReviewLabelRow).where(ReviewLabelRow.sample_id.in_(ids[start : start + 500]))):
                    labels.setdefault(label.sample_id, []).append(label)
            return [ReviewSample.from_row(row, labels.get(row.id, [])) for row in rows]

    @_translated
    def review_totals(self, *, since: datetime | None = None, system: str | None = None) -> list[StratumTotal]:
        """Each stratum's (system, check, action) samples since ``since``, counted and weighted
        in the database: with ``review_samples(labelled_only=True)`` all that the effectiveness
        figures need, without reading every sample drawn."""
        query = select(
            ReviewSampleRow.system, ReviewSampleRow.guardrail, func.min(ReviewSampleRow.stage), ReviewSampleRow.action,
            func.count(), func.sum(1.0 / ReviewSampleRow.inclusion_p),
        ).group_by(ReviewSampleRow.system, ReviewSampleRow.guardrail, ReviewSampleRow.action)
        if since is not None:
            query = query.where(ReviewSampleRow.decided_at >= since)
        if system is not None:
            query = query.where(ReviewSampleRow.system == system)
        with self._read() as session:
            return [StratumTotal(s, g, stage, a, int(n), float(w)) for s, g, stage, a, n, w in session.execute(query)]

    @_translated
    def review_open_counts(self) -> dict[tuple[str, str], int]:
        """Open samples per (system, check)."""
        query = (
            select(ReviewSampleRow.system, ReviewSampleRow.guardrail, func.count())
            .where(ReviewSampleRow.status == "open")
            .group_by(ReviewSampleRow.system, ReviewSampleRow.guardrail)
        )
        with self._read() as session:
            return {(system, check): count for system, check, count in session.execute(query)}

    # -- change control: evidence behind a policy version -----------------------------------

    @_translated
    def add_policy_evidence(self, *, kind: str, candidate_version: str, body: dict[str, Any]) -> str:
        row = PolicyEvidenceRow(id="pev_" + secrets.token_urlsafe(12), kind=kind, candidate_version=candidate_version, created_at=_now(), body=dict(body))
        with self._write() as session:
            session.add(row)
        return row.id

    @_translated
    def policy_evidence(self, candidate_version: str | None = None) -> list[dict[str, Any]]:
        """The recorded before/after tables, oldest first."""
        query = select(PolicyEvidenceRow).order_by(PolicyEvidenceRow.created_at, PolicyEvidenceRow.id)
        if candidate_version is not None:
            query = query.where(PolicyEvidenceRow.candidate_version == candidate_version)
        with self._read() as session:
            return [dict(row.body) for row in session.scalars(query)]

    # -- console sessions ----------------------------------------------------------------

    @_translated
    def revoke_session(self, session_id: str, *, until: datetime) -> None:
        """End a console session on every replica until ``until`` (when its cookie expires
        anyway). Revocations past their time are dropped on the way."""
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
        now = _now()
        statement = insert(RevokedSessionRow).values(session_hash=_session_hash(session_id), revoked_at=now, expires_at=until)
        with self._write() as session:
            session.execute(delete(RevokedSessionRow).where(RevokedSessionRow.expires_at < now))
            session.execute(statement.on_conflict_do_nothing(index_elements=["session_hash"]))

    @_translated
    def session_revoked(self, session_id: str) -> bool:
        with self._read() as session:
            return session.get(RevokedSessionRow, _session_hash(session_id)) is not None


    # -- virtual API keys ---------------------------------------------------------------

    @_translated
    def create_key(
        self, *, system: str, by: str, name: str = "", rpm: int | None = None, tokens_per_day: int | None = None
    ) -> tuple[ApiKey, str]:
        """A new key for ``system``: the record and the whole key, which is never stored (only
        its hash) and so can be shown only now."""
        for what, limit in (("rpm", rpm), ("tokens_per_day", tokens_per_day)):
            if limit is not None and limit < 1:
                raise ValueError(f"{what} must be at least 1 (or none for no limit)")
        key_id, key, hashed = new_key()
        row = ApiKeyRow(
            id=key_id, system=system, name=name, secret_hash=hashed, rpm=rpm, tokens_per_day=tokens_per_day,
            created_by=by, created_at=_now(), revoked_by=None, revoked_at=None,
        )
        with self._write() as session:
            session.add(row)
        return ApiKey.from_row(row), key

    @_translated
    def get_key(self, key_id: str) -> ApiKey | None:
        with self._read() as session:
            row = session.get(ApiKeyRow, key_id)
            return ApiKey.from_row(row) if row is not None else None

    @_translated
    def list_keys(self, *, system: str | None = None, include_revoked: bool = True) -> list[ApiKey]:
        """Newest first."""
        query = select(ApiKeyRow).order_by(ApiKeyRow.created_at.desc(), ApiKeyRow.id)
        if system is not None:
            query = query.where(ApiKeyRow.system == system)
        if not include_revoked:
            query = query.where(ApiKeyRow.revoked_at.is_(None))
        with self._read() as session:
            return [ApiKey.from_row(row) for row in session.scalars(query)]

    @_translated
    def revoke_key(self, key_id: str, *, by: str) -> ApiKey:
        """Revoke a key (for good: a revoked key is never valid again). RecordConflict when it
        is revoked already."""
        statement = (
            update(ApiKeyRow)
            .where(ApiKeyRow.id == key_id, ApiKeyRow.revoked_at.is_(None))
            .values(revoked_by=by, revoked_at=_now())
            .returning(ApiKeyRow)
            .execution_options(synchronize_session=False)
        )
        with self._write() as session:
            row = session.scalars(statement).one_or_none()
            if row is not None:
                return ApiKey.from_row(row)
            if session.get(ApiKeyRow, key_id) is None:
                raise RecordNotFound("key", key_id)
            raise RecordConflict("key", key_id, "revoked", "revoke it")

    @_translated
    def keys_revoked_stamp(self) -> tuple[int, Any]:
        """How many keys are revoked and the latest revocation: a cheap query whose change
        tells a replica to drop the keys it has cached."""
        query = select(func.count(ApiKeyRow.revoked_at), func.max(ApiKeyRow.revoked_at))
        with self._read() as session:
            count, latest = session.execute(query).one()
        return int(count), latest


def _session_hash(session_id: str) -> str:
    """The store keeps no live session id, only its hash."""
    return hashlib.sha256(session_id.encode()).hexdigest()


def _link(linked: Sequence[str], incoming: Sequence[str], cap: int) -> tuple[list[str], int]:
    """The ids to keep on an incident and how many of ``incoming`` are new.

    Deduplicated before capping, so a batch sent again (a retried write) counts nothing
    twice. Past the cap the first ids stay (how it began) and the rest of the room holds
    the latest ones, which are also the ones a retry sends again: they are still known.
    """
    known = set(linked)
    new = [i for i in dict.fromkeys(incoming) if i not in known]
    ids = [*linked, *new]
    if len(ids) > cap:
        head = (cap + 1) // 2
        ids = ids[:head] + ids[len(ids) - (cap - head) :]
    return ids, len(new)


def _classified(serious: bool, category: IncidentCategory | str | None) -> tuple[bool, str | None]:
    """A category is an Art. 73 reporting category: naming one makes the incident serious (so it
    gets its deadline); a serious incident without one is ``other`` (15 days)."""
    if category:
        return True, IncidentCategory(category).value
    return serious, IncidentCategory.OTHER.value if serious else None


def _sqlite_setup(engine: Engine, in_memory: bool) -> None:
    """WAL (readers never wait for the writer) and explicit transactions we begin ourselves."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _: Any) -> None:
        dbapi_connection.isolation_level = None  # pysqlite's own BEGIN handling off: ours below
        cursor = dbapi_connection.cursor()
        if not in_memory:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        write = connection.get_execution_options().get("aimsguard_write", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
