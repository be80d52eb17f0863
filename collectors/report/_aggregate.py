"""From events to monthly figures: one streaming pass, bounded memory.

``MonthAggregator.add(event)`` takes the events of a month one by one (any order) and
keeps only counters, plus one compact float32 array of request durations per system
(4 bytes per exchange, with a one-byte day index) from which numpy computes exact
p50/p95 (``numpy.quantile``, linear interpolation) at the end: 1,000,000 exchanges
cost about 5 MB. Handoff answer times are kept per answered handoff (few).

Definitions (also in README.md, "Monthly report"):
- requests: exchanges whose status is not ``rejected`` (invalid requests never reached
  a model); failed: status ``error``, ``upstream_error`` or ``stopped`` (the stop switch
  answered with the fallback: the service was not available); availability = 1 - failed/requests.
- latency: ``duration_ms`` of the requests that reached the upstream model (``upstream_ms``
  present): answers given without a model call (blocked, escalated, stopped) would pull it down.
- check runs: the verdicts listed in exchange events; failures: outcome error or timeout.
- grounding failure: a grounding check's verdict whose action is not ``allow``.
- personal data: findings of pii checks in ``guardrail.verdict`` events (restored
  placeholders excluded); a leak is such a finding at the output stage whose verdict let
  the text through (action ``allow`` or ``flag``); one redacted, blocked or escalated at
  the output stage is "caught in output".
- time to human answer: ``handoff.answered`` ts minus its ``handoff.created`` ts.
- per virtual API key (``key_id`` in exchange events): requests (every exchange it
  authenticated), refused (error code ``rate_limit_exceeded``, ``token_limit_exceeded`` or
  ``limits_unavailable``), tokens (``key_tokens``; of which ``key_tokens_estimated``).
"""

from __future__ import annotations

import array
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from ._model import BiasFigures, CheckFigures, DayFigures, HandoffFigures, IncidentFigures, IncidentLine, KeyFigures, SystemFigures

__all__ = ["MonthAggregator", "incident_lines_from_records", "parse_ts"]

_FAILED = frozenset(("error", "upstream_error", "stopped"))
_BIAS_KEYS = (
    "demographic_parity_ratio",
    "demographic_parity_difference",
    "equalized_odds_difference",
    "block_rate_difference",
    "escalation_rate_difference",
)
_LIMIT_CODES = frozenset(("rate_limit_exceeded", "token_limit_exceeded", "limits_unavailable"))
_LET_THROUGH = frozenset(("allow", "flag"))  # output verdicts that leave the text as it was


def parse_ts(value: Any) -> datetime | None:
    """An ISO-8601 timestamp (``Z`` or an offset) or a datetime; None when absent or unreadable."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _quantiles(values: np.ndarray) -> tuple[float | None, float | None]:
    if values.size == 0:
        return None, None
    p50, p95 = np.quantile(values.astype(np.float64), [0.5, 0.95])
    return round(float(p50), 3), round(float(p95), 3)


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


@dataclass
class _Incident:
    id: str
    title: str = ""
    severity: str = ""
    status: str = "open"
    opened_at: datetime | None = None
    resolved_at: datetime | None = None
    cause: str | None = None
    corrective_action: str | None = None
    resolve_s: float | None = None  # as the incident.resolved event states it


@dataclass
class _Bias:
    evaluations: int = 0
    breaches: int = 0
    last: dict[str, Any] = field(default_factory=dict)
    last_ts: str = ""
    worst: dict[str, float] = field(default_factory=dict)  # min ratio, max differences
    thresholds: dict[str, float] = field(default_factory=dict)


class _System:
    """The running figures of one system."""

    def __init__(self) -> None:
        self.statuses: Counter[str] = Counter()
        self.durations = array.array("f")
        self.duration_days = array.array("B")
        self.day_requests = [0] * 32
        self.day_failed = [0] * 32
        self.verdicts: Counter[tuple[str, str, str, str]] = Counter()  # check, stage, action, outcome
        self.pii: Counter[tuple[str, str, str]] = Counter()  # stage, entity, verdict action
        self.handoffs_created = 0
        self.answer_minutes: list[float] = []
        self.open_handoffs: dict[str, datetime] = {}
        self.incidents: dict[str, _Incident] = {}
        self.bias: dict[str, _Bias] = defaultdict(_Bias)
        self.keys: dict[str, list[int]] = {}  # key id → requests, refused, tokens, estimated tokens


class MonthAggregator:
    """Figures for one month, per system.

    ``check_types`` maps system → check id → guardrail type (from the policy), so the
    grounding and personal-data figures find their checks whatever the ids are.
    """

    def __init__(self, month: str, check_types: Mapping[str, Mapping[str, str]] | None = None) -> None:
        self.month = month
        self._check_types = {system: dict(types) for system, types in (check_types or {}).items()}
        self.systems: dict[str, _System] = defaultdict(_System)
        self.event_kinds: Counter[str] = Counter()
        self.policy_versions: Counter[str] = Counter()
        self.policy_version_spans: dict[str, tuple[str, str, int]] = {}  # version → (first ts, last ts, events)
        # Shadow candidates: (candidate, version in force) → (check, live action, candidate action) → count
        self.shadow: dict[tuple[str, str], Counter[tuple[str, str, str]]] = {}
        self.shadow_window: dict[tuple[str, str], tuple[str, str]] = {}
        self.first_ts: str | None = None
        self.last_ts: str | None = None
        self.events = 0

    def check_type(self, system: str, check: str) -> str:
        known = self._check_types.get(system, {}).get(check)
        if known is not None:
            return known
        # A check the policy no longer names: its id usually carries its type (pii-in, grounding).
        for kind in ("pii", "grounding", "injection", "rules"):
            if kind in check:
                return kind
        return ""

    def shadow_evidence(self) -> list[Any]:
        """What each shadow candidate would have changed, as change-control evidence."""
        from ._model import PolicyEvidence

        evidence = []
        for (candidate, version), transitions in sorted(self.shadow.items()):
            first, last = self.shadow_window[(candidate, version)]
            evidence.append(PolicyEvidence(
                kind="shadow", candidate_version=candidate, ran_under=version, since=first, until=last,
                decisions=sum(transitions.values()), changed=sum(n for (_, b, a), n in transitions.items() if b != a),
                by_change={f"{c}: {b} → {a}": n for (c, b, a), n in sorted(transitions.items()) if b != a},
            ))
        return evidence

    # -- the one pass ------------------------------------------------------------------

    def add(self, event: Mapping[str, Any]) -> None:
        kind = event.get("event")
        ts = event.get("ts")
        self.events += 1
        self.event_kinds[kind] += 1
        version = event.get("policy_version") or ""
        self.policy_versions[version] += 1
        if kind == "shadow.verdict" and event.get("outcome") == "ok" and isinstance(ts, str):
            key = (str(event.get("candidate") or ""), version)
            self.shadow.setdefault(key, Counter())[(str(event.get("guardrail")), str(event.get("live_action") or "-"), str(event.get("action")))] += 1
            first, last = self.shadow_window.get(key, (ts, ts))
            self.shadow_window[key] = (min(first, ts), max(last, ts))
        if isinstance(ts, str):
            first, last, count = self.policy_version_spans.get(version, (ts, ts, 0))
            self.policy_version_spans[version] = (min(first, ts), max(last, ts), count + 1)
            if self.first_ts is None or ts < self.first_ts:
                self.first_ts = ts
            if self.last_ts is None or ts > self.last_ts:
                self.last_ts = ts
        system = event.get("system")
        if not isinstance(system, str):
            return
        if kind == "exchange":
            self._exchange(self.systems[system], event, ts)
        elif kind == "guardrail.verdict":
            self._verdict(system, event)
        elif kind == "handoff.created":
            self._handoff_created(self.systems[system], event)
        elif kind == "handoff.answered":
            self._handoff_answered(self.systems[system], event)
        elif kind is not None and kind.startswith("incident."):
            self._incident(self.systems[system], kind, event)
        elif kind == "bias.evaluated":
            self._bias(self.systems[system], event)
        elif kind == "bias.breach":
            self.systems[system].bias[str(event.get("feature", ""))].breaches += 1

    def add_all(self, events: Iterable[Mapping[str, Any]]) -> MonthAggregator:
        for event in events:
            self.add(event)
        return self

    def _exchange(self, s: _System, event: Mapping[str, Any], ts: Any) -> None:
        status = event.get("status") or ""
        s.statuses[status] += 1
        counts = s.verdicts
        for verdict in event.get("verdicts") or ():
            try:  # the hot path: direct lookups; a malformed verdict falls back to .get
                key = (verdict["guardrail"], verdict["stage"], verdict["action"], verdict["outcome"])
            except (KeyError, TypeError):
                if not isinstance(verdict, Mapping):
                    continue
                key = (verdict.get("guardrail", ""), verdict.get("stage", ""), verdict.get("action", ""), verdict.get("outcome", ""))
            counts[key] += 1
        key_id = event.get("key_id")
        if isinstance(key_id, str):
            figures = s.keys.get(key_id)
            if figures is None:
                figures = s.keys[key_id] = [0, 0, 0, 0]
            figures[0] += 1
            figures[1] += event.get("error_code") in _LIMIT_CODES
            tokens = event.get("key_tokens")
            if isinstance(tokens, int):
                figures[2] += tokens
                figures[3] += tokens if event.get("key_tokens_estimated") else 0
        if status == "rejected":
            return
        day = int(ts[8:10]) if isinstance(ts, str) and len(ts) >= 10 and ts[8:10].isdigit() else 0
        s.day_requests[day] += 1
        if status in _FAILED:
            s.day_failed[day] += 1
        duration = event.get("duration_ms")
        if isinstance(duration, (int, float)) and isinstance(event.get("upstream_ms"), (int, float)):
            s.durations.append(duration)
            s.duration_days.append(day)

    def _verdict(self, system: str, event: Mapping[str, Any]) -> None:
        if self.check_type(system, str(event.get("guardrail", ""))) != "pii":
            return
        s = self.systems[system]
        stage, action = str(event.get("stage", "")), str(event.get("action", ""))
        for finding in event.get("findings") or ():
            entity = finding.get("kind")
            if entity and entity != "placeholder":  # a placeholder put back for the user is not a finding
                s.pii[(stage, entity, action)] += 1

    @staticmethod
    def _handoff_id(event: Mapping[str, Any]) -> str:
        return str(event.get("handoff_id") or event.get("id") or "")

    def _handoff_created(self, s: _System, event: Mapping[str, Any]) -> None:
        s.handoffs_created += 1
        created = parse_ts(event.get("ts"))
        if created is not None:
            s.open_handoffs[self._handoff_id(event)] = created

    def _handoff_answered(self, s: _System, event: Mapping[str, Any]) -> None:
        created = s.open_handoffs.pop(self._handoff_id(event), None)
        waited = event.get("time_to_answer_s")
        if isinstance(waited, (int, float)):  # the event says it (also for a handoff created the month before)
            s.answer_minutes.append(waited / 60)
            return
        answered = parse_ts(event.get("answered_at")) or parse_ts(event.get("ts"))
        if created is not None and answered is not None:
            s.answer_minutes.append((answered - created).total_seconds() / 60)

    def _incident(self, s: _System, kind: str, event: Mapping[str, Any]) -> None:
        incident_id = str(event.get("incident_id") or event.get("id") or "")
        incident = s.incidents.get(incident_id)
        if incident is None:
            incident = s.incidents[incident_id] = _Incident(incident_id)
        incident.title = str(event.get("title") or incident.title)
        incident.severity = str(event.get("severity") or incident.severity)
        if kind == "incident.opened":
            incident.opened_at = parse_ts(event.get("first_seen")) or parse_ts(event.get("ts"))
        elif kind == "incident.acknowledged" and incident.status == "open":
            incident.status = "acknowledged"
        elif kind == "incident.resolved":
            incident.status = "resolved"
            incident.resolved_at = parse_ts(event.get("resolved_at")) or parse_ts(event.get("ts"))
            incident.cause = event.get("cause") or incident.cause
            took = event.get("time_to_resolve_s")
            if isinstance(took, (int, float)):
                incident.resolve_s = float(took)
            incident.corrective_action = event.get("corrective_action") or incident.corrective_action

    def _bias(self, s: _System, event: Mapping[str, Any]) -> None:
        bias = s.bias[str(event.get("feature", ""))]
        bias.evaluations += 1
        ts = str(event.get("ts", ""))
        if ts >= bias.last_ts:
            bias.last, bias.last_ts = dict(event), ts
        for key in _BIAS_KEYS:
            value = event.get(key)
            if isinstance(value, (int, float)):
                worse = min if key == "demographic_parity_ratio" else max
                bias.worst[key] = worse(bias.worst.get(key, value), float(value))
        thresholds = event.get("thresholds")
        if isinstance(thresholds, Mapping):
            bias.thresholds = _thresholds(thresholds)

    # -- the figures -------------------------------------------------------------------------

    def figures(self, system: str, incident_records: Iterable[IncidentLine] | None = None) -> SystemFigures:
        """The month's figures for one system. ``incident_records``, when given (from the
        records store), replace what the ``incident.*`` events told."""
        s = self.systems[system] if system in self.systems else _System()
        exchanges = sum(s.statuses.values())
        rejected = s.statuses.get("rejected", 0)
        requests = exchanges - rejected
        failed = sum(s.statuses.get(status, 0) for status in _FAILED)
        durations = np.frombuffer(s.durations, dtype=np.float32) if s.durations else np.empty(0, np.float32)
        days_index = np.frombuffer(s.duration_days, dtype=np.uint8) if s.duration_days else np.empty(0, np.uint8)
        p50, p95 = _quantiles(durations)
        checks = self._checks(system, s)
        check_runs = sum(c.runs for c in checks)
        check_failures = sum(c.errors + c.timeouts for c in checks)
        grounding = [c for c in checks if c.guardrail == "grounding"]
        grounding_checked = sum(c.runs for c in grounding)
        grounding_failed = sum(c.runs - c.actions.get("allow", 0) for c in grounding)
        pii_findings: dict[str, dict[str, int]] = {}
        pii_redactions: Counter[str] = Counter()
        pii_leaked: Counter[str] = Counter()
        pii_caught: Counter[str] = Counter()
        for (stage, entity, action), count in sorted(s.pii.items()):
            stage_counts = pii_findings.setdefault(stage, {})
            stage_counts[entity] = stage_counts.get(entity, 0) + count
            if action == "redact":
                pii_redactions[entity] += count
            if stage == "output":
                (pii_leaked if action in _LET_THROUGH else pii_caught)[entity] += count
        incidents = list(incident_records) if incident_records is not None else [_line(i) for i in s.incidents.values()]
        return SystemFigures(
            system=system,
            exchanges=exchanges,
            rejected=rejected,
            requests=requests,
            failed=failed,
            stopped=s.statuses.get("stopped", 0),
            availability=None if not requests else 1 - failed / requests,
            statuses=dict(sorted(s.statuses.items())),
            latency_p50_ms=p50,
            latency_p95_ms=p95,
            blocked=s.statuses.get("blocked", 0),
            block_rate=_rate(s.statuses.get("blocked", 0), requests),
            escalations=s.statuses.get("escalated", 0),
            escalation_rate=_rate(s.statuses.get("escalated", 0), requests),
            checks=checks,
            check_runs=check_runs,
            check_failures=check_failures,
            check_error_rate=_rate(check_failures, check_runs),
            grounding_checked=grounding_checked,
            grounding_failed=grounding_failed,
            grounding_failure_rate=_rate(grounding_failed, grounding_checked),
            pii_redactions=dict(sorted(pii_redactions.items())),
            pii_findings=pii_findings,
            pii_leaks=sum(pii_leaked.values()),
            pii_leaks_by_entity=dict(sorted(pii_leaked.items())),
            pii_caught_in_output=sum(pii_caught.values()),
            pii_caught_in_output_by_entity=dict(sorted(pii_caught.items())),
            handoffs=self._handoffs(s),
            incidents=self._incidents(incidents),
            bias=[self._bias_figures(feature, b) for feature, b in sorted(s.bias.items()) if b.evaluations or b.breaches],
            days=self._days(s, durations, days_index),
            keys=sorted(
                (KeyFigures(key_id=k, requests=v[0], refused=v[1], tokens=v[2], estimated_tokens=v[3]) for k, v in s.keys.items()),
                key=lambda k: (-k.requests, k.key_id),
            ),
        )

    def _checks(self, system: str, s: _System) -> list[CheckFigures]:
        by_check: dict[tuple[str, str], CheckFigures] = {}
        for (check, stage, action, outcome), count in s.verdicts.items():
            figures = by_check.get((check, stage))
            if figures is None:
                figures = by_check[(check, stage)] = CheckFigures(
                    check=check, guardrail=self.check_type(system, check), stage=stage, runs=0, actions={}, errors=0, timeouts=0
                )
            figures.runs += count
            figures.actions[action] = figures.actions.get(action, 0) + count
            figures.errors += count if outcome == "error" else 0
            figures.timeouts += count if outcome == "timeout" else 0
        stage_order = {"input": 0, "output": 1}
        return sorted(by_check.values(), key=lambda c: (stage_order.get(c.stage, 2), c.check))

    @staticmethod
    def _handoffs(s: _System) -> HandoffFigures:
        minutes = np.array(s.answer_minutes, dtype=np.float64)
        p50, p95 = (None, None) if minutes.size == 0 else (float(np.quantile(minutes, 0.5)), float(np.quantile(minutes, 0.95)))
        return HandoffFigures(created=s.handoffs_created, answered=len(s.answer_minutes), answer_p50_min=p50, answer_p95_min=p95)

    def _incidents(self, lines: list[IncidentLine]) -> IncidentFigures:
        def in_month(value: str | None) -> bool:
            return bool(value) and value[:7] == self.month  # type: ignore[index]

        month_end = self.month + "-99"  # sorts after every timestamp of the month
        opened = [i for i in lines if in_month(i.opened_at)]
        resolved = [i for i in lines if in_month(i.resolved_at)]
        hours = np.array([i.hours_to_resolve for i in resolved if i.hours_to_resolve is not None], dtype=np.float64)
        open_at_end = [
            i for i in lines if (i.opened_at or "") < month_end and not (i.resolved_at and i.resolved_at < month_end)
        ]
        shown = [i for i in lines if in_month(i.opened_at) or in_month(i.resolved_at) or i in open_at_end]
        return IncidentFigures(
            opened=len(opened),
            resolved=len(resolved),
            open_at_end=len(open_at_end),
            resolve_median_h=float(np.median(hours)) if hours.size else None,
            resolve_max_h=float(hours.max()) if hours.size else None,
            incidents=sorted(shown, key=lambda i: (i.opened_at or "", i.id)),
        )

    @staticmethod
    def _bias_figures(feature: str, b: _Bias) -> BiasFigures:
        last = b.last

        def number(value: Any) -> float | None:
            return float(value) if isinstance(value, (int, float)) else None

        rates = last.get("selection_rates") or {}
        return BiasFigures(
            feature=feature,
            evaluations=b.evaluations,
            breaches=b.breaches,
            last_selection_rates={str(k): float(v) for k, v in rates.items() if isinstance(v, (int, float))},
            last_demographic_parity_ratio=number(last.get("demographic_parity_ratio")),
            last_demographic_parity_difference=number(last.get("demographic_parity_difference")),
            last_equalized_odds_difference=number(last.get("equalized_odds_difference")),
            min_demographic_parity_ratio=b.worst.get("demographic_parity_ratio"),
            max_demographic_parity_difference=b.worst.get("demographic_parity_difference"),
            max_equalized_odds_difference=b.worst.get("equalized_odds_difference"),
            last_block_rate_difference=number(last.get("block_rate_difference")),
            last_escalation_rate_difference=number(last.get("escalation_rate_difference")),
            max_block_rate_difference=b.worst.get("block_rate_difference"),
            max_escalation_rate_difference=b.worst.get("escalation_rate_difference"),
            thresholds=b.thresholds,
        )

    def _days(self, s: _System, durations: np.ndarray, days_index: np.ndarray) -> list[DayFigures]:
        out = []
        for day in range(1, 32):
            if not s.day_requests[day]:
                continue
            p50, p95 = _quantiles(durations[days_index == day])
            out.append(
                DayFigures(
                    day=f"{self.month}-{day:02d}", requests=s.day_requests[day], failed=s.day_failed[day], latency_p50_ms=p50, latency_p95_ms=p95
                )
            )
        return out


def _thresholds(raw: Mapping[str, Any]) -> dict[str, float]:
    """Thresholds as ``{name: value}``: plain numbers, or ``{measure: [bound, value]}`` pairs
    (named ``measure_bound``, e.g. demographic_parity_ratio_min)."""
    out: dict[str, float] = {}
    for key, value in raw.items():
        if isinstance(value, bool):
            continue
        if isinstance(value, (int, float)):
            out[str(key)] = float(value)
        elif isinstance(value, (list, tuple)) and len(value) == 2 and isinstance(value[1], (int, float)):
            out[f"{key}_{value[0]}"] = float(value[1])
    return out


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def _hours(opened: datetime | None, resolved: datetime | None) -> float | None:
    if opened is None or resolved is None:
        return None
    return round((resolved - opened).total_seconds() / 3600, 3)


def _line(incident: _Incident) -> IncidentLine:
    return IncidentLine(
        id=incident.id,
        title=incident.title,
        severity=incident.severity,
        status=incident.status,
        opened_at=_iso(incident.opened_at),
        resolved_at=_iso(incident.resolved_at),
        hours_to_resolve=round(incident.resolve_s / 3600, 3) if incident.resolve_s is not None else _hours(incident.opened_at, incident.resolved_at),
        cause=incident.cause,
        corrective_action=incident.corrective_action,
    )


def incident_lines_from_records(records: Iterable[Any], system: str) -> list[IncidentLine]:
    """IncidentLines from the records store's incidents (``RecordsStore.list_incidents``)."""
    lines = []
    for record in records:
        if getattr(record, "system", None) != system:
            continue
        opened, resolved = parse_ts(getattr(record, "first_seen", None)), parse_ts(getattr(record, "resolved_at", None))
        lines.append(
            IncidentLine(
                id=str(record.id),
                title=str(getattr(record, "title", "")),
                severity=str(getattr(record, "severity", "")),
                status=str(getattr(record, "status", "")),
                opened_at=_iso(opened),
                resolved_at=_iso(resolved),
                hours_to_resolve=_hours(opened, resolved),
                cause=getattr(record, "cause", None),
                corrective_action=getattr(record, "corrective_action", None),
            )
        )
    return lines
