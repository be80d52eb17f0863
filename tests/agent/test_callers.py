"""Virtual API keys and their limits, through the gateway with the real openai client."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Any

import httpx
import openai
import pytest

from aimsguard.agent._callers import Caller, Callers, count_tokens, presented_key
from aimsguard.collectors import StateError
from aimsguard.agent._exchange import Exchange
from aimsguard.collectors.records import parse_key

from ..redis_server import PrivateRedis, shared_redis
from ..support import records_policy


def _user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def _client(url: str, key: str, **kwargs: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0, **kwargs)


@pytest.fixture
def keyed(gateway, tmp_path, upstream):
    """A gateway whose support-bot requires keys; returns (url, guard, make_key)."""

    def start(require_key: bool = True, state: dict[str, Any] | None = None, replica: str = "", **callers: Any):
        def mutate(data: dict[str, Any]) -> None:
            records_policy(data, tmp_path)
            if state is not None:
                data["state"] = {"key": base64.urlsafe_b64encode(b"k" * 32).decode(), **state}
            if replica:  # one event log directory per writer
                data["event_log"]["directory"] = str(tmp_path / f"events-{replica}")
            data["systems"]["support-bot"]["callers"] = {"require_key": require_key, **callers}
            data["systems"]["support-bot"]["upstream"]["api_key"] = "sk-upstream-own-key"

        url, guard = gateway(mutate)

        def make_key(**limits: Any) -> str:
            _, key = guard.records.create_key(system="support-bot", by="test", name="t", **limits)
            return key

        return url, guard, make_key

    return start


def _exchanges(guard, events, count: int = 1) -> list[dict]:
    """The exchange events, once there are ``count`` (an exchange is recorded just after its answer went out)."""
    deadline = time.monotonic() + 5
    while True:
        guard.flush()
        found = [e for e in events.events() if e["event"] == "exchange"]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.02)


# -- keys ------------------------------------------------------------------------------------


def test_a_valid_key_is_served_with_the_upstreams_own_key_and_never_forwarded(keyed, events, upstream) -> None:
    url, guard, make_key = keyed()
    key = make_key()
    answer = _client(url, key).chat.completions.create(model="demo", messages=_user("How much is the Pro plan?"))
    assert answer.choices[0].message.content
    seen = upstream.server.config.app.state.seen[-1]["headers"]
    assert seen["authorization"] == "Bearer sk-upstream-own-key"
    assert key not in str(seen)
    [exchange] = _exchanges(guard, events)
    assert exchange["key_id"] == parse_key(key)[0] and exchange["status"] == "ok"
    assert key not in str(events.events())


@pytest.mark.parametrize("header", ["authorization", "x-api-key"])
def test_missing_unknown_and_revoked_keys_get_401_in_openai_shape(keyed, header: str) -> None:
    url, guard, make_key = keyed()
    key = make_key()
    key_id = parse_key(key)[0]

    def call(credential: str | None) -> httpx.Response:
        headers = {}
        if credential is not None:
            headers[header] = f"Bearer {credential}" if header == "authorization" else credential
        return httpx.post(url + "/v1/chat/completions", json={"model": "demo", "messages": _user("hi")}, headers=headers)

    assert call(key).status_code == 200
    for credential in (None, "sk-not-a-virtual-key" if header == "x-api-key" else None, key[:-1] + ("A" if key[-1] != "A" else "B"), "ag-000000000000-" + "x" * 43):
        response = call(credential)
        assert response.status_code == 401, credential
        assert response.json()["error"]["code"] == "invalid_api_key"
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    guard.records.revoke_key(key_id, by="test")
    asyncio.run(guard.callers.announce_revocation())
    response = call(key)
    assert response.status_code == 401 and "revoked" in response.json()["error"]["message"]


def test_the_openai_client_sees_an_authentication_error(keyed) -> None:
    url, _, _ = keyed()
    with pytest.raises(openai.AuthenticationError):
        _client(url, "ag-000000000000-" + "y" * 43).chat.completions.create(model="demo", messages=_user("hi"))


def test_without_require_key_other_credentials_pass_and_a_presented_key_still_counts(keyed, upstream) -> None:
    url, _, make_key = keyed(require_key=False)
    _client(url, "sk-callers-own").chat.completions.create(model="demo", messages=_user("hi"))
    with pytest.raises(openai.AuthenticationError):
        _client(url, "ag-000000000000-" + "z" * 43).chat.completions.create(model="demo", messages=_user("hi"))
    key = make_key(rpm=1)
    client = _client(url, key)
    client.chat.completions.create(model="demo", messages=_user("hi"))
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="demo", messages=_user("hi"))


def test_a_key_of_another_system_is_refused(keyed) -> None:
    url, guard, _ = keyed()
    _, key = guard.records.create_key(system="other-system", by="test")
    with pytest.raises(openai.AuthenticationError):
        _client(url, key).chat.completions.create(model="demo", messages=_user("hi"))


# -- limits ----------------------------------------------------------------------------------


def test_requests_per_minute_give_429_with_retry_after(keyed, events) -> None:
    url, guard, make_key = keyed()
    key = make_key(rpm=2)
    client = _client(url, key)
    for _ in range(2):
        client.chat.completions.create(model="demo", messages=_user("hi"))
    with pytest.raises(openai.RateLimitError) as refused:
        client.chat.completions.create(model="demo", messages=_user("hi"))
    response = refused.value.response
    assert 1 <= int(response.headers["retry-after"]) <= 60
    assert response.json()["error"]["code"] == "rate_limit_exceeded"
    last = _exchanges(guard, events, 3)[-1]
    assert last["status"] == "rejected" and last["error_code"] == "rate_limit_exceeded" and last["key_id"] == parse_key(key)[0]


def test_tokens_per_day_count_the_upstreams_usage(keyed, events) -> None:
    url, guard, make_key = keyed()
    key = make_key(tokens_per_day=30)
    client = _client(url, key)
    answer = client.chat.completions.create(model="demo", messages=_user("How much is the Pro plan? " * 3))
    spent = answer.usage.total_tokens
    assert spent >= 30, "the demo bot's answer alone should spend the day's budget"
    _wait_for(lambda: _exchanges(guard, events) and _exchanges(guard, events)[-1].get("key_tokens") == spent)
    time.sleep(0.2)  # the count is added in the background after the answer
    with pytest.raises(openai.RateLimitError) as refused:
        client.chat.completions.create(model="demo", messages=_user("hi"))
    assert refused.value.response.json()["error"]["code"] == "token_limit_exceeded"
    assert int(refused.value.response.headers["retry-after"]) <= 86400


def test_a_stream_without_usage_is_estimated(keyed, events) -> None:
    url, guard, make_key = keyed()
    key = make_key(tokens_per_day=100_000)
    stream = _client(url, key).chat.completions.create(model="demo", messages=_user("How do I cancel?"), stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    [exchange] = _exchanges(guard, events)
    assert exchange["usage"]["output_tokens"] is None
    assert exchange["key_tokens_estimated"] is True
    assert exchange["key_tokens"] == -(-len("How do I cancel?") // 4) + -(-len(text) // 4)


def _wait_for(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


# -- the pieces ------------------------------------------------------------------------------


def test_presented_key_reads_bearer_and_x_api_key_only_for_virtual_keys() -> None:
    assert presented_key([(b"authorization", b"Bearer ag-abc")]) == "ag-abc"
    assert presented_key([(b"authorization", b"bearer  ag-abc ")]) == "ag-abc"
    assert presented_key([(b"x-api-key", b"ag-abc")]) == "ag-abc"
    assert presented_key([(b"authorization", b"Bearer sk-abc")]) is None
    assert presented_key([(b"authorization", b"Basic ag-abc")]) is None
    assert presented_key([]) is None


def test_count_tokens_prefers_usage_and_spends_nothing_without_an_upstream_call() -> None:
    exchange = Exchange("s", "gateway", input_texts=["a" * 10], output_texts=["b" * 9])
    assert count_tokens(exchange) == (0, False)
    exchange.upstream_started = 1.0
    assert count_tokens(exchange) == (3 + 3, True)
    exchange.input_tokens, exchange.output_tokens = 7, 5
    assert count_tokens(exchange) == (12, False)



class _BrokenState:
    kind = "redis"

    async def count(self, key: str, window_s: float, amount: int = 1):
        raise StateError("ConnectionError: state store down")


@pytest.mark.parametrize("fail_mode", ["open", "closed"])
def test_the_limits_fail_mode_holds_when_the_state_is_down(keyed, events, fail_mode: str) -> None:
    url, guard, make_key = keyed(limits_fail_mode=fail_mode)
    key = make_key(rpm=1)
    guard.callers.state = _BrokenState()
    response = httpx.post(url + "/v1/chat/completions", json={"model": "demo", "messages": _user("hi")}, headers={"authorization": f"Bearer {key}"})
    if fail_mode == "open":
        assert response.status_code == 200
    else:
        assert response.status_code == 503 and response.json()["error"]["code"] == "limits_unavailable"
    guard.flush()
    assert any(e["event"] == "state.failed" and e["use"] == "limits" and e["outcome"] == fail_mode for e in events.events())
    metrics = httpx.get(url + "/metrics").text
    assert f'aimsguard_state_errors_total{{outcome="{fail_mode}",use="limits"}} 1.0' in metrics


def test_keys_are_read_from_the_store_once_until_a_revocation(keyed) -> None:
    url, guard, make_key = keyed()
    key = make_key()
    reads = []
    original = guard.records.get_key
    guard.records.get_key = lambda key_id: reads.append(key_id) or original(key_id)  # type: ignore[method-assign]
    client = _client(url, key)
    for _ in range(5):
        client.chat.completions.create(model="demo", messages=_user("hi"))
    assert len(reads) == 1
    guard.records.revoke_key(parse_key(key)[0], by="someone else")  # e.g. the CLI: this replica is not told
    _wait_for(lambda: _status(url, key) == 401, timeout=3)
    assert len(reads) == 2


def _status(url: str, key: str) -> int:
    return httpx.post(url + "/v1/chat/completions", json={"model": "demo", "messages": _user("hi")}, headers={"authorization": f"Bearer {key}"}).status_code


def test_a_caller_is_what_admit_returns(keyed) -> None:
    _, guard, make_key = keyed()
    key = make_key(rpm=5, tokens_per_day=10)

    async def admit() -> Caller | None:
        return await guard.callers.admit("support-bot", [(b"authorization", f"Bearer {key}".encode())])

    caller = asyncio.run(admit())
    assert caller == Caller(parse_key(key)[0], "support-bot", 5, 10)
    assert isinstance(guard.callers, Callers)


# -- the CLI ---------------------------------------------------------------------------------


@pytest.mark.parametrize("shared", [False, True], ids=["store-poll", "redis"])
def test_keys_cli_creates_lists_and_revokes_and_the_gateway_follows(keyed, tmp_path, shared: bool) -> None:
    from typer.testing import CliRunner

    from aimsguard.agent.cli import app as cli_app

    state = dict(zip(("url", "prefix"), shared_redis())) if shared else None
    url, guard, _ = keyed(state=state)
    policy = tmp_path / "cli-policy.yaml"
    state_line = f"state: {{url: '{state['url']}', prefix: {state['prefix']}}}\n" if state else ""
    policy.write_text(f"records: {{url: 'sqlite:///{tmp_path / 'records.db'}'}}\n{state_line}systems:\n  support-bot: {{name: S, owner: o}}\n")
    runner = CliRunner()
    created = runner.invoke(cli_app, ["keys", "create", "--system", "support-bot", "--rpm", "100", "--tokens-per-day", "5000", "--name", "team-a", "-c", str(policy)])
    assert created.exit_code == 0, created.output
    key = created.stdout.strip().splitlines()[-1]
    key_id = parse_key(key)[0]
    assert _status(url, key) == 200
    listed = runner.invoke(cli_app, ["keys", "list", "--json", "-c", str(policy)])
    [line] = [json.loads(x) for x in listed.stdout.splitlines()]
    assert line["id"] == key_id and line["rpm"] == 100 and line["tokens_per_day"] == 5000 and line["name"] == "team-a"
    assert key.split("-", 2)[2] not in listed.stdout and guard.records.get_key(key_id).secret_hash not in listed.stdout
    revoked = runner.invoke(cli_app, ["keys", "revoke", key_id, "-c", str(policy)])
    assert revoked.exit_code == 0, revoked.output
    started = time.monotonic()
    _wait_for(lambda: _status(url, key) == 401, timeout=3)
    assert time.monotonic() - started < (1.0 if shared else 1.5)
    # Both changes are in the policy's event log, by whom, with the key's id only.
    from aimsguard.agent._policy import load_policy
    from aimsguard.collectors.eventlog import read_events, verify_event_log

    log_dir = load_policy(policy).event_log.directory
    audit = [e for e in read_events(log_dir) if e["event"].startswith("key.")]
    assert [(e["event"], e["key_id"], e["system"]) for e in audit] == [("key.created", key_id, "support-bot"), ("key.revoked", key_id, "support-bot")]
    assert audit[0]["rpm"] == 100 and all(e["by"].startswith("cli:") and e["event_id"] and e["policy_version"] for e in audit)
    assert key.split("-", 2)[2] not in "".join(segment.read_text() for segment in log_dir.glob("*.jsonl"))
    assert not verify_event_log(log_dir).problems
    again = runner.invoke(cli_app, ["keys", "revoke", key_id, "-c", str(policy)])
    assert again.exit_code == 2 and "revoked already" in again.output
    unknown = runner.invoke(cli_app, ["keys", "create", "--system", "nope", "-c", str(policy)])
    assert unknown.exit_code == 2 and "unknown system" in unknown.output


def test_usage_per_key_in_metrics_carries_the_public_id_only(keyed, events) -> None:
    url, guard, make_key = keyed()
    key = make_key(rpm=1)
    key_id = parse_key(key)[0]
    client = _client(url, key)
    client.chat.completions.create(model="demo", messages=_user("How much is the Pro plan?"))
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="demo", messages=_user("hi"))
    with pytest.raises(openai.AuthenticationError):
        _client(url, "ag-000000000000-" + "q" * 43).chat.completions.create(model="demo", messages=_user("hi"))
    _exchanges(guard, events, 3)
    metrics = httpx.get(url + "/metrics").text
    assert f'aimsguard_key_requests_total{{error_code="",key_id="{key_id}",status="ok",system="support-bot"}} 1.0' in metrics
    assert f'aimsguard_key_requests_total{{error_code="rate_limit_exceeded",key_id="{key_id}",status="rejected",system="support-bot"}} 1.0' in metrics
    assert f'aimsguard_key_tokens_total{{key_id="{key_id}",system="support-bot"}}' in metrics
    assert 'aimsguard_caller_refusals_total{reason="unknown",system="support-bot"} 1.0' in metrics
    assert 'aimsguard_caller_refusals_total{reason="rpm",system="support-bot"} 1.0' in metrics
    assert 'key_id="000000000000"' not in metrics and key.split("-", 2)[2] not in metrics


@pytest.mark.anyio
async def test_the_middleware_authenticates_and_limits_callers_too(make_guard, tmp_path) -> None:
    from aimsguard.agent import AimsguardMiddleware

    from .test_middleware import starlette_app

    def mutate(data: dict[str, Any]) -> None:
        records_policy(data, tmp_path)
        data["systems"]["support-bot"]["callers"] = {"require_key": True}

    guard = make_guard(mutate)
    _, key = guard.records.create_key(system="support-bot", by="test", rpm=1)
    app = AimsguardMiddleware(starlette_app(), guard=guard, system="support-bot")
    body = {"model": "own", "messages": _user("hello")}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as http:
        missing = await http.post("/v1/chat/completions", json=body)
        assert missing.status_code == 401 and missing.json()["error"]["code"] == "invalid_api_key"
        assert missing.headers["www-authenticate"].startswith("Bearer")
        assert (await http.post("/v1/chat/completions", json=body, headers={"x-api-key": key})).status_code == 200
        limited = await http.post("/v1/chat/completions", json=body, headers={"x-api-key": key})
        assert limited.status_code == 429 and limited.json()["error"]["type"] == "requests"
        assert (await http.get("/other")).text == "untouched"  # other routes are not the guard's business


# -- across replicas, through Redis ----------------------------------------------------------


def test_two_replicas_share_a_keys_limits_and_its_revocation_through_redis(keyed) -> None:
    url, prefix = shared_redis()
    state = {"url": url, "prefix": prefix}
    first, guard, make_key = keyed(state=state, replica="a")
    second, _, _ = keyed(state=state, replica="b")
    key = make_key(rpm=3)
    statuses = [_status(base, key) for base in (first, second, first, second)]
    assert statuses == [200, 200, 200, 429]  # one count for both replicas
    other = make_key()
    assert _status(first, other) == _status(second, other) == 200  # both have it cached now
    key_id = parse_key(other)[0]
    guard.records.revoke_key(key_id, by="test")
    asyncio.run(guard.callers.announce_revocation())  # as the console does, on replica a
    started = time.monotonic()
    _wait_for(lambda: _status(second, other) == 401, timeout=3)
    assert time.monotonic() - started < 1.0


def test_limits_fail_open_while_redis_is_down_and_recover_by_themselves(keyed, tmp_path, events) -> None:
    with PrivateRedis(tmp_path) as redis:
        base, guard, make_key = keyed(state={"url": redis.url, "timeout_ms": 100})
        key = make_key(rpm=1)
        assert _status(base, key) == 200
        assert _status(base, key) == 429
        redis.stop()
        assert [_status(base, key) for _ in range(3)] == [200, 200, 200]  # open: served, unlimited
        redis.start()  # empty: the minute's count starts again
        _wait_for(lambda: _status(base, key) == 429, timeout=5)
    guard.flush()
    kinds = [(e["event"], e.get("use")) for e in events.events() if e["event"].startswith("state.")]
    assert ("state.failed", "limits") in kinds and ("state.recovered", "limits") in kinds
