"""Incident rules over the event stream: an exporter that opens and folds incident records.

Each rule of the policy (``incidents.rules``) watches one event kind per system over a
sliding window of event time: a count rule fires at N matches in the window, a rate
rule when matches / events of another kind (``rate_over``) reach a threshold. While a
rule holds, every new matching event is linked to the system's unresolved incident for
that rule (the store folds repeats within ``fold_window_s`` into one record).

It runs on the bus's worker thread: matching is in memory; the store is called once per
rule and system per batch, only when a rule holds. A store failure never raises: the
events wait (bounded) and are retried after a pause, the failure is counted, and
``export`` reports FAILURE so the bus counts it too.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol

import structlog

from ._exporter import Event, ExportResult
from .records import RecordsError, RecordsStore

__all__ = ["IncidentExporter", "IncidentRuleSpec"]

log = structlog.get_logger("aimsguard.collectors")

OutcomeHook = Callable[[str, str, str], None]  # (system, rule, outcome: opened | folded | failed)
Emit = Callable[..., None]


class IncidentRuleSpec(Protocol):
    """What the exporter reads of a rule (the policy's ``IncidentRule``)."""

    id: str
    title: str
    when: Mapping[str, Any]
    systems: Sequence[str]
    count: int
    window_s: float
    rate_over: str | None
    threshold: float | None
    min_events: int
    severity: Any
    serious: bool
    category: Any


@dataclass
class _Window:
    """One rule's view of one system."""

    matches: collections.deque[float] = field(default_factory=collections.deque)  # event times
    totals: collections.deque[float] = field(default_factory=collections.deque)  # rate rules: the denominator
    # Matches in the window not yet linked to an incident: always the newest ones (a rule
    # that holds links all of them), so each match is handled once, not rescanned.
    unreported: collections.deque[tuple[float, str]] = field(default_factory=collections.deque)
    pending: list[str] = field(default_factory=list)  # ids to link at the end of the batch
    pending_at: float = 0.0

    def prune(self, now: float, window_s: float) -> None:
        horizon = now - window_s
        for times in (self.matches, self.totals):
            while times and times[0] < horizon:
                times.popleft()
        while self.unreported and self.unreported[0][0] < horizon:
            self.unreported.popleft()

    def report(self, max_ids: int) -> None:
        """Move the unreported matches to the ids to link (the newest ``max_ids`` of them)."""
        self.pending.extend(event_id for _, event_id in self.unreported)
        if len(self.pending) > max_ids:
            del self.pending[:-max_ids]
        self.pending_at = max(self.pending_at, self.unreported[-1][0])
        self.unreported.clear()


def _matches(when: Mapping[str, Any], event: Event) -> bool:
    for key, expected in when.items():
        if key == "event":
            continue
        value = event.get(key)
        if isinstance(expected, list) and value not in expected:
            return False
        if not isinstance(expected, list) and value != expected:
            return False
    return True


def _event_time(event: Event) -> float:
    ts = event.get("ts")
    if isinstance(ts, str):
        try:
            return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
    return time.time()


class IncidentExporter:
    name = "incidents"

    def __init__(
        self,
        store: RecordsStore,
        rules: Sequence[IncidentRuleSpec],
        *,
        systems: Sequence[str],
        emit: Emit,
        fold_window_s: float = 3600.0,
        max_event_ids: int = 200,
        on_outcome: OutcomeHook | None = None,
        on_error: Callable[[], None] | None = None,
        retry_after_s: float = 10.0,
    ) -> None:
        self.store = store
        self.rules = list(rules)
        self._rules_by_id = {rule.id: rule for rule in self.rules}
        self.systems = set(systems)
        self._emit = emit
        self._fold_window_s = fold_window_s
        self._max_event_ids = max_event_ids
        self._on_outcome = on_outcome
        self._on_error = on_error
        self._retry_after_s = retry_after_s
        self._retry_at = 0.0
        self.failures = 0
        # Decided once: which rules an event kind feeds, as a match or as a denominator.
        self._by_kind: dict[str, list[IncidentRuleSpec]] = collections.defaultdict(list)
        self._by_total_kind: dict[str, list[IncidentRuleSpec]] = collections.defaultdict(list)
        for rule in self.rules:
            self._by_kind[str(rule.when["event"])].append(rule)
            if rule.rate_over:
                self._by_total_kind[rule.rate_over].append(rule)
        self._windows: dict[tuple[str, str], _Window] = collections.defaultdict(_Window)

    def export(self, batch: Sequence[Event]) -> ExportResult:
        try:
            for event in batch:
                self._observe(event)
            return ExportResult.SUCCESS if self._flush() else ExportResult.FAILURE
        except Exception as exc:  # never into the bus: a rule bug must not stop the other exporters
            self.failures += 1
            if self._on_error is not None:
                self._on_error()
            log.error("incident_rules_failed", error_type=type(exc).__name__)
            self._emit("incident.rules_failed", error_type=type(exc).__name__)
            return ExportResult.FAILURE

    def _observe(self, event: Event) -> None:
        kind = event.get("event")
        system = event.get("system")
        if not isinstance(kind, str) or kind.startswith("incident.") or system not in self.systems:
            return  # incident events never feed rules (no loops); unknown systems are not ours
        matching = self._by_kind.get(kind, ())
        totalling = self._by_total_kind.get(kind, ())
        if not matching and not totalling:
            return
        now = _event_time(event)
        event_id = str(event.get("event_id") or event.get("request_id") or "")
        for rule in {id(r): r for r in (*matching, *totalling)}.values():
            if rule.systems and system not in rule.systems:
                continue
            window = self._windows[(rule.id, system)]
            window.prune(now, rule.window_s)
            if rule.rate_over == kind:
                window.totals.append(now)
            if rule in matching and _matches(rule.when, event):
                window.matches.append(now)
                window.unreported.append((now, event_id))
            if window.unreported and self._holds(rule, window):
                window.report(self._max_event_ids)

    @staticmethod
    def _holds(rule: IncidentRuleSpec, window: _Window) -> bool:
        if not window.matches:
            return False
        if rule.rate_over is None:
            return len(window.matches) >= rule.count
        total = len(window.totals)
        return total >= rule.min_events and len(window.matches) / total >= (rule.threshold or 0.0)

    def _flush(self) -> bool:
        due = [(key, w) for key, w in self._windows.items() if w.pending]
        if not due or time.monotonic() < self._retry_at:
            return True
        for (rule_id, system), window in due:
            rule = self._rules_by_id[rule_id]
            try:
                update = self.store.record_incident_events(
                    system=system,
                    rule=rule.id,
                    severity=rule.severity,
                    title=rule.title or f"incident rule {rule.id} fired",
                    event_ids=window.pending,
                    serious=rule.serious,
                    category=rule.category,
                    now=datetime.fromtimestamp(window.pending_at, timezone.utc),
                    fold_window_s=self._fold_window_s,
                    max_event_ids=self._max_event_ids,
                )
            except RecordsError as exc:
                # The events stay pending (bounded) and are linked on a later batch.
                self.failures += 1
                self._retry_at = time.monotonic() + self._retry_after_s
                self._count(system, rule.id, "failed")
                log.error("incident_record_failed", system=system, rule=rule.id, error_type=type(exc).__name__)
                self._emit("incident.record_failed", system=system, rule=rule.id, error_type=type(exc).__name__)
                return False
            added, window.pending = window.pending, []
            incident = update.incident
            outcome = "opened" if update.opened else "folded"
            self._count(system, rule.id, outcome)
            fields: dict[str, Any] = {
                "incident_id": incident.id,
                "system": system,
                "rule": rule.id,
                "severity": incident.severity.value,
                "count": incident.count,
                "linked_event_ids": added,
            }
            if update.opened:
                fields.update(
                    title=incident.title,
                    serious=incident.serious,
                    category=incident.category,
                    report_deadline=incident.report_deadline.isoformat() if incident.report_deadline else None,
                )
            self._emit(f"incident.{outcome}", **fields)
        return True

    def _count(self, system: str, rule: str, outcome: str) -> None:
        if self._on_outcome is not None:
            self._on_outcome(system, rule, outcome)

    def force_flush(self, timeout: float = 10.0) -> bool:
        return True

    def shutdown(self) -> None:
        pass
