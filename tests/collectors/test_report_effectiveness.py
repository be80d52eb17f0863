"""The monthly report's effectiveness, oversight and change-control sections, from the records store."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from aimsguard.agent._policy import parse_policy
from aimsguard.collectors._effectiveness import effectiveness
from aimsguard.collectors.records import RecordsStore
from aimsguard.collectors.report import PolicyEvidence, build_monthly_report, render_markdown, report_document

from .synthetic_month import policy_document

OCT, SEP = datetime(2026, 10, 10, tzinfo=timezone.utc), datetime(2026, 9, 10, tzinfo=timezone.utc)


def _sample(store: RecordsStore, when: datetime, check: str, action: str, p: float) -> str:
    [sample_id] = store.add_review_samples([{
        "system": "support-bot", "guardrail": check, "stage": "input", "action": action, "score": 0.9, "reasons": [], "findings": [],
        "request_id": f"r{random.random()}", "policy_version": "sha256:v1", "content": None, "content_note": "", "decided_at": when,
        "inclusion_p": p, "labels_wanted": 1,
    }])
    return sample_id


@pytest.fixture
def store(tmp_path: Path) -> Any:
    store = RecordsStore(f"sqlite:///{tmp_path / 'records.db'}")
    store.upgrade()
    yield store
    store.dispose()


def _events() -> list[dict[str, Any]]:
    def exchange(ts: str, version: str) -> dict[str, Any]:
        return {"event": "exchange", "ts": ts, "system": "support-bot", "policy_version": version, "status": "ok", "verdicts": [],
                "request_id": ts, "duration_ms": 10.0}

    return [exchange("2026-10-01T00:00:00Z", "sha256:v1"), exchange("2026-10-20T00:00:00Z", "sha256:v2"), exchange("2026-10-30T00:00:00Z", "sha256:v2")]


def test_the_report_shows_each_checks_precision_recall_drift_oversight_and_the_evidence_behind_policy_changes(store: RecordsStore) -> None:
    # September: injection right 9 of 10; October: 6 of 10 actions right, 1 of 5 sampled allows (p=0.05) missed one.
    for i in range(10):
        sid = _sample(store, SEP, "injection", "block", 1.0)
        store.label_review_sample(sid, "rita", "right" if i < 9 else "wrong")
    for i in range(10):
        sid = _sample(store, OCT, "injection", "block", 1.0)
        store.label_review_sample(sid, "rita" if i % 2 else "ada", "right" if i < 6 else "wrong")
    for i in range(5):
        sid = _sample(store, OCT, "injection", "allow", 0.05)
        store.label_review_sample(sid, "ada", "wrong" if i == 0 else "right")
    document = policy_document()
    document["systems"]["support-bot"]["objectives"] = [
        {"id": "precise", "metric": "guardrail_precision_min", "target": 0.8, "comparison": "at_least"},
        {"id": "catches", "metric": "guardrail_recall_min", "target": 0.5, "comparison": "at_least"},
    ]
    evidence = PolicyEvidence(kind="replay", candidate_version="sha256:v2", since="2026-10-01", until="2026-10-15", decisions=40, changed=3,
                              by_change={"injection: allow → block": 3}, precision_change={"injection": 0.1}, recall_change={"injection": 0.2})
    report = build_monthly_report(_events(), month="2026-10", policy=parse_policy(document), system="support-bot",
                                  review_samples=store.review_samples(), handoff_records=store.list_handoffs(), policy_evidence=[evidence])
    [system] = report.systems
    [injection] = system.figures.effectiveness
    october = [s for s in store.review_samples() if s.decided_at.month == 10]
    [expected] = effectiveness(october)
    # The report keeps four decimals.
    assert injection.precision == pytest.approx(0.6) == pytest.approx(expected.precision)
    assert injection.recall == pytest.approx(6 / (6 + 20), abs=1e-4)  # the missed allow stands for 20 decisions
    assert injection.precision_low == pytest.approx(expected.precision_low, abs=1e-4)
    assert injection.precision_high == pytest.approx(expected.precision_high, abs=1e-4)
    assert (injection.false_positives, injection.false_negatives) == (4, 1)
    assert system.previous is not None and system.previous.effectiveness[0].precision == pytest.approx(0.9)
    assert {o.id: o.status for o in system.objectives} == {"precise": "missed", "catches": "missed"}
    assert {r.reviewer: r.labels for r in system.figures.reviewers} == {"rita": 5, "ada": 10}
    assert [(c.version, c.events, len(c.evidence)) for c in report.policy_changes] == [("sha256:v1", 1, 0), ("sha256:v2", 2, 1)]
    markdown, _ = render_markdown(report_document(report, with_charts=False), "charts")
    assert "Are the checks right?" in markdown and "0.600 [" in markdown and "-0.300" in markdown  # the drift against September
    assert "Oversight effectiveness (EU AI Act Art. 14)" in markdown
    assert "Policy versions and change evidence" in markdown and "injection: allow → block" in markdown


def test_policy_evidence_round_trips_through_the_store(store: RecordsStore) -> None:
    body = PolicyEvidence(kind="shadow", candidate_version="sha256:x", since=None, until=None, decisions=1, changed=0, by_change={}).model_dump()
    store.add_policy_evidence(kind="shadow", candidate_version="sha256:x", body=body)
    assert store.policy_evidence("sha256:x") == [body] and store.policy_evidence("sha256:y") == []


def test_the_gateway_exports_the_estimates_as_metrics(make_guard: Any, tmp_path: Path) -> None:
    from prometheus_client import generate_latest

    from ..support import records_policy

    def mutate(data: dict[str, Any]) -> None:
        records_policy(data, tmp_path)
        system = data["systems"]["support-bot"]
        system["review"] = {"rates": {"block": 1.0}}
        system["objectives"].append({"id": "precise", "metric": "guardrail_precision_min", "target": 0.9, "comparison": "at_least"})

    guard = make_guard(mutate)
    store = guard.records
    now = datetime.now(timezone.utc) - timedelta(hours=1)
    for i in range(4):
        sid = _sample(store, now, "injection", "block", 1.0)
        store.label_review_sample(sid, "rita", "right" if i < 3 else "wrong")
    _sample(store, now, "injection", "block", 1.0)  # waiting: carries its stratum's weight, changes no estimate
    guard.oversight.refresh_effectiveness()
    text = generate_latest(guard.metrics.registry).decode()
    assert 'aimsguard_guardrail_precision{guardrail="injection",system="support-bot"} 0.75' in text
    assert 'aimsguard_guardrail_false_positives{guardrail="injection",system="support-bot"} 1.0' in text
    assert 'aimsguard_guardrail_precision_objective{system="support-bot"} 0.9' in text
    assert 'aimsguard_guardrail_precision_lower{guardrail="injection",system="support-bot"}' in text
    assert "aimsguard_guardrail_recall{" in text  # no allows labelled: every positive was caught
