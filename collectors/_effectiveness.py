"""How well the checks work, estimated from reviewers' labels of sampled decisions.

A label says whether the check's decision was right. For a decision that acted (flag,
redact, block, escalate) right is a true positive and wrong a false positive; for an
allow, right is a true negative and wrong a false negative. Decisions were drawn with
different probabilities per action (``_review``), so each labelled sample stands for
``1 / inclusion_p`` decisions (inverse-probability, Horvitz-Thompson weighting). Samples
still waiting for labels are accounted for per stratum (system, check, action): the
labelled ones of a stratum carry its whole weight (labels are taken to be missing at
random within a stratum). ``unsure`` labels and double labels that disagree are left out
(and counted).

Intervals are 95% Wilson score intervals on the weighted proportion, with Kish's
effective sample size ``(Σw)² / Σw²`` in place of n: unequal weights widen the interval
as much as they cost in information, so a recall estimated from a few heavily weighted
missed cases gets the wide interval it deserves.

Agreement between reviewers on double-labelled samples is Cohen's kappa.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "CheckEffectiveness",
    "ReviewerOversight",
    "StratumTotal",
    "cohen_kappa",
    "effectiveness",
    "final_label",
    "oversight",
    "stratum_totals",
    "weighted_share",
    "wilson_interval",
]

Z95 = 1.959963984540054


def wilson_interval(share: float, n: float, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval for a proportion ``share`` out of ``n`` (may be fractional:
    an effective sample size)."""
    if n <= 0:
        return 0.0, 1.0
    denominator = 1 + z * z / n
    centre = (share + z * z / (2 * n)) / denominator
    half = z * math.sqrt(share * (1 - share) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def weighted_share(hits: Sequence[tuple[float, bool]]) -> tuple[float | None, float | None, float | None, float]:
    """(estimate, lower, upper, effective n) of a weighted proportion: ``hits`` are
    (weight, is a hit). None when there is nothing to estimate from."""
    total = sum(w for w, _ in hits)
    if total <= 0:
        return None, None, None, 0.0
    share = sum(w for w, hit in hits if hit) / total
    n_eff = total * total / sum(w * w for w, _ in hits)
    low, high = wilson_interval(share, n_eff)
    return share, low, high, n_eff


def final_label(sample: Any) -> str | None:
    """The label a sample counts with: its only label, or two that agree; None when it has
    none yet or its two reviewers disagree ("disputed")."""
    labels = [l.label.value if hasattr(l.label, "value") else str(l.label) for l in sample.labels]
    if not labels:
        return None
    if len(labels) >= 2 and len(set(labels[:2])) > 1:
        return "disputed"
    return labels[0]


@dataclass
class CheckEffectiveness:
    system: str
    check: str
    stage: str
    samples: int = 0  # drawn
    labelled: int = 0  # with a usable label (right or wrong, agreed)
    unsure: int = 0
    disputed: int = 0
    false_positives: int = 0  # labelled samples: acted, judged wrong
    false_negatives: int = 0  # labelled samples: allowed, judged wrong
    true_positives: int = 0
    true_negatives: int = 0
    estimated_decisions: float = 0.0  # decisions the samples stand for
    estimated_false_positives: float = 0.0
    estimated_false_negatives: float = 0.0
    precision: float | None = None
    precision_low: float | None = None
    precision_high: float | None = None
    precision_n_eff: float = 0.0
    recall: float | None = None
    recall_low: float | None = None
    recall_high: float | None = None
    recall_n_eff: float = 0.0
    strata_without_labels: list[str] = field(default_factory=list)  # actions drawn but not yet labelled

    def as_dict(self) -> dict[str, Any]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class StratumTotal:
    """All samples of one stratum, labelled or not, counted (the records store can sum them
    without reading the samples): what the labelled ones of the stratum stand for."""

    system: str
    guardrail: str
    stage: str
    action: str
    samples: int
    weight: float  # Σ 1 / inclusion_p


def stratum_totals(samples: Iterable[Any]) -> list[StratumTotal]:
    """The totals of ``samples``' strata, as the store's aggregate query gives them."""
    grouped: dict[tuple[str, str, str], list[Any]] = defaultdict(list)
    for sample in samples:
        grouped[(sample.system, sample.guardrail, sample.action)].append(sample)
    return [
        StratumTotal(system, check, members[0].stage, action, len(members), sum(1.0 / s.inclusion_p for s in members))
        for (system, check, action), members in grouped.items()
    ]


def effectiveness(samples: Iterable[Any], totals: Iterable[StratumTotal] | None = None) -> list[CheckEffectiveness]:
    """Per (system, check): precision and recall with intervals, from review samples
    (objects with system, guardrail, stage, action, inclusion_p, labels).

    With ``totals`` (every stratum's count and weight, e.g. ``RecordsStore.review_totals``),
    ``samples`` need only be the labelled ones: the figures are the same, and a refresh reads
    the labels people gave rather than every sample drawn."""
    samples = list(samples)
    strata: dict[tuple[str, str, str], list[Any]] = defaultdict(list)
    for sample in samples:
        strata[(sample.system, sample.guardrail, sample.action)].append(sample)
    by_stratum = {(s.system, s.guardrail, s.action): s for s in (stratum_totals(samples) if totals is None else totals)}
    checks: dict[tuple[str, str], CheckEffectiveness] = {}
    points: dict[tuple[str, str], list[tuple[float, str, str]]] = defaultdict(list)  # (weight, action, label)
    for (system, check, action), total in sorted(by_stratum.items()):
        members = strata.get((system, check, action), [])
        figures = checks.get((system, check))
        if figures is None:
            figures = checks[(system, check)] = CheckEffectiveness(system, check, total.stage)
        weight_all = total.weight
        figures.samples += total.samples
        figures.estimated_decisions += weight_all
        usable = []
        for sample in members:
            label = final_label(sample)
            if label == "unsure":
                figures.unsure += 1
            elif label == "disputed":
                figures.disputed += 1
            elif label in ("right", "wrong"):
                usable.append((sample, label))
        if not usable:
            figures.strata_without_labels.append(action)
            continue
        # The labelled samples of a stratum carry the weight of all its samples.
        scale = weight_all / sum(1.0 / s.inclusion_p for s, _ in usable)
        for sample, label in usable:
            points[(system, check)].append((scale / sample.inclusion_p, action, label))
    for key, figures in checks.items():
        rows = points.get(key, [])
        acted = [(w, label == "right") for w, action, label in rows if action != "allow"]
        positives = [(w, action != "allow") for w, action, label in rows if (action != "allow") == (label == "right")]
        figures.labelled = len(rows)
        figures.true_positives = sum(1 for _, a, l in rows if a != "allow" and l == "right")
        figures.false_positives = sum(1 for _, a, l in rows if a != "allow" and l == "wrong")
        figures.true_negatives = sum(1 for _, a, l in rows if a == "allow" and l == "right")
        figures.false_negatives = sum(1 for _, a, l in rows if a == "allow" and l == "wrong")
        figures.estimated_false_positives = sum(w for w, a, l in rows if a != "allow" and l == "wrong")
        figures.estimated_false_negatives = sum(w for w, a, l in rows if a == "allow" and l == "wrong")
        figures.precision, figures.precision_low, figures.precision_high, figures.precision_n_eff = weighted_share(acted)
        figures.recall, figures.recall_low, figures.recall_high, figures.recall_n_eff = weighted_share(positives)
    return [checks[key] for key in sorted(checks)]


def cohen_kappa(pairs: Sequence[tuple[str, str]]) -> float | None:
    """Cohen's kappa of two raters over ``pairs`` of labels; None when it is undefined
    (no pairs, or chance agreement is certain)."""
    if not pairs:
        return None
    n = len(pairs)
    observed = sum(1 for a, b in pairs if a == b) / n
    first, second = Counter(a for a, _ in pairs), Counter(b for _, b in pairs)
    expected = sum(first[c] * second[c] for c in set(first) | set(second)) / (n * n)
    if expected >= 1.0:
        return None
    return (observed - expected) / (1 - expected)


@dataclass
class ReviewerOversight:
    """One reviewer's work on one system (EU AI Act Art. 14: is oversight effective?)."""

    reviewer: str
    system: str
    labels: int = 0
    time_to_first_action_median_s: float | None = None  # sample queued → this reviewer's label
    time_to_first_action_p95_s: float | None = None
    overrides: int = 0  # labelled the check's decision wrong
    override_rate: float | None = None  # of right + wrong labels
    unsure: int = 0
    double_labelled: int = 0  # samples this reviewer shares with another
    kappa: float | None = None  # agreement with the other reviewers on those
    handoffs_claimed: int = 0
    handoff_claim_median_s: float | None = None  # ticket created → claimed
    handoffs_returned: int = 0  # sent back to the assistant: the escalation was not needed

    def as_dict(self) -> dict[str, Any]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def _quantile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def oversight(samples: Iterable[Any], handoffs: Iterable[Any] = ()) -> tuple[list[ReviewerOversight], dict[str, float | None]]:
    """Per reviewer and system: labels, time to first action, override rate, agreement
    (kappa) with others on shared samples; plus each system's overall kappa."""
    people: dict[tuple[str, str], ReviewerOversight] = {}
    waits: dict[tuple[str, str], list[float]] = defaultdict(list)
    shared: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
    system_pairs: dict[str, list[tuple[str, str]]] = defaultdict(list)

    def person(reviewer: str, system: str) -> ReviewerOversight:
        return people.setdefault((reviewer, system), ReviewerOversight(reviewer, system))

    for sample in samples:
        labels = list(sample.labels)
        for label in labels:
            value = label.label.value if hasattr(label.label, "value") else str(label.label)
            figures = person(label.reviewer, sample.system)
            figures.labels += 1
            waits[(label.reviewer, sample.system)].append(max(0.0, (label.labelled_at - sample.created_at).total_seconds()))
            if value == "wrong":
                figures.overrides += 1
            elif value == "unsure":
                figures.unsure += 1
        if len(labels) >= 2:
            a, b = labels[0], labels[1]
            va = a.label.value if hasattr(a.label, "value") else str(a.label)
            vb = b.label.value if hasattr(b.label, "value") else str(b.label)
            system_pairs[sample.system].append((va, vb))
            shared[(a.reviewer, sample.system)].append((va, vb))
            shared[(b.reviewer, sample.system)].append((vb, va))
    claims: dict[tuple[str, str], list[float]] = defaultdict(list)
    for handoff in handoffs:
        if not handoff.claimed_by or handoff.claimed_at is None:
            continue
        figures = person(handoff.claimed_by, handoff.system)
        figures.handoffs_claimed += 1
        claims[(handoff.claimed_by, handoff.system)].append(max(0.0, (handoff.claimed_at - handoff.created_at).total_seconds()))
        status = handoff.status.value if hasattr(handoff.status, "value") else str(handoff.status)
        figures.handoffs_returned += status == "returned"
    for key, figures in people.items():
        figures.time_to_first_action_median_s = statistics.median(waits[key]) if waits[key] else None
        figures.time_to_first_action_p95_s = _quantile(waits[key], 0.95)
        judged = figures.labels - figures.unsure
        figures.override_rate = figures.overrides / judged if judged else None
        figures.double_labelled = len(shared[key])
        figures.kappa = cohen_kappa(shared[key])
        figures.handoff_claim_median_s = statistics.median(claims[key]) if claims[key] else None
    kappas = {system: cohen_kappa(pairs) for system, pairs in sorted(system_pairs.items())}
    return [people[key] for key in sorted(people, key=lambda k: (k[1], k[0]))], kappas
