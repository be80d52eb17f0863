"""Incident rules over events: counts and rates in a window open one record, repeats fold into it."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from aimsguard.agent._policy import IncidentRule
from aimsguard.collectors import ExportResult
from aimsguard.collectors._incidents import IncidentExporter
from aimsguard.collectors.records import IncidentStatus, RecordsStore

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)
_ids = itertools.count()

LEAKS = IncidentRule.model_validate(
    {"id": "pii-leaks", "when": {"event": "guardrail.verdict", "guardrail": "pii-out", "action": ["redact", "block"]},
     "count": 3, "window_s": 600, "severity": "high"}
)
ERRORS = IncidentRule.model_validate(
    {"id": "check-errors", "when": {"event": "guardrail.verdict", "outcome": ["error", "timeout"]},
     "rate_over": "exchange", "threshold": 0.2, "min_events": 10, "window_s": 300}
)
BIAS = IncidentRule.model_validate(
    {"id": "bias", "when": {"event": "bias.breach"}, "severity": "medium", "serious": True, "category": "widespread"}
)


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.outcomes: list[tuple[str, str, str]] = []

    def emit(self, kind: str, **fields: Any) -> None:
        self.events.append((kind, fields))

    def kinds(self) -> list[str]:
        return [k for k, _ in self.events]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[RecordsStore]:
    store = RecordsStore(f"sqlite:///{tmp_path / 'records.db'}")
    store.upgrade()
    yield store
    store.dispose()


def _exporter(store: RecordsStore, recorder: Recorder, *rules: IncidentRule) -> IncidentExporter:
    return IncidentExporter(
        store, rules, systems=["support-bot", "other-bot"], emit=recorder.emit, fold_window_s=3600,
        on_outcome=lambda *o: recorder.outcomes.append(o),
    )


def _event(kind: str, at: timedelta, system: str = "support-bot", **fields: Any) -> dict[str, Any]:
    return {"event": kind, "ts": (T0 + at).isoformat(), "system": system, "event_id": f"ev{next(_ids)}", **fields}


def _leak(at: timedelta, system: str = "support-bot", action: str = "redact") -> dict[str, Any]:
    return _event("guardrail.verdict", at, system, guardrail="pii-out", action=action, outcome="ok")


def test_n_leaks_in_the_window_open_one_incident_and_more_fold_into_it(store: RecordsStore) -> None:
    recorder = Recorder()
    exporter = _exporter(store, recorder, LEAKS)
    leaks = [_leak(timedelta(minutes=m)) for m in (0, 1)]
    assert exporter.export(leaks) is ExportResult.SUCCESS
    assert store.list_incidents() == []  # two leaks: below the count

    third = _leak(timedelta(minutes=2))
    exporter.export([third, _leak(timedelta(minutes=2), action="allow")])  # an allowed verdict does not count
    [incident] = store.list_incidents()
    assert incident.rule == "pii-leaks" and incident.severity.value == "high" and incident.system == "support-bot"
    assert incident.event_ids == [e["event_id"] for e in [*leaks, third]] and incident.count == 3
    assert incident.first_seen == T0 + timedelta(minutes=2)

    fourth, fifth = _leak(timedelta(minutes=3)), _leak(timedelta(minutes=4), action="block")
    exporter.export([fourth])
    exporter.export([fifth])
    [folded] = store.list_incidents()
    assert folded.id == incident.id and folded.count == 5
    assert folded.event_ids[-2:] == [fourth["event_id"], fifth["event_id"]]
    assert folded.last_seen == T0 + timedelta(minutes=4)
    assert recorder.kinds() == ["incident.opened", "incident.folded", "incident.folded"]
    assert recorder.events[0][1]["incident_id"] == incident.id and recorder.events[0][1]["rule"] == "pii-leaks"
    assert [o[2] for o in recorder.outcomes] == ["opened", "folded", "folded"]


def test_leaks_spread_wider_than_the_window_open_nothing(store: RecordsStore) -> None:
    exporter = _exporter(store, Recorder(), LEAKS)
    exporter.export([_leak(timedelta(minutes=m)) for m in (0, 11, 22, 33)])
    assert store.list_incidents() == []


def test_systems_are_counted_apart_and_unknown_ones_ignored(store: RecordsStore) -> None:
    exporter = _exporter(store, Recorder(), LEAKS)
    exporter.export([_leak(timedelta(0), "support-bot"), _leak(timedelta(0), "other-bot"), _leak(timedelta(0), "_unknown")] * 2)
    assert store.list_incidents() == []
    exporter.export([_leak(timedelta(seconds=1), "other-bot")])
    assert [i.system for i in store.list_incidents()] == ["other-bot"]


def test_a_resolved_incident_lets_a_new_one_open(store: RecordsStore) -> None:
    recorder = Recorder()
    exporter = _exporter(store, recorder, LEAKS)
    exporter.export([_leak(timedelta(seconds=s)) for s in range(3)])
    [first] = store.list_incidents()
    store.resolve_incident(first.id, "oncall", cause="a model update", corrective_action="rolled back")
    exporter.export([_leak(timedelta(seconds=10))])  # the leaks go on: a new record, linked to the new leak only
    second = store.list_incidents(status=IncidentStatus.OPEN)
    assert len(second) == 1 and second[0].id != first.id and second[0].count == 1
    assert recorder.kinds() == ["incident.opened", "incident.opened"]


def test_a_rate_rule_needs_its_minimum_and_its_threshold(store: RecordsStore) -> None:
    exporter = _exporter(store, Recorder(), ERRORS)
    error = lambda s: _event("guardrail.verdict", timedelta(seconds=s), guardrail="pii-in", outcome="error", action="block")  # noqa: E731
    exchange = lambda s: _event("exchange", timedelta(seconds=s), status="ok")  # noqa: E731
    # 3 errors in 5 exchanges: a high rate, but too few exchanges to judge.
    exporter.export([exchange(i) for i in range(5)] + [error(i) for i in range(3)])
    assert store.list_incidents() == []
    # At the 10th exchange: 3 errors in 10 exchanges, 30% >= 20%.
    exporter.export([exchange(i) for i in range(5, 9)])
    assert store.list_incidents() == []
    exporter.export([exchange(9)])
    [incident] = store.list_incidents()
    assert incident.rule == "check-errors" and incident.count == 3


def test_a_rate_below_the_threshold_opens_nothing_and_old_events_leave_the_window(store: RecordsStore) -> None:
    exporter = _exporter(store, Recorder(), ERRORS)
    error = lambda s: _event("guardrail.verdict", timedelta(seconds=s), outcome="timeout", guardrail="grounding")  # noqa: E731
    exchange = lambda s: _event("exchange", timedelta(seconds=s), status="ok")  # noqa: E731
    exporter.export([exchange(i) for i in range(40)] + [error(i) for i in range(7)])  # 7/40 = 17.5%
    assert store.list_incidents() == []
    # 400 s later the window (300 s) holds only the new events: 2 errors in 10 exchanges.
    exporter.export([exchange(400 + i) for i in range(10)] + [error(405), error(406)])
    [incident] = store.list_incidents()
    assert incident.count == 2


def test_a_breach_event_opens_a_serious_incident_with_its_deadline(store: RecordsStore) -> None:
    exporter = _exporter(store, Recorder(), BIAS)
    exporter.export([_event("bias.breach", timedelta(0), feature="gender", metric="demographic_parity_ratio", value=0.6)])
    [incident] = store.list_incidents()
    assert incident.serious and incident.category == "widespread"
    assert incident.report_deadline == T0 + timedelta(days=2)


def test_a_failing_store_never_raises_and_the_events_are_linked_later(store: RecordsStore, tmp_path: Path) -> None:
    recorder = Recorder()
    broken = RecordsStore(f"sqlite:///{tmp_path / 'missing' / 'records.db'}")  # never migrated: no tables
    exporter = _exporter(broken, recorder, LEAKS)
    exporter._retry_after_s = 0.0
    leaks = [_leak(timedelta(seconds=s)) for s in range(3)]
    assert exporter.export(leaks) is ExportResult.FAILURE
    assert exporter.failures == 1 and recorder.kinds() == ["incident.record_failed"] and recorder.outcomes[0][2] == "failed"
    broken.upgrade()  # the database is back
    assert exporter.export([]) is ExportResult.SUCCESS
    [incident] = broken.list_incidents()
    assert incident.event_ids == [e["event_id"] for e in leaks]
    broken.dispose()


def test_incident_events_never_feed_the_rules(store: RecordsStore) -> None:
    rule = IncidentRule.model_validate({"id": "loop", "when": {"event": "incident.opened"}})
    exporter = _exporter(store, Recorder(), rule)
    exporter.export([_event("incident.opened", timedelta(0))])
    assert store.list_incidents() == []


def test_each_match_is_handled_once_so_a_long_firing_rule_stays_linear(store: RecordsStore) -> None:
    import time

    every = IncidentRule.model_validate(
        {"id": "every-leak", "when": {"event": "guardrail.verdict", "guardrail": "pii-out"}, "count": 1, "window_s": 86_400}
    )
    exporter = _exporter(store, Recorder(), every)
    exporter._max_event_ids = 50
    batch = [_leak(timedelta(milliseconds=i)) for i in range(20_000)]
    started = time.perf_counter()
    assert exporter.export(batch) is ExportResult.SUCCESS
    assert time.perf_counter() - started < 2.0  # rescanning the window per match took minutes
    [incident] = store.list_incidents()
    assert incident.event_ids == [e["event_id"] for e in batch[-50:]]  # the newest ids, once each
    exporter.export([_leak(timedelta(seconds=30))])
    assert store.list_incidents()[0].count == 51  # only the new match was linked, not the window again


def test_a_crash_in_the_rules_is_counted_and_written_as_an_event(store: RecordsStore) -> None:
    recorder, errors = Recorder(), []
    exporter = IncidentExporter(store, [LEAKS], systems=["support-bot"], emit=recorder.emit, on_error=lambda: errors.append(1))

    def broken(*_: Any) -> bool:
        raise KeyError("a rule bug")

    exporter._holds = broken  # type: ignore[method-assign]
    assert exporter.export([_leak(timedelta(0))]) is ExportResult.FAILURE
    assert errors == [1] and recorder.kinds() == ["incident.rules_failed"]
    assert recorder.events[0][1] == {"error_type": "KeyError"}


def test_the_rule_id_manual_is_reserved_for_reports_by_people() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="reserved"):
        IncidentRule.model_validate({"id": "manual", "when": {"event": "exchange"}})
