"""Prometheus metrics as /metrics exposes them after real traffic."""

import time

import httpx
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from aimsguard.agent import AimsguardMiddleware
from aimsguard.agent._gateway import render_metrics
from aimsguard.collectors import BUCKETS, PrometheusMetrics, _metrics

from ..support import mixed_traffic


def _samples(text: str) -> list:
    return [sample for family in text_string_to_metric_families(text) for sample in family.samples]


def _value(samples, name: str, **labels) -> float:
    return sum(s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def _settle(guard, events, count: int) -> None:
    deadline = time.monotonic() + 5
    while len(events.events("exchange")) < count and time.monotonic() < deadline:
        guard.flush()
        time.sleep(0.02)
    guard.flush()


def test_gateway_metrics_after_mixed_traffic(gateway, events) -> None:
    url, guard = gateway()
    mixed_traffic(url)
    _settle(guard, events, 5)
    text = httpx.get(url + "/metrics").text
    samples = _samples(text)

    assert _value(samples, "aimsguard_requests_total", system="support-bot", status="ok", code_class="2xx") == 2
    assert _value(samples, "aimsguard_requests_total", status="blocked") == 1
    assert _value(samples, "aimsguard_requests_total", status="escalated") == 1
    assert _value(samples, "aimsguard_requests_total", status="upstream_error", code_class="5xx") == 1
    assert _value(samples, "aimsguard_fallbacks_total", reason="block") == 1
    assert _value(samples, "aimsguard_fallbacks_total", reason="escalate") == 1
    assert _value(samples, "aimsguard_upstream_errors_total", error_type="http_5xx") == 1
    assert _value(samples, "aimsguard_guardrail_decisions_total", guardrail="input-rules", action="block", outcome="ok") == 1
    assert _value(samples, "aimsguard_guardrail_decisions_total", guardrail="output-rules", stage="output", action="allow") == 2
    assert _value(samples, "aimsguard_guardrail_findings_total", kind="rule:instruction-override") == 1
    # GenAI timings: the two answers the model gave; the fallbacks are not model latency.
    assert _value(samples, "gen_ai_server_time_to_first_token_seconds_count", gen_ai_request_model="demo") == 2
    assert _value(samples, "gen_ai_server_request_duration_seconds_count") == 5
    assert _value(samples, "gen_ai_server_request_duration_seconds_count", error_type="http_5xx") == 1
    assert _value(samples, "gen_ai_client_token_usage_count", gen_ai_token_type="output", gen_ai_provider_name="openai") == 2
    assert _value(samples, "gen_ai_client_token_usage_sum", gen_ai_token_type="output") > 10
    assert _value(samples, "aimsguard_events_exported_total", exporter="event_log") >= 5
    assert _value(samples, "aimsguard_events_dropped_total") == 0
    assert _value(samples, "aimsguard_build_info", policy_version=guard.policy_version) == 1
    # The GenAI histograms use the semantic conventions' bucket boundaries.
    for metric, spec in [
        ("gen_ai_server_request_duration_seconds", "request_duration"),
        ("gen_ai_server_time_to_first_token_seconds", "time_to_first_token"),
        ("gen_ai_server_time_per_output_token_seconds", "time_per_output_token"),
        ("gen_ai_client_token_usage", "token_usage"),
    ]:
        bounds = {float(s.labels["le"]) for s in samples if s.name == metric + "_bucket"}
        assert bounds == {*map(float, BUCKETS[spec]), float("inf")}, metric


def _chat_app() -> Starlette:
    async def chat(request: Request):
        payload = await request.json()
        return JSONResponse({"id": "x", "object": "chat.completion", "created": 1, "model": payload["model"],
                             "choices": [{"index": 0, "message": {"role": "assistant", "content": "fine"}, "finish_reason": "stop"}],
                             "usage": {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}})

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])


@pytest.mark.anyio
async def test_series_do_not_grow_with_users_conversations_or_requests(make_guard, events) -> None:
    guard = make_guard()
    app = AimsguardMiddleware(_chat_app(), guard=guard)

    async def traffic(first: int, count: int) -> None:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            for i in range(first, first + count):
                body = {"model": "demo", "user": f"user-{i}", "messages": [{"role": "user", "content": f"hello from user {i}"}]}
                headers = {"x-request-id": f"req-{i}", "x-aimsguard-conversation-id": f"conv-{i}"}
                assert (await client.post("/v1/chat/completions", json=body, headers=headers)).status_code == 200

    await traffic(0, 10)
    _settle(guard, events, 10)
    before = _samples(render_metrics(guard).decode())
    await traffic(10, 990)
    _settle(guard, events, 1000)
    after = _samples(render_metrics(guard).decode())
    series = lambda samples: {(s.name, tuple(sorted(s.labels.items()))) for s in samples}  # noqa: E731
    # A series may appear late for an outcome first seen later (a check overrunning on a busy
    # machine adds one counter: _total and _created); growth with the 990 new users,
    # conversations and requests would add hundreds.
    assert len(series(after) - series(before)) <= 4, series(after) - series(before)
    assert _value(after, "aimsguard_requests_total", status="ok") == 1000
    label_values = {v for s in after for v in s.labels.values()}
    assert not any(v.startswith(("user-", "req-", "conv-", "hello")) for v in label_values)


@pytest.mark.anyio
async def test_model_names_from_clients_are_capped(make_guard, events) -> None:
    guard = make_guard(lambda d: d["telemetry"].update(max_model_labels=5) if "telemetry" in d else d.update(telemetry={"max_model_labels": 5}))
    app = AimsguardMiddleware(_chat_app(), guard=guard)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        for i in range(40):
            body = {"model": f"model-{i}", "messages": [{"role": "user", "content": "hi"}]}
            await client.post("/v1/chat/completions", json=body)
    _settle(guard, events, 40)
    samples = _samples(render_metrics(guard).decode())
    models = {s.labels["gen_ai_request_model"] for s in samples if s.name == "gen_ai_server_request_duration_seconds_count"}
    assert models == {f"model-{i}" for i in range(5)} | {"_OTHER"}


def test_a_batch_moves_each_counter_once_per_event_even_past_a_malformed_one() -> None:
    """Counters are added up over a batch and moved once: the sums must be the events' own,
    and an event that breaks the export must not cost the counts of those before it."""
    metrics = PrometheusMetrics(providers={"bot": "openai"})
    allowed = {"guardrail": "pii-in", "stage": "input", "action": "allow", "outcome": "ok", "fail_mode": None, "score": 0.25, "duration_ms": 2.0}
    failed = {**allowed, "action": "block", "outcome": "error", "fail_mode": "closed"}
    exchange = {"event": "exchange", "system": "bot", "front_door": "gateway", "operation": "chat", "status": "ok",
                "http_status": 200, "duration_ms": 5.0, "verdicts": [allowed, failed]}
    broken = {**exchange, "verdicts": [{"guardrail": "pii-in"}]}  # no stage: the export raises here
    with pytest.raises(KeyError):
        metrics.export([exchange] * 3 + [broken, exchange])
    samples = _samples(generate_latest(metrics.registry).decode())

    assert _value(samples, "aimsguard_requests_total", system="bot", status="ok") == 4  # the broken one was counted before its verdicts
    assert _value(samples, "aimsguard_guardrail_decisions_total", guardrail="pii-in", action="allow", outcome="ok") == 3
    assert _value(samples, "aimsguard_guardrail_decisions_total", action="block", outcome="error", fail_mode="closed") == 3
    assert _value(samples, "aimsguard_guardrail_duration_seconds_count", guardrail="pii-in", stage="input") == 6
    assert _value(samples, "aimsguard_guardrail_score_count", guardrail="pii-in") == 3  # scores of working checks only
    metrics.export([exchange])
    samples = _samples(generate_latest(metrics.registry).decode())
    assert _value(samples, "aimsguard_guardrail_decisions_total", guardrail="pii-in", action="allow") == 4


def test_histograms_added_up_over_a_batch_expose_what_observing_each_value_gives(monkeypatch) -> None:
    """Observations are added up over a batch and moved into each child once (_Observations):
    the exposition must be exactly what prometheus-client's own observe gives, bucket
    boundaries, zero, past the last bound and a value no bucket takes included."""
    durations = [0.0, 0.1, 0.25, 0.2500001, 3.0, 99.0, 0.003, 0.01, float("nan"), 1e9]
    events = [
        {"event": "exchange", "system": "bot", "front_door": "gateway", "operation": "chat", "status": "ok", "http_status": 200,
         "duration_ms": ms, "time_to_first_token_ms": ms / 2, "model": "m", "usage": {"input_tokens": i * 7, "output_tokens": i * 300},
         "verdicts": [{"guardrail": "pii-in", "stage": "input", "action": "allow", "outcome": "ok", "fail_mode": None,
                       "score": (i % 11) / 10, "duration_ms": ms}]}
        for i, ms in enumerate(durations)
    ]
    batched = PrometheusMetrics(providers={"bot": "openai"})
    batched.export(events)
    monkeypatch.setattr(_metrics._Observations, "add", lambda self, child, amount: child.observe(amount))
    one_by_one = PrometheusMetrics(providers={"bot": "openai"})
    for event in events:
        one_by_one.export([event])

    def exposed(metrics: PrometheusMetrics) -> list[tuple[str, tuple, float]]:
        return sorted(
            (s.name, tuple(sorted(s.labels.items())), s.value)
            for s in _samples(generate_latest(metrics.registry).decode())
            if not s.name.endswith("_created") and s.value == s.value  # the sum that holds the NaN
        )

    assert exposed(batched) == exposed(one_by_one)
    # Nine: observe puts a NaN in no bucket (the count is the last bucket's).
    assert _value(_samples(generate_latest(batched.registry).decode()), "aimsguard_guardrail_duration_seconds_count", guardrail="pii-in") == 9
