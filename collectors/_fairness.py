"""Fairness of a decision system: its policy section and the fairlearn evaluation.

``FairnessConfig`` is the ``systems.<id>.fairness`` section of the policy (validated with
the rest of it, like a guardrail's settings). ``evaluate`` turns the counts a sliding
window holds into fairlearn's measures, one sensitive feature at a time:

- selection rate by group (``MetricFrame`` with ``selection_rate``), demographic parity
  difference and ratio, over exchanges that carry a decision outcome;
- equalized-odds difference, over exchanges whose ground truth arrived as feedback;
- the guardrails' own block and escalation rates by group, and their spread
  (``MetricFrame.difference()``): a guardrail can be biased too.

The window is summarised as counts per (group, outcome, label, guardrail action), handed to
fairlearn as weighted samples (``sample_weight``), so an evaluation costs the same whatever
the window's size. Groups with fewer than ``min_group_size`` samples are reported as
insufficient data and left out: a small group's rate is noise, not evidence of bias. Each
family of measures counts its own samples (outcomes for selection and parity, labelled
outcomes for equalized odds, guardrail decisions for block and escalation rates), so each
has its own list of insufficient groups.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

if TYPE_CHECKING:
    from fairlearn.metrics import MetricFrame

# fairlearn (with scikit-learn and pandas: over a second and ~150 MiB) is imported by the
# functions that evaluate, so a runtime whose policy watches no system for bias never loads it.

__all__ = [
    "FairnessConfig",
    "FairnessEvaluation",
    "FairnessSource",
    "FairnessThresholds",
    "MEASURES",
    "NO",
    "UNKNOWN",
    "YES",
    "evaluate",
    "load_fairlearn",
]

# Categories become metric label values: short tokens the policy lists, never free text.
_CATEGORY = r"^[A-Za-z0-9][A-Za-z0-9_.+\-]{0,62}$"
_FEATURE = r"^[a-z][a-z0-9_]{0,62}$"
_HEADER = r"^[A-Za-z0-9][A-Za-z0-9\-]{0,126}$"
Category = Annotated[str, Field(pattern=_CATEGORY)]

# One sample's state in the counts: outcome / label are positive (YES), negative (NO) or
# not known (UNKNOWN); the guardrail state is one of the GUARD_* values.
UNKNOWN, NO, YES = -1, 0, 1
GUARD_NONE, GUARD_ALLOW, GUARD_BLOCK, GUARD_ESCALATE = -1, 0, 1, 2
CountKey = tuple[str, int, int, int]  # (group, outcome, label, guardrail state)

MEASURES = (
    "demographic_parity_difference",
    "demographic_parity_ratio",
    "equalized_odds_difference",
    "block_rate_difference",
    "escalation_rate_difference",
)
"""The measures an evaluation computes (each a field of ``FairnessEvaluation``)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FairnessSource(_Strict):
    """Where the gateway and middleware read an exchange's outcome and groups."""

    body_field: Annotated[str | None, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")] = Field(
        default="aimsguard", description="JSON body field {outcome, groups}; removed before the body goes upstream"
    )
    outcome_header: Annotated[str | None, Field(pattern=_HEADER)] = None
    group_headers: dict[str, Annotated[str, Field(pattern=_HEADER)]] = Field(default={}, description="feature → header name")

    @field_validator("outcome_header")
    @classmethod
    def _lower(cls, value: str | None) -> str | None:
        return value.lower() if value else value

    @field_validator("group_headers")
    @classmethod
    def _lower_all(cls, value: dict[str, str]) -> dict[str, str]:
        return {feature: header.lower() for feature, header in value.items()}


class FairnessThresholds(_Strict):
    """A measure past its threshold is a breach (``bias.breach``); unset: not checked."""

    demographic_parity_ratio_min: Annotated[float | None, Field(ge=0, le=1)] = 0.8  # the four-fifths rule
    demographic_parity_difference_max: Annotated[float | None, Field(ge=0, le=1)] = None
    equalized_odds_difference_max: Annotated[float | None, Field(ge=0, le=1)] = None
    guardrail_rate_difference_max: Annotated[float | None, Field(ge=0, le=1)] = None  # block and escalation rates

    def limits(self) -> dict[str, tuple[str, float]]:
        """measure → (bound, threshold) for the thresholds that are set."""
        pairs = {
            "demographic_parity_ratio": ("min", self.demographic_parity_ratio_min),
            "demographic_parity_difference": ("max", self.demographic_parity_difference_max),
            "equalized_odds_difference": ("max", self.equalized_odds_difference_max),
            "block_rate_difference": ("max", self.guardrail_rate_difference_max),
            "escalation_rate_difference": ("max", self.guardrail_rate_difference_max),
        }
        return {metric: (bound, value) for metric, (bound, value) in pairs.items() if value is not None}


class FairnessConfig(_Strict):
    """``systems.<id>.fairness``: a decision system whose outcomes are watched for bias."""

    features: Annotated[dict[Annotated[str, Field(pattern=_FEATURE)], list[Category]], Field(min_length=1)]
    outcomes: Annotated[list[Category], Field(min_length=2)]
    positive_outcomes: Annotated[list[Category], Field(min_length=1)]
    labels: list[Category] | None = Field(default=None, description="ground-truth labels feedback may carry; default: outcomes")
    positive_labels: list[Category] | None = None
    source: FairnessSource = FairnessSource()
    window_events: Annotated[int, Field(ge=10, le=10_000_000)] = 10_000
    window_s: Annotated[float | None, Field(gt=0)] = 7 * 86_400
    min_group_size: Annotated[int, Field(ge=1)] = 30
    evaluate_every: Annotated[int, Field(ge=1)] = 1000
    evaluate_interval_s: Annotated[float, Field(gt=0)] = 60.0
    thresholds: FairnessThresholds = FairnessThresholds()

    @model_validator(mode="after")
    def _consistent(self) -> FairnessConfig:
        for name, categories in [("outcomes", self.outcomes), ("labels", self.labels or []),
                                 *((f"features.{f}", c) for f, c in self.features.items())]:
            if len(set(categories)) != len(categories):
                raise ValueError(f"{name} lists a category twice")
        for feature, categories in self.features.items():
            if len(categories) < 2:
                raise ValueError(f"features.{feature} needs at least two categories to compare")
        if not set(self.positive_outcomes) <= set(self.outcomes):
            raise ValueError(f"positive_outcomes must be among outcomes ({', '.join(self.outcomes)})")
        if self.labels is not None and self.positive_labels is None:
            raise ValueError("positive_labels is required when labels is set")
        if self.positive_labels is not None and not set(self.positive_labels) <= set(self.label_values):
            raise ValueError(f"positive_labels must be among labels ({', '.join(self.label_values)})")
        unknown = sorted(set(self.source.group_headers) - set(self.features))
        if unknown:
            raise ValueError(f"source.group_headers names features that are not in features: {', '.join(unknown)}")
        return self

    @property
    def label_values(self) -> list[str]:
        return self.labels if self.labels is not None else self.outcomes

    @property
    def positive_label_values(self) -> list[str]:
        return self.positive_labels if self.positive_labels is not None else self.positive_outcomes


@dataclass(frozen=True)
class FairnessEvaluation:
    """fairlearn's measures for one feature of one system, over one window."""

    feature: str
    group_sizes: dict[str, int]  # samples with an outcome, every category of the policy
    insufficient_groups: list[str]  # selection and parity: categories below min_group_size, left out
    selection_rates: dict[str, float]
    demographic_parity_difference: float | None
    demographic_parity_ratio: float | None
    labelled_sizes: dict[str, int]  # samples with an outcome and a ground-truth label
    equalized_odds_difference: float | None
    guardrail_group_sizes: dict[str, int]  # samples the guardrails decided on
    block_rates: dict[str, float]
    escalation_rates: dict[str, float]
    block_rate_difference: float | None
    escalation_rate_difference: float | None
    # Equalized odds: too few labelled samples, or not both kinds of ground truth.
    insufficient_labelled_groups: list[str] = field(default_factory=list)
    insufficient_guardrail_groups: list[str] = field(default_factory=list)  # too few guardrail decisions

    @property
    def values(self) -> dict[str, float]:
        """The measures that could be computed, by name."""
        measured = {name: getattr(self, name) for name in MEASURES}
        return {name: value for name, value in measured.items() if value is not None}

    @property
    def sufficient(self) -> bool:
        return self.demographic_parity_difference is not None or self.block_rate_difference is not None

    def evidence(self, metric: str) -> tuple[dict[str, float], dict[str, int], list[str]]:
        """(group rates, group sizes, insufficient groups) behind one measure's value."""
        if metric in ("block_rate_difference", "escalation_rate_difference"):
            rates = self.block_rates if metric == "block_rate_difference" else self.escalation_rates
            return rates, self.guardrail_group_sizes, self.insufficient_guardrail_groups
        if metric == "equalized_odds_difference":
            return self.selection_rates, self.labelled_sizes, self.insufficient_labelled_groups
        return self.selection_rates, self.group_sizes, self.insufficient_groups


def load_fairlearn() -> None:
    """Import fairlearn now (a monitor that watches a system calls it at start-up)."""
    import fairlearn.metrics  # noqa: F401


def _clean(value: Any) -> float | None:
    number = float(value)
    return None if math.isnan(number) or math.isinf(number) else round(number, 6)


def _weighted(samples: Mapping[tuple[str, int, int], int]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Counts of (group, y_true, y_pred) as weighted samples for fairlearn."""
    keys = list(samples)
    groups = np.array([k[0] for k in keys], dtype=object)
    y_true = np.array([k[1] for k in keys], dtype=int)
    y_pred = np.array([k[2] for k in keys], dtype=int)
    weights = np.array([samples[k] for k in keys], dtype=float)
    return groups, y_true, y_pred, weights


def _sizes(samples: Mapping[tuple[str, int, int], int], categories: list[str]) -> dict[str, int]:
    sizes = dict.fromkeys(categories, 0)
    for (group, _, _), count in samples.items():
        sizes[group] = sizes.get(group, 0) + count
    return sizes


Samples = Mapping[tuple[str, int, int], int]  # (group, y_true, y_pred) → count


def _rates(samples: Samples, keep: set[str]) -> tuple[MetricFrame, dict[str, float], tuple[np.ndarray, ...]]:
    """Selection rate of y_pred by group (MetricFrame), and the weighted samples behind it."""
    from fairlearn.metrics import MetricFrame, selection_rate

    chosen = {k: n for k, n in samples.items() if k[0] in keep}
    groups, _, y_pred, weights = _weighted(chosen)
    frame = MetricFrame(
        metrics=selection_rate, y_true=y_pred, y_pred=y_pred, sensitive_features=groups, sample_params={"sample_weight": weights}
    )
    rates = {str(g): r for g, r in ((g, _clean(v)) for g, v in frame.by_group.items()) if r is not None}
    return frame, rates, (groups, y_pred, weights)


def _selection(samples: Samples, keep: set[str]) -> tuple[dict[str, float], float | None, float | None]:
    """Selection rates by group, with demographic parity difference and ratio."""
    from fairlearn.metrics import demographic_parity_difference, demographic_parity_ratio

    _, rates, (groups, y_pred, weights) = _rates(samples, keep)
    difference = demographic_parity_difference(y_pred, y_pred, sensitive_features=groups, sample_weight=weights)
    ratio = demographic_parity_ratio(y_pred, y_pred, sensitive_features=groups, sample_weight=weights)
    return rates, _clean(difference), _clean(ratio)


def _spread(samples: Samples, keep: set[str]) -> tuple[dict[str, float], float | None]:
    """A rate by group and its largest difference between groups (the frame's own, no second pass)."""
    frame, rates, _ = _rates(samples, keep)
    return rates, _clean(frame.difference(method="between_groups"))


def evaluate(feature: str, counts: Mapping[CountKey, int], categories: list[str], min_group_size: int) -> FairnessEvaluation:
    """fairlearn's measures for ``feature`` from the window's counts."""
    decided: dict[tuple[str, int, int], int] = {}  # (group, outcome, outcome): selection
    labelled: dict[tuple[str, int, int], int] = {}  # (group, label, outcome): equalized odds
    blocked: dict[tuple[str, int, int], int] = {}
    escalated: dict[tuple[str, int, int], int] = {}
    for (group, outcome, label, guard), count in counts.items():
        if count <= 0:
            continue
        if outcome != UNKNOWN:
            key = (group, outcome, outcome)
            decided[key] = decided.get(key, 0) + count
            if label != UNKNOWN:
                key = (group, label, outcome)
                labelled[key] = labelled.get(key, 0) + count
        if guard != GUARD_NONE:
            b, e = int(guard == GUARD_BLOCK), int(guard == GUARD_ESCALATE)
            blocked[(group, b, b)] = blocked.get((group, b, b), 0) + count
            escalated[(group, e, e)] = escalated.get((group, e, e), 0) + count

    group_sizes = _sizes(decided, categories)
    insufficient = [g for g in categories if group_sizes.get(g, 0) < min_group_size]
    enough = {g for g, n in group_sizes.items() if n >= min_group_size}
    selection, dp_difference, dp_ratio = _selection(decided, enough) if len(enough) >= 2 else ({}, None, None)

    labelled_sizes = _sizes(labelled, categories)
    # Equalized odds compares true- and false-positive rates: each group needs enough
    # labelled samples, and both kinds of ground truth, or its rates mean nothing.
    both = {g for g in labelled_sizes if {t for (grp, t, _) in labelled if grp == g} == {NO, YES}}
    labelled_enough = {g for g, n in labelled_sizes.items() if n >= min_group_size} & both
    insufficient_labelled = [g for g in categories if g not in labelled_enough]
    eo_difference = None
    if len(labelled_enough) >= 2:
        from fairlearn.metrics import equalized_odds_difference

        chosen = {k: n for k, n in labelled.items() if k[0] in labelled_enough}
        groups, y_true, y_pred, weights = _weighted(chosen)
        eo_difference = _clean(equalized_odds_difference(y_true, y_pred, sensitive_features=groups, sample_weight=weights))

    guard_sizes = _sizes(blocked, categories)
    guard_enough = {g for g, n in guard_sizes.items() if n >= min_group_size}
    insufficient_guardrail = [g for g in categories if guard_sizes.get(g, 0) < min_group_size]
    block_rates: dict[str, float] = {}
    escalation_rates: dict[str, float] = {}
    block_difference = escalation_difference = None
    if len(guard_enough) >= 2:
        block_rates, block_difference = _spread(blocked, guard_enough)
        escalation_rates, escalation_difference = _spread(escalated, guard_enough)

    return FairnessEvaluation(
        feature=feature,
        group_sizes=group_sizes,
        insufficient_groups=insufficient,
        selection_rates=selection,
        demographic_parity_difference=dp_difference,
        demographic_parity_ratio=dp_ratio,
        labelled_sizes=labelled_sizes,
        equalized_odds_difference=eo_difference,
        guardrail_group_sizes=guard_sizes,
        block_rates=block_rates,
        escalation_rates=escalation_rates,
        block_rate_difference=block_difference,
        escalation_rate_difference=escalation_difference,
        insufficient_labelled_groups=insufficient_labelled,
        insufficient_guardrail_groups=insufficient_guardrail,
    )
