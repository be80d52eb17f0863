"""A fleet: three gateway processes sharing PostgreSQL (records) and Redis (state), called
round-robin, as a load balancer would. What one replica learns, the others act on.

To add a case: take the module's ``fleet`` fixture (``Fleet``: ``urls``, ``next_url()`` for
the round robin, ``chat()``, ``upstream``, ``redis``), put what its policy needs in
``_fleet_policy``, and add the test above the outage test (which stays last: it stops Redis).
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.agent.console_helpers import PASSWORDS, csrf_of, with_console
from tests.records_db import database_url
from tests.redis_server import PrivateRedis
from tests.support import ServerThread, free_port, make_upstream, policy_dict, records_policy, write_policy

pytestmark = pytest.mark.slow

REPLICAS = 3
STATE_KEY = "q0ZtE8bQ2n3lqk9m0tHk1cVd5y6kY3sJ8wX1aB2cD3E="  # a test key (32 bytes), never a real one


class Fleet:
    def __init__(self, processes: list[subprocess.Popen[bytes]], ports: list[int], upstream: Any) -> None:
        self.processes = processes
        self.urls = [f"http://127.0.0.1:{port}" for port in ports]
        self.upstream = upstream
        self._turn = itertools.cycle(range(len(ports)))
        self.redis: PrivateRedis | None = None
        self.directory: Path | None = None

    def next_url(self) -> str:
        return self.urls[next(self._turn)]

    def chat(self, url: str, text: str, conversation: str = "c-1") -> httpx.Response:
        return httpx.post(
            url + "/v1/chat/completions",
            json={"model": "demo", "messages": [{"role": "user", "content": text}]},
            headers={"authorization": "Bearer fleet-test", "x-aimsguard-conversation-id": conversation},
            timeout=20,
        )

    def alive(self) -> bool:
        return all(process.poll() is None for process in self.processes)


def _start(tmp_path: Path, data: dict[str, Any], index: int) -> tuple[subprocess.Popen[bytes], int]:
    replica = tmp_path / f"replica-{index}"
    replica.mkdir()
    data = {**data, "event_log": {**data["event_log"], "directory": str(replica / "events")}}  # one chain per replica
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "aimsguard.agent.cli", "gateway", "--config", str(write_policy(replica, data)), "--port", str(port)],
        env={**os.environ, "AIMSGUARD_STATE_KEY": STATE_KEY}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    return process, port


def _wait_ready(fleet: Fleet) -> None:
    deadline = time.monotonic() + 60
    for url, process in zip(fleet.urls, fleet.processes):
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"a replica exited: {process.stderr.read().decode()[-2000:] if process.stderr else ''}")
            try:
                if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("a replica did not become ready")
            time.sleep(0.1)


def _fleet_policy(data: dict[str, Any]) -> None:
    """The policy every replica runs (add what a new case needs here)."""
    data["records"]["stop_poll_s"] = 30  # the poll alone would carry a stop in up to 30 s: the fast path must do it


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    """One fleet for the module (starting three gateways costs seconds): on a Redis of its
    own, which the outage test, last, stops and starts again."""
    tmp_path = tmp_path_factory.mktemp("fleet")
    with ServerThread(make_upstream()) as upstream, database_url("postgresql", tmp_path) as records_url, PrivateRedis(tmp_path) as redis:
        data = records_policy(policy_dict(tmp_path, upstream.url + "/v1"), tmp_path, url=records_url)
        with_console(data)
        data["state"] = {"url": redis.url, "prefix": "fleet", "timeout_ms": 200}
        _fleet_policy(data)
        started = [_start(tmp_path, data, index) for index in range(REPLICAS)]
        fleet = Fleet([p for p, _ in started], [port for _, port in started], upstream.server.config.app)
        fleet.redis, fleet.directory = redis, tmp_path
        try:
            _wait_ready(fleet)
            yield fleet
        finally:
            for process in fleet.processes:
                process.terminate()
            for process in fleet.processes:
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    process.kill()


def _answer(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    return str(response.json()["choices"][0]["message"]["content"])


def test_a_conversations_placeholders_restore_on_every_replica(fleet: Fleet) -> None:
    first = fleet.next_url()
    assert "ada.lovelace@example.com" in _answer(fleet.chat(first, "repeat after me: write to ada.lovelace@example.com"))
    for _ in range(REPLICAS):
        url = fleet.next_url()
        assert "ada.lovelace@example.com" in _answer(fleet.chat(url, "repeat after me: <EMAIL_ADDRESS_1>"))
    # The same value keeps its number on another replica; a new one takes the next.
    _answer(fleet.chat(fleet.next_url(), "repeat after me: bob@example.org and ada.lovelace@example.com"))
    upstream_saw = fleet.upstream.state.seen[-1]["payload"]["messages"][-1]["content"]
    assert "<EMAIL_ADDRESS_2> and <EMAIL_ADDRESS_1>" in upstream_saw and "example" not in upstream_saw
    # Another conversation cannot read them back.
    assert "<EMAIL_ADDRESS_1>" in _answer(fleet.chat(fleet.next_url(), "repeat after me: <EMAIL_ADDRESS_1>", conversation="c-2"))
    # Encrypted at rest: neither the value nor the conversation id is readable in Redis.
    import redis

    assert fleet.redis is not None
    with redis.Redis.from_url(fleet.redis.url) as client:
        stored = [(key, client.hgetall(key)) for key in client.keys("fleet:vault:*")]
    assert stored and not any(b"example" in str(entry).encode() or b"c-1" in key for key, entry in stored)


def _sign_in(url: str) -> httpx.Client:
    browser = httpx.Client(base_url=url + "/console", follow_redirects=False, timeout=20)
    token = csrf_of(browser.get("/login").text)
    response = browser.post("/login", data={"csrf_token": token, "name": "ada", "password": PASSWORDS["ada"]})
    assert response.status_code == 303, response.text
    return browser


def test_a_console_session_revoked_on_one_replica_is_refused_on_the_others(fleet: Fleet) -> None:
    browser = _sign_in(fleet.urls[0])
    cookie = browser.cookies["aimsguard_console"]
    for url in fleet.urls:  # one cookie, good on every replica (one session secret)
        assert httpx.get(url + "/console/", cookies={"aimsguard_console": cookie}).status_code == 200
    token = csrf_of(browser.get("/").text)
    assert browser.post("/logout", data={"csrf_token": token}).status_code == 303
    for url in fleet.urls:  # the copy taken before signing out, replayed at once
        assert httpx.get(url + "/console/", cookies={"aimsguard_console": cookie}).status_code == 303


def test_wrong_passwords_spread_over_replicas_are_throttled_as_one(fleet: Fleet) -> None:
    statuses = []
    for _ in range(6):  # five free failures for a name, counted across the fleet
        browser = httpx.Client(base_url=fleet.next_url() + "/console", timeout=20)
        token = csrf_of(browser.get("/login").text)
        statuses.append(browser.post("/login", data={"csrf_token": token, "name": "rob", "password": "guess"}).status_code)
    assert statuses == [401] * 5 + [429]


def _stopped(url: str) -> list[str]:
    return list(httpx.get(url + "/readyz", timeout=5).json()["stopped_systems"])


def test_a_stop_on_one_replica_reaches_the_others_without_waiting_for_the_poll(fleet: Fleet) -> None:
    browser = _sign_in(fleet.urls[0])
    token = csrf_of(browser.get("/systems").text)
    form = {"csrf_token": token, "reason": "fleet test", "confirm": "yes"}
    assert browser.post("/systems/loan-assistant/stop", data=form).status_code == 303
    deadline = time.monotonic() + 3
    while not all("loan-assistant" in _stopped(url) for url in fleet.urls) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all("loan-assistant" in _stopped(url) for url in fleet.urls)
    assert browser.post("/systems/loan-assistant/resume", data=form).status_code == 303


def _keyed_status(url: str, key: str) -> httpx.Response:
    return httpx.post(
        url + "/v1/chat/completions", json={"model": "demo", "messages": [{"role": "user", "content": "How much is the Pro plan?"}]},
        headers={"authorization": f"Bearer {key}"}, timeout=20,
    )


def _keys_cli(fleet: Fleet, *arguments: str) -> str:
    """``aimsguard keys ...`` against the fleet's records store and Redis (the first replica's policy); its stdout."""
    assert fleet.directory is not None
    policy = fleet.directory / "replica-0" / "policy.yaml"
    done = subprocess.run(
        [sys.executable, "-m", "aimsguard.agent.cli", "keys", *arguments, "--config", str(policy)],
        capture_output=True, text=True, env={**os.environ, "AIMSGUARD_STATE_KEY": STATE_KEY}, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _create_key(fleet: Fleet, *limits: str) -> str:
    return _keys_cli(fleet, "create", "--system", "support-bot", *limits).strip().splitlines()[-1]


def _refused_everywhere_within_a_second(fleet: Fleet, key: str, status: int) -> None:
    since = time.monotonic()
    pending = set(fleet.urls)
    while pending and time.monotonic() - since < 1.0:
        pending = {url for url in pending if _keyed_status(url, key).status_code != status}
    assert not pending, f"not yet {status} after a second on {sorted(pending)}"


def test_a_key_over_its_limit_is_refused_on_every_replica_within_one_second(fleet: Fleet) -> None:
    # Requests per minute: one count for the fleet (a fixed window per clock minute, so not across its edge).
    if time.time() % 60 > 50:
        time.sleep(61 - time.time() % 60)
    key = _create_key(fleet, "--rpm", "3")
    assert [_keyed_status(fleet.next_url(), key).status_code for _ in range(3)] == [200] * 3
    started = time.monotonic()
    refused = [_keyed_status(url, key) for url in fleet.urls]
    assert time.monotonic() - started < 1.0
    assert [r.status_code for r in refused] == [429] * REPLICAS
    assert all(r.json()["error"]["code"] == "rate_limit_exceeded" and int(r.headers["retry-after"]) >= 1 for r in refused)

    # Tokens per day: the tokens one replica counts after an answer stop every replica within a second.
    key = _create_key(fleet, "--tokens-per-day", "20")
    assert _keyed_status(fleet.next_url(), key).status_code == 200  # under the budget when it starts, over it after
    _refused_everywhere_within_a_second(fleet, key, 429)

    # Revoked with the CLI: refused everywhere within a second (the shared state carries it).
    _keys_cli(fleet, "revoke", key.split("-")[1])
    _refused_everywhere_within_a_second(fleet, key, 401)


def test_redis_stopped_mid_run_fail_modes_hold_and_recovery_is_automatic(fleet: Fleet) -> None:
    """Last in the module: it stops the fleet's Redis."""
    redis = fleet.redis
    assert redis is not None and fleet.directory is not None
    assert "ada.lovelace@example.com" in _answer(fleet.chat(fleet.next_url(), "repeat after me: ada.lovelace@example.com"))
    browser = _sign_in(fleet.urls[0])
    cookie = browser.cookies["aimsguard_console"]

    redis.stop()
    for url in fleet.urls:
        # vault: degrade — still redacted (unnumbered), nothing restored, no crash.
        response = fleet.chat(url, "repeat after me: carol@example.net and <EMAIL_ADDRESS_1>")
        answer = _answer(response)
        assert "carol@example.net" not in answer and "ada.lovelace@example.com" not in answer
        saw = fleet.upstream.state.seen[-1]["payload"]["messages"][-1]["content"]
        assert "<EMAIL_ADDRESS>" in saw and "carol" not in saw
        # sessions: store — the records store answers, the session still works.
        assert httpx.get(url + "/console/", cookies={"aimsguard_console": cookie}).status_code == 200
        # sign_in: closed — no throttling counters, no sign-in.
        signing_in = httpx.Client(base_url=url + "/console", timeout=20)
        token = csrf_of(signing_in.get("/login").text)
        assert signing_in.post("/login", data={"csrf_token": token, "name": "ada", "password": PASSWORDS["ada"]}).status_code == 503
    metrics = httpx.get(fleet.urls[0] + "/metrics").text
    assert 'aimsguard_state_errors_total{outcome="degrade",use="vault"}' in metrics
    assert 'aimsguard_state_errors_total{outcome="store",use="sessions"}' in metrics
    assert 'aimsguard_state_errors_total{outcome="closed",use="sign_in"}' in metrics

    redis.start()  # back, empty (it keeps nothing on disk): no restart of the replicas
    deadline = time.monotonic() + 10
    while True:
        answer = _answer(fleet.chat(fleet.next_url(), "repeat after me: dave@example.com", conversation="c-after"))
        if "dave@example.com" in answer or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert "dave@example.com" in answer
    for _ in range(REPLICAS):
        assert "dave@example.com" in _answer(fleet.chat(fleet.next_url(), "repeat after me: <EMAIL_ADDRESS_1>", conversation="c-after"))
    _sign_in(fleet.next_url())  # signing in works again
    assert fleet.alive()
    # The event log writes in batches off the request path: wait for the batch, not for luck.
    deadline = time.monotonic() + 15
    while True:
        events = "".join(p.read_text() for p in fleet.directory.glob("replica-*/events/*.jsonl"))
        if ('"state.failed"' in events and '"state.recovered"' in events) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert '"state.failed"' in events and '"state.recovered"' in events
