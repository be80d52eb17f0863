"""Traces: spans replayed from exchange events, joined to the client's trace."""

import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from aimsguard.agent import AimsguardMiddleware

from .test_metrics import _chat_app, _settle

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


@pytest.mark.anyio
async def test_spans_join_the_client_trace_and_match_the_event_log(make_guard, events) -> None:
    spans = InMemorySpanExporter()
    guard = make_guard(span_exporter=spans)
    app = AimsguardMiddleware(_chat_app(), guard=guard)
    secret_text = "my ticket INT-1234 and a private story"
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        await client.post(
            "/v1/chat/completions",
            json={"model": "demo", "messages": [{"role": "user", "content": secret_text}]},
            headers={"traceparent": f"00-{TRACE_ID}-{PARENT}-01", "x-request-id": "traced-1"},
        )
    _settle(guard, events, 1)
    guard.traces.force_flush()
    finished = spans.get_finished_spans()
    (event,) = events.events("exchange")
    root = next(s for s in finished if s.kind is SpanKind.SERVER)
    assert f"{root.context.trace_id:032x}" == TRACE_ID == event["trace_id"]
    assert f"{root.parent.span_id:016x}" == PARENT
    assert f"{root.context.span_id:016x}" == event["span_id"]  # the event log points at this very span
    assert root.name == "chat demo"
    assert root.attributes["gen_ai.operation.name"] == "chat"
    assert root.attributes["gen_ai.usage.output_tokens"] == 5
    assert root.attributes["aimsguard.request_id"] == "traced-1"
    checks = {s.name: s for s in finished if s.name.startswith("apply_guardrail")}
    assert set(checks) == {"apply_guardrail " + name for name in ("pii-in", "injection", "input-rules", "pii-out", "grounding", "output-rules")}
    input_check = checks["apply_guardrail input-rules"]
    assert input_check.parent.span_id == root.context.span_id
    (result,) = input_check.events
    assert result.name == "gen_ai.guardrail.result" and result.attributes["gen_ai.guardrail.action"] == "redact"
    upstream = next(s for s in finished if s.kind is SpanKind.CLIENT)
    assert root.start_time <= upstream.start_time <= upstream.end_time <= root.end_time
    # No message text anywhere in the spans.
    dump = repr([(s.name, dict(s.attributes), [dict(e.attributes) for e in s.events]) for s in finished])
    assert "INT-1234" not in dump and "private story" not in dump


@pytest.mark.anyio
async def test_a_new_trace_is_started_without_traceparent_and_a_failed_check_is_an_error_span(make_guard, events) -> None:
    spans = InMemorySpanExporter()
    guard = make_guard(span_exporter=spans, checks={"input": [{"guardrail": "exploding", "fail_mode": "closed"}]})
    app = AimsguardMiddleware(_chat_app(), guard=guard)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        response = await client.post(
            "/v1/chat/completions",
            json={"model": "demo", "messages": [{"role": "user", "content": "explode"}]},
            headers={"traceparent": "garbage"},
        )
    assert response.status_code == 503
    _settle(guard, events, 1)
    guard.traces.force_flush()
    finished = spans.get_finished_spans()
    root = next(s for s in finished if s.kind is SpanKind.SERVER)
    assert root.parent is None
    assert f"{root.context.trace_id:032x}" == events.events("exchange")[0]["trace_id"]
    assert root.status.status_code is StatusCode.ERROR
    check = next(s for s in finished if s.name == "apply_guardrail exploding")
    assert check.status.status_code is StatusCode.ERROR


def test_tracing_is_off_by_default(make_guard, monkeypatch) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    assert make_guard().traces is None


def test_an_unreachable_collector_never_blocks_the_request_path(make_guard, monkeypatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://127.0.0.1:9/v1/traces")
    guard = make_guard()
    assert guard.traces is not None
    import time

    started = time.perf_counter()
    for _ in range(50):
        guard.events.emit("exchange", trace_id="ab" * 16, span_id="cd" * 8, started_at=time.time(), duration_ms=1.0, verdicts=[])
    assert time.perf_counter() - started < 0.1
