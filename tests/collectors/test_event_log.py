import json
import os
from pathlib import Path

import httpx
import pytest

from aimsguard.agent import AimsguardMiddleware
from aimsguard.collectors import ExportResult, JsonlEventLog


def _event(n: int, day: str = "2026-11-26") -> dict:
    return {"event": "exchange", "ts": f"{day}T10:00:00Z", "n": n}


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_events_are_written_one_json_line_each_in_a_file_per_day(tmp_path: Path) -> None:
    log = JsonlEventLog(tmp_path)
    assert log.export([_event(1), _event(2, "2026-11-27")]) is ExportResult.SUCCESS
    assert [e["n"] for e in _lines(tmp_path / "events-2026-11-26.jsonl")] == [1]
    assert [e["n"] for e in _lines(tmp_path / "events-2026-11-27.jsonl")] == [2]


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full to simulate a full disk")
def test_a_full_disk_loses_nothing_and_the_lines_are_written_once_it_recovers(tmp_path: Path) -> None:
    target = tmp_path / "events-2026-11-26.jsonl"
    target.symlink_to("/dev/full")  # every write: ENOSPC, as on a full disk
    log = JsonlEventLog(tmp_path)
    assert log.export([_event(1), _event(2)]) is ExportResult.FAILURE
    assert not log.healthy
    target.unlink()
    assert log.export([_event(3)]) is ExportResult.SUCCESS
    assert log.healthy
    assert [e["n"] for e in _lines(target)] == [1, 2, 3]


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full to simulate a full disk")
def test_the_retry_buffer_is_bounded_and_overflow_is_counted(tmp_path: Path) -> None:
    (tmp_path / "events-2026-11-26.jsonl").symlink_to("/dev/full")
    lost: list[int] = []
    log = JsonlEventLog(tmp_path, max_pending=3, on_lost=lost.append)
    log.export([_event(i) for i in range(5)])
    assert log.lost == 2 and lost == [2]


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full to simulate a full disk")
@pytest.mark.anyio
@pytest.mark.parametrize(("fail_mode", "status"), [("closed", 503), ("open", 200)])
async def test_a_failing_event_log_refuses_requests_only_when_the_policy_fails_closed(make_guard, tmp_path, fail_mode, status) -> None:
    def set_fail_mode(data):
        data["event_log"]["fail_mode"] = fail_mode

    guard = make_guard(set_fail_mode)
    day_files = guard.event_log.directory
    guard.flush()
    for path in day_files.glob("events-*.jsonl"):
        path.unlink()
        path.symlink_to("/dev/full")
    guard.events.emit("probe")
    guard.flush()
    assert not guard.event_log.healthy

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b'{"choices": [{"index": 0, "message": {"content": "ok"}}]}'})

    transport = httpx.ASGITransport(app=AimsguardMiddleware(app, guard=guard))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.post("/v1/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == status
    if status == 503:
        assert response.json()["error"]["code"] == "event_log_unavailable"
