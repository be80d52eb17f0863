"""A neutral document (sections of paragraphs, tables and charts) that every format renders.

The monthly report and the technical documentation are first laid out here, once; the
HTML and Markdown templates and the PDF writer only render these blocks, so the formats
cannot say different things.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from aimsguard.collectors._objectives import ObjectiveMetric

from ._charts import Chart, system_charts
from ._model import MonthlyReport, ObjectiveResult, SystemFigures, SystemReport

__all__ = ["Chart", "Document", "Figure", "Paragraph", "Section", "Table", "report_document"]

Tone = Literal["", "good", "bad", "muted"]


@dataclass
class Paragraph:
    text: str
    kind: str = "paragraph"


@dataclass
class Table:
    columns: list[str]
    rows: list[list[str]]
    tones: list[Tone] = field(default_factory=list)  # one per row ("" for none)
    kind: str = "table"

    def tone(self, index: int) -> Tone:
        return self.tones[index] if index < len(self.tones) else ""


@dataclass
class Figure:
    chart: Chart
    kind: str = "figure"


Block = Paragraph | Table | Figure


@dataclass
class Section:
    title: str
    level: int  # 1: a part of the document; 2: a section within it
    blocks: list[Block] = field(default_factory=list)
    anchor: str = ""


@dataclass
class Document:
    title: str
    subtitle: str
    facts: list[tuple[str, str]]  # shown under the title
    sections: list[Section]

    @property
    def charts(self) -> list[Chart]:
        return [b.chart for s in self.sections for b in s.blocks if isinstance(b, Figure)]


# -- formatting ------------------------------------------------------------------------

NONE = "–"


def percent(value: float | None, digits: int = 2) -> str:
    return NONE if value is None else f"{100 * value:.{digits}f} %"


def number(value: float | None, digits: int = 1) -> str:
    if value is None:
        return NONE
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.{digits}f}"


def metric_text(metric: str, value: float | None) -> str:
    if value is None:
        return NONE
    if ObjectiveMetric(metric).is_rate:
        return percent(value, 3)
    unit = {"_ms": " ms", "_min": " min", "_h": " h"}
    suffix = next((u for end, u in unit.items() if metric.endswith(end)), "")
    return number(value, 2) + suffix


# -- the monthly report ---------------------------------------------------------------------


def _objectives(objectives: list[ObjectiveResult]) -> Table:
    table = Table(["objective", "metric", "target", "this month", "previous month", "status"], [])
    for o in objectives:
        sign = "≥" if o.comparison == "at_least" else "≤"
        label = o.id + (f": {o.description}" if o.description else "")
        table.rows.append(
            [label, o.metric, f"{sign} {metric_text(o.metric, o.target)}", metric_text(o.metric, o.value),
             metric_text(o.metric, o.previous), {"met": "met", "missed": "MISSED", "no_data": "no data"}[o.status]]
        )
        table.tones.append({"met": "good", "missed": "bad", "no_data": "muted"}[o.status])  # type: ignore[arg-type]
    return table


def _operations(f: SystemFigures, prior: SystemFigures | None) -> Table:
    def row(label: str, value: str, previous: str) -> list[str]:
        return [label, value, previous if prior is not None else NONE]

    p = prior
    return Table(
        ["figure", "this month", "previous month"],
        [
            row("exchanges (all)", number(f.exchanges), number(p.exchanges) if p else NONE),
            row("rejected as invalid", number(f.rejected), number(p.rejected) if p else NONE),
            row("requests", number(f.requests), number(p.requests) if p else NONE),
            row("failed (error, upstream error, stopped)", number(f.failed), number(p.failed) if p else NONE),
            row("of which stopped (stop switch on)", number(f.stopped), number(p.stopped) if p else NONE),
            row("availability", percent(f.availability, 3), percent(p.availability, 3) if p else NONE),
            row("latency p50 (requests that reached the model)", number(f.latency_p50_ms) + " ms", (number(p.latency_p50_ms) + " ms") if p else NONE),
            row("latency p95 (requests that reached the model)", number(f.latency_p95_ms) + " ms", (number(p.latency_p95_ms) + " ms") if p else NONE),
            row("blocked", f"{number(f.blocked)} ({percent(f.block_rate)})", f"{number(p.blocked)} ({percent(p.block_rate)})" if p else NONE),
            row("escalated to a person", f"{number(f.escalations)} ({percent(f.escalation_rate)})",
                f"{number(p.escalations)} ({percent(p.escalation_rate)})" if p else NONE),
        ],
    )


def _checks(f: SystemFigures) -> Table:
    actions = ["allow", "flag", "redact", "block", "escalate"]
    table = Table(["check", "type", "stage", "runs", *actions, "errors", "timeouts"], [])
    for c in f.checks:
        table.rows.append([c.check, c.guardrail or "?", c.stage, number(c.runs), *[number(c.actions.get(a, 0)) for a in actions],
                           number(c.errors), number(c.timeouts)])
        table.tones.append("bad" if c.errors or c.timeouts else "")
    return table


def _pii(f: SystemFigures) -> Table:
    entities = sorted({e for stage in f.pii_findings.values() for e in stage})
    table = Table(["entity type", "found in input", "leaked in answers (let through)", "caught in answers", "redacted"], [])
    for entity in entities:
        leaks = f.pii_leaks_by_entity.get(entity, 0)
        table.rows.append([entity, number(f.pii_findings.get("input", {}).get(entity, 0)), number(leaks),
                           number(f.pii_caught_in_output_by_entity.get(entity, 0)), number(f.pii_redactions.get(entity, 0))])
        table.tones.append("bad" if leaks else "")
    return table


def _oversight(f: SystemFigures) -> Table:
    h = f.handoffs
    return Table(
        ["figure", "value"],
        [
            ["exchanges escalated to a person", number(f.escalations)],
            ["handoffs created", number(h.created)],
            ["handoffs answered by a person", number(h.answered)],
            ["time to a human answer, p50", metric_text("time_to_human_answer_p95_min", h.answer_p50_min)],
            ["time to a human answer, p95", metric_text("time_to_human_answer_p95_min", h.answer_p95_min)],
        ],
    )


def _keys(f: SystemFigures) -> list[Block]:
    if not f.keys:
        return [Paragraph("No request carried a virtual API key this month.")]
    table = Table(["key id", "requests", "refused (limits)", "tokens", "of which estimated"], [])
    for k in f.keys:
        table.rows.append([k.key_id, number(k.requests), number(k.refused), number(k.tokens), number(k.estimated_tokens)])
        table.tones.append("bad" if k.refused else "")
    return [
        Paragraph(f"{len(f.keys)} key(s) used; {number(sum(k.requests for k in f.keys))} requests, "
                  f"{number(sum(k.refused for k in f.keys))} refused for their limits, {number(sum(k.tokens for k in f.keys))} tokens."),
        table,
    ]


def _incidents(f: SystemFigures) -> list[Block]:
    i = f.incidents
    blocks: list[Block] = [
        Paragraph(
            f"Opened this month: {i.opened}; resolved: {i.resolved}; still open at the month's end: {i.open_at_end}. "
            f"Time to resolve (resolved this month): median {metric_text('time_to_resolve_max_h', i.resolve_median_h)}, "
            f"longest {metric_text('time_to_resolve_max_h', i.resolve_max_h)}."
        )
    ]
    if i.incidents:
        table = Table(["incident", "severity", "status", "opened", "resolved", "hours", "cause / corrective action"], [])
        for line in i.incidents:
            table.rows.append([f"{line.id}: {line.title}", line.severity, line.status, (line.opened_at or NONE)[:16],
                               (line.resolved_at or NONE)[:16], number(line.hours_to_resolve, 2),
                               " / ".join(x for x in (line.cause, line.corrective_action) if x) or NONE])
            table.tones.append("" if line.status == "resolved" else "bad")
        blocks.append(table)
    return blocks


def _against(value: float | None, thresholds: dict[str, float], measure: str) -> str:
    """A measure's worst value, marked when it is past the policy's threshold for it."""
    text = number(value, 3)
    low, high = thresholds.get(f"{measure}_min"), thresholds.get(f"{measure}_max")
    past = value is not None and ((low is not None and value < low) or (high is not None and value > high))
    return f"{text} (past {low if low is not None else high:g})" if past else text


def _bias(f: SystemFigures) -> Table:
    table = Table(["feature", "evaluations", "selection rates (last)", "parity ratio (last / worst)", "parity difference (worst)",
                   "equalized odds diff. (worst)", "guardrail block rate diff. (worst)", "guardrail escalation rate diff. (worst)",
                   "thresholds", "breaches"], [])
    for b in f.bias:
        rates = ", ".join(f"{g}: {r:.3f}" for g, r in sorted(b.last_selection_rates.items())) or NONE
        limits = b.thresholds
        thresholds = ", ".join(f"{k} {v:g}" for k, v in sorted(limits.items())) or NONE
        worst = [
            _against(b.max_demographic_parity_difference, limits, "demographic_parity_difference"),
            _against(b.max_equalized_odds_difference, limits, "equalized_odds_difference"),
            _against(b.max_block_rate_difference, limits, "block_rate_difference"),
            _against(b.max_escalation_rate_difference, limits, "escalation_rate_difference"),
        ]
        table.rows.append([b.feature, number(b.evaluations), rates,
                           f"{number(b.last_demographic_parity_ratio, 3)} / "
                           f"{_against(b.min_demographic_parity_ratio, limits, 'demographic_parity_ratio')}",
                           *worst, thresholds, number(b.breaches)])
        table.tones.append("bad" if b.breaches or any("(past" in cell for cell in worst) else "")
    return table


def _interval(value: float | None, low: float | None, high: float | None) -> str:
    return NONE if value is None else f"{value:.3f} [{low:.3f}–{high:.3f}]"


def _drift(now: float | None, before: float | None) -> str:
    return NONE if now is None or before is None else f"{now - before:+.3f}"


def _effectiveness(f: SystemFigures, prior: SystemFigures | None) -> list[Block]:
    if not f.effectiveness:
        return [Paragraph("No decisions were sampled for review this month.")]
    before = {e.check: e for e in (prior.effectiveness if prior else [])}
    table = Table(["check", "labelled / sampled", "precision [95% CI]", "vs last month", "recall [95% CI]", "vs last month",
                   "false positives (est.)", "false negatives (est.)", "unsure / disputed"], [])
    for e in f.effectiveness:
        last = before.get(e.check)
        table.rows.append([
            f"{e.check} ({e.stage})", f"{e.labelled} / {e.samples}", _interval(e.precision, e.precision_low, e.precision_high),
            _drift(e.precision, last.precision if last else None), _interval(e.recall, e.recall_low, e.recall_high),
            _drift(e.recall, last.recall if last else None), f"{e.false_positives} ({e.estimated_false_positives:.0f})",
            f"{e.false_negatives} ({e.estimated_false_negatives:.0f})", f"{e.unsure} / {e.disputed}",
        ])
    return [Paragraph(
        "People labelled a share of each check's decisions right or wrong (rare actions sampled more). Each label is weighted by "
        "the inverse of its decision's chance of being sampled; intervals are 95% Wilson intervals on Kish's effective sample "
        "size. A false positive is an action judged wrong, a false negative an allow judged wrong; estimated totals in brackets."
    ), table]


def _reviewers(f: SystemFigures) -> list[Block]:
    if not f.reviewers:
        return [Paragraph("No reviews or handoffs were handled this month.")]
    table = Table(["reviewer", "labels", "time to first action (median)", "override rate", "agreement κ (shared)",
                   "handoffs claimed", "time to claim (median)", "returned to the assistant"], [])
    for r in f.reviewers:
        table.rows.append([
            r.reviewer, str(r.labels), number(r.time_to_first_action_median_s, 0) + " s" if r.time_to_first_action_median_s is not None else NONE,
            percent(r.override_rate, 1), f"{number(r.kappa, 2)} ({r.double_labelled})", str(r.handoffs_claimed),
            number(r.handoff_claim_median_s, 0) + " s" if r.handoff_claim_median_s is not None else NONE, str(r.handoffs_returned),
        ])
    agreement = f"Agreement between reviewers on double-labelled samples (Cohen's κ): {number(f.reviewer_agreement, 2)}."
    return [Paragraph("Override rate: the share of a reviewer's right/wrong labels that said the check was wrong. " + agreement), table]


def _system_sections(report: SystemReport, with_charts: bool) -> list[Section]:
    f = report.figures
    charts = {c.name: Figure(c) for c in system_charts(f)} if with_charts else {}
    missed = [o.id for o in report.objectives if o.status == "missed"]
    summary = (
        f"Owner: {report.owner}. {number(f.requests)} requests, availability {percent(f.availability, 3)}, "
        f"p95 latency {number(f.latency_p95_ms)} ms. "
        + (f"Objectives missed: {', '.join(missed)}." if missed else "No objective missed." if report.objectives else "The policy sets no objectives for this system.")
    )
    anchor = f"system-{report.system}"
    sections = [
        Section(f"{report.name} ({report.system})", 1, [Paragraph(summary)], anchor),
        Section("Objectives (ISO 42001 6.2, 9.1)", 2, [_objectives(report.objectives)] if report.objectives else [Paragraph("No objectives set.")],
                f"{anchor}-objectives"),
        Section("Volumes, availability and latency", 2, [_operations(f, report.previous), *[charts[n] for n in ("volume", "latency") if n in charts]],
                f"{anchor}-operations"),
        Section("Check decisions", 2, [
            Paragraph(f"{number(f.check_runs)} check runs; {number(f.check_failures)} ended in an error or timeout "
                      f"({percent(f.check_error_rate, 3)}), each resolved by the check's fail mode."),
            *([_checks(f)] if f.checks else []), *([charts["decisions"]] if "decisions" in charts else []),
        ], f"{anchor}-checks"),
        Section("Personal data", 2, [
            Paragraph(f"Personal data found by the pii checks: {number(sum(sum(s.values()) for s in f.pii_findings.values()))} findings; "
                      f"{number(sum(f.pii_redactions.values()))} redacted; in answers, {number(f.pii_caught_in_output)} caught "
                      f"(redacted, blocked or escalated) and {number(f.pii_leaks)} let through (leaks)."),
            *([_pii(f)] if f.pii_findings else []), *([charts["pii"]] if "pii" in charts else []),
        ], f"{anchor}-pii"),
        Section("Grounding", 2, [Paragraph(
            f"{number(f.grounding_checked)} answers checked against the knowledge base; {number(f.grounding_failed)} not supported "
            f"(failure rate {percent(f.grounding_failure_rate, 3)})."
        )], f"{anchor}-grounding"),
        Section("Are the checks right? (ISO 42001 9.1, A.6.2.6)", 2, _effectiveness(f, report.previous), f"{anchor}-effectiveness"),
        Section("Human oversight", 2, [_oversight(f)], f"{anchor}-oversight"),
        Section("Oversight effectiveness (EU AI Act Art. 14)", 2, _reviewers(f), f"{anchor}-reviewers"),
        Section("Callers (virtual API keys)", 2, _keys(f), f"{anchor}-keys"),
        Section("Incidents", 2, _incidents(f), f"{anchor}-incidents"),
        Section("Bias", 2, [_bias(f), *([charts["bias"]] if "bias" in charts else [])] if f.bias else [Paragraph("No bias evaluations this month.")],
                f"{anchor}-bias"),
    ]
    return sections


def _iso_section(report: MonthlyReport) -> Section:
    objectives = sum(len(s.objectives) for s in report.systems)
    missed = sum(1 for s in report.systems for o in s.objectives if o.status == "missed")
    incidents = sum(s.figures.incidents.opened for s in report.systems)
    resolved = sum(s.figures.incidents.resolved for s in report.systems)
    rows = [
        ["9.1 Monitoring, measurement, analysis and evaluation",
         f"{objectives} objectives measured and scored against their targets ({missed} missed), with the previous month for trend; "
         "the figures behind them per system (sections 'Objectives' and 'Volumes, availability and latency')."],
        ["A.6.2.6 AI system operation and monitoring",
         "Volumes, availability, latency, every check's decisions, errors and timeouts, personal-data findings, grounding failures, "
         "escalations and bias metrics against their thresholds, per system; the same figures are exported as Prometheus metrics "
         "watched by the alert rules (configs/prometheus/aimsguard-alerts.yml)."],
        ["A.6.2.8 AI system recording of event logs",
         f"This report is computed only from the event log ({report.event_log or 'the configured event log'}): {report.events:,} events "
         f"from {report.first_event_at or NONE} to {report.last_event_at or NONE}, each stamped with the policy version in force "
         f"({len(report.policy_versions_seen)} version(s) seen)."],
        ["10.2 Nonconformity and corrective action",
         f"{incidents} incidents opened and {resolved} resolved this month, with time to resolve, cause and corrective action "
         "(section 'Incidents'); missed objectives above are nonconformities to act on."],
    ]
    return Section("Evidence for ISO/IEC 42001", 1, [Table(["clause", "evidence in this report"], rows)], "iso-42001")


def _changes(report: MonthlyReport) -> Section:
    if not report.policy_changes:
        return Section("Policy versions and change evidence (A.6.2.4, A.6.2.5)", 1, [Paragraph("No events this month.")], "policy-changes")
    versions = Table(["policy version", "first event", "last event", "events", "evidence before it came into force"], [])
    blocks: list[Block] = [Paragraph("Every version of the policy in force this month, and the shadow runs and replays that tried it "
                                     "before it was put in force (decisions that would change, and where labels exist, the change in "
                                     "precision and recall).")]
    details: list[Block] = []
    for change in report.policy_changes:
        versions.rows.append([change.version or "(none)", change.first_seen, change.last_seen, f"{change.events:,}",
                              "; ".join(f"{e.kind} {e.since or ''}–{e.until or ''}: {e.changed} of {e.decisions} decisions change" for e in change.evidence) or "none recorded"])
        versions.tones.append("" if change.evidence else "muted")
        for e in change.evidence:
            rows = [[k, str(v), "", ""] for k, v in sorted(e.by_change.items())]
            for check in sorted(set(e.precision_change) | set(e.recall_change)):
                rows.append([f"{check}: precision / recall change", "", number(e.precision_change.get(check), 3), number(e.recall_change.get(check), 3)])
            details.append(Table([f"{e.kind} of {e.candidate_version}: change", "decisions", "Δ precision", "Δ recall"], rows))
    return Section("Policy versions and change evidence (A.6.2.4, A.6.2.5)", 1, [*blocks, versions, *details], "policy-changes")


def _about(report: MonthlyReport) -> Section:
    kinds = Table(["event kind", "events"], [[k, f"{v:,}"] for k, v in report.event_kinds.items()])
    versions = Table(["policy version", "events"], [[k or "(none)", f"{v:,}"] for k, v in report.policy_versions_seen.items()])
    return Section("About this report", 1, [
        Paragraph("Requests exclude exchanges rejected as invalid; availability is 1 − (error + upstream error + stopped) / "
                  "requests: an answer from the stop switch's fallback counts as unavailable. Latency quantiles are exact (numpy, "
                  "linear interpolation) over the duration of the requests that reached the upstream model (those with an upstream "
                  "time); answers given without a model call are left out. A personal-data leak is a finding in an answer that the "
                  "output check let through (allow or flag); one redacted, blocked or escalated there is caught in output. A grounding failure "
                  "is a grounding verdict other than allow. Time to a human answer runs from handoff creation to the reviewer's answer. "
                  "An objective with no data in the month is neither met nor missed. Per API key: requests are every exchange the key "
                  "authenticated (refused ones included); tokens are the upstream's usage, estimated at four characters per token "
                  "for streams that carried none."),
        kinds, versions,
    ], "about")


def _overview(report: MonthlyReport) -> Section:
    table = Table(["system", "requests", "availability", "latency p95", "objectives met", "missed", "no data"], [])
    for s in report.systems:
        statuses = [o.status for o in s.objectives]
        table.rows.append([f"{s.name} ({s.system})", number(s.figures.requests), percent(s.figures.availability, 3),
                           number(s.figures.latency_p95_ms) + " ms", str(statuses.count("met")), str(statuses.count("missed")),
                           str(statuses.count("no_data"))])
        table.tones.append("bad" if "missed" in statuses else "good" if statuses else "")
    return Section("At a glance", 1, [table], "overview")


def report_document(report: MonthlyReport, *, with_charts: bool = True) -> Document:
    sections: list[Section] = [_overview(report)]
    for system in report.systems:
        sections.extend(_system_sections(system, with_charts))
    sections += [_changes(report), _iso_section(report), _about(report)]
    return Document(
        title=f"AI management system: monthly report {report.month}",
        subtitle="Measurement and monitoring evidence (ISO/IEC 42001 9.1, A.6.2.6, A.6.2.8, 10.2)",
        facts=[("month", report.month), ("systems", ", ".join(s.system for s in report.systems)),
               ("policy version", report.policy_version), ("events read", f"{report.events:,}"), ("generated", report.generated_at)],
        sections=sections,
    )
