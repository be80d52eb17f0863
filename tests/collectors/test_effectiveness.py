"""Precision and recall from labelled samples: inverse-probability weights, Wilson/Kish intervals, kappa."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from aimsguard.collectors._effectiveness import cohen_kappa, effectiveness, final_label, oversight, stratum_totals, wilson_interval
from aimsguard.collectors.records import ReviewLabel, ReviewLabelValue

T0 = datetime(2026, 12, 1, tzinfo=timezone.utc)


@dataclass
class Sample:
    action: str
    inclusion_p: float
    labels: tuple[ReviewLabel, ...] = ()
    system: str = "s"
    guardrail: str = "c"
    stage: str = "input"
    created_at: datetime = T0


def labelled(action: str, p: float, *labels: str, reviewers: tuple[str, ...] = ("rita", "ada"), after_s: float = 60) -> Sample:
    return Sample(action, p, tuple(ReviewLabel(r, ReviewLabelValue(l), T0 + timedelta(seconds=after_s)) for r, l in zip(reviewers, labels)))


def test_wilson_interval_matches_the_textbook_values() -> None:
    low, high = wilson_interval(0.5, 100)
    assert (round(low, 4), round(high, 4)) == (0.4038, 0.5962)
    low, high = wilson_interval(1.0, 10)
    assert high == pytest.approx(1.0) and round(low, 4) == 0.7225
    assert wilson_interval(0.3, 0) == (0.0, 1.0)


def test_estimates_weight_each_sample_by_its_inclusion_probability() -> None:
    # 10 blocks sampled at p=1 (8 right), 5 allows sampled at p=0.01 (1 missed something).
    samples = [labelled("block", 1.0, "right")] * 8 + [labelled("block", 1.0, "wrong")] * 2
    samples += [labelled("allow", 0.01, "right")] * 4 + [labelled("allow", 0.01, "wrong")]
    [figures] = effectiveness(samples)
    assert figures.precision == pytest.approx(0.8)
    # TP = 8 (weight 1 each), FN = 1 sample standing for 100 decisions.
    assert figures.recall == pytest.approx(8 / 108)
    assert (figures.false_positives, figures.false_negatives) == (2, 1)
    assert figures.estimated_false_negatives == pytest.approx(100)
    assert figures.estimated_decisions == pytest.approx(510)
    # Kish's effective n: one heavy sample makes the recall interval wide.
    assert figures.recall_n_eff == pytest.approx(108**2 / (8 + 100**2))
    assert figures.recall_high - figures.recall_low > 0.5


def test_unlabelled_samples_leave_their_stratum_s_weight_to_the_labelled_ones() -> None:
    done = [labelled("block", 0.5, "right"), labelled("block", 0.5, "wrong")]
    waiting = [Sample("block", 0.5)] * 6
    [figures] = effectiveness([*done, *waiting, labelled("allow", 0.1, "wrong")])
    assert figures.precision == pytest.approx(0.5)
    assert figures.estimated_false_positives == pytest.approx(8)  # 16 blocks drawn-for; half judged wrong
    assert figures.recall == pytest.approx(8 / (8 + 10))


def test_unsure_and_disputed_labels_are_left_out_and_counted() -> None:
    samples = [labelled("flag", 1.0, "unsure"), labelled("flag", 1.0, "right", "wrong"), labelled("flag", 1.0, "right", "right")]
    assert [final_label(s) for s in samples] == ["unsure", "disputed", "right"]
    [figures] = effectiveness(samples)
    assert (figures.unsure, figures.disputed, figures.labelled, figures.precision) == (1, 1, 1, 1.0)
    assert figures.recall == 1.0 and figures.strata_without_labels == []
    [nothing] = effectiveness([Sample("allow", 0.1)])
    assert nothing.precision is None and nothing.recall is None and nothing.strata_without_labels == ["allow"]


def test_the_intervals_cover_the_truth_at_about_their_stated_rate_under_stratified_sampling() -> None:
    """A population with known truth, sampled per action at very different rates: the 95%
    intervals must hold the true precision and recall in at least ~90% of repeats (they
    would not, were the weights ignored: the allow stratum is sampled at 2%)."""
    rng = random.Random(16)
    population = [("block", rng.random() < 0.85) for _ in range(400)] + [("allow", rng.random() < 0.04) for _ in range(6000)]
    tp = sum(1 for a, wrong_or_pos in population if a == "block" and wrong_or_pos)
    fp = 400 - tp
    fn = sum(1 for a, positive in population if a == "allow" and positive)
    true_precision, true_recall = tp / (tp + fp), tp / (tp + fn)
    rates = {"block": 0.25, "allow": 0.05}
    covered = {"precision": 0, "recall": 0}
    naive_recall_misses = 0
    repeats = 200
    for _ in range(repeats):
        samples = []
        for action, flag in population:
            if rng.random() < rates[action]:
                right = flag if action == "block" else not flag
                samples.append(labelled(action, rates[action], "right" if right else "wrong"))
        [figures] = effectiveness(samples)
        covered["precision"] += figures.precision_low <= true_precision <= figures.precision_high
        covered["recall"] += figures.recall_low <= true_recall <= figures.recall_high
        tp_n = sum(1 for s in samples if s.action == "block" and s.labels[0].label.value == "right")
        fn_n = sum(1 for s in samples if s.action == "allow" and s.labels[0].label.value == "wrong")
        naive_recall_misses += not (abs(tp_n / (tp_n + fn_n) - true_recall) < 0.05)
    assert covered["precision"] / repeats >= 0.9
    assert covered["recall"] / repeats >= 0.9
    assert naive_recall_misses / repeats > 0.5  # unweighted counts would be far off


def test_cohen_kappa_agrees_with_scikit_learn() -> None:
    from sklearn.metrics import cohen_kappa_score

    rng = random.Random(3)
    a = [rng.choice(["right", "wrong", "unsure"]) for _ in range(200)]
    b = [x if rng.random() < 0.7 else rng.choice(["right", "wrong", "unsure"]) for x in a]
    assert cohen_kappa(list(zip(a, b))) == pytest.approx(cohen_kappa_score(a, b))
    assert cohen_kappa([]) is None and cohen_kappa([("right", "right")]) is None


@dataclass
class Handoff:
    system: str
    claimed_by: str | None
    created_at: datetime
    claimed_at: datetime | None
    status: str
    extra: dict[str, Any] = field(default_factory=dict)


def test_oversight_per_reviewer_time_to_first_action_override_rate_and_agreement() -> None:
    samples = [
        labelled("block", 1.0, "right", "right", after_s=30),
        labelled("block", 1.0, "wrong", "right", after_s=90),
        labelled("allow", 0.1, "right", "right", after_s=60),
        labelled("allow", 0.1, "unsure", reviewers=("rita",), after_s=10),
    ]
    handoffs = [
        Handoff("s", "rita", T0, T0 + timedelta(seconds=120), "answered"),
        Handoff("s", "rita", T0, T0 + timedelta(seconds=300), "returned"),
        Handoff("s", None, T0, None, "queued"),
    ]
    people, kappas = oversight(samples, handoffs)
    rita = next(p for p in people if p.reviewer == "rita")
    ada = next(p for p in people if p.reviewer == "ada")
    assert (rita.labels, rita.overrides, rita.unsure) == (4, 1, 1)
    assert rita.override_rate == pytest.approx(1 / 3)
    assert rita.time_to_first_action_median_s == pytest.approx(45)
    assert ada.override_rate == 0.0 and ada.double_labelled == 3
    expected = cohen_kappa([("right", "right"), ("wrong", "right"), ("right", "right")])
    assert rita.kappa == pytest.approx(expected) and kappas["s"] == pytest.approx(expected)
    assert (rita.handoffs_claimed, rita.handoffs_returned, rita.handoff_claim_median_s) == (2, 1, 210)


def test_labelled_samples_with_their_strata_totals_give_the_same_figures_as_every_sample() -> None:
    # What the gauges read (labels and per-stratum sums) must estimate exactly what the report reads (all samples).
    rng = random.Random(7)
    samples: list[Sample] = []
    for check in ("c", "d"):
        for action, p in (("allow", 0.02), ("block", 0.5), ("flag", 0.2)):
            for _ in range(rng.randint(5, 40)):
                choice = rng.random()
                label = () if choice < 0.5 else (ReviewLabel("rita", ReviewLabelValue("right" if choice < 0.85 else "wrong"), T0),)
                samples.append(Sample(action, p, label, guardrail=check))
    samples.append(Sample("escalate", 1.0, guardrail="c"))  # a stratum nobody labelled yet
    labelled_only = [s for s in samples if s.labels]
    assert effectiveness(labelled_only, stratum_totals(samples)) == effectiveness(samples)
    assert effectiveness(labelled_only) != effectiveness(samples)  # without the totals, the waiting samples' weight is lost
