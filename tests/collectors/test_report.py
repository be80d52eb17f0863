"""The monthly report against a month of synthetic traffic with known properties.

Events are written through the real event log (SegmentEventLog) and read back; every
figure the report gives is compared with a value computed here, in plain Python, from
the generated events.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from aimsguard.agent._policy import ObjectiveMetric, parse_policy
from aimsguard.agent.cli import app
from aimsguard.collectors import SegmentEventLog
from aimsguard.collectors.report import (
    METRICS,
    IncidentLine,
    MonthlyReport,
    build_monthly_report,
    month_bounds,
    read_report_events,
)
from aimsguard.agent._errors import PolicyError

from .synthetic_month import EXPECTED_MISSED, loan_advisor, policy_document, support_bot, synthetic_month

MONTH, BEFORE = "2026-10", "2026-09"


def _write_log(directory: Path, events: list[dict[str, Any]]) -> None:
    log = SegmentEventLog(directory, retention_days=3650)
    for start in range(0, len(events), 500):
        log.export(events[start : start + 500])
    log.shutdown()


@pytest.fixture(scope="module")
def month(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict[str, Any]], Path]:
    events = synthetic_month(BEFORE, [support_bot(1500, worse=False), loan_advisor(1000, worse=False)], seed=7)
    events += synthetic_month(MONTH, [support_bot(3000), loan_advisor(2000)], seed=7)
    directory = tmp_path_factory.mktemp("events")
    _write_log(directory, events)
    return events, directory


@pytest.fixture(scope="module")
def report(month: tuple[list[dict[str, Any]], Path]) -> MonthlyReport:
    _, directory = month
    since, _ = month_bounds(BEFORE)
    _, until = month_bounds(MONTH)
    return build_monthly_report(read_report_events(directory, since, until), month=MONTH, policy=parse_policy(policy_document()))


# -- the expectations, computed independently -----------------------------------------------


def _quantile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default, Hyndman & Fan type 7)."""
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _of(events: list[dict[str, Any]], month: str, system: str, kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e["ts"].startswith(month) and e.get("system") == system and e["event"] == kind]


def _expected(events: list[dict[str, Any]], month: str, system: str) -> dict[str, Any]:
    exchanges = _of(events, month, system, "exchange")
    served = [e for e in exchanges if e["status"] != "rejected"]
    failed = [e for e in served if e["status"] in ("error", "upstream_error", "stopped")]  # stopped: not available
    durations = [e["duration_ms"] for e in served if e.get("upstream_ms") is not None]  # reached the model
    verdicts = [v for e in exchanges for v in e["verdicts"]]
    grounding = [v for v in verdicts if v["guardrail"] == "grounding"]
    redactions: Counter[str] = Counter()
    leaks = caught = 0
    for verdict in _of(events, month, system, "guardrail.verdict"):
        kinds = [f["kind"] for f in verdict["findings"] if f["kind"] != "placeholder"]
        if verdict["action"] == "redact":
            redactions.update(kinds)
        if verdict["stage"] == "output" and verdict["action"] in ("allow", "flag"):  # let through
            leaks += len(kinds)
        elif verdict["stage"] == "output":
            caught += len(kinds)
    created = {e["handoff_id"]: datetime.fromisoformat(e["ts"]) for e in _of(events, month, system, "handoff.created")}
    waits = [(datetime.fromisoformat(e["ts"]) - created[e["handoff_id"]]).total_seconds() / 60 for e in _of(events, month, system, "handoff.answered")]
    opened = {e["incident_id"]: datetime.fromisoformat(e["ts"]) for e in _of(events, month, system, "incident.opened")}
    resolve_h = [(datetime.fromisoformat(e["ts"]) - opened[e["incident_id"]]).total_seconds() / 3600
                 for e in _of(events, month, system, "incident.resolved")]
    ratios = [e["demographic_parity_ratio"] for e in _of(events, month, system, "bias.evaluated")]
    block_spreads = {}
    for e in _of(events, month, system, "bias.evaluated"):
        if e.get("block_rate_difference") is not None:
            block_spreads[e["feature"]] = max(block_spreads.get(e["feature"], 0.0), e["block_rate_difference"])
    return {
        "requests": len(served),
        "rejected": len(exchanges) - len(served),
        "failed": len(failed),
        "availability": 1 - len(failed) / len(served),
        "latency_p50_ms": _quantile(durations, 0.5),
        "latency_p95_ms": _quantile(durations, 0.95),
        "escalation_rate": sum(e["status"] == "escalated" for e in served) / len(served),
        "block_rate": sum(e["status"] == "blocked" for e in served) / len(served),
        "check_error_rate": sum(v["outcome"] != "ok" for v in verdicts) / len(verdicts),
        "grounding_failure_rate": sum(v["action"] != "allow" for v in grounding) / len(grounding) if grounding else None,
        "decisions": Counter((v["guardrail"], v["action"]) for v in verdicts),
        "redactions": dict(redactions),
        "pii_leak_count": float(leaks),
        "pii_caught_in_output": caught,
        "stopped": sum(e["status"] == "stopped" for e in served),
        "max_block_rate_difference": block_spreads,
        "handoffs_answered": len(waits),
        "time_to_human_answer_p95_min": _quantile(waits, 0.95) if waits else None,
        "incidents_opened": len(opened),
        "incidents_resolved": len(resolve_h),
        "time_to_resolve_max_h": max(resolve_h) if resolve_h else None,
        "demographic_parity_ratio_min": min(ratios) if ratios else None,
        "breaches": len(_of(events, month, system, "bias.breach")),
    }


def _system(report: MonthlyReport, system: str) -> Any:
    return next(s for s in report.systems if s.system == system)


# -- the tests -------------------------------------------------------------------------------


@pytest.mark.parametrize("system", ["support-bot", "loan-advisor"])
def test_figures_match_values_computed_from_the_events(month: Any, report: MonthlyReport, system: str) -> None:
    events, _ = month
    expected = _expected(events, MONTH, system)
    figures = _system(report, system).figures
    assert (figures.requests, figures.rejected, figures.failed) == (expected["requests"], expected["rejected"], expected["failed"])
    assert figures.availability == pytest.approx(expected["availability"])
    # Durations are kept as float32: equal to about seven significant digits.
    assert figures.latency_p50_ms == pytest.approx(expected["latency_p50_ms"], rel=1e-5)
    assert figures.latency_p95_ms == pytest.approx(expected["latency_p95_ms"], rel=1e-5)
    assert figures.escalation_rate == pytest.approx(expected["escalation_rate"])
    assert figures.block_rate == pytest.approx(expected["block_rate"])
    assert figures.check_error_rate == pytest.approx(expected["check_error_rate"])
    assert figures.grounding_failure_rate == pytest.approx(expected["grounding_failure_rate"])
    decisions = Counter({(c.check, action): n for c in figures.checks for action, n in c.actions.items()})
    assert decisions == expected["decisions"]
    assert figures.pii_redactions == expected["redactions"]
    assert figures.pii_leaks == expected["pii_leak_count"]
    assert figures.pii_caught_in_output == expected["pii_caught_in_output"]
    assert figures.stopped == expected["stopped"]
    assert {b.feature: b.max_block_rate_difference for b in figures.bias if b.max_block_rate_difference is not None} == pytest.approx(
        expected["max_block_rate_difference"]
    )
    assert figures.handoffs.answered == expected["handoffs_answered"]
    assert figures.handoffs.answer_p95_min == pytest.approx(expected["time_to_human_answer_p95_min"])
    assert figures.incidents.opened == expected["incidents_opened"]
    assert figures.incidents.resolved == expected["incidents_resolved"]
    assert figures.incidents.resolve_max_h == pytest.approx(expected["time_to_resolve_max_h"])
    assert sum(b.breaches for b in figures.bias) == expected["breaches"]


def test_the_injected_properties_show(report: MonthlyReport) -> None:
    support, loan = _system(report, "support-bot").figures, _system(report, "loan-advisor").figures
    assert support.availability is not None and 0.97 < support.availability < 0.99  # ~1 in 41 failed upstream
    # Let through (flag): leaks; redacted in the answer: caught in output, not a leak.
    assert support.pii_leaks > 0 and set(support.pii_findings["output"]) == {"PHONE_NUMBER", "EMAIL_ADDRESS"}
    assert support.pii_leaks_by_entity.keys() == {"PHONE_NUMBER"} and support.pii_caught_in_output_by_entity.keys() == {"EMAIL_ADDRESS"}
    assert support.stopped > 0 and support.statuses["stopped"] == support.stopped
    assert set(support.pii_redactions) == {"EMAIL_ADDRESS", "PHONE_NUMBER", "IBAN_CODE", "CREDIT_CARD", "IP_ADDRESS"}
    age = next(b for b in loan.bias if b.feature == "age_band")
    assert age.min_demographic_parity_ratio == pytest.approx(0.345 * 0.9 / 0.5, abs=1e-6)  # the worst day
    # From the policy's fairness section; one guardrail threshold covers block and escalation rates.
    assert age.thresholds == {"demographic_parity_ratio_min": 0.8, "block_rate_difference_max": 0.05, "escalation_rate_difference_max": 0.05}
    gender = next(b for b in loan.bias if b.feature == "gender")
    assert age.breaches == 31 and gender.breaches == 1  # the guardrails' block-rate spread, on day 20
    assert gender.max_block_rate_difference == pytest.approx(0.06) and gender.last_block_rate_difference == pytest.approx(0.04)
    assert gender.max_escalation_rate_difference == 0.0 and age.max_block_rate_difference is None
    assert [i.status for i in support.incidents.incidents] == ["resolved", "open"]
    assert support.incidents.open_at_end == 1


def test_objectives_missed_are_exactly_the_ones_made_to_miss(month: Any, report: MonthlyReport) -> None:
    events, _ = month
    missed = {(s.system, o.id) for s in report.systems for o in s.objectives if o.status == "missed"}
    assert missed == EXPECTED_MISSED
    support = _system(report, "support-bot")
    assert [o.status for o in support.objectives if o.id == "fair"] == ["no_data"]  # no bias evaluations for it
    for system in report.systems:
        now, before = _expected(events, MONTH, system.system), _expected(events, BEFORE, system.system)
        for objective in system.objectives:
            if now.get(objective.metric) is None:
                assert objective.value is None
                continue
            assert objective.value == pytest.approx(now[objective.metric], rel=1e-5), objective.id
            assert objective.previous == pytest.approx(before[objective.metric], rel=1e-5), objective.id


def test_every_objective_metric_can_be_computed() -> None:
    assert set(METRICS) == set(ObjectiveMetric)


def test_json_output_round_trips_through_the_cli(month: Any, tmp_path: Path) -> None:
    _, directory = month
    policy_file = tmp_path / "policy.json"  # JSON is YAML
    policy_file.write_text(json.dumps(policy_document(str(directory))))
    out = tmp_path / "report.json"
    result = CliRunner().invoke(app, ["report", "--month", MONTH, "-c", str(policy_file), "--format", "json", "-o", str(out),
                                      "--system", "loan-advisor"])
    assert result.exit_code == 0, result.output
    report = MonthlyReport.model_validate_json(out.read_text())
    assert [s.system for s in report.systems] == ["loan-advisor"]
    assert {o.id for o in report.systems[0].objectives if o.status == "missed"} == {"latency-p95", "fair-age"}
    assert "objectives missed: loan-advisor/latency-p95, loan-advisor/fair-age" in result.output


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--month", "2026-13"], "month must look like 2026-10"),
        (["--month", "2026-10", "--format", "docx"], "--format must be html, md, pdf or json"),
        (["--month", "2026-10", "--system", "nope"], "unknown system 'nope'"),
    ],
)
def test_bad_arguments_get_a_clear_error(month: Any, tmp_path: Path, arguments: list[str], message: str) -> None:
    _, directory = month
    policy_file = tmp_path / "policy.json"
    policy_file.write_text(json.dumps(policy_document(str(directory))))
    result = CliRunner().invoke(app, ["report", "-c", str(policy_file), *arguments])
    assert result.exit_code == 2
    assert message in result.output


def test_incident_records_replace_the_incident_events(month: Any) -> None:
    events, _ = month
    record = IncidentLine(id="r1", title="store record", severity="high", status="resolved", opened_at="2026-10-03T00:00:00Z",
                          resolved_at="2026-10-05T12:00:00Z", hours_to_resolve=60.0)

    class Row:  # what RecordsStore.list_incidents returns, as far as the report reads it
        id, system, title, severity, status = "r1", "loan-advisor", "store record", "high", "resolved"
        first_seen, resolved_at, cause, corrective_action = "2026-10-03T00:00:00+00:00", "2026-10-05T12:00:00+00:00", "c", "a"

    report = build_monthly_report(iter(events), month=MONTH, policy=parse_policy(policy_document()), system="loan-advisor",
                                  incident_records=[Row()])
    incidents = report.systems[0].figures.incidents
    assert [(i.id, i.hours_to_resolve) for i in incidents.incidents] == [(record.id, record.hours_to_resolve)]
    assert next(o for o in report.systems[0].objectives if o.id == "resolve-fast").status == "missed"  # 60 h > 48 h


@pytest.mark.parametrize(
    ("objective", "problem"),
    [
        ({"id": "a", "metric": "availability", "target": 99.9, "comparison": "at_least"}, "between 0 and 1"),
        ({"id": "a", "metric": "uptime", "target": 0.9, "comparison": "at_least"}, "objectives[0].metric"),
        ({"id": "a", "metric": "availability", "target": 0.9, "comparison": "above"}, "objectives[0].comparison"),
    ],
)
def test_objectives_are_validated(objective: dict[str, Any], problem: str) -> None:
    document = policy_document()
    document["systems"]["support-bot"]["objectives"] = [objective]
    with pytest.raises(PolicyError) as error:
        parse_policy(document)
    assert problem in str(error.value)


def test_the_markdown_report_shows_guardrail_bias_leaks_and_the_definitions(report: MonthlyReport) -> None:
    from aimsguard.collectors.report import render_markdown, report_document

    text, _ = render_markdown(report_document(report, with_charts=False), "charts")
    header = next(line for line in text.splitlines() if "guardrail block rate diff." in line)
    gender = next(line for line in text.splitlines() if line.startswith(("| gender", "| **gender")))
    cells = [c.strip().strip("*") for c in gender.strip("|").split("|")]
    columns = [c.strip() for c in header.strip("|").split("|")]
    assert cells[columns.index("guardrail block rate diff. (worst)")] == "0.060 (past 0.05)"
    assert cells[columns.index("guardrail escalation rate diff. (worst)")] == "0"
    assert "caught in answers" in text and "leaked in answers (let through)" in text
    assert "stopped" in text and "reached the upstream model" in text


def test_usage_per_key_sums_requests_tokens_and_refusals() -> None:
    from aimsguard.collectors.report import MonthAggregator, render_markdown, report_document

    def exchange(key_id: str | None, status: str = "ok", code: str | None = None, tokens: int = 0, estimated: bool = False) -> dict[str, Any]:
        event = {"event": "exchange", "ts": f"{MONTH}-03T10:00:00Z", "system": "support-bot", "status": status, "error_code": code,
                 "duration_ms": 5.0, "upstream_ms": 3.0}
        if key_id is not None:
            event.update(key_id=key_id, key_tokens=tokens, key_tokens_estimated=estimated)
        return event

    events = [
        exchange("aaaaaaaaaaaa", tokens=120), exchange("aaaaaaaaaaaa", tokens=30, estimated=True),
        exchange("aaaaaaaaaaaa", "rejected", "rate_limit_exceeded"), exchange("bbbbbbbbbbbb", "rejected", "token_limit_exceeded"),
        exchange(None, tokens=999),
    ]
    figures = MonthAggregator(MONTH).add_all(events).figures("support-bot")
    assert [(k.key_id, k.requests, k.refused, k.tokens, k.estimated_tokens) for k in figures.keys] == [
        ("aaaaaaaaaaaa", 3, 1, 150, 30), ("bbbbbbbbbbbb", 1, 1, 0, 0)
    ]
    report = build_monthly_report(events, month=MONTH, policy=parse_policy(policy_document()))
    text, _ = render_markdown(report_document(report, with_charts=False), "charts")
    assert "Callers (virtual API keys)" in text
    row = next(line for line in text.splitlines() if "aaaaaaaaaaaa" in line)
    assert [c.strip().strip("*") for c in row.strip("|").split("|")] == ["aaaaaaaaaaaa", "3", "1", "150", "30"]
