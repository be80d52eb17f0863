"""The monthly report's data model (pydantic): what the JSON output is, and what the
HTML, Markdown and PDF renderings are drawn from."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = [
    "BiasFigures",
    "CheckFigures",
    "DayFigures",
    "EffectivenessFigures",
    "HandoffFigures",
    "IncidentFigures",
    "IncidentLine",
    "KeyFigures",
    "MonthlyReport",
    "ObjectiveResult",
    "PolicyChange",
    "PolicyEvidence",
    "ReviewerFigures",
    "SystemFigures",
    "SystemReport",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CheckFigures(_Model):
    """How one check of the policy decided over the month (from the exchange events)."""

    check: str  # the check's id in the policy
    guardrail: str  # its type (pii, grounding, rules, ...), "" when the policy no longer names it
    stage: str
    runs: int
    actions: dict[str, int]  # allow / flag / redact / block / escalate → count
    errors: int  # outcome error
    timeouts: int  # outcome timeout


class HandoffFigures(_Model):
    created: int
    answered: int
    answer_p50_min: float | None
    answer_p95_min: float | None


class IncidentLine(_Model):
    id: str
    title: str
    severity: str
    status: str
    opened_at: str | None
    resolved_at: str | None
    hours_to_resolve: float | None
    cause: str | None = None
    corrective_action: str | None = None


class IncidentFigures(_Model):
    opened: int  # first seen in the month
    resolved: int  # resolved in the month
    open_at_end: int  # opened by the month's end and not resolved by then
    resolve_median_h: float | None  # over incidents resolved in the month
    resolve_max_h: float | None
    incidents: list[IncidentLine]  # opened or resolved in the month, or still open


class BiasFigures(_Model):
    """One protected feature's fairness over the month (``bias.evaluated`` events)."""

    feature: str
    evaluations: int
    breaches: int  # bias.breach events
    last_selection_rates: dict[str, float]
    last_demographic_parity_ratio: float | None
    last_demographic_parity_difference: float | None
    last_equalized_odds_difference: float | None
    min_demographic_parity_ratio: float | None
    max_demographic_parity_difference: float | None
    max_equalized_odds_difference: float | None
    # The guardrails' own bias: spread of block and escalation rates between groups.
    last_block_rate_difference: float | None = None
    last_escalation_rate_difference: float | None = None
    max_block_rate_difference: float | None = None
    max_escalation_rate_difference: float | None = None
    thresholds: dict[str, float]


class KeyFigures(_Model):
    """One virtual API key's use over the month (exchange events carrying its public id)."""

    key_id: str
    requests: int  # every exchange the key authenticated, refused ones included
    refused: int  # of which refused for a limit (429) or because limits could not be checked (503)
    tokens: int  # counted against the key: the upstream's usage, or estimated
    estimated_tokens: int  # of which estimated (streams without usage)


class DayFigures(_Model):
    day: str  # YYYY-MM-DD
    requests: int  # exchanges, rejected ones excluded
    failed: int
    latency_p50_ms: float | None
    latency_p95_ms: float | None


class EffectivenessFigures(_Model):
    """One check's effectiveness from reviewers' labels of sampled decisions (see
    aimsguard.collectors._effectiveness: inverse-probability weights, 95% Wilson intervals
    on Kish's effective sample size)."""

    check: str
    stage: str
    samples: int
    labelled: int
    unsure: int
    disputed: int
    false_positives: int
    false_negatives: int
    estimated_false_positives: float
    estimated_false_negatives: float
    precision: float | None
    precision_low: float | None
    precision_high: float | None
    recall: float | None
    recall_low: float | None
    recall_high: float | None


class ReviewerFigures(_Model):
    """One reviewer's oversight of one system (EU AI Act Art. 14)."""

    reviewer: str
    labels: int
    time_to_first_action_median_s: float | None
    override_rate: float | None
    double_labelled: int
    kappa: float | None
    handoffs_claimed: int
    handoff_claim_median_s: float | None
    handoffs_returned: int


class SystemFigures(_Model):
    """Everything measured for one AI system over one month."""

    system: str
    exchanges: int  # every exchange event
    rejected: int  # invalid requests: not counted against availability
    requests: int  # exchanges - rejected
    failed: int  # status error, upstream_error or stopped (the stop switch answered)
    stopped: int = 0  # of which stopped
    availability: float | None
    statuses: dict[str, int]
    latency_p50_ms: float | None  # over requests that reached the upstream model (upstream_ms present)
    latency_p95_ms: float | None
    blocked: int
    block_rate: float | None
    escalations: int
    escalation_rate: float | None
    checks: list[CheckFigures]
    check_runs: int
    check_failures: int  # errors + timeouts
    check_error_rate: float | None
    grounding_checked: int
    grounding_failed: int
    grounding_failure_rate: float | None
    pii_redactions: dict[str, int]  # entity type → findings redacted (both stages)
    pii_findings: dict[str, dict[str, int]]  # stage → entity type → findings (any action)
    pii_leaks: int  # personal data found in answers and let through (output verdict allow / flag)
    pii_leaks_by_entity: dict[str, int] = {}
    pii_caught_in_output: int = 0  # found in answers and redacted, blocked or escalated
    pii_caught_in_output_by_entity: dict[str, int] = {}
    handoffs: HandoffFigures
    incidents: IncidentFigures
    bias: list[BiasFigures]
    days: list[DayFigures]
    effectiveness: list[EffectivenessFigures] = []  # from the records store's review samples of the month
    reviewers: list[ReviewerFigures] = []
    reviewer_agreement: float | None = None  # Cohen's kappa over the month's double-labelled samples
    keys: list[KeyFigures] = []  # usage per virtual API key, most requests first


class ObjectiveResult(_Model):
    id: str
    description: str
    metric: str
    comparison: str  # at_least | at_most
    target: float
    value: float | None
    previous: float | None  # the same metric over the previous month
    status: str  # met | missed | no_data


class SystemReport(_Model):
    system: str
    name: str
    owner: str
    figures: SystemFigures
    previous: SystemFigures | None
    objectives: list[ObjectiveResult]


class PolicyEvidence(_Model):
    """What was known of a policy version before it came into force: a shadow run or a replay."""

    kind: str  # shadow | replay
    candidate_version: str  # a replay: the candidate policy file's version; a shadow run: the candidate's name
    ran_under: str | None = None  # a shadow run: the policy version in force while it ran
    since: str | None
    until: str | None
    decisions: int  # decisions compared
    changed: int  # decisions that would change
    by_change: dict[str, int]  # "check: before → after" → count
    precision_change: dict[str, float | None] = {}  # check → after - before, where labels exist
    recall_change: dict[str, float | None] = {}


class PolicyChange(_Model):
    version: str
    first_seen: str
    last_seen: str
    events: int
    evidence: list[PolicyEvidence]


class MonthlyReport(_Model):
    report_schema: str = "aimsguard.report/1"
    month: str  # YYYY-MM
    generated_at: str
    policy_version: str  # in force when the report was made
    policy_versions_seen: dict[str, int]  # policy version → events recorded under it in the month
    events: int  # events read for the month
    event_kinds: dict[str, int]
    first_event_at: str | None
    last_event_at: str | None
    event_log: str  # where the events were read from
    systems: list[SystemReport]
    policy_changes: list[PolicyChange] = []  # versions in force in the month, with the evidence behind each
