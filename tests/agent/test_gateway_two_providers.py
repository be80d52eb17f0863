"""One gateway, one policy, two systems: an OpenAI-compatible upstream and an Anthropic-compatible
one, each called with the credentials and headers its API expects."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from aimsguard.agent import Guard, create_gateway, parse_policy

from ..support import ServerThread, policy_dict, test_registry
from .test_dialects_e2e import fake_upstream


@pytest.fixture
def two_systems(tmp_path: Path, events: Any) -> Any:
    """support-bot (OpenAI, the policy's key) and claude-bot (Anthropic, the policy's key or the caller's)."""
    app = fake_upstream()
    servers: list[ServerThread] = []
    guards: list[Guard] = []

    def start(claude_key: str | None) -> tuple[str, list[dict[str, Any]], Guard]:
        upstream = ServerThread(app).__enter__()
        data = policy_dict(tmp_path, upstream.url + "/v1")
        claude = {**data["systems"]["support-bot"], "name": "Claude support assistant"}
        claude["upstream"] = {"base_url": upstream.url + "/v1", "provider": "anthropic", "headers": {"anthropic-beta": "from-policy"}}
        if claude_key is not None:
            claude["upstream"]["api_key"] = claude_key
        data["systems"]["claude-bot"] = claude
        data["systems"]["support-bot"]["upstream"]["api_key"] = "openai-upstream-key"
        guard = Guard(parse_policy(data, registry=test_registry()), registry=test_registry(), exporters=[events])
        gateway = ServerThread(create_gateway(guard)).__enter__()
        servers.extend([upstream, gateway])
        guards.append(guard)
        return gateway.url, app.state.seen, guard

    yield start
    for server in reversed(servers):
        server.__exit__()
    for guard in guards:
        guard.close()


def test_each_upstream_gets_the_credentials_its_api_expects(two_systems: Any, events: Any) -> None:
    url, seen, guard = two_systems("anthropic-upstream-key")
    chat = openai.OpenAI(base_url=url + "/systems/support-bot/v1", api_key="caller-openai-key", max_retries=0)
    claude = anthropic.Anthropic(
        base_url=url + "/systems/claude-bot", api_key="caller-anthropic-key", max_retries=0, default_headers={"anthropic-version": "2023-06-01"}
    )
    assert chat.chat.completions.create(model="m", messages=[{"role": "user", "content": "say: hi"}]).choices[0].message.content == "hi"
    message = claude.messages.create(model="m", max_tokens=16, messages=[{"role": "user", "content": "say: hello"}])
    assert message.content[0].text == "hello" and message.stop_reason == "end_turn"

    to_openai, to_anthropic = seen
    assert to_openai["case"] == "openai-chat" and to_openai["headers"]["authorization"] == "Bearer openai-upstream-key"
    assert "x-api-key" not in to_openai["headers"]
    assert to_anthropic["case"] == "anthropic-messages"
    assert to_anthropic["headers"]["x-api-key"] == "anthropic-upstream-key"  # the policy's key, never the caller's
    assert "authorization" not in to_anthropic["headers"]
    assert to_anthropic["headers"]["anthropic-version"] == "2023-06-01"  # what the client sent goes on
    assert to_anthropic["headers"]["anthropic-beta"] == "from-policy"  # the upstream's configured headers too
    deadline = time.monotonic() + 5  # the exchange is recorded just after the answer goes out
    while len(events.events("exchange")) < 2 and time.monotonic() < deadline:
        guard.flush()
        time.sleep(0.02)
    systems = {(e["system"], e["provider"]) for e in events.events("exchange")}
    assert systems == {("support-bot", "openai"), ("claude-bot", "anthropic")}


def test_without_a_key_in_the_policy_the_callers_credentials_and_beta_header_go_on(two_systems: Any) -> None:
    url, seen, _ = two_systems(None)
    claude = anthropic.Anthropic(base_url=url + "/systems/claude-bot", api_key="caller-anthropic-key", max_retries=0)
    claude.messages.create(
        model="m", max_tokens=16, messages=[{"role": "user", "content": "say: hello"}], extra_headers={"anthropic-beta": "tools-2024"}
    )
    credentials = seen[-1]["headers"].get("x-api-key") or seen[-1]["headers"].get("authorization")  # as the client sent it
    assert credentials is not None and credentials.endswith("caller-anthropic-key")
    assert seen[-1]["headers"]["anthropic-beta"] == "tools-2024"


def test_the_gateways_own_errors_on_the_messages_route_are_anthropic_shaped(two_systems: Any, events: Any) -> None:
    url, _, _ = two_systems("k")
    claude = anthropic.Anthropic(base_url=url + "/systems/claude-bot", api_key="k", max_retries=0)
    with pytest.raises(anthropic.BadRequestError) as caught:
        claude.messages.create(model="m", max_tokens=16, messages=[])
    assert caught.value.body["type"] == "error" and caught.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    with pytest.raises(anthropic.NotFoundError) as missing:
        anthropic.Anthropic(base_url=url + "/systems/nobody", api_key="k", max_retries=0).messages.create(
            model="m", max_tokens=16, messages=[{"role": "user", "content": "hi"}]
        )
    assert missing.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
