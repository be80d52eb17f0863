"""The shared state at start-up: a shared vault needs its key, said clearly before serving."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aimsguard.agent import Guard
from aimsguard.agent._errors import PolicyError
from aimsguard.agent._policy import parse_policy
from aimsguard.agent._preflight import startup_problems
from aimsguard.agent.cli import app
from tests.support import policy_dict


def _fleet_policy(tmp_path: Path, **state: object) -> dict[str, object]:
    data = policy_dict(tmp_path)
    data["state"] = {"url": "redis://127.0.0.1:6379/0", **state}
    return data


def test_a_shared_vault_without_its_key_does_not_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIMSGUARD_STATE_KEY", raising=False)
    policy = parse_policy(_fleet_policy(tmp_path))
    with pytest.raises(PolicyError, match="AIMSGUARD_STATE_KEY") as raised:
        Guard(policy, event_log=False)
    assert "state.key" in str(raised.value)
    assert [p.key_path for p in startup_problems(policy)] == ["state.key"]


def test_a_key_that_is_not_32_bytes_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIMSGUARD_STATE_KEY", base64.urlsafe_b64encode(b"short").decode())
    problems = startup_problems(parse_policy(_fleet_policy(tmp_path)))
    assert [p.key_path for p in problems] == ["state.key"] and "32 bytes" in problems[0].message


def test_keygen_makes_a_key_the_gateway_takes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = CliRunner().invoke(app, ["state", "keygen"]).output.strip()
    monkeypatch.setenv("AIMSGUARD_STATE_KEY", key)
    assert startup_problems(parse_policy(_fleet_policy(tmp_path))) == []


def test_one_replica_needs_no_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIMSGUARD_STATE_KEY", raising=False)
    with Guard(parse_policy(policy_dict(tmp_path)), event_log=False) as guard:
        assert guard.state.kind == "memory" and guard.state_key is None
