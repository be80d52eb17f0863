"""The objectives schema: measurable targets (ISO 42001 clause 6.2) a policy sets per system.

It lives down here, not in the agent's policy module, because the monthly report that
scores objectives is a collector, and collectors never import the agent (the agent's
``_policy`` re-exports these types for the policy file).
"""

from __future__ import annotations

import enum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["Comparison", "ObjectiveConfig", "ObjectiveMetric"]

_ID = r"^[a-z0-9][a-z0-9_\-]{0,62}$"  # the policy's id pattern


class ObjectiveMetric(str, enum.Enum):
    """What an objective measures over a month, as the monthly report computes it
    (see collectors/report/_objectives.py; rates are fractions from 0 to 1)."""

    AVAILABILITY = "availability"  # share of exchanges (not rejected) that did not fail
    LATENCY_P50_MS = "latency_p50_ms"
    LATENCY_P95_MS = "latency_p95_ms"
    CHECK_ERROR_RATE = "check_error_rate"  # share of check runs that errored or timed out
    GROUNDING_FAILURE_RATE = "grounding_failure_rate"  # share of grounding verdicts that were not allow
    PII_LEAK_COUNT = "pii_leak_count"  # personal data found in answers (output stage)
    BLOCK_RATE = "block_rate"
    ESCALATION_RATE = "escalation_rate"
    TIME_TO_HUMAN_ANSWER_P95_MIN = "time_to_human_answer_p95_min"
    INCIDENTS_OPENED = "incidents_opened"
    TIME_TO_RESOLVE_MAX_H = "time_to_resolve_max_h"  # incidents resolved in the month
    DEMOGRAPHIC_PARITY_RATIO_MIN = "demographic_parity_ratio_min"  # worst over the month's evaluations
    EQUALIZED_ODDS_DIFFERENCE_MAX = "equalized_odds_difference_max"
    # From reviewers' labels of sampled decisions: the lowest estimate over the system's checks.
    GUARDRAIL_PRECISION_MIN = "guardrail_precision_min"
    GUARDRAIL_RECALL_MIN = "guardrail_recall_min"

    @property
    def is_rate(self) -> bool:
        return self.value.endswith("_rate") or self.value in (
            "availability", "demographic_parity_ratio_min", "guardrail_precision_min", "guardrail_recall_min"
        )


class Comparison(str, enum.Enum):
    AT_LEAST = "at_least"
    AT_MOST = "at_most"


class ObjectiveConfig(BaseModel):
    """A measurable target (ISO 42001 clause 6.2) the monthly report scores as met or missed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Annotated[str, Field(pattern=_ID)]
    description: str = ""
    metric: ObjectiveMetric
    target: float
    comparison: Comparison

    @model_validator(mode="after")
    def _target_in_range(self) -> ObjectiveConfig:
        if self.metric.is_rate and not 0.0 <= self.target <= 1.0:
            raise ValueError(f"objective {self.id!r}: {self.metric.value} is a fraction, so target must be between 0 and 1 (got {self.target})")
        if self.target < 0:
            raise ValueError(f"objective {self.id!r}: target must not be negative (got {self.target})")
        return self
