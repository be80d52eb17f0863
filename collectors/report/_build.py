"""Build the monthly report: one pass over the events of the month and the month before."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from .._fairness import FairnessConfig
from .._objectives import ObjectiveConfig
from ._aggregate import MonthAggregator, incident_lines_from_records
from .._effectiveness import effectiveness, oversight
from ._model import EffectivenessFigures, MonthlyReport, PolicyChange, PolicyEvidence, ReviewerFigures, SystemFigures, SystemReport
from ._objectives import score_objectives

__all__ = ["PolicyView", "build_monthly_report", "month_bounds", "previous_month"]


# What the report reads of a policy. The agent's Policy fits these shapes; collectors
# never import the agent (it imports them), so the report names only what it reads.
class _CheckView(Protocol):
    @property
    def guardrail(self) -> str: ...
    @property
    def instance_id(self) -> str: ...


class _ChecksView(Protocol):
    @property
    def input(self) -> Sequence[_CheckView]: ...
    @property
    def output(self) -> Sequence[_CheckView]: ...


class SystemView(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def owner(self) -> str: ...
    @property
    def checks(self) -> _ChecksView: ...
    @property
    def objectives(self) -> Sequence[ObjectiveConfig]: ...
    @property
    def fairness(self) -> FairnessConfig | None: ...


class PolicyView(Protocol):
    @property
    def systems(self) -> Mapping[str, SystemView]: ...
    @property
    def policy_version(self) -> str: ...

_PROGRESS_EVERY = 10_000


def month_bounds(month: str) -> tuple[datetime, datetime]:
    """[start, end) of a ``YYYY-MM`` month, in UTC; ValueError when it is not one."""
    try:
        start = datetime.strptime(month, "%Y-%m").replace(tzinfo=UTC)
    except ValueError:
        raise ValueError(f"month must look like 2026-10 (got {month!r})") from None
    end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
    return start, end


def previous_month(month: str) -> str:
    start, _ = month_bounds(month)
    return f"{start.year - 1}-12" if start.month == 1 else f"{start.year}-{start.month - 1:02d}"


def _check_types(policy: PolicyView) -> dict[str, dict[str, str]]:
    return {
        system_id: {c.instance_id: c.guardrail for c in [*system.checks.input, *system.checks.output]}
        for system_id, system in policy.systems.items()
    }


def _with_thresholds(figures: SystemFigures, config: SystemView | None) -> SystemFigures:
    """Bias thresholds from the policy's fairness section when the events do not carry them."""
    fairness = getattr(config, "fairness", None)
    if fairness is None:
        return figures
    limits = {f"{measure}_{bound}": value for measure, (bound, value) in fairness.thresholds.limits().items()}
    for bias in figures.bias:
        bias.thresholds = bias.thresholds or limits
    return figures


def build_monthly_report(
    events: Iterable[Mapping[str, Any]],
    *,
    month: str,
    policy: PolicyView,
    system: str | None = None,
    incident_records: Iterable[Any] | None = None,
    review_samples: Iterable[Any] | None = None,
    handoff_records: Iterable[Any] | None = None,
    policy_evidence: Iterable[Any] | None = None,
    event_log: str = "",
    on_progress: Callable[[int], None] | None = None,
    now: datetime | None = None,
) -> MonthlyReport:
    """The report for ``month`` from ``events`` (those of the month and of the month
    before; others are skipped), scored against ``policy``'s objectives.

    ``incident_records`` (the records store's incidents, any system) replace the
    ``incident.*`` events when given. ``review_samples`` (the store's review samples with
    their labels) give each check's effectiveness this month and last, and with
    ``handoff_records`` each reviewer's oversight figures. ``policy_evidence`` (shadow runs
    and replays, as ``PolicyEvidence``) is listed under the policy version it tried out.
    ``on_progress(n)`` is called every 10,000 events.
    """
    month_bounds(month)
    before = previous_month(month)
    types = _check_types(policy)
    current, previous = MonthAggregator(month, types), MonthAggregator(before, types)
    by_month = {month: current.add, before: previous.add}
    seen = 0
    for event in events:
        seen += 1
        if on_progress is not None and seen % _PROGRESS_EVERY == 0:
            on_progress(seen)
        ts = event.get("ts")
        add = by_month.get(ts[:7]) if isinstance(ts, str) else None  # UTC ISO-8601: the month is its first 7 characters
        if add is not None and (system is None or event.get("system") in (system, None)):
            add(event)
    if on_progress is not None:
        on_progress(seen)

    records = list(incident_records) if incident_records is not None else None
    samples = list(review_samples) if review_samples is not None else []
    handoffs = list(handoff_records) if handoff_records is not None else []
    wanted = [system] if system is not None else sorted(set(policy.systems) | set(current.systems))
    reports = []
    for system_id in wanted:
        config = policy.systems.get(system_id)
        lines = incident_lines_from_records(records, system_id) if records is not None else None
        figures = _with_thresholds(current.figures(system_id, lines), config)
        reviewed_before = any(s.system == system_id and _in_month(s.decided_at, before) for s in samples)
        prior = (
            _with_thresholds(previous.figures(system_id, lines), config)
            if system_id in previous.systems or lines or reviewed_before
            else None
        )
        _with_reviews(figures, month, system_id, samples, handoffs)
        if prior is not None:
            _with_reviews(prior, before, system_id, samples, handoffs)
        reports.append(
            SystemReport(
                system=system_id,
                name=config.name if config else system_id,
                owner=config.owner if config else "(not in the policy in force)",
                figures=figures,
                previous=prior,
                objectives=score_objectives(list(config.objectives) if config else [], figures, prior),
            )
        )
    return MonthlyReport(
        month=month,
        generated_at=(now or datetime.now(UTC)).isoformat(timespec="seconds").replace("+00:00", "Z"),
        policy_version=policy.policy_version,
        policy_versions_seen=dict(current.policy_versions.most_common()),
        events=current.events,
        event_kinds=dict(sorted(current.event_kinds.items())),
        first_event_at=current.first_ts,
        last_event_at=current.last_ts,
        event_log=event_log,
        systems=reports,
        policy_changes=policy_changes(current.policy_version_spans, [*(policy_evidence or []), *current.shadow_evidence()]),
    )


def _in_month(when: datetime | None, month: str) -> bool:
    return when is not None and when.astimezone(UTC).strftime("%Y-%m") == month


def _with_reviews(figures: SystemFigures, month: str, system: str, samples: Sequence[Any], handoffs: Sequence[Any]) -> None:
    """Effectiveness and oversight figures from the review samples decided in ``month``."""
    mine = [s for s in samples if s.system == system and _in_month(s.decided_at, month)]
    figures.effectiveness = [
        EffectivenessFigures.model_validate({k: v for k, v in e.as_dict().items() if k in EffectivenessFigures.model_fields})
        for e in effectiveness(mine)
    ]
    people, kappas = oversight(mine, [h for h in handoffs if h.system == system and _in_month(h.created_at, month)])
    figures.reviewers = [
        ReviewerFigures.model_validate({k: v for k, v in p.as_dict().items() if k in ReviewerFigures.model_fields}) for p in people
    ]
    figures.reviewer_agreement = kappas.get(system)


def policy_changes(spans: Mapping[str, tuple[str, str, int]], evidence: Sequence[PolicyEvidence]) -> list[PolicyChange]:
    """The policy versions seen in the month (first and last event), oldest first, each with
    the replays that tried it out before it came into force and the shadow runs of
    candidates that ran while it was in force (the evidence for the next change)."""
    return [
        PolicyChange(version=version, first_seen=first, last_seen=last, events=count,
                     evidence=[e for e in evidence if version in (e.candidate_version, e.ran_under)])
        for version, (first, last, count) in sorted(spans.items(), key=lambda item: item[1][0])
    ]
