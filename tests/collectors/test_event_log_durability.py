"""``event_log.durability: request``: an answer leaves only once its exchange event is on disk,
so ``kill -9`` under load loses answers in flight, never the record of an answer given."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from aimsguard.agent import AimsguardMiddleware
from aimsguard.agent._errors import EventLogUnavailable
from aimsguard.collectors import EventBus, read_events
from aimsguard.collectors._exporter import ExportResult

from ..support import free_port, policy_dict, write_policy



def test_kill_9_under_load_in_request_mode_loses_no_answered_exchange(tmp_path: Path, upstream: Any) -> None:
    data = policy_dict(tmp_path, upstream.url + "/v1")
    data["event_log"]["durability"] = "request"
    policy = write_policy(tmp_path, data)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "aimsguard.agent.cli", "gateway", "--config", str(policy), "--port", str(port)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    answered: list[str] = []  # request ids of the answers clients received whole
    stop = threading.Event()

    def client(n: int) -> None:
        with httpx.Client(base_url=url, timeout=30) as http:
            while not stop.is_set():
                body = {"model": "demo", "stream": n % 2 == 1, "messages": [{"role": "user", "content": "How much is the Pro plan?"}]}
                try:
                    response = http.post("/v1/chat/completions", json=body)
                    if response.status_code == 200 and (n % 2 == 0 or response.text.rstrip().endswith("[DONE]")):
                        answered.append(response.headers["x-aimsguard-request-id"])
                except httpx.TransportError:
                    return  # the gateway is gone

    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(url + "/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, "the gateway did not start"
            time.sleep(0.2)
        clients = [threading.Thread(target=client, args=(n,)) for n in range(6)]
        for thread in clients:
            thread.start()
        while len(answered) < 40:
            assert all(thread.is_alive() for thread in clients)
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)  # mid-load: requests are in flight
        process.wait(10)
        stop.set()
        for thread in clients:
            thread.join(30)
    finally:
        stop.set()
        if process.poll() is None:
            process.kill()
    logged = {e["request_id"] for e in read_events(tmp_path / "events") if e["event"] == "exchange"}
    assert set(answered) <= logged, f"{len(set(answered) - logged)} answered exchanges are not in the log"
    # Recorded but not received: at most the requests in flight when the process died.
    assert len(logged) - len(answered) <= len(clients)


def test_concurrent_waiters_share_one_write_and_a_failed_write_releases_none() -> None:
    class CountingLog:
        name = "event_log"

        def __init__(self) -> None:
            self.batches: list[int] = []
            self.fail = False

        def export(self, batch: Any) -> ExportResult:
            time.sleep(0.05)  # as long as an fsync on a slow disk
            self.batches.append(len(batch))
            return ExportResult.FAILURE if self.fail else ExportResult.SUCCESS

        def force_flush(self, timeout: float = 10.0) -> bool:
            return True

        def shutdown(self) -> None:
            pass

    log = CountingLog()
    bus = EventBus([log], durable=log, flush_interval_s=5)  # only a waiter wakes the worker early

    async def request(n: int) -> bool:
        bus.emit({"event": "exchange", "n": n})
        return await bus.written(5)

    async def burst() -> list[bool]:
        return list(await asyncio.gather(*(request(n) for n in range(50))))

    started = time.monotonic()
    assert asyncio.run(burst()) == [True] * 50
    assert time.monotonic() - started < 2  # woken at once, not after the 5 s interval
    assert len(log.batches) <= 3 and sum(log.batches) == 50  # grouped: not one write per request
    log.fail = True
    assert asyncio.run(burst()) == [False] * 50  # the log keeps them for a retry; the answers are told
    bus.shutdown()


def test_in_request_mode_the_exchange_is_on_disk_when_its_answer_arrives(gateway: Any) -> None:
    def request_mode(data: dict[str, Any]) -> None:
        data["event_log"]["durability"] = "request"

    url, guard = gateway(request_mode)
    for stream in (False, True):
        body = {"model": "demo", "stream": stream, "messages": [{"role": "user", "content": "How much is the Pro plan?"}]}
        response = httpx.post(url + "/v1/chat/completions", json=body, timeout=30)
        assert response.status_code == 200
        # No flush, no waiting: the record was written (and synced) before the answer left.
        logged = [e for e in read_events(guard.policy.event_log.directory) if e["event"] == "exchange"]
        assert logged[-1]["request_id"] == response.headers["x-aimsguard-request-id"] and logged[-1]["stream"] is stream
        assert logged[-1]["status"] == "ok" and logged[-1]["upstream_ms"] is not None


@pytest.mark.anyio
@pytest.mark.parametrize("fail_mode", ["closed", "open"])
async def test_an_answer_whose_event_cannot_be_written_is_withheld_only_when_the_policy_fails_closed(make_guard: Any, fail_mode: str) -> None:
    def request_mode(data: dict[str, Any]) -> None:
        data["event_log"].update(durability="request", fail_mode=fail_mode)

    guard = make_guard(request_mode)
    guard.flush()
    segment = guard.event_log.current_segment
    segment.unlink()
    segment.symlink_to("/dev/full")  # the next write fails: the disk is full

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b'{"choices": [{"index": 0, "message": {"role": "assistant", "content": "the answer"}}]}'})

    transport = httpx.ASGITransport(app=AimsguardMiddleware(app, guard=guard))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        ask = client.post("/v1/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": "hi"}]})
        if fail_mode == "closed":
            with pytest.raises(EventLogUnavailable):  # the connection ends without the answer
                await ask
        else:
            response = await ask
            assert response.status_code == 200 and response.json()["choices"][0]["message"]["content"] == "the answer"
    assert not guard.event_log.healthy
