"""The bias monitor: fairness of each decision system over a sliding window of exchanges.

An exporter on the bus's worker thread, like the metrics: it reads ``exchange`` events
that carry ``groups`` (and usually a decision ``outcome``) and ``feedback`` events that
bring the ground truth later, keyed by request id. Per system it keeps a window of the
last ``window_events`` exchanges (and no older than ``window_s``), summarised as counts per
(feature, group, outcome, label, guardrail action) that each event moves in O(1).

Every ``evaluate_every`` exchanges, or every ``evaluate_interval_s`` while traffic flows,
each feature is evaluated with fairlearn (see ``_fairness.evaluate``); an evaluation costs
the same whatever the window's size, so the cost per event stays flat as traffic grows.
Results are exported as gauges (labels: system, feature, metric, and group only as one of
the policy's categories) and written as ``bias.evaluated`` events; a measure past its
threshold writes ``bias.breach`` (which the incident rules turn into an incident) once
when it starts and again each time a whole new window confirms it, and ``bias.recovered``
when it ends.

Each worker process watches the traffic it serves: with several gateway workers, each
evaluates its own share (the gauges carry a ``pid`` in Prometheus multiprocess mode).
"""

from __future__ import annotations

import collections
import datetime as dt
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge

from ._exporter import Event, ExportResult
from ._fairness import (
    GUARD_ALLOW,
    GUARD_BLOCK,
    GUARD_ESCALATE,
    GUARD_NONE,
    MEASURES,
    NO,
    UNKNOWN,
    YES,
    CountKey,
    FairnessConfig,
    FairnessEvaluation,
    evaluate,
    load_fairlearn,
)
from ._metrics import system_label

__all__ = ["BiasMonitor", "EmitHook"]

log = structlog.get_logger("aimsguard.collectors")

EmitHook = Callable[..., None]
"""``emit(kind, **fields)``: puts an event on the bus (only appends; safe on the worker)."""

# Only what the guardrails decided on counts for their rates; errors and rejections do not.
_GUARD_STATES = {"ok": GUARD_ALLOW, "blocked": GUARD_BLOCK, "escalated": GUARD_ESCALATE}


class _Record:
    """One exchange in a window; its label may arrive later."""

    __slots__ = ("at", "groups", "label", "outcome", "guard", "request_id")

    def __init__(self, at: float, request_id: str, groups: list[tuple[str, str]], outcome: int, guard: int) -> None:
        self.at = at
        self.request_id = request_id
        self.groups = groups  # (feature, category)
        self.outcome = outcome
        self.label = UNKNOWN
        self.guard = guard


class _Breach:
    __slots__ = ("at", "seen")

    def __init__(self, at: float, seen: int) -> None:
        self.at = at
        self.seen = seen


class _Window:
    """One system's sliding window, as counts per feature kept up to date as records come and go."""

    def __init__(self, config: FairnessConfig) -> None:
        self.config = config
        self.records: collections.deque[_Record] = collections.deque()
        self.by_request: dict[str, _Record] = {}
        self.counts: dict[str, collections.Counter[CountKey]] = {f: collections.Counter() for f in config.features}
        self.categories = {feature: set(values) for feature, values in config.features.items()}
        self.outcomes = {value: YES if value in config.positive_outcomes else NO for value in config.outcomes}
        self.labels = {value: YES if value in config.positive_label_values else NO for value in config.label_values}
        self.seen = 0  # records ever added
        self.since_evaluation = 0
        self.evaluated_at = 0.0
        self.breaches: dict[tuple[str, str], _Breach] = {}

    def _move(self, record: _Record, delta: int) -> None:
        for feature, group in record.groups:
            key = (group, record.outcome, record.label, record.guard)
            counts = self.counts[feature]
            counts[key] += delta
            if counts[key] <= 0:
                del counts[key]

    def add(self, record: _Record) -> None:
        self.records.append(record)
        previous = self.by_request.get(record.request_id)
        if previous is not None:
            previous.request_id = ""  # a repeated request id: feedback goes to the latest
        self.by_request[record.request_id] = record
        self._move(record, +1)
        self.seen += 1
        self.since_evaluation += 1

    def label(self, request_id: str, label: int) -> bool:
        record = self.by_request.get(request_id)
        if record is None:
            return False
        if record.label != label:
            self._move(record, -1)
            record.label = label
            self._move(record, +1)
        return True

    def evict(self, now: float) -> None:
        oldest = now - self.config.window_s if self.config.window_s is not None else None
        records = self.records
        while records and (len(records) > self.config.window_events or (oldest is not None and records[0].at < oldest)):
            record = records.popleft()
            self._move(record, -1)
            if record.request_id and self.by_request.get(record.request_id) is record:
                del self.by_request[record.request_id]

    def size(self, feature: str) -> int:
        return sum(self.counts[feature].values())


class BiasMonitor:
    """Watches each system with a ``fairness`` section; see the module docstring."""

    name = "bias"

    def __init__(
        self,
        systems: Mapping[str, FairnessConfig],
        *,
        registry: CollectorRegistry | None = None,
        emit: EmitHook | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._windows = {system: _Window(config) for system, config in systems.items()}
        if self._windows:
            load_fairlearn()  # at start-up, so the first evaluation does not pay for the import
        self._emit = emit
        self._clock = clock
        self._lock = threading.Lock()  # the worker's batches and an evaluation asked for from another thread
        for window in self._windows.values():
            window.evaluated_at = clock()  # the first timed evaluation comes an interval after start
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        self.metric = Gauge(
            "aimsguard_fairness_metric",
            "Fairness measures over the sliding window (demographic parity difference and ratio, equalized-odds "
            "difference, guardrail block and escalation rate differences); absent while data is insufficient.",
            ["system", "feature", "metric"], registry=r, multiprocess_mode="liveall",
        )
        self.group_rate = Gauge(
            "aimsguard_fairness_group_rate",
            "Rates by group over the sliding window: selection_rate (positive outcomes), block_rate, escalation_rate.",
            ["system", "feature", "group", "metric"], registry=r, multiprocess_mode="liveall",
        )
        self.window_size = Gauge(
            "aimsguard_fairness_window_events", "Exchanges in the sliding window that carry this feature.",
            ["system", "feature"], registry=r, multiprocess_mode="liveall",
        )
        self.insufficient = Gauge(
            "aimsguard_fairness_insufficient_groups",
            "Categories with too few samples (below min_group_size) in the window for a family of measures"
            " (selection, equalized_odds, guardrail): reported as insufficient data, left out.",
            ["system", "feature", "family"], registry=r, multiprocess_mode="liveall",
        )
        self.breached = Gauge(
            "aimsguard_fairness_breached", "1 while a fairness measure is past the policy's threshold.",
            ["system", "feature", "metric"], registry=r, multiprocess_mode="liveall",
        )
        self.breaches = Counter(
            "aimsguard_fairness_breaches_total", "bias.breach events written.", ["system", "feature", "metric"], registry=r
        )
        self.evaluations = Counter(
            "aimsguard_fairness_evaluations_total", "Fairness evaluations, by result (ok, failed).",
            ["system", "result"], registry=r,
        )
        self.ignored = Counter(
            "aimsguard_fairness_ignored_total",
            "Inputs the bias monitor could not use: unknown_category, unknown_outcome, unknown_label, unmatched_feedback "
            "(its exchange is not in the window).",
            ["system", "reason"], registry=r,
        )
        self.feedback = Counter(
            "aimsguard_feedback_total", "Ground-truth feedback received, by result (matched, unmatched, rejected).",
            ["system", "result"], registry=r,
        )

    # -- the exporter interface -----------------------------------------------------

    def export(self, batch: Sequence[Event]) -> ExportResult:
        with self._lock:
            self._export(batch)
        return ExportResult.SUCCESS

    def _export(self, batch: Sequence[Event]) -> None:
        now = self._clock()
        for event in batch:
            kind = event.get("event")
            if kind == "exchange":
                self._exchange(event, now)
            elif kind == "feedback":
                self._feedback(event)
            elif kind == "feedback.rejected":
                self.feedback.labels(self._system_label(event), "rejected").inc()
        for system, window in self._windows.items():
            if window.since_evaluation and now - window.evaluated_at >= window.config.evaluate_interval_s:
                self._evaluate(system, now)

    def force_flush(self, timeout: float = 10.0) -> bool:
        return True

    def shutdown(self) -> None:
        pass

    # -- events in ----------------------------------------------------------------------

    def _system_label(self, event: Event) -> str:
        return system_label(event, self._windows)

    def _exchange(self, event: Event, now: float) -> None:
        system = event.get("system")
        window = self._windows.get(system) if isinstance(system, str) else None
        groups = event.get("groups")
        if window is None or not isinstance(groups, Mapping) or not groups:
            return
        pairs = []
        for feature, group in groups.items():
            if group in window.categories.get(feature, ()):
                pairs.append((feature, group))
            else:
                self.ignored.labels(system, "unknown_category").inc()
        outcome = event.get("outcome")
        state = window.outcomes.get(outcome, UNKNOWN) if isinstance(outcome, str) else UNKNOWN
        if outcome is not None and state == UNKNOWN:
            self.ignored.labels(system, "unknown_outcome").inc()
        if not pairs:
            return
        guard = _GUARD_STATES.get(str(event.get("status")), GUARD_NONE)
        window.add(_Record(now, str(event.get("request_id") or ""), pairs, state, guard))
        window.evict(now)
        if window.since_evaluation >= window.config.evaluate_every:
            self._evaluate(system, now)

    def _feedback(self, event: Event) -> None:
        system = self._system_label(event)
        window = self._windows.get(system)
        if window is None:
            self.feedback.labels(system, "rejected").inc()
            return
        raw = event.get("label")
        label = window.labels.get(raw) if isinstance(raw, str) else None
        if label is None:
            self.ignored.labels(system, "unknown_label").inc()
            self.feedback.labels(system, "rejected").inc()
            return
        if window.label(str(event.get("request_id") or ""), label):
            self.feedback.labels(system, "matched").inc()
        else:
            self.ignored.labels(system, "unmatched_feedback").inc()
            self.feedback.labels(system, "unmatched").inc()

    # -- evaluation ------------------------------------------------------------------------

    def evaluate(self, system: str) -> list[FairnessEvaluation]:
        """Evaluate every feature of ``system`` now (from any thread): gauges, ``bias.evaluated``, breaches."""
        with self._lock:
            return self._evaluate(system, self._clock())

    def _evaluate(self, system: str, now: float) -> list[FairnessEvaluation]:
        window = self._windows[system]
        window.evict(now)
        window.since_evaluation = 0
        window.evaluated_at = now
        results = []
        for feature, categories in window.config.features.items():
            try:
                result = evaluate(feature, window.counts[feature], categories, window.config.min_group_size)
            except Exception as exc:  # fairlearn or numpy refusing odd data must not stop the monitor
                log.error("bias_evaluation_failed", system=system, feature=feature, error_type=type(exc).__name__)
                self.evaluations.labels(system, "failed").inc()
                self._send("bias.evaluation_failed", system=system, feature=feature, error_type=type(exc).__name__)
                continue
            self.evaluations.labels(system, "ok").inc()
            results.append(result)
            size = window.size(feature)
            self._export_gauges(system, window, result, size)
            breached = self._check(system, window, result, size, now)
            self._send("bias.evaluated", **_evaluated_fields(system, window, result, size, breached))
        return results

    def _export_gauges(self, system: str, window: _Window, result: FairnessEvaluation, size: int) -> None:
        feature = result.feature
        self.window_size.labels(system, feature).set(size)
        for family, groups in (
            ("selection", result.insufficient_groups),
            ("equalized_odds", result.insufficient_labelled_groups),
            ("guardrail", result.insufficient_guardrail_groups),
        ):
            self.insufficient.labels(system, feature, family).set(len(groups))
        for metric in MEASURES:
            value = result.values.get(metric)
            if value is None:
                _remove(self.metric, system, feature, metric)
            else:
                self.metric.labels(system, feature, metric).set(value)
        for metric, rates in (("selection_rate", result.selection_rates), ("block_rate", result.block_rates),
                              ("escalation_rate", result.escalation_rates)):
            for group in window.config.features[feature]:
                if group in rates:
                    self.group_rate.labels(system, feature, group, metric).set(rates[group])
                else:
                    _remove(self.group_rate, system, feature, group, metric)

    def _check(self, system: str, window: _Window, result: FairnessEvaluation, size: int, now: float) -> list[str]:
        """Compare each measure with its threshold; write breach and recovery events."""
        breached = []
        for metric, (bound, threshold) in window.config.thresholds.limits().items():
            value = result.values.get(metric)
            key = (result.feature, metric)
            past = value is not None and (value < threshold if bound == "min" else value > threshold)
            previous = window.breaches.get(key)
            if not past:
                if previous is not None and value is not None:
                    del window.breaches[key]
                    self.breached.labels(system, result.feature, metric).set(0)
                    self._send(
                        "bias.recovered", system=system, feature=result.feature, metric=metric, value=value, threshold=threshold
                    )
                continue
            breached.append(metric)
            self.breached.labels(system, result.feature, metric).set(1)
            # Once when it starts, then again only on a whole new window's evidence.
            if previous is not None and not _window_turned_over(window, previous, now):
                continue
            window.breaches[key] = _Breach(now, window.seen)
            self.breaches.labels(system, result.feature, metric).inc()
            rates, sizes, insufficient = result.evidence(metric)
            self._send(
                "bias.breach",
                system=system,
                feature=result.feature,
                metric=metric,
                value=value,
                threshold=threshold,
                bound=bound,
                window_events=size,
                group_rates=dict(rates),
                group_sizes=dict(sizes),
                insufficient_groups=list(insufficient),
                repeated=previous is not None,
            )
        return breached

    def _send(self, kind: str, **fields: Any) -> None:
        if self._emit is None:
            return
        try:
            self._emit(kind, **fields)
        except Exception as exc:
            log.error("bias_event_failed", kind=kind, error_type=type(exc).__name__)


def _remove(gauge: Gauge, *labels: str) -> None:
    try:
        gauge.remove(*labels)
    except KeyError:
        pass


def _window_turned_over(window: _Window, breach: _Breach, now: float) -> bool:
    config = window.config
    by_count = window.seen - breach.seen >= config.window_events
    return by_count or (config.window_s is not None and now - breach.at >= config.window_s)


def _iso(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.timezone.utc).isoformat()


def _evaluated_fields(system: str, window: _Window, result: FairnessEvaluation, size: int, breached: list[str]) -> dict[str, Any]:
    """The ``bias.evaluated`` event: flat fields, group-keyed maps of numbers (documented in README)."""
    oldest = window.records[0].at if window.records else None
    return {
        "system": system,
        "feature": result.feature,
        "status": "ok" if result.sufficient else "insufficient_data",
        "window_events": size,
        "window_start": _iso(oldest) if oldest is not None else None,
        "window_limit_events": window.config.window_events,
        "window_s": window.config.window_s,
        "min_group_size": window.config.min_group_size,
        "group_sizes": result.group_sizes,
        "insufficient_groups": result.insufficient_groups,
        "insufficient_labelled_groups": result.insufficient_labelled_groups,
        "insufficient_guardrail_groups": result.insufficient_guardrail_groups,
        "selection_rates": result.selection_rates,
        "demographic_parity_difference": result.demographic_parity_difference,
        "demographic_parity_ratio": result.demographic_parity_ratio,
        "labelled_sizes": result.labelled_sizes,
        "equalized_odds_difference": result.equalized_odds_difference,
        "guardrail_group_sizes": result.guardrail_group_sizes,
        "block_rates": result.block_rates,
        "escalation_rates": result.escalation_rates,
        "block_rate_difference": result.block_rate_difference,
        "escalation_rate_difference": result.escalation_rate_difference,
        "breaches": breached,
    }
