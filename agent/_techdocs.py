"""Technical documentation of one AI system (ISO/IEC 42001 A.6.2.7), from the running policy.

``build_techdoc`` loads the system's checks exactly as the Guard does (the same
``Pipeline``) and asks the live objects what they are: each check's version, settings,
fail mode and budget, the Presidio recognizers a pii check runs and the knowledge-base
snapshot a grounding check answers from. Metrics are read from a fresh registry on which
every metric owner registers its metrics (``PrometheusMetrics``, the bias monitor, the
oversight runtime), the fairness section from the system's ``fairness`` policy, alert rules
from the Prometheus rule file. So the pack
cannot drift from what runs: change the policy and the document changes with it.
``techdoc_document`` lays it out for the report renderers (Markdown, HTML).
"""

from __future__ import annotations

import importlib.metadata
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from aimsguard.guardrails import GuardrailRegistry, Stage, default_registry

from ._policy import Policy
from ._version import __version__

__all__ = ["AlertRuleDoc", "CheckDoc", "TechDoc", "build_techdoc", "techdoc_document"]

# What each event kind records; the event log keeps them all for the retention period.
EVENT_KINDS = {
    "exchange": "one per request: system, ids, status, action, HTTP status, model, each check's verdict in brief, token usage, timings",
    "guardrail.verdict": "each check that acted or failed: action, outcome, score, reasons, findings (entity type and position, never the value)",
    "route.unguarded": "a model call to a route no check reads: method, path, route template and whether unknown_routes passed or blocked it (never the body)",
    "policy.loaded": "the policy version, systems and checks in force, at each start",
    "handoff.*": "escalations to a person: created, claimed, answered, returned, closed",
    "incident.*": "incident records: opened, folded, acknowledged, resolved (with cause and corrective action)",
    "system.stopped / system.resumed": "the stop switch (EU AI Act Art. 14)",
    "bias.evaluated / bias.breach": "fairness measures per protected feature and threshold breaches",
}


@dataclass
class CheckDoc:
    id: str
    guardrail: str
    stage: str
    version: str
    fail_mode: str
    timeout_ms: float
    actions: list[tuple[str, str]]
    thresholds: list[tuple[str, str]]
    settings: list[tuple[str, str]]
    recognizers: list[tuple[str, str, str]] = field(default_factory=list)  # name, version, entities
    presidio_version: str | None = None
    entities_covered: list[str] = field(default_factory=list)
    knowledge_base_snapshot: str | None = None
    knowledge_base_chunks: int | None = None


@dataclass
class AlertRuleDoc:
    name: str
    severity: str
    summary: str
    scope: str  # "this system", "every system (per system)", "the whole deployment"
    runbook: str


@dataclass
class TechDoc:
    system: str
    name: str
    owner: str
    purpose: str
    upstream: list[tuple[str, str]]
    policy_version: str
    generated_at: str
    checks: list[CheckDoc]
    objectives: list[tuple[str, str, str, str]]  # id, metric, comparison target, description
    logging: list[tuple[str, str]]
    metrics: list[tuple[str, str, str]]  # name, type, help
    alert_rules: list[AlertRuleDoc]
    oversight: list[str]
    escalating_checks: list[str]
    fairness: list[tuple[str, str]] = field(default_factory=list)  # empty: the system has no fairness section
    access: list[tuple[str, str]] = field(default_factory=list)  # who may call, and what unreadable routes get
    effectiveness: list[tuple[str, str]] = field(default_factory=list)  # review sampling and shadow candidate


def _flatten(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _flatten(item, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, list) and value and all(isinstance(i, dict) for i in value):
        for index, item in enumerate(value):
            label = item.get("id") if isinstance(item.get("id"), str) else index
            yield from _flatten(item, f"{prefix}[{label}]")
    else:
        yield prefix, value


def _text(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(map(str, value)) or "(none)"
    return "(not set)" if value is None else str(value)


_THRESHOLD = re.compile(r"(threshold|^min_|^max_|_min$|_max$)", re.IGNORECASE)


def _check_doc(described: dict[str, Any], guardrail: Any, stage: Stage) -> CheckDoc:
    actions, thresholds, settings = [], [], []
    for key, value in _flatten(described.get("settings", {})):
        if "action" in key.lower():
            actions.append((key, _text(value)))
        elif _THRESHOLD.search(key.rsplit(".", 1)[-1]):
            thresholds.append((key, _text(value)))
        else:
            settings.append((key, _text(value)))
    doc = CheckDoc(
        id=str(described["id"]), guardrail=str(described["guardrail"]), stage=stage.value, version=str(described["version"]),
        fail_mode=str(described["fail_mode"]), timeout_ms=float(described["timeout_ms"]), actions=actions, thresholds=thresholds,
        settings=settings, entities_covered=list(described.get("entities_covered", [])),
        knowledge_base_snapshot=described.get("knowledge_base_snapshot"), knowledge_base_chunks=described.get("knowledge_base_chunks"),
    )
    analyzer = getattr(guardrail, "analyzer", None)
    if analyzer is not None:  # a pii check: the Presidio recognizers it runs
        doc.presidio_version = importlib.metadata.version("presidio-analyzer")
        covered = set(analyzer.entities)
        for recognizer in analyzer.engine.registry.recognizers:
            entities = [e for e in recognizer.supported_entities if e in covered]
            if entities:
                doc.recognizers.append((recognizer.name, str(getattr(recognizer, "version", "")), ", ".join(entities)))
        doc.recognizers.sort()
    return doc


def _metrics() -> list[tuple[str, str, str]]:
    from prometheus_client import CollectorRegistry

    from aimsguard.collectors import BiasMonitor, PrometheusMetrics

    from ._callers import CallerMetrics
    from ._oversight import OversightMetrics

    # Each owner registers its own metrics here as it does at run time, so the list
    # cannot drift from the code (fairness, feedback, handoffs, incidents, records store, callers).
    registry = CollectorRegistry()
    PrometheusMetrics(registry=registry)
    BiasMonitor({}, registry=registry)
    OversightMetrics(registry)
    CallerMetrics(registry)
    out = []
    for family in registry.collect():
        name = family.name + ("_total" if family.type == "counter" else "")
        out.append((name, family.type, family.documentation))
    return sorted(out)


def _fairness(config: Any) -> list[tuple[str, str]]:
    """The ``fairness`` policy section as (item, value) rows; empty when the system has none."""
    if config is None:
        return []
    window = f"the last {config.window_events:,} exchanges" + (f", none older than {config.window_s:g} s" if config.window_s else "")
    rows = [(f"feature {feature}", ", ".join(categories)) for feature, categories in config.features.items()]
    rows += [
        ("outcomes", ", ".join(config.outcomes)),
        ("positive outcomes", ", ".join(config.positive_outcomes)),
        ("ground-truth labels (feedback)", ", ".join(config.label_values)),
        ("positive labels", ", ".join(config.positive_label_values)),
        ("window", window),
        ("min_group_size", f"{config.min_group_size} (smaller groups are reported as insufficient data and left out)"),
        ("evaluated", f"every {config.evaluate_every:,} exchanges or {config.evaluate_interval_s:g} s while traffic flows"),
    ]
    limits = config.thresholds.limits()
    rows += [(f"threshold {measure}", f"{bound} {value:g}") for measure, (bound, value) in limits.items()]
    if not limits:
        rows.append(("thresholds", "none set: measures are recorded, never breached"))
    return rows


def _access(system: Any) -> list[tuple[str, str]]:
    """Callers and routes: the ``callers`` and ``unknown_routes`` settings as (item, value) rows."""
    callers = system.callers
    return [
        ("API key", "required: a request without one of this system's keys gets 401" if callers.require_key
         else "optional: a request that presents one is held to its limits"),
        ("limits when the shared state is down", "requests go on unlimited (counted, evented)" if callers.limits_fail_mode.value == "open"
         else "requests are refused with 503 limits_unavailable (counted, evented)"),
        ("model calls on routes aimsguard cannot read", "blocked with 403 route_not_guarded" if system.unknown_routes.value == "block"
         else "passed unchecked"),
    ]


def _effectiveness(system: Any) -> list[tuple[str, str]]:
    """The ``review`` and ``shadow`` sections: how the checks' effectiveness is measured and changes tried."""
    rows: list[tuple[str, str]] = []
    review = system.review
    if review is None:
        rows.append(("review sampling", "off: no decisions are queued for people to judge, so precision and recall are not estimated"))
    else:
        rows += [(f"review rate, action {action}", f"{rate:.1%} of decisions") for action, rate in sorted(review.rates.items())]
        rows += [(f"review rate, check {check} action {action}", f"{rate:.1%}")
                 for check, rates in sorted(review.checks.items()) for action, rate in sorted(rates.items())]
        rows += [
            ("review minimum", f"{review.min_per_window} per check and action every {review.window_s:g} s (rare actions are seen)"),
            ("double-labelled share", f"{review.double_label_share:.0%} (agreement between reviewers, Cohen's kappa)"),
        ]
    shadow = system.shadow
    if shadow is None:
        rows.append(("shadow candidate", "none"))
    else:
        checks = [c.id for c in (*shadow.checks.input, *shadow.checks.output)]
        rows += [("shadow candidate", f"{shadow.candidate}: checks {', '.join(checks)} run on the same traffic, recorded, never applied"),
                 ("shadow share of exchanges", f"{shadow.sample_rate:.0%}"),
                 ("shadow runs waiting at most", f"{shadow.max_in_flight} (past that, dropped and counted)")]
    return rows


def _rule_scope(expr: str, system: str) -> str | None:
    """Whether an alert rule watches ``system``: it selects it by name, it groups by system
    (every system), or it watches the deployment as a whole; None when it selects others only."""
    selected = re.findall(r'system\s*(=~|=|!=|!~)\s*"([^"]*)"', expr)
    if selected:
        for operator, value in selected:
            matches = value == system if operator in ("=", "!=") else re.fullmatch(value, system) is not None
            if matches == (operator in ("=", "=~")):
                return "this system"
        return None
    if re.search(r"\bsystem\b", expr):
        return "every system (per system)"
    return "the whole deployment"


def _alert_rules(path: Path | None, system: str) -> list[AlertRuleDoc]:
    if path is None or not path.is_file():
        return []
    document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    rules = []
    for group in document.get("groups", []):
        for rule in group.get("rules", []):
            if "alert" not in rule:
                continue
            scope = _rule_scope(str(rule.get("expr", "")), system)
            if scope is None:
                continue
            annotations = rule.get("annotations", {})
            summary = re.sub(r"\{\{\s*\$labels\.system\s*\}\}", system, str(annotations.get("summary", "")))
            rules.append(AlertRuleDoc(rule["alert"], str(rule.get("labels", {}).get("severity", "")), summary, scope,
                                      str(annotations.get("runbook_url", ""))))
    return rules


def build_techdoc(
    policy: Policy, system_id: str, *, registry: GuardrailRegistry | None = None, alert_rules: Path | None = None,
    now: datetime | None = None,
) -> TechDoc:
    """Describe ``system_id`` as the policy runs it (its checks are loaded to ask them)."""
    from ._pipeline import Pipeline

    system = policy.systems[system_id]
    pipeline = Pipeline(system_id, system, registry or default_registry())
    described = pipeline.describe()
    checks = [
        _check_doc(info, bound.guardrail, stage)
        for stage in Stage
        for info, bound in zip(described[stage], pipeline.checks[stage], strict=True)
    ]
    upstream = system.upstream
    upstream_facts = [("upstream", "(none: the application calls the model itself; aimsguard runs as middleware or SDK hooks)")]
    if upstream is not None:
        upstream_facts = [("upstream URL", str(upstream.base_url)), ("provider", upstream.provider),
                          ("model", upstream.model or "as the caller asks"), ("timeouts", f"connect {upstream.connect_timeout_s:g} s, "
                                                                                           f"answer {upstream.timeout_s:g} s")]
    if system.knowledge_base is not None:
        upstream_facts.append(("knowledge base", str(system.knowledge_base)))
    log = policy.event_log
    logging = [
        ("event log", f"{log.directory} (tamper-evident, one record per event, each with the policy version)"),
        ("kept for", f"{log.retention_days} days (EU AI Act Art. 19 and 26(6) ask for at least six months)"),
        ("message content", "not logged" if log.content.value == "none" else "logged only after redaction"),
        ("if the log cannot be written", "requests are refused (fail closed)" if log.fail_mode.value == "closed" else
         "requests go on; lost events are counted (aimsguard_event_log_lost_total) and alerted on"),
        ("fsync each batch", "yes" if log.fsync else "no"),
        *[(f"event {kind}", what) for kind, what in EVENT_KINDS.items()],
    ]
    escalating = sorted({c.id for c in checks for _, value in c.actions if "escalate" in value})
    oversight = [
        f"Checks that hand an exchange to a person (action escalate): {', '.join(escalating) or 'none configured'}.",
        f"The user is told: \u201c{system.fallback.escalation_message}\u201d",
    ]
    if policy.records is not None:
        oversight.append("Escalated exchanges are queued in the records store as handoffs; a reviewer claims one, answers it, "
                         "returns it to the bot or closes it (web console /console or the HumanOversight API), each step an event.")
        oversight.append("A stop switch per system (EU AI Act Art. 14) takes the system out of service at once, on every replica.")
    else:
        oversight.append("No records store is configured: escalations answer with the fallback message and are recorded as "
                         "events, but no handoff queue or stop switch is available (configure records: {url: ...}).")
    rules = [r for r in policy.incidents.rules if not r.systems or system_id in r.systems]
    if rules:
        oversight.append("Incident rules open records for a person to act on: " + "; ".join(f"{r.id} ({r.severity.value})" for r in rules) + ".")
    return TechDoc(
        system=system_id, name=system.name, owner=system.owner, purpose=system.purpose or "(not stated in the policy)",
        upstream=upstream_facts, policy_version=policy.policy_version,
        generated_at=(now or datetime.now(UTC)).isoformat(timespec="seconds").replace("+00:00", "Z"),
        checks=checks,
        objectives=[(o.id, o.metric.value, f"{'≥' if o.comparison.value == 'at_least' else '≤'} {o.target:g}", o.description)
                    for o in system.objectives],
        logging=logging, metrics=_metrics(), alert_rules=_alert_rules(alert_rules, system_id), oversight=oversight,
        escalating_checks=escalating, fairness=_fairness(system.fairness),
        access=_access(system), effectiveness=_effectiveness(system),
    )


def techdoc_document(doc: TechDoc) -> Any:
    """The pack laid out as a report Document (rendered by aimsguard.collectors.report)."""
    from aimsguard.collectors.report import Document, Paragraph, Section, Table

    pairs = ["item", "value"]
    sections = [
        Section("The system", 1, [
            Paragraph(doc.purpose),
            Table(pairs, [["system id", doc.system], ["name", doc.name], ["owner", doc.owner], *map(list, doc.upstream),
                          ["policy version", doc.policy_version]]),
        ], "system"),
        Section("Checks", 1, [
            Paragraph("Every check the policy runs on this system, in order. A check that errs or overruns its time budget "
                      "is resolved by its fail mode: open lets the exchange through, closed blocks it; either way the outcome is logged."),
            Table(["check", "guardrail", "stage", "version", "fail mode", "budget"],
                  [[c.id, c.guardrail, c.stage, c.version, c.fail_mode, f"{c.timeout_ms:g} ms"] for c in doc.checks]),
        ], "checks"),
    ]
    for c in doc.checks:
        blocks: list[Any] = []
        if c.actions:
            blocks.append(Table(["action setting", "value"], [list(a) for a in c.actions]))
        if c.thresholds:
            blocks.append(Table(["threshold", "value"], [list(t) for t in c.thresholds]))
        if c.settings:
            blocks.append(Table(["other setting", "value"], [list(s) for s in c.settings]))
        if c.presidio_version:
            blocks.append(Paragraph(f"Presidio analyzer {c.presidio_version}; entity types covered: {', '.join(c.entities_covered)}."))
            blocks.append(Table(["recognizer", "version", "entity types"], [list(r) for r in c.recognizers]))
        if c.knowledge_base_snapshot:
            blocks.append(Paragraph(f"Knowledge base snapshot {c.knowledge_base_snapshot} ({c.knowledge_base_chunks} passages): "
                                    "the hash of every passage the answers are checked against."))
        sections.append(Section(f"Check {c.id} ({c.guardrail}, {c.stage})", 2, blocks, f"check-{c.stage}-{c.id}"))
    sections += [
        Section("Objectives (ISO 42001 6.2)", 1, [
            Table(["objective", "metric", "target", "description"], [list(o) for o in doc.objectives]) if doc.objectives
            else Paragraph("The policy sets no objectives for this system."),
            Paragraph("The monthly report (aimsguard report) scores each objective as met or missed from the event log."),
        ], "objectives"),
        Section("Fairness (bias monitoring)", 1, [
            Paragraph("Outcomes are compared across the groups of each protected feature with fairlearn (selection rate, "
                      "demographic parity difference and ratio, equalized odds once ground truth arrives as feedback, and the "
                      "guardrails' own block and escalation rates); a measure past its threshold writes bias.breach."),
            Table(pairs, [list(x) for x in doc.fairness]),
        ] if doc.fairness else [Paragraph("The policy sets no fairness section for this system: its outcomes are not monitored for bias.")],
                "fairness"),
        Section("Callers and routes", 1, [Table(pairs, [list(x) for x in doc.access])], "access"),
        Section("Effectiveness and change control (ISO 42001 9.1, A.6.2.4, A.6.2.5)", 1, [
            Paragraph("A share of the checks' decisions is queued for reviewers to judge right or wrong; the monthly report "
                      "estimates each check's precision and recall from their labels. A candidate policy can run in shadow "
                      "before it replaces the live one (aimsguard shadow / aimsguard replay)."),
            Table(pairs, [list(x) for x in doc.effectiveness]),
        ], "effectiveness"),
        Section("What is logged, and for how long (ISO 42001 A.6.2.8)", 1, [Table(pairs, [list(x) for x in doc.logging])], "logging"),
        Section("Monitoring (ISO 42001 A.6.2.6)", 1, [
            Paragraph("Alert rules (Prometheus) that watch this system:"),
            Table(["alert", "severity", "scope", "summary", "runbook"],
                  [[r.name, r.severity, r.scope, r.summary, r.runbook] for r in doc.alert_rules]) if doc.alert_rules
            else Paragraph("No alert rule file was found."),
            Paragraph("Metrics exported on /metrics (labels never carry user, conversation or request ids):"),
            Table(["metric", "type", "meaning"], [list(m) for m in doc.metrics]),
        ], "monitoring"),
        Section("Human oversight (EU AI Act Art. 14)", 1, [Paragraph(line) for line in doc.oversight], "oversight"),
    ]
    return Document(
        title=f"Technical documentation: {doc.name} ({doc.system})",
        subtitle="ISO/IEC 42001 A.6.2.7, generated from the policy in force",
        facts=[("system", doc.system), ("owner", doc.owner), ("policy version", doc.policy_version), ("generated", doc.generated_at),
               ("aimsguard", __version__)],
        sections=sections,
    )
