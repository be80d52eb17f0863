"""OpenTelemetry traces, built from exchange events after the fact (OpenTelemetry SDK).

Each exchange event carries its trace id, its own span id and (when the client sent a
W3C ``traceparent``) the parent span id, with the timings of the exchange, the upstream
call and every check. The exporter replays them as spans with their real start and end
times — a server span per request, a client span for the upstream call and an
``apply_guardrail {id}`` span per check with a ``gen_ai.guardrail.result`` event — so
the request path never touches the tracing SDK, and a slow or absent collector costs
the user nothing (the SDK's BatchSpanProcessor queues and drops on its own thread).

Span attributes hold ids, models, counts and decisions: never message text.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags

from ._exporter import Event, ExportResult

__all__ = ["TraceExporter"]

_NS = 1_000_000  # nanoseconds per millisecond


class _ExchangeIds(IdGenerator):
    """Hands the SDK the ids the exchange already carries (and logged), then random ones."""

    def __init__(self) -> None:
        self._pending = threading.local()

    def use(self, trace_id: int, span_id: int) -> None:
        self._pending.trace_id = trace_id
        self._pending.span_id = span_id

    def generate_trace_id(self) -> int:
        trace_id = getattr(self._pending, "trace_id", None)
        self._pending.trace_id = None
        return trace_id or random.getrandbits(128)

    def generate_span_id(self) -> int:
        span_id = getattr(self._pending, "span_id", None)
        self._pending.span_id = None
        return span_id or random.getrandbits(64)


class TraceExporter:
    name = "traces"

    def __init__(self, span_exporter: SpanExporter, *, service_name: str = "aimsguard", version: str = "0") -> None:
        self._ids = _ExchangeIds()
        self.provider = TracerProvider(resource=Resource.create({"service.name": service_name, "service.version": version}), id_generator=self._ids)
        self.provider.add_span_processor(BatchSpanProcessor(span_exporter))
        self._tracer = self.provider.get_tracer("aimsguard", version)

    def export(self, batch: Sequence[Event]) -> ExportResult:
        for event in batch:
            if event.get("event") == "exchange" and event.get("trace_id"):
                self._replay(event)
        return ExportResult.SUCCESS

    def _replay(self, event: Event) -> None:
        start_ns = int(event["started_at"] * 1e9)
        end_ns = start_ns + int(event["duration_ms"] * _NS)
        trace_id = int(event["trace_id"], 16)
        parent = event.get("parent_span_id")
        context = None
        if parent:  # the client's span, from its traceparent header
            remote = SpanContext(trace_id, int(parent, 16), is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))
            context = trace.set_span_in_context(NonRecordingSpan(remote))
        self._ids.use(trace_id, int(event["span_id"], 16))
        operation, model = event.get("operation") or "chat", event.get("model") or ""
        root = self._tracer.start_span(
            f"{operation} {model}".strip(), context=context, kind=SpanKind.SERVER, start_time=start_ns, attributes=_root_attributes(event)
        )
        root_context = trace.set_span_in_context(root)
        upstream_ms, offset_ms = event.get("upstream_ms"), event.get("upstream_offset_ms")
        if upstream_ms is not None and offset_ms is not None:
            upstream_start = start_ns + int(offset_ms * _NS)
            span = self._tracer.start_span(
                f"{operation} {event.get('response_model') or model}".strip(),
                context=root_context,
                kind=SpanKind.CLIENT,
                start_time=upstream_start,
                attributes=_clean({"gen_ai.operation.name": operation, "gen_ai.request.model": model,
                                   "gen_ai.response.model": event.get("response_model")}),
            )
            if event.get("status") == "upstream_error":
                span.set_status(Status(StatusCode.ERROR, str(event.get("error_code") or "upstream_error")))
            span.end(end_time=upstream_start + int(upstream_ms * _NS))
        for verdict in event.get("verdicts", ()):
            self._guardrail_span(verdict, root_context, start_ns)
        if event.get("status") in ("error", "upstream_error"):
            root.set_status(Status(StatusCode.ERROR, str(event.get("error_code") or event.get("status"))))
        root.end(end_time=end_ns)

    def _guardrail_span(self, verdict: dict[str, Any], context: Any, start_ns: int) -> None:
        begin = start_ns + int((verdict.get("offset_ms") or 0) * _NS)
        span = self._tracer.start_span(
            f"apply_guardrail {verdict['guardrail']}",
            context=context,
            kind=SpanKind.INTERNAL,
            start_time=begin,
            attributes=_clean({
                "gen_ai.operation.name": "apply_guardrail",
                "gen_ai.guardrail.name": verdict["guardrail"],
                "aimsguard.guardrail.stage": verdict["stage"],
                "aimsguard.guardrail.fail_mode": verdict.get("fail_mode"),
            }),
        )
        span.add_event(
            "gen_ai.guardrail.result",
            _clean({
                "gen_ai.guardrail.action": verdict["action"],
                "gen_ai.guardrail.score": verdict.get("score"),
                "aimsguard.guardrail.outcome": verdict["outcome"],
                "aimsguard.guardrail.findings": verdict.get("findings"),
            }),
            timestamp=begin + int(verdict["duration_ms"] * _NS),
        )
        if verdict["outcome"] != "ok":
            span.set_status(Status(StatusCode.ERROR, f"check {verdict['outcome']}"))
        span.end(end_time=begin + int(verdict["duration_ms"] * _NS))

    def force_flush(self, timeout: float = 10.0) -> bool:
        return self.provider.force_flush(int(timeout * 1000))

    def shutdown(self) -> None:
        self.provider.shutdown()


def _root_attributes(event: Event) -> dict[str, Any]:
    usage = event.get("usage") or {}
    return _clean({
        "gen_ai.operation.name": event.get("operation"),
        "gen_ai.provider.name": event.get("provider"),
        "gen_ai.request.model": event.get("model"),
        "gen_ai.response.model": event.get("response_model"),
        "gen_ai.usage.input_tokens": usage.get("input_tokens"),
        "gen_ai.usage.output_tokens": usage.get("output_tokens"),
        "gen_ai.response.finish_reasons": event.get("finish_reasons") or None,
        "gen_ai.conversation.id": event.get("conversation_id"),
        "http.response.status_code": event.get("http_status"),
        "error.type": event.get("error_code"),
        "aimsguard.system": event.get("system"),
        "aimsguard.request_id": event.get("request_id"),
        "aimsguard.status": event.get("status"),
        "aimsguard.action": event.get("action"),
        "aimsguard.policy_version": event.get("policy_version"),
        "aimsguard.front_door": event.get("front_door"),
        "aimsguard.stream": event.get("stream"),
    })


def _clean(attributes: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in attributes.items() if v is not None and v != ""}
