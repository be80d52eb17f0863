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
from aimsguard.agent._oversight import WITHHELD, BoundedWrites, HumanOversight
from aimsguard.collectors.records import HandoffStatus

from ..records_db import BACKENDS, database_url
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


def _break_table(guard: Guard, name: str) -> None:
    """Make one of the store's tables unreadable and unwritable while it still exists (a view
    of the same name with none of its columns); a table that went missing would be re-created
    by the next polls."""
    with guard.records.engine.begin() as connection:  # type: ignore[union-attr]
        connection.exec_driver_sql(f"DROP TABLE {name}")
        connection.exec_driver_sql(f"CREATE VIEW {name} AS SELECT 1 AS broken")


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

    # The ticket holds what the user wrote for the reviewer to judge: the address redacted,
    # the words the rule matched readable (a reviewer must see them), the system prompt left out.
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
    oversight.close(handoff_id, "alice")  # closing an answered ticket keeps the answer readable
    closed = httpx.get(f"{url}/v1/handoffs/{handoff_id}", headers={"authorization": "Bearer client-1"}).json()
    assert closed == {**answered, "status": "closed"}

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
    _break_table(guard, "handoffs")
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
    ready = httpx.get(url + "/readyz").json()
    assert ready["status"] == "ready" and ready["records"] == "ok" and ready["stopped_systems"] == ["support-bot"]

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
    _break_table(guard, "system_switches")
    errors = guard.oversight_metrics.records_errors.labels("poll")
    deadline = time.monotonic() + 5
    while errors._value.get() < 3:  # several polls (every 0.1 s) have failed
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert guard.is_stopped("support-bot")  # fail-safe for a switch that was on: it stays on
    assert guard.oversight.records_state == "failing"  # what /readyz reports (without going unready)
    assert [e["operation"] for e in _events(guard, events, "records.failed")] == ["poll"]  # one event per outage


def test_a_ticket_masks_data_that_was_only_blocked_and_keeps_the_verdict_reasons(gateway: Any, tmp_path: Path) -> None:
    url, guard = gateway(_records(tmp_path))
    # CREDIT_CARD is a block action (no replacement); the legal threat escalates, which outranks it.
    response = _chat(url, "I will take legal action, my card is 4111 1111 1111 1111")
    ticket = guard.records.get_handoff(response.json()["aimsguard"]["handoff_id"])  # type: ignore[union-attr]
    assert ticket is not None
    assert "4111" not in json.dumps(ticket.conversation) and "<CREDIT_CARD>" in ticket.conversation[0]["content"]
    reasons = {v["guardrail"]: v["reasons"] for v in ticket.verdicts}
    assert reasons["input-rules"] == ["legal matters go to a person"]
    assert reasons["pii-in"] == ["personal data: CREDIT_CARD"]
    assert "4111" not in json.dumps(ticket.verdicts)


def test_a_ticket_withholds_the_conversation_when_the_personal_data_check_did_not_run(gateway: Any, tmp_path: Path) -> None:
    def mutate(data: dict[str, Any]) -> None:
        records_policy(data, tmp_path)
        [pii] = [c for c in data["systems"]["support-bot"]["checks"]["input"] if c["id"] == "pii-in"]
        pii["timeout_ms"] = 0.0001  # always overruns: a timeout verdict, no findings

    url, guard = gateway(mutate)
    response = _chat(url, "I will take legal action, write to me at jane.doe@example.com")
    ticket = guard.records.get_handoff(response.json()["aimsguard"]["handoff_id"])  # type: ignore[union-attr]
    assert ticket is not None
    assert [v["outcome"] for v in ticket.verdicts if v["guardrail"] == "pii-in"] == ["timeout"]
    assert ticket.conversation == [{"role": "notice", "content": WITHHELD}]


def test_ticket_writes_fail_fast_when_every_records_writer_is_busy() -> None:
    writes = BoundedWrites(workers=1)
    release = threading.Event()

    async def scenario() -> None:
        slow = asyncio.create_task(writes.run(lambda: release.wait(5), 5))
        await asyncio.sleep(0.05)
        started = time.perf_counter()
        with pytest.raises(TimeoutError):
            await writes.run(lambda: "never runs", 5)
        assert time.perf_counter() - started < 0.1  # at once, not after the 5 s budget
        release.set()
        assert await slow is True
        assert await writes.run(lambda: "ok", 1) == "ok"  # the slot came back

    try:
        asyncio.run(scenario())
    finally:
        release.set()
        writes.close()


def test_an_unreadable_store_answers_503_counted_with_one_event_per_outage(gateway: Any, tmp_path: Path, events: Any) -> None:
    url, guard = gateway(_records(tmp_path))
    _break_table(guard, "handoffs")
    for _ in range(2):
        response = httpx.get(f"{url}/v1/handoffs/hnd_abcdefghijklmnop")
        assert response.status_code == 503 and response.json()["error"]["code"] == "records_unavailable"
    assert _metric(url, 'aimsguard_records_errors_total{operation="handoff_read"}') == 2
    reads = [e for e in _events(guard, events, "records.failed") if e["operation"] == "handoff_read"]
    assert len(reads) == 1  # (the poll fails too, with its own event)


def test_a_webhook_given_up_on_is_written_as_an_event_with_the_ticket_id_only(gateway: Any, tmp_path: Path, events: Any) -> None:
    async def refuse(request: Request) -> Response:
        return JSONResponse({"error": "no"}, status_code=400)

    with ServerThread(Starlette(routes=[Route("/hook", refuse, methods=["POST"])])) as receiver:
        url, guard = gateway(_records(tmp_path, fallback={"handoff_webhook": {"url": f"{receiver.url}/hook", "retries": 2}}))
        handoff_id = _chat(url, ESCALATING).json()["aimsguard"]["handoff_id"]
        deadline = time.monotonic() + 5
        while not _events(guard, events, "handoff.webhook_failed"):
            assert time.monotonic() < deadline
            time.sleep(0.05)
    [failed] = events.events("handoff.webhook_failed")
    assert (failed["handoff_id"], failed["system"], failed["problem"], failed["attempts"]) == (handoff_id, "support-bot", "HTTP 400", 1)
    assert "jane.doe" not in json.dumps(failed) and "legal" not in json.dumps(failed)


def test_a_schema_upgrade_that_failed_at_start_is_retried_by_the_poll(make_guard: Any, tmp_path: Path, events: Any) -> None:
    database = tmp_path / "records.db"
    database.mkdir()  # a directory where the file should be: the database cannot be opened

    guard = make_guard(_records(tmp_path))
    assert [e["operation"] for e in _events(guard, events, "records.failed")][:1] == ["upgrade"]
    database.rmdir()  # the database comes back (empty: never migrated)
    deadline = time.monotonic() + 5
    while not guard.oversight._schema_ready:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert guard.records.revision() is not None  # type: ignore[union-attr]
    assert guard.records.list_handoffs() == []  # type: ignore[union-attr]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_records_database_recreated_empty_recovers_without_a_restart(
    make_guard: Any, tmp_path: Path, events: Any, backend: str
) -> None:
    from sqlalchemy import text
    from starlette.testclient import TestClient

    from aimsguard.agent import create_gateway
    from aimsguard.collectors.records._models import Base

    with database_url(backend, tmp_path) as url:
        guard = make_guard(lambda data: records_policy(data, tmp_path, url=url))
        store = guard.records
        assert store is not None and guard.oversight.records_state == "ok"
        HumanOversight(guard).set_stopped("support-bot", True, by="rob", reason="drill")

        # The database is recreated empty under the running guard: every table dropped.
        with store.engine.begin() as connection:
            Base.metadata.drop_all(connection)
            connection.execute(text("DROP TABLE aimsguard_alembic_version"))

        with TestClient(create_gateway(guard)) as client:
            deadline = time.monotonic() + 10  # polls every 0.1 s; recovery takes two
            while not _events(guard, events, "records.schema_missing") or client.get("/readyz").json()["records"] != "ok":
                assert time.monotonic() < deadline, client.get("/readyz").json()
                time.sleep(0.05)
        assert store.missing_tables() == []
        assert store.revision() is not None
        assert store.list_handoffs() == []
        # The stop in force here is written back, not lost with the tables.
        assert guard.is_stopped("support-bot") and store.stopped_systems() == {"support-bot"}
        [missing] = _events(guard, events, "records.schema_missing")
        assert "handoffs" in missing["tables"] and missing["stopped_systems"] == ["support-bot"]
        guard.close()  # before the PostgreSQL schema is dropped
