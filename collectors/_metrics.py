"""Prometheus metrics, built from the event stream (prometheus-client).

The metrics exporter reads the same events as the event log, on the bus's worker thread,
so the request path pays nothing for them. Names follow the OpenTelemetry GenAI semantic
conventions (v1.41) with the spec's bucket boundaries, and aimsguard's own metrics are
prefixed ``aimsguard_``. Labels stay low-cardinality: system, guardrail, stage, action,
outcome, finding kind, model — never a user, conversation or request id. Model names come
from clients and upstreams, so each system keeps at most ``max_models`` of them; the rest
are counted as ``_OTHER``.
"""

from __future__ import annotations

import bisect
import collections
import math
import platform
import re
import threading
from collections.abc import Container, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from ._exporter import Event, ExportResult

__all__ = ["BUCKETS", "PrometheusMetrics"]

OTHER = "_OTHER"

BUCKETS = {
    # OpenTelemetry GenAI semantic conventions, ExplicitBucketBoundaries
    "request_duration": (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92),
    "time_to_first_token": (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0),
    "time_per_output_token": (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5),
    "token_usage": (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864),
    # aimsguard's own: checks run in microseconds to milliseconds
    "guardrail_duration": (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
    "guardrail_score": (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
}

_GEN_AI = ["system", "gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_request_model", "gen_ai_response_model"]
_UPSTREAM_ERRORS = {"upstream_unavailable", "upstream_timeout", "upstream_stream_interrupted", "upstream_response_too_large"}
_OWN_ERRORS = {"guardrail_failed", "event_log_unavailable", "internal_error"}
_LIMIT_CODES = frozenset(("rate_limit_exceeded", "token_limit_exceeded", "limits_unavailable"))
_KEY_ID = re.compile(r"^[0-9a-f]{12}$")  # a virtual key's public id; the label is bounded by the number of keys
# A route template as the agent builds it from fixed sets (/v1/audio/*, /v1beta/models/{model}:{method});
# anything else is counted as _OTHER, so no raw path with an id ever becomes a label value.
_ROUTE_TEMPLATE = re.compile(r"/v[0-9a-z]{1,8}/[a-z_]{1,24}(/\*|/\{model\}:\{method\})?")
_FALLBACK_REASONS = {"blocked": "block", "escalated": "escalate", "stopped": "stopped"}


def system_label(event: Event, systems: Container[str]) -> str:
    """The event's system if ``systems`` has it, else ``_OTHER``: a label never carries what a client sent."""
    system = event.get("system")
    return system if isinstance(system, str) and system in systems else OTHER


def _code_class(status: int | None) -> str:
    return f"{status // 100}xx" if status else "none"


def _upstream_error_type(code: str | None, http_status: int | None) -> str:
    """Upstream error codes come from the upstream: only a known few become label values."""
    if code in _UPSTREAM_ERRORS:
        return code
    if code and code.startswith("upstream_http_") and code[-3:].isdigit():
        return f"upstream_http_{code[-3]}xx"
    return f"http_{_code_class(http_status)}" if http_status else OTHER


def _error_type(event: Event) -> str:
    """``error.type`` for a failed exchange, from a closed set of values."""
    code = event.get("error_code")
    if code in _UPSTREAM_ERRORS or code in _OWN_ERRORS:
        return str(code)
    if event.get("status") == "client_disconnected":
        return "client_disconnected"
    return _upstream_error_type(code, event.get("http_status")) if event.get("status") == "upstream_error" else OTHER


class _Observations:
    """Histogram observations added up over a batch of events, then moved into each child once.

    A child's ``observe`` takes two locks (sum and bucket) per value, and an exchange under the
    example policy observes some sixteen values: here each value costs a bisection, and each
    child a lock per bucket it moved. It adds to the child's own values (``_sum``,
    ``_buckets``, ``_upper_bounds``: prometheus-client's internals, so the exposition is what
    ``observe`` would give; tests/collectors/test_metrics.py compares the two and fails if they
    change); a child without them is observed value by value, as is a value that is not finite.
    """

    def __init__(self) -> None:
        self._pending: dict[Any, list[Any]] = {}  # child -> [sum, count per bucket]

    def add(self, child: Any, amount: float) -> None:
        if not math.isfinite(amount):
            child.observe(amount)  # placed (or, NaN, left out of every bucket) as observe does
            return
        pending = self._pending.get(child)
        if pending is None:
            bounds = getattr(child, "_upper_bounds", None)
            if bounds is None or not hasattr(child, "_sum"):
                child.observe(amount)  # another implementation of a histogram child
                return
            pending = self._pending[child] = [0.0, [0] * len(bounds)]
        pending[0] += amount
        pending[1][bisect.bisect_left(child._upper_bounds, amount)] += 1  # observe: the first bound >= amount

    def apply(self) -> None:
        for child, (total, counts) in self._pending.items():
            child._sum.inc(total)
            for index, count in enumerate(counts):
                if count:
                    child._buckets[index].inc(count)
        self._pending.clear()


class PrometheusMetrics:
    name = "metrics"

    def __init__(
        self,
        *,
        registry: CollectorRegistry | None = None,
        providers: dict[str, str] | None = None,
        version: str = "0",
        policy_version: str = "",
        max_models: int = 32,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self._providers = providers or {}
        self._max_models = max_models
        self._models: dict[str, set[str]] = {}
        self._children: dict[tuple[Any, ...], Any] = {}  # labels() is slow; label sets are few
        self._verdicts: dict[tuple[str, ...], tuple[Any, Any, Any]] = {}  # (system, check, stage, action, outcome, fail mode)
        self._lock = threading.Lock()
        r = self.registry

        self.request_duration = Histogram(
            "gen_ai_server_request_duration_seconds",
            "GenAI server request duration, to the last byte of the answer (gen_ai.server.request.duration).",
            [*_GEN_AI, "error_type"], buckets=BUCKETS["request_duration"], registry=r,
        )
        self.time_to_first_token = Histogram(
            "gen_ai_server_time_to_first_token_seconds",
            "Time to the first token the client received, for successful answers (gen_ai.server.time_to_first_token).",
            _GEN_AI, buckets=BUCKETS["time_to_first_token"], registry=r,
        )
        self.time_per_output_token = Histogram(
            "gen_ai_server_time_per_output_token_seconds",
            "Time per output token after the first, for successful answers (gen_ai.server.time_per_output_token).",
            _GEN_AI, buckets=BUCKETS["time_per_output_token"], registry=r,
        )
        self.token_usage = Histogram(
            "gen_ai_client_token_usage",
            "Tokens used per request, by type, as the upstream reported them (gen_ai.client.token.usage).",
            [*_GEN_AI, "gen_ai_token_type"], buckets=BUCKETS["token_usage"], registry=r,
        )
        self.requests = Counter(
            "aimsguard_requests_total",
            "Exchanges handled, by outcome status and HTTP status class.",
            ["system", "front_door", "operation", "status", "code_class"], registry=r,
        )
        self.decisions = Counter(
            "aimsguard_guardrail_decisions_total",
            "Guardrail verdicts by action and by how the check ran (ok, error, timeout) and the fail mode that resolved it.",
            ["system", "guardrail", "stage", "action", "outcome", "fail_mode"], registry=r,
        )
        self.guardrail_duration = Histogram(
            "aimsguard_guardrail_duration_seconds",
            "Time one check took.",
            ["system", "guardrail", "stage"], buckets=BUCKETS["guardrail_duration"], registry=r,
        )
        self.scores = Histogram(
            "aimsguard_guardrail_score",
            "Scores of the checks that score (grounding: share of supported claims; injection: attack score; pii: surest finding).",
            ["system", "guardrail", "stage"], buckets=BUCKETS["guardrail_score"], registry=r,
        )
        self.findings = Counter(
            "aimsguard_guardrail_findings_total",
            "Findings of checks that acted, by kind (a rule id, an entity type, ...).",
            ["system", "guardrail", "stage", "kind"], registry=r,
        )
        self.fallbacks = Counter(
            "aimsguard_fallbacks_total",
            "Answers replaced by the policy's fallback: reason block, escalate (handed to a human), stopped (stop switch) or guardrail_failed.",
            ["system", "reason"], registry=r,
        )
        self.upstream_errors = Counter(
            "aimsguard_upstream_errors_total",
            "Failures of the AI system behind aimsguard, by type.",
            ["system", "error_type"], registry=r,
        )
        self.key_requests = Counter(
            "aimsguard_key_requests_total",
            "Exchanges per virtual API key (its public id, never the key), by status; refused ones are status rejected.",
            ["system", "key_id", "status", "error_code"], registry=r,
        )
        self.key_tokens = Counter(
            "aimsguard_key_tokens_total",
            "Tokens counted against each virtual API key (the upstream's usage, or estimated for streams without it).",
            ["system", "key_id"], registry=r,
        )
        self.unguarded_routes = Counter(
            "aimsguard_unguarded_routes_total",
            "Model calls to routes no dialect reads, by route template (never a raw path) and what the policy did: pass or block.",
            ["system", "route", "action"], registry=r,
        )
        self.events_exported = Counter(
            "aimsguard_events_exported_total", "Events handed to an exporter successfully.", ["exporter"], registry=r
        )
        self.events_dropped = Counter(
            "aimsguard_events_dropped_total", "Events dropped before any exporter saw them.", ["reason"], registry=r
        )
        self.export_failures = Counter(
            "aimsguard_event_export_failures_total", "Batches an exporter failed to take (e.g. a full disk).", ["exporter"], registry=r
        )
        self.event_log_lost = Counter(
            "aimsguard_event_log_lost_total", "Events the event log gave up on after its retry buffer overflowed.", registry=r
        )
        self.build_info = Gauge(
            "aimsguard_build_info", "aimsguard version and the policy version in force.",
            ["version", "policy_version", "python"], registry=r, multiprocess_mode="max",
        )
        self.build_info.labels(version, policy_version, platform.python_version()).set(1)

    # -- hooks the bus and the event log call directly -------------------------------

    def count_drop(self, reason: str) -> None:
        self.events_dropped.labels(reason).inc()

    def count_export_failure(self, exporter: str) -> None:
        self.export_failures.labels(exporter).inc()

    def count_exported(self, exporter: str, count: int) -> None:
        self.events_exported.labels(exporter).inc(count)

    def count_lost(self, count: int) -> None:
        self.event_log_lost.inc(count)

    # -- the exporter interface -----------------------------------------------------

    def export(self, batch: Sequence[Event]) -> ExportResult:
        # The counters every exchange moves are added up over the batch and each moved once
        # (a child's inc takes a lock): a request under the example policy moves seven.
        # Histograms' observations likewise (see _Observations).
        counted: collections.Counter[Any] = collections.Counter()
        observed = _Observations()
        try:
            for event in batch:
                kind = event.get("event")
                if kind == "exchange":
                    self._exchange(event, counted, observed)
                elif kind == "guardrail.verdict":
                    self._verdict_findings(event)
                elif kind == "route.unguarded":
                    self._unguarded_route(event)
        finally:
            for child, amount in counted.items():
                child.inc(amount)
            observed.apply()
        return ExportResult.SUCCESS

    def force_flush(self, timeout: float = 10.0) -> bool:
        return True

    def shutdown(self) -> None:
        pass

    # -- from events to metrics -------------------------------------------------------

    def _system(self, event: Event) -> str:
        return system_label(event, self._providers)

    def _child(self, metric: Any, *labels: Any) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def _model(self, system: str, model: Any) -> str:
        if not isinstance(model, str) or not model:
            return ""
        with self._lock:
            seen = self._models.setdefault(system, set())
            if model in seen:
                return model
            if len(seen) < self._max_models:
                seen.add(model)
                return model
        return OTHER

    def _verdict_children(self, system: str, verdict: Event) -> tuple[Any, Any, Any]:
        """The decisions, duration and score children one verdict moves (one lookup for three)."""
        key = (system, verdict["guardrail"], verdict["stage"], verdict["action"], verdict["outcome"], verdict.get("fail_mode") or "none")
        children = self._verdicts.get(key)
        if children is None:
            check = key[:3]
            children = self._verdicts[key] = (
                self.decisions.labels(*key), self.guardrail_duration.labels(*check), self.scores.labels(*check)
            )
        return children

    def _exchange(self, event: Event, counted: collections.Counter[Any], observed: _Observations) -> None:
        system = self._system(event)
        status = str(event.get("status", ""))
        http_status = event.get("http_status")
        counted[self._child(self.requests, system, event.get("front_door", ""), event.get("operation", ""), status, _code_class(http_status))] += 1
        for verdict in event.get("verdicts", ()):
            decisions, duration, scores = self._verdict_children(system, verdict)
            counted[decisions] += 1
            observed.add(duration, verdict["duration_ms"] / 1000)
            if verdict["outcome"] == "ok":
                observed.add(scores, verdict["score"])
        if status in _FALLBACK_REASONS:
            self._child(self.fallbacks, system, _FALLBACK_REASONS[status]).inc()
        elif event.get("error_code") == "guardrail_failed":
            self._child(self.fallbacks, system, "guardrail_failed").inc()
        if status == "upstream_error":
            self._child(self.upstream_errors, system, _upstream_error_type(event.get("error_code"), http_status)).inc()
        key_id = event.get("key_id")
        if isinstance(key_id, str) and _KEY_ID.match(key_id):
            code = event.get("error_code")
            self._child(self.key_requests, system, key_id, status, code if code in _LIMIT_CODES else "").inc()
            tokens = event.get("key_tokens")
            if isinstance(tokens, int) and tokens > 0:
                self._child(self.key_tokens, system, key_id).inc(tokens)
        if status == "rejected":
            return  # never reached a model: no GenAI timings
        gen_ai = (
            system,
            event.get("operation", ""),
            self._providers.get(system, "openai"),
            self._model(system, event.get("model")),
            self._model(system, event.get("response_model")),
        )
        failed = status not in ("ok", "blocked", "escalated", "stopped") or (http_status or 200) >= 400
        observed.add(self._child(self.request_duration, *gen_ai, _error_type(event) if failed else ""), event["duration_ms"] / 1000)
        # Model timings only for answers the model gave (not the policy's fallbacks).
        ok = status == "ok" and not failed
        ttft_ms = event.get("time_to_first_token_ms")
        if ok and ttft_ms is not None:
            observed.add(self._child(self.time_to_first_token, *gen_ai), ttft_ms / 1000)
        usage = event.get("usage") or {}
        output_tokens = usage.get("output_tokens")
        if ok and ttft_ms is not None and isinstance(output_tokens, int) and output_tokens > 1:
            per_token = (event["duration_ms"] - ttft_ms) / 1000 / (output_tokens - 1)
            observed.add(self._child(self.time_per_output_token, *gen_ai), max(per_token, 0.0))
        for token_type in ("input", "output"):
            count = usage.get(f"{token_type}_tokens")
            if isinstance(count, int):
                observed.add(self._child(self.token_usage, *gen_ai, token_type), count)

    def _unguarded_route(self, event: Event) -> None:
        route = event.get("route")
        route = route if isinstance(route, str) and _ROUTE_TEMPLATE.fullmatch(route) else OTHER
        action = "pass" if event.get("action") == "pass" else "block"
        self._child(self.unguarded_routes, self._system(event), route, action).inc()

    def _verdict_findings(self, event: Event) -> None:
        for finding in event.get("findings", ()):
            self._child(self.findings, self._system(event), event.get("guardrail", ""), event.get("stage", ""), finding.get("kind", "")).inc()
