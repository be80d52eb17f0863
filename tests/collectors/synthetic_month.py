"""A month of synthetic traffic for two AI systems, with known properties (seeded).

Statuses are injected deterministically (every k-th exchange fails upstream, is blocked,
escalated, ...), latencies and entity types are drawn from a seeded generator, escalated
exchanges get a handoff answered after a known delay, incidents open and resolve at known
times, and the bias monitor reports a known selection-rate ratio. Used by the report
tests (which compute their expectations from the events themselves) and bench/bench_report.py.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

PII_ENTITIES = ("EMAIL_ADDRESS", "PHONE_NUMBER", "IBAN_CODE", "CREDIT_CARD", "IP_ADDRESS")


@dataclass(frozen=True)
class Profile:
    system: str
    exchanges: int
    upstream_error_every: int = 0  # 0: never
    error_every: int = 0
    rejected_every: int = 0
    blocked_every: int = 0
    escalated_every: int = 0
    stopped_every: int = 0  # the stop switch answered: the fallback, no upstream call
    latency_median_ms: float = 800.0
    latency_sigma: float = 0.5
    grounding_fail_every: int = 0
    check_timeout_every: int = 0
    pii_every: int = 0
    leak_every: int = 0  # personal data in an answer that the output check let through (flag)
    caught_every: int = 0  # personal data in an answer that the output check redacted
    handoff_delays_min: tuple[float, ...] = (5.0, 15.0, 30.0, 45.0)
    unanswered_every: int = 0  # every k-th handoff is never answered
    incidents: tuple[tuple[float, float | None], ...] = ()  # (opened after h, resolved h later or None)
    bias: dict[str, dict[str, float]] = field(default_factory=dict)  # feature → group → selection rate
    block_spread: dict[str, float] = field(default_factory=dict)  # feature → guardrail block-rate difference
    block_spread_threshold: float = 0.05
    bias_threshold: float = 0.8


def _hit(index: int, every: int) -> bool:
    return every > 0 and index % every == every - 1


def _ts(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _event(kind: str, moment: datetime, **fields: Any) -> dict[str, Any]:
    return {"event": kind, "ts": _ts(moment), "schema": "aimsguard.event/1", "policy_version": "sha256:synthetic", **fields}


def _verdict(check: str, stage: str, action: str = "allow", outcome: str = "ok", findings: int = 0) -> dict[str, Any]:
    return {"guardrail": check, "stage": stage, "action": action, "outcome": outcome,
            "fail_mode": None if outcome == "ok" else "open", "score": 0.0, "findings": findings, "duration_ms": 1.0}


def month_start(month: str) -> datetime:
    return datetime.strptime(month, "%Y-%m").replace(tzinfo=UTC)


def _month_seconds(month: str) -> float:
    start = month_start(month)
    end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
    return (end - start).total_seconds()


def _exchange_events(p: Profile, month: str, rng: random.Random) -> list[dict[str, Any]]:
    start, span = month_start(month), _month_seconds(month)
    step = span / p.exchanges
    events: list[dict[str, Any]] = []
    handoffs = 0
    for i in range(p.exchanges):
        moment = start + timedelta(seconds=i * step)
        request_id = f"{p.system}-{month}-{i}"
        status, verdicts = "ok", []
        pii = _hit(i, p.pii_every)
        entity = rng.choice(PII_ENTITIES)
        verdicts.append(_verdict("pii-in", "input", "redact" if pii else "allow", findings=int(pii)))
        if pii:
            events.append(_event("guardrail.verdict", moment, system=p.system, request_id=request_id, guardrail="pii-in", stage="input",
                                 action="redact", outcome="ok", findings=[{"kind": entity, "segment": 0, "start": 0, "end": 5, "score": 0.9}]))
        if _hit(i, p.rejected_every):
            status, verdicts = "rejected", []
        elif _hit(i, p.blocked_every):
            status = "blocked"
            verdicts.append(_verdict("injection", "input", "block", findings=1))
        elif _hit(i, p.escalated_every):
            status = "escalated"
            verdicts.append(_verdict("injection", "input", "escalate", findings=1))
        elif _hit(i, p.stopped_every):
            status, verdicts = "stopped", []
        else:
            verdicts.append(_verdict("injection", "input"))
            if _hit(i, p.upstream_error_every):
                status = "upstream_error"
            elif _hit(i, p.error_every):
                status = "error"
            else:
                grounding_failed = _hit(i, p.grounding_fail_every)
                timed_out = _hit(i, p.check_timeout_every)
                verdicts.append(_verdict("grounding", "output", "flag" if grounding_failed else "allow", "timeout" if timed_out else "ok"))
                leak, caught = _hit(i, p.leak_every), _hit(i, p.caught_every)
                action = "flag" if leak else "redact" if caught else "allow"
                verdicts.append(_verdict("pii-out", "output", action, findings=2 if leak or caught else 1))
                findings = [{"kind": "placeholder", "segment": 0, "start": 0, "end": 9, "score": 1.0}]
                if leak or caught:
                    findings.append({"kind": "PHONE_NUMBER" if leak else "EMAIL_ADDRESS", "segment": 0, "start": 10, "end": 22, "score": 0.75})
                events.append(_event("guardrail.verdict", moment, system=p.system, request_id=request_id, guardrail="pii-out",
                                     stage="output", action=action, outcome="ok", findings=findings))
        duration = round(rng.lognormvariate(0, p.latency_sigma) * p.latency_median_ms, 3)
        # Only these reached the upstream model; the others were answered without it.
        upstream_ms = round(duration * 0.8, 3) if status in ("ok", "upstream_error") else None
        events.append(_event("exchange", moment, system=p.system, request_id=request_id, conversation_id=request_id, status=status,
                             action={"blocked": "block", "escalated": "escalate"}.get(status, "allow"),
                             http_status={"rejected": 400, "upstream_error": 502, "error": 500}.get(status, 200),
                             verdicts=verdicts, duration_ms=duration, upstream_ms=upstream_ms, front_door="gateway", model="m"))
        # A handoff for each escalation, except in the month's last six hours (its answer would fall in the next month).
        if status == "escalated" and i * step < span - 6 * 3600:
            handoff_id = f"h-{request_id}"
            created = moment + timedelta(seconds=1)
            events.append(_event("handoff.created", created, system=p.system, handoff_id=handoff_id, request_id=request_id))
            if not _hit(handoffs, p.unanswered_every):
                delay = p.handoff_delays_min[handoffs % len(p.handoff_delays_min)]
                events.append(_event("handoff.answered", created + timedelta(minutes=delay), system=p.system, handoff_id=handoff_id,
                                     request_id=request_id, reviewer="r1", time_to_answer_s=delay * 60))
            handoffs += 1
    return events


def _incident_events(p: Profile, month: str) -> list[dict[str, Any]]:
    events = []
    for n, (after_h, resolve_h) in enumerate(p.incidents):
        incident_id = f"{p.system}-{month}-inc{n}"
        opened = month_start(month) + timedelta(hours=after_h)
        events.append(_event("incident.opened", opened, system=p.system, incident_id=incident_id, severity="high",
                             title=f"synthetic incident {n}", rule="upstream-errors"))
        if resolve_h is not None:
            events.append(_event("incident.resolved", opened + timedelta(hours=resolve_h), system=p.system, incident_id=incident_id,
                                 rule="upstream-errors", severity="high", user="ops", time_to_resolve_s=resolve_h * 3600))
    return events


def _bias_events(p: Profile, month: str) -> list[dict[str, Any]]:
    events = []
    days = int(_month_seconds(month) // 86400)
    for day in range(days):
        moment = month_start(month) + timedelta(days=day, hours=12)
        for feature, rates in p.bias.items():
            # The rates drift a little from day to day; the worst day is known (day 10).
            scale = 0.9 if day == 10 else 1.0
            low_group = min(rates, key=rates.__getitem__)
            daily = {g: round(r * (scale if g == low_group else 1.0), 6) for g, r in rates.items()}
            ratio = round(min(daily.values()) / max(daily.values()), 6)
            difference = round(max(daily.values()) - min(daily.values()), 6)
            # The guardrails' block-rate spread: known, and past its threshold on day 20 only.
            spread = p.block_spread.get(feature)
            block_difference = None if spread is None else round(spread * (1.5 if day == 20 else 1.0), 6)
            breaches = ["demographic_parity_ratio"] if ratio < p.bias_threshold else []
            if block_difference is not None and block_difference > p.block_spread_threshold:
                breaches.append("block_rate_difference")
            # The fields of aimsguard.collectors.BiasMonitor's bias.evaluated (thresholds live in the policy).
            events.append(_event("bias.evaluated", moment, system=p.system, feature=feature, status="ok", window_events=1000,
                                 selection_rates=daily, demographic_parity_ratio=ratio, demographic_parity_difference=difference,
                                 equalized_odds_difference=None, insufficient_groups=[],
                                 block_rate_difference=block_difference, escalation_rate_difference=0.0 if spread is not None else None,
                                 breaches=breaches))
            for metric in breaches:
                value, threshold = (ratio, p.bias_threshold) if metric == "demographic_parity_ratio" else (block_difference, p.block_spread_threshold)
                events.append(_event("bias.breach", moment, system=p.system, feature=feature, metric=metric, value=value, threshold=threshold))
    return events


def synthetic_month(month: str, profiles: list[Profile], seed: int) -> list[dict[str, Any]]:
    """Every event of the month for the given systems, in time order."""
    rng = random.Random(f"{seed}/{month}")
    events: list[dict[str, Any]] = []
    for profile in profiles:
        events += _exchange_events(profile, month, rng)
        events += _incident_events(profile, month)
        events += _bias_events(profile, month)
    events.sort(key=lambda e: e["ts"])
    return events


def support_bot(exchanges: int, *, worse: bool = True) -> Profile:
    """Misses availability (2.5 % upstream errors) and the no-leak objective."""
    return Profile(
        "support-bot", exchanges, upstream_error_every=41 if worse else 401, rejected_every=97, blocked_every=61, escalated_every=50,
        stopped_every=301 if worse else 0, caught_every=113,
        latency_median_ms=800, latency_sigma=0.5, grounding_fail_every=20, pii_every=7, leak_every=331 if worse else 0,
        check_timeout_every=700, unanswered_every=9, incidents=((30.0, 20.0), (400.0, None)) if worse else ((10.0, 5.0),),
    )


def loan_advisor(exchanges: int, *, worse: bool = True) -> Profile:
    """Misses the latency and the fairness (selection-rate ratio) objectives."""
    return Profile(
        "loan-advisor", exchanges, upstream_error_every=997, rejected_every=0, blocked_every=0, escalated_every=25,
        latency_median_ms=1200 if worse else 700, latency_sigma=0.4, pii_every=3, grounding_fail_every=0,
        handoff_delays_min=(20.0, 40.0, 90.0), incidents=((100.0, 30.0),),
        bias={"age_band": {"under_40": 0.5, "over_40": 0.345 if worse else 0.45}, "gender": {"f": 0.48, "m": 0.5}},
        block_spread={"gender": 0.04},
    )


OBJECTIVES = {
    "support-bot": [
        {"id": "available", "description": "answers are served", "metric": "availability", "target": 0.99, "comparison": "at_least"},
        {"id": "fast", "metric": "latency_p95_ms", "target": 5000, "comparison": "at_most"},
        {"id": "grounded", "metric": "grounding_failure_rate", "target": 0.1, "comparison": "at_most"},
        {"id": "no-leaks", "metric": "pii_leak_count", "target": 0, "comparison": "at_most"},
        {"id": "human-answers", "metric": "time_to_human_answer_p95_min", "target": 60, "comparison": "at_most"},
        {"id": "few-escalations", "metric": "escalation_rate", "target": 0.05, "comparison": "at_most"},
        {"id": "fair", "metric": "demographic_parity_ratio_min", "target": 0.8, "comparison": "at_least"},  # no bias data: no_data
    ],
    "loan-advisor": [
        {"id": "available", "metric": "availability", "target": 0.99, "comparison": "at_least"},
        {"id": "latency-p95", "metric": "latency_p95_ms", "target": 1500, "comparison": "at_most"},
        {"id": "fair-age", "metric": "demographic_parity_ratio_min", "target": 0.8, "comparison": "at_least"},
        {"id": "resolve-fast", "metric": "time_to_resolve_max_h", "target": 48, "comparison": "at_most"},
        {"id": "checks-work", "metric": "check_error_rate", "target": 0.01, "comparison": "at_most"},
    ],
}
EXPECTED_MISSED = {("support-bot", "available"), ("support-bot", "no-leaks"), ("loan-advisor", "latency-p95"), ("loan-advisor", "fair-age")}


def policy_document(event_dir: str = "events") -> dict[str, Any]:
    """A policy for the two systems, with the objectives above."""
    checks = {
        "input": [{"guardrail": "pii", "id": "pii-in"}, {"guardrail": "injection", "id": "injection"}],
        "output": [{"guardrail": "pii", "id": "pii-out"}, {"guardrail": "grounding", "id": "grounding"}],
    }
    return {
        "version": 1,
        "event_log": {"directory": event_dir},
        "systems": {
            "support-bot": {"name": "Support assistant", "owner": "support@example.test", "checks": checks,
                            "streaming": {"holdback_chars": 48}, "objectives": OBJECTIVES["support-bot"]},
            "loan-advisor": {"name": "Loan pre-screening", "owner": "credit@example.test", "checks": checks,
                             "streaming": {"holdback_chars": 48}, "objectives": OBJECTIVES["loan-advisor"],
                             "fairness": {"features": {"age_band": ["under_40", "over_40"], "gender": ["f", "m"]},
                                          "outcomes": ["approved", "declined"], "positive_outcomes": ["approved"],
                                          "thresholds": {"demographic_parity_ratio_min": 0.8, "guardrail_rate_difference_max": 0.05}}},
        },
    }
