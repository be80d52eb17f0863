"""The bias monitor on synthetic streams with a known, injected disparity.

Every expected value is counted from the stream itself with plain arithmetic, never
taken from fairlearn, so the test checks the monitor's fairlearn use end to end.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest
from pydantic import ValidationError

from aimsguard.collectors import BiasMonitor, FairnessConfig

GROUPS = ["female", "male", "other"]
APPROVAL = {"female": 0.3, "male": 0.6, "other": 0.5}  # the injected disparity
BLOCKING = {"female": 0.2, "male": 0.05, "other": 0.0}  # a guardrail that blocks one group more


def _config(**overrides: Any) -> FairnessConfig:
    values: dict[str, Any] = {
        "features": {"gender": GROUPS},
        "outcomes": ["approved", "declined"],
        "positive_outcomes": ["approved"],
        "min_group_size": 20,
        "evaluate_every": 1_000_000,  # evaluated by hand unless a test says otherwise
        "evaluate_interval_s": 10_000,
    }
    values.update(overrides)
    return FairnessConfig(**values)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _monitor(config: FairnessConfig | None = None, clock: Clock | None = None) -> tuple[BiasMonitor, list[tuple[str, dict[str, Any]]]]:
    sent: list[tuple[str, dict[str, Any]]] = []
    monitor = BiasMonitor({"loan": config or _config()}, emit=lambda kind, **fields: sent.append((kind, fields)), clock=clock or Clock())
    return monitor, sent


def _stream(count: int, seed: int = 7, small: str = "other", every: int = 50) -> list[dict[str, Any]]:
    """Exchanges: mostly female/male, one in ``every`` from the small group."""
    rng = random.Random(seed)
    events = []
    for i in range(count):
        group = small if i % every == 0 else rng.choice(["female", "male"])
        blocked = rng.random() < BLOCKING[group]
        events.append({
            "event": "exchange",
            "system": "loan",
            "request_id": f"req-{seed}-{i}",
            "status": "blocked" if blocked else "ok",
            "groups": {"gender": group},
            "outcome": "approved" if rng.random() < APPROVAL[group] else "declined",
        })
    return events


def _selection(events: list[dict[str, Any]]) -> dict[str, float]:
    totals, approved = Counter(), Counter()
    for e in events:
        totals[e["groups"]["gender"]] += 1
        approved[e["groups"]["gender"]] += e["outcome"] == "approved"
    return {g: approved[g] / totals[g] for g in totals}


def _sample(monitor: BiasMonitor, name: str, **labels: str) -> float | None:
    return monitor.registry.get_sample_value(name, {"system": "loan", **labels})


def test_selection_rates_and_demographic_parity_match_hand_counts() -> None:
    monitor, sent = _monitor()
    events = _stream(600)
    monitor.export(events)
    [result] = monitor.evaluate("loan")

    rates = _selection(events)
    assert result.selection_rates == pytest.approx({"female": rates["female"], "male": rates["male"]}, abs=1e-6)
    assert result.demographic_parity_difference == pytest.approx(abs(rates["male"] - rates["female"]), abs=1e-6)
    low, high = sorted([rates["female"], rates["male"]])
    assert result.demographic_parity_ratio == pytest.approx(low / high, abs=1e-6)
    assert result.demographic_parity_ratio < 0.8  # the injected disparity is visible
    assert _sample(monitor, "aimsguard_fairness_metric", feature="gender", metric="demographic_parity_ratio") == pytest.approx(low / high, abs=1e-6)
    assert _sample(monitor, "aimsguard_fairness_group_rate", feature="gender", group="female", metric="selection_rate") == pytest.approx(
        rates["female"], abs=1e-6
    )

    [evaluated] = [f for kind, f in sent if kind == "bias.evaluated"]
    assert evaluated["system"] == "loan" and evaluated["feature"] == "gender" and evaluated["status"] == "ok"
    assert evaluated["window_events"] == 600
    assert evaluated["group_sizes"] == dict(Counter(e["groups"]["gender"] for e in events))
    assert evaluated["equalized_odds_difference"] is None  # no ground truth yet


def test_small_groups_are_insufficient_data_not_bias() -> None:
    monitor, sent = _monitor()
    events = _stream(600)  # "other": 12 exchanges, under min_group_size 20
    assert sum(e["groups"]["gender"] == "other" for e in events) < 20
    monitor.export(events)
    [result] = monitor.evaluate("loan")
    assert result.insufficient_groups == ["other"]
    assert "other" not in result.selection_rates and "other" not in result.block_rates
    assert _sample(monitor, "aimsguard_fairness_group_rate", feature="gender", group="other", metric="selection_rate") is None
    assert _sample(monitor, "aimsguard_fairness_insufficient_groups", feature="gender", family="selection") == 1

    # With only one group large enough there is nothing to compare: no measure, no breach.
    lonely, lonely_sent = _monitor(_config(min_group_size=500))
    lonely.export(events)
    [result] = lonely.evaluate("loan")
    assert result.demographic_parity_ratio is None and result.values == {}
    [evaluated] = [f for kind, f in lonely_sent if kind == "bias.evaluated"]
    assert evaluated["status"] == "insufficient_data"
    assert not [kind for kind, _ in lonely_sent if kind == "bias.breach"]
    assert _sample(lonely, "aimsguard_fairness_metric", feature="gender", metric="demographic_parity_ratio") is None


def test_a_breach_writes_one_bias_breach_event_until_a_new_window_confirms_it() -> None:
    monitor, sent = _monitor(_config(window_events=1000))
    events = _stream(600)
    monitor.export(events)
    monitor.evaluate("loan")
    monitor.evaluate("loan")  # the same evidence again: no second event
    breaches = [f for kind, f in sent if kind == "bias.breach"]
    assert len(breaches) == 1
    breach = breaches[0]
    rates = _selection(events)
    assert breach["system"] == "loan" and breach["feature"] == "gender" and breach["metric"] == "demographic_parity_ratio"
    assert breach["threshold"] == 0.8 and breach["bound"] == "min"
    assert breach["value"] == pytest.approx(min(rates["female"], rates["male"]) / max(rates["female"], rates["male"]), abs=1e-6)
    assert breach["window_events"] == 600 and set(breach["group_rates"]) == {"female", "male"}
    assert _sample(monitor, "aimsguard_fairness_breached", feature="gender", metric="demographic_parity_ratio") == 1
    assert _sample(monitor, "aimsguard_fairness_breaches_total", feature="gender", metric="demographic_parity_ratio") == 1

    monitor.export(_stream(1000, seed=8))  # a whole new window, still biased
    monitor.evaluate("loan")
    assert [f["repeated"] for kind, f in sent if kind == "bias.breach"] == [False, True]

    seen: Counter = Counter()  # every group approved exactly every other time
    fair = []
    for e in _stream(1000, seed=9):
        seen[e["groups"]["gender"]] += 1
        fair.append({**e, "outcome": "approved" if seen[e["groups"]["gender"]] % 2 else "declined"})
    monitor.export(fair)
    monitor.evaluate("loan")
    assert [f["metric"] for kind, f in sent if kind == "bias.recovered"] == ["demographic_parity_ratio"]
    assert _sample(monitor, "aimsguard_fairness_breached", feature="gender", metric="demographic_parity_ratio") == 0


def test_equalized_odds_appears_once_labels_arrive() -> None:
    monitor, sent = _monitor()
    events = _stream(600)
    monitor.export(events)
    [before] = monitor.evaluate("loan")
    assert before.equalized_odds_difference is None
    assert _sample(monitor, "aimsguard_fairness_metric", feature="gender", metric="equalized_odds_difference") is None

    rng = random.Random(3)
    truth = {e["request_id"]: rng.choice(["approved", "declined"]) for e in events[:400]}
    monitor.export([{"event": "feedback", "system": "loan", "request_id": rid, "label": label} for rid, label in truth.items()])
    [after] = monitor.evaluate("loan")

    # True- and false-positive rates by group, counted by hand over the labelled exchanges.
    cells: dict[str, Counter] = {g: Counter() for g in ("female", "male")}
    for e in events[:400]:
        group = e["groups"]["gender"]
        if group in cells:
            cells[group][(truth[e["request_id"]] == "approved", e["outcome"] == "approved")] += 1

    def rate(c: Counter, actual: bool) -> float:
        return c[(actual, True)] / (c[(actual, True)] + c[(actual, False)])

    tpr_gap = abs(rate(cells["female"], True) - rate(cells["male"], True))
    fpr_gap = abs(rate(cells["female"], False) - rate(cells["male"], False))
    assert after.equalized_odds_difference == pytest.approx(max(tpr_gap, fpr_gap), abs=1e-6)
    assert after.labelled_sizes["female"] + after.labelled_sizes["male"] == sum(cells["female"].values()) + sum(cells["male"].values())
    assert _sample(monitor, "aimsguard_fairness_metric", feature="gender", metric="equalized_odds_difference") == pytest.approx(
        max(tpr_gap, fpr_gap), abs=1e-6
    )
    assert _sample(monitor, "aimsguard_feedback_total", result="matched") == 400


def test_guardrail_block_rate_by_group() -> None:
    monitor, _ = _monitor(_config(thresholds={"demographic_parity_ratio_min": None, "guardrail_rate_difference_max": 0.05}))
    events = _stream(800)
    monitor.export(events)
    [result] = monitor.evaluate("loan")
    totals = Counter(e["groups"]["gender"] for e in events)
    blocked = Counter(e["groups"]["gender"] for e in events if e["status"] == "blocked")
    expected = {g: blocked[g] / totals[g] for g in ("female", "male")}
    assert result.block_rates == pytest.approx(expected, abs=1e-6)
    assert result.block_rate_difference == pytest.approx(abs(expected["female"] - expected["male"]), abs=1e-6)
    assert result.escalation_rates == {"female": 0.0, "male": 0.0}
    assert _sample(monitor, "aimsguard_fairness_group_rate", feature="gender", group="female", metric="block_rate") == pytest.approx(
        expected["female"], abs=1e-6
    )
    assert _sample(monitor, "aimsguard_fairness_breached", feature="gender", metric="block_rate_difference") == 1


def test_window_slides_by_count_and_by_time() -> None:
    clock = Clock()
    monitor, _ = _monitor(_config(window_events=300, window_s=3600), clock)
    old = _stream(300, seed=1)
    monitor.export(old)
    recent = _stream(200, seed=2)
    monitor.export(recent)
    [result] = monitor.evaluate("loan")
    kept = old[200:] + recent  # the last 300 only
    assert result.group_sizes == {g: sum(e["groups"]["gender"] == g for e in kept) for g in GROUPS}

    clock.now += 1800
    newest = _stream(100, seed=3)
    monitor.export(newest)
    clock.now += 2000  # everything before `newest` is now older than an hour
    [result] = monitor.evaluate("loan")
    assert sum(result.group_sizes.values()) == 100
    # Feedback for an exchange that left the window is counted, not applied.
    monitor.export([{"event": "feedback", "system": "loan", "request_id": old[-1]["request_id"], "label": "approved"}])
    assert _sample(monitor, "aimsguard_feedback_total", result="unmatched") == 1


def test_evaluates_every_n_exchanges_not_every_event() -> None:
    monitor, sent = _monitor(_config(evaluate_every=250))
    events = _stream(1000)
    for start in range(0, 1000, 100):
        monitor.export(events[start : start + 100])
    assert len([k for k, _ in sent if k == "bias.evaluated"]) == 4
    assert _sample(monitor, "aimsguard_fairness_evaluations_total", result="ok") == 4


def test_inputs_outside_the_policy_are_counted_and_never_labels() -> None:
    monitor, _ = _monitor()
    monitor.export([
        {"event": "exchange", "system": "loan", "request_id": "a", "status": "ok", "groups": {"gender": "Jane Doe"}, "outcome": "approved"},
        {"event": "exchange", "system": "loan", "request_id": "b", "status": "ok", "groups": {"gender": "male"}, "outcome": "maybe"},
        {"event": "feedback", "system": "loan", "request_id": "b", "label": "perhaps"},
        {"event": "exchange", "system": "other-system", "request_id": "c", "groups": {"gender": "male"}},
    ])
    monitor.evaluate("loan")
    assert _sample(monitor, "aimsguard_fairness_ignored_total", reason="unknown_category") == 1
    assert _sample(monitor, "aimsguard_fairness_ignored_total", reason="unknown_outcome") == 1
    assert _sample(monitor, "aimsguard_fairness_ignored_total", reason="unknown_label") == 1
    from prometheus_client import generate_latest

    exposition = generate_latest(monitor.registry).decode()
    assert "Jane Doe" not in exposition and "maybe" not in exposition and "other-system" not in exposition


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"positive_outcomes": ["granted"]}, "positive_outcomes must be among outcomes"),
        ({"features": {"gender": ["female"]}}, "at least two categories"),
        ({"features": {"gender": ["a b", "c"]}}, "pattern"),
        ({"labels": ["repaid", "defaulted"]}, "positive_labels is required"),
        ({"source": {"group_headers": {"age": "x-age"}}}, "not in features"),
        ({"thresholds": {"demographic_parity_ratio_min": 1.5}}, "less than or equal to 1"),
    ],
)
def test_config_errors_are_explained(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        _config(**change)


def test_each_family_of_measures_reports_its_own_insufficient_groups() -> None:
    """Guardrail rates count guardrail decisions and equalized odds labelled outcomes, not outcomes."""
    config = _config(thresholds={"demographic_parity_ratio_min": None, "guardrail_rate_difference_max": 0.05})
    monitor, sent = _monitor(config)
    events = _stream(800)
    for e in events:
        if e["groups"]["gender"] == "other":
            del e["outcome"]  # "other": guardrail decisions (16) but no outcomes at all
    # More "other" exchanges, decided by the guardrails: 16 + 10 >= min_group_size 20.
    events += [{"event": "exchange", "system": "loan", "request_id": f"extra-{i}", "status": "ok", "groups": {"gender": "other"}} for i in range(10)]
    # Ground truth for female and male only, and only positive labels for male.
    labels = {e["request_id"]: "approved" if e["groups"]["gender"] == "male" or i % 2 else "declined" for i, e in enumerate(events[:600]) if "outcome" in e}
    monitor.export(events)
    monitor.export([{"event": "feedback", "system": "loan", "request_id": rid, "label": label} for rid, label in labels.items()])
    [result] = monitor.evaluate("loan")
    guarded = Counter(e["groups"]["gender"] for e in events)
    assert result.guardrail_group_sizes == dict(guarded) and guarded["other"] >= 20
    assert result.insufficient_groups == ["other"]  # no outcomes
    assert result.insufficient_guardrail_groups == []  # enough guardrail decisions
    assert set(result.block_rates) == {"female", "male", "other"}
    assert result.insufficient_labelled_groups == ["male", "other"]  # male: one kind of truth; other: none
    [breach] = [f for kind, f in sent if kind == "bias.breach"]
    assert breach["metric"] == "block_rate_difference" and breach["insufficient_groups"] == []
    assert breach["group_sizes"] == dict(guarded)
    [evaluated] = [f for kind, f in sent if kind == "bias.evaluated"]
    assert (evaluated["insufficient_groups"], evaluated["insufficient_guardrail_groups"]) == (["other"], [])
    assert _sample(monitor, "aimsguard_fairness_insufficient_groups", feature="gender", family="guardrail") == 0
    assert _sample(monitor, "aimsguard_fairness_insufficient_groups", feature="gender", family="equalized_odds") == 2
