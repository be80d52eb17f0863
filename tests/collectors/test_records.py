"""The records store on SQLite and on the local PostgreSQL: migrations, handoffs, incidents, switches."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import inspect

from aimsguard.collectors.records import (
    HandoffConflict,
    HandoffStatus,
    IncidentStatus,
    RecordConflict,
    RecordNotFound,
    RecordsStore,
    RecordsUnavailable,
)
from aimsguard.collectors.records._models import Base

from ..records_db import BACKENDS, database_url


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RecordsStore]:
    with database_url(request.param, tmp_path) as url:
        store = RecordsStore(url)
        store.upgrade()
        yield store
        store.dispose()


def _ticket(store: RecordsStore, system: str = "support-bot", principal: str | None = "p1") -> str:
    return store.create_handoff(
        system=system,
        request_id="req-1",
        conversation_id="conv-1",
        principal=principal,
        reason="legal matters go to a person",
        verdicts=[{"guardrail": "input-rules", "action": "escalate"}],
        conversation=[{"role": "user", "content": "I will take <LEGAL> action, mail <EMAIL_ADDRESS_1>"}],
    ).id


# -- schema ------------------------------------------------------------------------------


def test_upgrade_creates_the_models_tables_and_is_idempotent(store: RecordsStore) -> None:
    assert store.revision() == "0006"
    store.upgrade()  # a second replica starting: nothing to do, no error
    tables = set(inspect(store.engine).get_table_names())
    assert set(Base.metadata.tables) <= tables
    assert "aimsguard_alembic_version" in tables
    for name, table in Base.metadata.tables.items():
        columns = {c["name"] for c in inspect(store.engine).get_columns(name)}
        assert columns == set(table.columns.keys()), f"migration and model disagree on {name}"


def test_a_relative_sqlite_path_gets_its_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = RecordsStore("sqlite:///var/nested/records.db")
    store.upgrade()
    store.dispose()
    assert (tmp_path / "var" / "nested" / "records.db").exists()


def test_an_unreachable_database_is_reported_as_unavailable_without_the_password() -> None:
    store = RecordsStore("postgresql+psycopg://aimsguard:s3cret@127.0.0.1:1/nowhere", connect_timeout_s=1)
    with pytest.raises(RecordsUnavailable) as error:
        store.get_handoff("hnd_x")
    assert "s3cret" not in str(error.value) and "s3cret" not in store.url


# -- handoffs ------------------------------------------------------------------------------


def test_a_ticket_goes_queued_claimed_answered(store: RecordsStore) -> None:
    handoff_id = _ticket(store)
    queued = store.get_handoff(handoff_id)
    assert queued is not None and queued.status is HandoffStatus.QUEUED
    assert queued.conversation == [{"role": "user", "content": "I will take <LEGAL> action, mail <EMAIL_ADDRESS_1>"}]
    assert queued.created_at.tzinfo is not None
    assert handoff_id.startswith("hnd_") and len(handoff_id) >= 28

    claimed = store.claim(handoff_id, "alice")
    assert (claimed.status, claimed.claimed_by) == (HandoffStatus.CLAIMED, "alice")
    with pytest.raises(HandoffConflict):
        store.claim(handoff_id, "bob")  # never handed out twice
    with pytest.raises(HandoffConflict):
        store.answer(handoff_id, "bob", "not yours")
    answered = store.answer(handoff_id, "alice", "We have refunded you.")
    assert answered.status is HandoffStatus.ANSWERED and answered.answer == "We have refunded you."
    assert answered.answered_at is not None and answered.answered_at >= answered.claimed_at  # type: ignore[operator]
    with pytest.raises(HandoffConflict):
        store.return_to_bot(handoff_id, "alice")


def test_return_to_bot_and_close(store: RecordsStore) -> None:
    first, second = _ticket(store), _ticket(store)
    store.claim(first, "alice")
    returned = store.return_to_bot(first, "alice", note="the bot can answer this")
    assert returned.status is HandoffStatus.RETURNED and returned.note == "the bot can answer this"
    store.claim(second, "alice")
    with pytest.raises(HandoffConflict):
        store.close(second, "bob")  # claimed by someone else
    closed = store.close(second, "alice", note="spam")
    assert closed.status is HandoffStatus.CLOSED and closed.closed_at is not None
    with pytest.raises(HandoffConflict):
        store.close(second, "alice")
    with pytest.raises(RecordNotFound):
        store.claim("hnd_doesnotexist", "alice")


def test_claim_next_takes_the_oldest_of_the_asked_system(store: RecordsStore) -> None:
    a1 = _ticket(store, "a")
    b1 = _ticket(store, "b")
    a2 = _ticket(store, "a")
    assert [h.id for h in store.list_handoffs(status="queued")] == [a1, b1, a2]
    assert store.queued_counts() == {"a": 2, "b": 1}
    assert store.claim_next("alice", system="b").id == b1  # type: ignore[union-attr]
    assert store.claim_next("alice").id == a1  # type: ignore[union-attr]
    assert store.claim_next("bob").id == a2  # type: ignore[union-attr]
    assert store.claim_next("bob") is None
    assert store.queued_counts() == {}
    assert [h.id for h in store.list_handoffs(status=HandoffStatus.CLAIMED, system="a")] == [a1, a2]


def test_racing_claims_of_one_ticket_have_one_winner(store: RecordsStore) -> None:
    handoff_id = _ticket(store)
    winners: list[str] = []
    losers: list[str] = []
    barrier = threading.Barrier(8)

    def claim(reviewer: str) -> None:
        barrier.wait()
        try:
            store.claim(handoff_id, reviewer)
            winners.append(reviewer)
        except HandoffConflict:
            losers.append(reviewer)

    threads = [threading.Thread(target=claim, args=(f"r{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1 and len(losers) == 7
    assert store.get_handoff(handoff_id).claimed_by == winners[0]  # type: ignore[union-attr]


# -- incidents -------------------------------------------------------------------------------

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)


def _record(store: RecordsStore, ids: list[str], now: datetime, rule: str = "pii-leaks", **kwargs: object):  # type: ignore[no-untyped-def]
    return store.record_incident_events(
        system="support-bot", rule=rule, severity="high", title="leaks", event_ids=ids, now=now, fold_window_s=600, **kwargs
    )


def test_events_fold_into_the_open_incident_within_the_window(store: RecordsStore) -> None:
    opened = _record(store, ["e1", "e2"], T0)
    assert opened.opened and opened.incident.count == 2 and opened.incident.status is IncidentStatus.OPEN
    folded = _record(store, ["e2", "e3"], T0 + timedelta(minutes=5))
    assert not folded.opened and folded.incident.id == opened.incident.id
    assert folded.incident.event_ids == ["e1", "e2", "e3"] and folded.incident.count == 3
    assert folded.incident.first_seen == T0 and folded.incident.last_seen == T0 + timedelta(minutes=5)
    # Past the fold window (counted from the last sighting), a new record opens.
    later = _record(store, ["e4"], T0 + timedelta(minutes=16))
    assert later.opened and later.incident.id != opened.incident.id
    # Another rule never folds into this one.
    assert _record(store, ["e5"], T0 + timedelta(minutes=16), rule="check-errors").opened


def test_linked_event_ids_are_capped_while_the_count_goes_on(store: RecordsStore) -> None:
    _record(store, [f"a{i}" for i in range(8)], T0, max_event_ids=5)
    update = _record(store, [f"b{i}" for i in range(4)], T0, max_event_ids=5)
    assert update.incident.event_ids == ["a0", "a1", "a2", "b2", "b3"] and update.incident.count == 12  # the first and the latest


def test_ids_sent_again_past_the_cap_are_not_counted_twice(store: RecordsStore) -> None:
    _record(store, [f"a{i}" for i in range(8)], T0, max_event_ids=5)
    again = _record(store, ["a7", "a6", "a7", "c0"], T0, max_event_ids=5)  # a retried batch, plus one new event
    assert again.incident.count == 9 and again.incident.event_ids == ["a0", "a1", "a2", "a7", "c0"]


def test_a_resolved_incident_lets_a_new_one_open(store: RecordsStore) -> None:
    first = _record(store, ["e1"], T0).incident
    acknowledged = store.acknowledge_incident(first.id, "oncall")
    assert acknowledged.status is IncidentStatus.ACKNOWLEDGED and acknowledged.acknowledged_by == "oncall"
    assert not _record(store, ["e2"], T0).opened  # acknowledged still folds
    with pytest.raises(ValueError):
        store.resolve_incident(first.id, "oncall", cause="", corrective_action="restarted")
    resolved = store.resolve_incident(first.id, "oncall", cause="a prompt change", corrective_action="reverted; test added")
    assert (resolved.status, resolved.cause, resolved.corrective_action) == (IncidentStatus.RESOLVED, "a prompt change", "reverted; test added")
    with pytest.raises(RecordConflict):
        store.acknowledge_incident(first.id, "oncall")
    second = _record(store, ["e3"], T0 + timedelta(minutes=1))
    assert second.opened and second.incident.id != first.id
    assert [i.id for i in store.list_incidents(status="resolved")] == [first.id]
    assert [i.id for i in store.list_incidents(status="open", system="support-bot")] == [second.incident.id]


@pytest.mark.parametrize(
    ("category", "days"), [("death", 10), ("widespread", 2), ("critical_infrastructure", 2), ("other", 15), (None, 15)]
)
def test_serious_incidents_get_the_art_73_deadline(store: RecordsStore, category: str | None, days: int) -> None:
    incident = _record(store, ["e1"], T0, serious=True, category=category).incident
    assert incident.serious and incident.report_deadline == T0 + timedelta(days=days)
    assert incident.category == (category or "other")


def test_incidents_that_are_not_serious_have_no_deadline(store: RecordsStore) -> None:
    assert _record(store, ["e1"], T0).incident.report_deadline is None


def test_a_manual_report_is_always_a_new_record(store: RecordsStore) -> None:
    one = store.report_incident(system="support-bot", title="wrong refund policy quoted", severity="medium", reporter="agent-7")
    two = store.report_incident(
        system="support-bot", title="same again", severity="critical", reporter="agent-7", serious=True, category="widespread"
    )
    assert one.id != two.id and one.rule == two.rule == "manual" and one.reporter == "agent-7"
    assert two.report_deadline == two.first_seen + timedelta(days=2)
    assert store.get_incident(one.id).title == "wrong refund policy quoted"  # type: ignore[union-attr]


# -- stop switches ---------------------------------------------------------------------------


def test_stop_switches(store: RecordsStore) -> None:
    assert store.stopped_systems() == set()
    store.set_stopped("a", True, by="oncall", reason="bad answers")
    store.set_stopped("b", True, by="oncall")
    store.set_stopped("a", True, by="oncall")  # twice: still one switch
    store.set_stopped("b", False, by="oncall")
    assert store.stopped_systems() == {"a"}


def test_a_slow_database_cannot_hold_a_caller_for_long(store: RecordsStore) -> None:
    if store.dialect == "postgresql":
        # Statements and lock waits are bounded, and the URL's own options (search_path) still apply.
        with store.engine.connect() as connection:
            assert connection.exec_driver_sql("SHOW statement_timeout").scalar() == "10s"
            assert connection.exec_driver_sql("SHOW lock_timeout").scalar() == "10s"
            assert connection.exec_driver_sql("SHOW search_path").scalar().startswith("t_")
    assert store.engine.pool.timeout() == 5.0  # waiting for a free connection


def test_a_full_connection_pool_fails_within_the_pool_timeout(tmp_path: Path) -> None:
    import time

    store = RecordsStore(f"sqlite:///{tmp_path / 'records.db'}", pool_timeout_s=0.2)
    store.upgrade()
    held = [store.engine.connect() for _ in range(store.engine.pool.size() + store.engine.pool._max_overflow)]  # type: ignore[attr-defined]
    try:
        started = time.perf_counter()
        with pytest.raises(RecordsUnavailable):
            store.get_handoff("hnd_x")
        assert time.perf_counter() - started < 2
    finally:
        for connection in held:
            connection.close()
        store.dispose()


def test_a_category_makes_an_incident_serious_with_its_deadline(store: RecordsStore) -> None:
    manual = store.report_incident(system="support-bot", title="harm", severity="high", reporter="rob", category="death")
    assert manual.serious and manual.category == "death" and manual.report_deadline == manual.first_seen + timedelta(days=10)
    ruled = _record(store, ["e1"], T0, category="widespread").incident
    assert ruled.serious and ruled.report_deadline == T0 + timedelta(days=2)


def test_review_totals_sum_each_stratum_in_the_database(store: RecordsStore) -> None:
    from aimsguard.collectors._effectiveness import stratum_totals

    now = datetime.now(timezone.utc)
    rows = [
        {"system": system, "guardrail": check, "stage": "output" if check == "pii-out" else "input", "action": action,
         "score": 0.5, "reasons": [], "findings": [], "request_id": f"r{i}", "policy_version": "v", "content": None,
         "content_note": "", "decided_at": now - timedelta(days=age), "inclusion_p": p, "labels_wanted": 1}
        for i, (system, check, action, p, age) in enumerate([
            ("bot", "pii-out", "redact", 0.05, 1), ("bot", "pii-out", "redact", 0.05, 2), ("bot", "pii-out", "allow", 0.01, 1),
            ("bot", "injection", "block", 0.25, 3), ("other", "injection", "block", 0.5, 1), ("bot", "injection", "block", 0.25, 40),
        ])
    ]
    store.add_review_samples(rows)
    since = now - timedelta(days=30)
    totals = sorted(store.review_totals(since=since), key=lambda t: (t.system, t.guardrail, t.action))
    expected = sorted(stratum_totals(store.review_samples(since=since)), key=lambda t: (t.system, t.guardrail, t.action))
    assert [(t.system, t.guardrail, t.stage, t.action, t.samples) for t in totals] == [
        ("bot", "injection", "input", "block", 1), ("bot", "pii-out", "output", "allow", 1),
        ("bot", "pii-out", "output", "redact", 2), ("other", "injection", "input", "block", 1),
    ]
    assert [(t.samples, pytest.approx(t.weight)) for t in totals] == [(t.samples, t.weight) for t in expected]
    assert [t.system for t in store.review_totals(since=since, system="other")] == ["other"]
