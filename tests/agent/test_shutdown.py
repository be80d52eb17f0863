"""SIGTERM (docker stop, systemd, Kubernetes) under load: in-flight requests finish, the event
log is closed with a digest for every segment, the process exits 0, and the next start
begins a new segment."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from aimsguard.agent import create_gateway
from aimsguard.collectors import read_events, verify_event_log
from aimsguard.collectors.eventlog import list_segments

from ..support import ServerThread, free_port, policy_dict, write_policy

SLOW = "slow: " + " ".join(f"word{n}" for n in range(12))  # about 1.2 s of streaming



def _start(policy: Path, port: int, workers: int, *options: str, stdout: int = subprocess.DEVNULL) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "aimsguard.agent.cli", "gateway", "--config", str(policy), "--port", str(port), "--workers", str(workers), *options]
    process = subprocess.Popen(command, stdout=stdout, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 90
    try:
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                    return process
            except httpx.TransportError:
                pass
            assert process.poll() is None, process.communicate()[1]
            assert time.monotonic() < deadline, "the gateway did not start"
            time.sleep(0.2)
    except BaseException:
        process.kill()
        process.wait()
        raise


def _stream(url: str, started: threading.Semaphore, answers: list[str]) -> None:
    body = {"model": "demo", "stream": True, "messages": [{"role": "user", "content": SLOW}]}
    with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=30) as response:
        chunks = response.iter_text()
        text = next(chunks)
        started.release()
        text += "".join(chunks)
    answers.append(text)


def _exchanges(directory: Path) -> int:
    return sum(1 for event in read_events(directory) if event["event"] == "exchange")


def test_sigterm_under_load_drains_requests_closes_every_segment_and_exits_0(tmp_path: Path, upstream: Any) -> None:
    policy = write_policy(tmp_path, policy_dict(tmp_path, upstream.url + "/v1"))
    directory = tmp_path / "events"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = _start(policy, port, 1)
    try:
        answers: list[str] = []
        started = threading.Semaphore(0)
        clients = [threading.Thread(target=_stream, args=(url, started, answers)) for _ in range(4)]
        for client in clients:
            client.start()
        for _ in clients:
            assert started.acquire(timeout=30)  # every stream is under way...
        process.send_signal(signal.SIGTERM)  # ...when the stop comes
        for client in clients:
            client.join(30)
        assert process.wait(60) == 0, process.communicate()[1]
    finally:
        if process.poll() is None:
            process.kill()
    assert len(answers) == 4 and all(answer.rstrip().endswith("data: [DONE]") for answer in answers)

    report = verify_event_log(directory)
    assert report.ok, report.problems
    segments = list_segments(directory)
    assert segments and all(segment.digest_path.exists() for segment in segments)
    assert _exchanges(directory) == 4

    # The next start begins a new segment, and stops as cleanly.
    process = _start(policy, port, 1)
    try:
        assert httpx.post(url + "/v1/chat/completions", json={"model": "demo", "messages": [{"role": "user", "content": "How much is the Pro plan?"}]}, timeout=30).status_code == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0
    finally:
        if process.poll() is None:
            process.kill()
    after = list_segments(directory)
    assert len(after) == len(segments) + 1 and all(segment.digest_path.exists() for segment in after)
    assert verify_event_log(directory).ok and _exchanges(directory) == 5


def test_a_worker_app_closes_its_own_guard_with_the_segments_digest_when_it_shuts_down(make_guard: Any, upstream: Any) -> None:
    """Each --workers process owns its guard; uvicorn ends it with the SIGTERM it raises again
    after the app's shutdown, so the shutdown itself must close the log."""
    guard = make_guard()
    with ServerThread(create_gateway(guard, owns_guard=True)) as server:
        body = {"model": "demo", "messages": [{"role": "user", "content": "How much is the Pro plan?"}]}
        assert httpx.post(server.url + "/v1/chat/completions", json=body, timeout=30).status_code == 200
    segments = list_segments(guard.policy.event_log.directory)
    assert segments and all(segment.digest_path.exists() for segment in segments)
    assert _exchanges(guard.policy.event_log.directory) == 1


def test_the_access_log_naming_client_addresses_is_off_unless_asked(tmp_path: Path) -> None:
    policy = write_policy(tmp_path, policy_dict(tmp_path))
    for workers, options, logged in ((1, (), False), (2, (), False), (1, ("--access-log",), True)):
        port = free_port()
        process = _start(policy, port, workers, *options, stdout=subprocess.PIPE)  # (uvicorn's access log goes to stdout)
        for _ in range(3):
            httpx.get(f"http://127.0.0.1:{port}/healthz")
        process.send_signal(signal.SIGTERM)
        output = "".join(process.communicate(timeout=60))
        assert process.returncode == 0
        assert ("127.0.0.1:" in output and '"GET /healthz HTTP/1.1" 200' in output) is logged, (workers, options, output[-2000:])
