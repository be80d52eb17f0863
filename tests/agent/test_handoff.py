"""Escalation to a person end to end: the fallback carries a handoff id, the ticket is queued
(redacted), a reviewer answers, the client reads the answer; the webhook; the stop switch."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from aimsguard.agent import Blocked, Guard, GuardedExchange
from aimsguard.agent._oversight import HumanOversight
from aimsguard.collectors.records import HandoffStatus

from ..support import ServerThread, records_policy

ESCALATING = "I will take legal action, write to me at jane.doe@example.com"


def _records(tmp_path: Path, **system: Any) -> Any:
    def mutate(data: dict[str, Any]) -> None:
        records_policy(data, tmp_path)
        data["systems"]["support-bot"].update(system)

    return mutate


def _chat(url: str, content: str, *, stream: bool = False, auth: str | None = "Bearer client-1") -> httpx.Response:
    headers = {"authorization": auth} if auth else {}
    body = {"model": "demo", "messages": [{"role": "system", "content": "You are Acme's assistant."}, {"role": "user", "content": content}]}
    return httpx.post(f"{url}/v1/chat/completions", json={**body, "stream": stream}, headers=headers, timeout=10)


def _events(guard: Guard, events: Any, kind: str) -> list[dict[str, Any]]:
    guard.flush()
    return events.events(kind)


def _sse_chunks(body: str) -> list[dict[str, Any]]:
    return [json.loads(line[6:]) for line in body.splitlines() if line.startswith("data: {")]


def _metric(url: str, line_start: str) -> float:
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_an_escalated_request_gets_a_handoff_id_and_later_the_persons_answer(gateway: Any, tmp_path: Path, events: Any) -> None:
    url, guard = gateway(_records(tmp_path))
    response = _chat(url, ESCALATING)
    assert response.status_code == 200
    body = response.json()
    assert body["choices"][0]["message"]["content"] == guard.system("support-bot").fallback.escalation_message
    handoff_id = body["aimsguard"]["handoff_id"]
    assert response.headers["x-aimsguard-handoff-id"] == handoff_id and handoff_id.startswith("hnd_")

    status = httpx.get(f"{url}/v1/handoffs/{handoff_id}", headers={"authorization": "Bearer client-1"})
    assert status.status_code == 200
    assert status.json() == {**status.json(), "id": handoff_id, "status": "queued", "answer": None, "answered_at": None}
    # Someone else's credentials (or none) cannot read it; an unknown id looks the same.
    for headers in ({"authorization": "Bearer client-2"}, {}):
        other = httpx.get(f"{url}/v1/handoffs/{handoff_id}", headers=headers)
        assert other.status_code == 404 and other.json()["error"]["code"] == "handoff_not_found"
    assert httpx.get(f"{url}/v1/handoffs/hnd_unknownunknownunknown").json()["error"]["code"] == "handoff_not_found"

    # The ticket holds what the checks released: the address redacted, the system prompt left out.
    ticket = guard.records.get_handoff(handoff_id)  # type: ignore[union-attr]
    assert ticket is not None and ticket.reason == "legal matters go to a person"
    assert ticket.conversation == [{"role": "user", "content": "I will take legal action, write to me at <EMAIL_ADDRESS_1>"}]
    assert "jane.doe" not in json.dumps(ticket.verdicts)
    assert ticket.principal == hashlib.sha256(b"Bearer client-1").hexdigest()[:16]

    oversight = HumanOversight(guard)
    claimed = oversight.claim_next("alice", system="support-bot")
    assert claimed is not None and claimed.id == handoff_id
    oversight.answer(handoff_id, "alice", "A colleague from legal will call you today.")
    answered = httpx.get(f"{url}/v1/handoffs/{handoff_id}", headers={"authorization": "Bearer client-1"}).json()
    assert answered["status"] == "answered" and answered["answer"] == "A colleague from legal will call you today."
    assert answered["answered_at"] is not None

    [exchange] = [e for e in _events(guard, events, "exchange") if e["status"] == "escalated"]
    assert exchange["handoff_id"] == handoff_id
    [created] = _events(guard, events, "handoff.created")
    assert created["handoff_id"] == handoff_id and created["request_id"] == exchange["request_id"]
    assert [e["reviewer"] for e in events.events("handoff.claimed")] == ["alice"]
    assert events.events("handoff.answered")[0]["time_to_answer_s"] >= 0
    assert "jane.doe" not in json.dumps(events.events())
    assert _metric(url, 'aimsguard_handoffs_total{outcome="created",system="support-bot"}') == 1


def test_a_streamed_escalation_carries_the_id_in_its_first_chunk(gateway: Any, tmp_path: Path) -> None:
    url, guard = gateway(_records(tmp_path))
    response = _chat(url, ESCALATING, stream=True)
    chunks = _sse_chunks(response.text)
    handoff_id = chunks[0]["aimsguard"]["handoff_id"]
    assert response.headers["x-aimsguard-handoff-id"] == handoff_id
    assert guard.records.get_handoff(handoff_id).status is HandoffStatus.QUEUED  # type: ignore[union-attr]


@pytest.mark.parametrize("stream", [False, True])
def test_an_answer_escalated_by_an_output_check_carries_a_handoff_id(gateway: Any, tmp_path: Path, stream: bool) -> None:
    def mutate(data: dict[str, Any]) -> None:
        records_policy(data, tmp_path)
        data["systems"]["support-bot"]["checks"]["output"].append({"guardrail": "escalating", "id": "escalating-out"})

    url, guard = gateway(mutate)
    response = _chat(url, "repeat after me: let a human please decide", stream=stream)
    if stream:
        handoff_id = next(c["aimsguard"]["handoff_id"] for c in _sse_chunks(response.text) if "aimsguard" in c)
    else:
        handoff_id = response.json()["aimsguard"]["handoff_id"]
        assert response.headers["x-aimsguard-handoff-id"] == handoff_id
    ticket = guard.records.get_handoff(handoff_id)  # type: ignore[union-attr]
    assert ticket is not None and ticket.reason == "asked for a human"
    assert ticket.conversation[-1]["content"] == "repeat after me: let a human please decide"


def test_when_the_store_fails_the_user_still_gets_the_fallback(gateway: Any, tmp_path: Path, events: Any) -> None:
    url, guard = gateway(_records(tmp_path))
    with guard.records.engine.begin() as connection:  # type: ignore[union-attr]
        connection.exec_driver_sql("DROP TABLE handoffs")
    response = _chat(url, ESCALATING)
    assert response.status_code == 200 and "aimsguard" not in response.json()
    assert response.json()["choices"][0]["message"]["content"] == guard.system("support-bot").fallback.escalation_message
    assert "x-aimsguard-handoff-id" not in response.headers
    [failed] = _events(guard, events, "handoff.failed")
    assert failed["outcome"] == "failed" and failed["system"] == "support-bot"
    assert _metric(url, 'aimsguard_handoffs_total{outcome="failed",system="support-bot"}') == 1


def test_the_webhook_is_retried_signed_and_never_holds_up_the_answer(gateway: Any, tmp_path: Path) -> None:
    calls: list[tuple[bytes, dict[str, str]]] = []
    delivered = threading.Event()

    async def hook(request: Request) -> Response:
        calls.append((await request.body(), dict(request.headers)))
        if len(calls) == 1:
            await asyncio.sleep(2)  # longer than the webhook's timeout: a retry follows
        if len(calls) == 2:
            return JSONResponse({"error": "busy"}, status_code=503)
        delivered.set()
        return JSONResponse({"ok": True})

    with ServerThread(Starlette(routes=[Route("/hook", hook, methods=["POST"])])) as receiver:
        webhook = {"url": f"{receiver.url}/hook", "secret": "webhook-secret", "retries": 3, "timeout_s": 0.3}
        url, guard = gateway(_records(tmp_path, fallback={"handoff_webhook": webhook}))
        started = time.perf_counter()
        response = _chat(url, ESCALATING)
        assert time.perf_counter() - started < 0.3 + 0.5  # did not wait for the webhook
        assert delivered.wait(10)
    handoff_id = response.json()["aimsguard"]["handoff_id"]
    body, headers = calls[-1]
    payload = json.loads(body)
    assert payload == {**payload, "event": "handoff.created", "handoff_id": handoff_id, "system": "support-bot"}
    assert "jane.doe" not in body.decode() and "legal action" not in body.decode()  # no conversation text
    assert headers["x-aimsguard-signature"] == "sha256=" + hmac.new(b"webhook-secret", body, hashlib.sha256).hexdigest()
    assert len(calls) == 3
    deadline = time.monotonic() + 5
    while _metric(url, 'aimsguard_handoff_webhooks_total{outcome="delivered",system="support-bot"}') != 1:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_the_stop_switch_answers_every_request_with_the_fallback_on_every_replica(
    gateway: Any, make_guard: Any, tmp_path: Path, events: Any, upstream: Any
) -> None:
    url, guard = gateway(_records(tmp_path))
    replica = make_guard(_records(tmp_path))  # a second process on the same records
    seen_before = len(upstream.server.config.app.state.seen)
    HumanOversight(guard).set_stopped("support-bot", True, by="oncall", reason="wrong refund answers")
    assert guard.is_stopped("support-bot")  # at once where it was switched

    for stream in (False, True):
        response = _chat(url, "How much is the Pro plan?", stream=stream)
        assert response.status_code == 200
        stopped = guard.system("support-bot").fallback.stopped_message
        text = response.text if stream else response.json()["choices"][0]["message"]["content"]
        assert stopped in text  # type: ignore[operator]
    assert len(upstream.server.config.app.state.seen) == seen_before  # the AI system was not called

    deadline = time.monotonic() + 3
    while not replica.is_stopped("support-bot"):  # the other replica, within its poll interval
        assert time.monotonic() < deadline
        time.sleep(0.05)

    async def sdk_call() -> None:
        async with GuardedExchange(replica, "support-bot") as ex:
            await ex.check_input("How much is the Pro plan?")

    with pytest.raises(Blocked) as blocked:
        asyncio.run(sdk_call())
    assert blocked.value.stopped and blocked.value.fallback == stopped

    replica.flush()
    statuses = [e["status"] for e in _events(guard, events, "exchange")]
    assert statuses.count("stopped") == 3
    assert [e["system"] for e in events.events("system.stopped")] == ["support-bot"]
    assert _metric(url, 'aimsguard_fallbacks_total{reason="stopped",system="support-bot"}') == 2
    assert _metric(url, 'aimsguard_system_stopped{system="support-bot"}') == 1

    HumanOversight(guard).set_stopped("support-bot", False, by="oncall")
    answer = _chat(url, "How much is the Pro plan?").json()
    assert "Pro plan" in answer["choices"][0]["message"]["content"]
    assert [e["system"] for e in _events(guard, events, "system.resumed")] == ["support-bot"]


def test_incident_rules_run_on_the_guards_events(make_guard: Any, tmp_path: Path, events: Any) -> None:
    rule = {"id": "escalations", "when": {"event": "exchange", "status": "escalated"}, "count": 2, "window_s": 60, "severity": "low"}
    guard = make_guard(lambda d: records_policy(d, tmp_path, rules=[rule]))

    async def escalate() -> None:
        async with GuardedExchange(guard, "support-bot") as ex:
            with pytest.raises(Blocked):
                await ex.check_input("I will take legal action")

    for _ in range(3):
        asyncio.run(escalate())
        guard.flush()  # one batch each: the second opens the incident, the third folds into it
    guard.flush()  # the incident events emitted while exporting the last batch
    [incident] = guard.records.list_incidents()  # type: ignore[union-attr]
    exchanges = [e for e in events.events("exchange") if e["status"] == "escalated"]
    assert incident.rule == "escalations" and incident.count == 3
    assert incident.event_ids == [e["event_id"] for e in exchanges]
    assert [e["event"] for e in events.events() if e["event"].startswith("incident.")] == ["incident.opened", "incident.folded"]


def test_a_stop_switch_stays_as_last_read_while_the_store_cannot_be_read(make_guard: Any, tmp_path: Path, events: Any) -> None:
    guard = make_guard(_records(tmp_path))
    HumanOversight(guard).set_stopped("support-bot", True, by="oncall")
    guard.oversight.poll()
    with guard.records.engine.begin() as connection:  # type: ignore[union-attr]
        connection.exec_driver_sql("DROP TABLE system_switches")
    errors = guard.oversight_metrics.records_errors.labels("poll")
    deadline = time.monotonic() + 5
    while errors._value.get() < 3:  # several polls (every 0.1 s) have failed
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert guard.is_stopped("support-bot")  # fail-safe for a switch that was on: it stays on
    assert [e["operation"] for e in _events(guard, events, "records.failed")] == ["poll"]  # one event per outage
