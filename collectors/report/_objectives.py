"""The policy's objectives, scored: each metric's value this month and last, met or missed.

Every ``ObjectiveMetric`` of the policy has exactly one way to read it off the month's
figures (``METRICS``); a metric with no data in a month (no requests, no handoffs, no
bias evaluations) is ``no_data``, neither met nor missed.
"""

from __future__ import annotations

from collections.abc import Callable

from aimsguard.collectors._objectives import Comparison, ObjectiveConfig, ObjectiveMetric

from ._model import ObjectiveResult, SystemFigures

__all__ = ["METRICS", "metric_value", "score_objectives"]


def _min_ratio(f: SystemFigures) -> float | None:
    values = [b.min_demographic_parity_ratio for b in f.bias if b.min_demographic_parity_ratio is not None]
    return min(values) if values else None


def _max_equalized_odds(f: SystemFigures) -> float | None:
    values = [b.max_equalized_odds_difference for b in f.bias if b.max_equalized_odds_difference is not None]
    return max(values) if values else None


def _lowest(f: SystemFigures, measure: str) -> float | None:
    values = [getattr(e, measure) for e in f.effectiveness if getattr(e, measure) is not None]
    return min(values) if values else None


METRICS: dict[ObjectiveMetric, Callable[[SystemFigures], float | None]] = {
    ObjectiveMetric.AVAILABILITY: lambda f: f.availability,
    ObjectiveMetric.LATENCY_P50_MS: lambda f: f.latency_p50_ms,
    ObjectiveMetric.LATENCY_P95_MS: lambda f: f.latency_p95_ms,
    ObjectiveMetric.CHECK_ERROR_RATE: lambda f: f.check_error_rate,
    ObjectiveMetric.GROUNDING_FAILURE_RATE: lambda f: f.grounding_failure_rate,
    ObjectiveMetric.PII_LEAK_COUNT: lambda f: float(f.pii_leaks) if f.requests else None,
    ObjectiveMetric.BLOCK_RATE: lambda f: f.block_rate,
    ObjectiveMetric.ESCALATION_RATE: lambda f: f.escalation_rate,
    ObjectiveMetric.TIME_TO_HUMAN_ANSWER_P95_MIN: lambda f: f.handoffs.answer_p95_min,
    ObjectiveMetric.INCIDENTS_OPENED: lambda f: float(f.incidents.opened),
    ObjectiveMetric.TIME_TO_RESOLVE_MAX_H: lambda f: f.incidents.resolve_max_h,
    ObjectiveMetric.DEMOGRAPHIC_PARITY_RATIO_MIN: _min_ratio,
    ObjectiveMetric.EQUALIZED_ODDS_DIFFERENCE_MAX: _max_equalized_odds,
    ObjectiveMetric.GUARDRAIL_PRECISION_MIN: lambda f: _lowest(f, "precision"),
    ObjectiveMetric.GUARDRAIL_RECALL_MIN: lambda f: _lowest(f, "recall"),
}


def metric_value(metric: ObjectiveMetric, figures: SystemFigures | None) -> float | None:
    return None if figures is None else METRICS[metric](figures)


def _met(objective: ObjectiveConfig, value: float) -> bool:
    if objective.comparison is Comparison.AT_LEAST:
        return value >= objective.target
    return value <= objective.target


def score_objectives(
    objectives: list[ObjectiveConfig], figures: SystemFigures, previous: SystemFigures | None
) -> list[ObjectiveResult]:
    results = []
    for objective in objectives:
        value = metric_value(objective.metric, figures)
        results.append(
            ObjectiveResult(
                id=objective.id,
                description=objective.description,
                metric=objective.metric.value,
                comparison=objective.comparison.value,
                target=objective.target,
                value=value,
                previous=metric_value(objective.metric, previous),
                status="no_data" if value is None else ("met" if _met(objective, value) else "missed"),
            )
        )
    return results
