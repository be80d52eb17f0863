"""`aimsguard logs verify` and `aimsguard logs query`."""

import datetime as dt
import json
from pathlib import Path

from typer.testing import CliRunner

from aimsguard.agent.cli import app
from aimsguard.collectors import SegmentEventLog
from aimsguard.collectors.eventlog import list_segments

from ..support import policy_dict, write_policy

runner = CliRunner()


def _write_log(directory: Path) -> None:
    log = SegmentEventLog(directory, clock=lambda: dt.datetime(2026, 11, 27, tzinfo=dt.UTC))
    log.export(
        [
            {"event": "exchange", "ts": "2026-11-26T09:00:00Z", "system": "bot", "action": "allow", "request_id": "a", "conversation_id": "c1"},
            {"event": "guardrail.verdict", "ts": "2026-11-26T09:00:01Z", "system": "bot", "action": "block", "request_id": "b"},
            {"event": "exchange", "ts": "2026-11-26T09:00:01Z", "system": "bot", "action": "block", "request_id": "b", "conversation_id": "c1"},
            {"event": "exchange", "ts": "2026-11-27T08:00:00Z", "system": "other", "action": "allow", "request_id": "c", "conversation_id": "c2"},
        ]
    )
    log.shutdown()


def _query(directory: Path, *args: str) -> list[dict]:
    result = runner.invoke(app, ["logs", "query", "--dir", str(directory), *args])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_verify_prints_ok_with_counts_for_a_clean_log(tmp_path: Path) -> None:
    _write_log(tmp_path)
    result = runner.invoke(app, ["logs", "verify", "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("OK: 4 records in 2 segments")


def test_verify_names_the_changed_record_and_exits_1(tmp_path: Path) -> None:
    _write_log(tmp_path)
    path = list_segments(tmp_path)[0].path
    path.write_bytes(path.read_bytes().replace(b'"action":"block","request_id":"b","conversation_id"', b'"action":"allow","request_id":"b","conversation_id"'))
    result = runner.invoke(app, ["logs", "verify", "--dir", str(tmp_path)])
    assert result.exit_code == 1
    assert f"PROBLEM {path.name} line 3 seq 2: changed" in result.stdout
    assert "FAILED: 1 problem(s)" in result.stdout


def test_verify_reads_the_directory_from_the_policy(tmp_path: Path) -> None:
    policy = write_policy(tmp_path, policy_dict(tmp_path))
    _write_log(tmp_path / "events")
    result = runner.invoke(app, ["logs", "verify", "--config", str(policy)])
    assert result.exit_code == 0, result.output
    missing = runner.invoke(app, ["logs", "verify", "--dir", str(tmp_path / "nowhere")])
    assert missing.exit_code == 2 and "no event log directory" in missing.output


def test_query_filters_by_kind_system_action_ids_and_time(tmp_path: Path) -> None:
    _write_log(tmp_path)
    assert [e["request_id"] for e in _query(tmp_path, "--event", "exchange")] == ["a", "b", "c"]
    assert [e["request_id"] for e in _query(tmp_path, "--event", "exchange", "--action", "block")] == ["b"]
    assert [e["event"] for e in _query(tmp_path, "--request-id", "b")] == ["guardrail.verdict", "exchange"]
    assert [e["request_id"] for e in _query(tmp_path, "--conversation-id", "c1", "--event", "exchange")] == ["a", "b"]
    assert [e["request_id"] for e in _query(tmp_path, "--system", "other")] == ["c"]
    assert [e["request_id"] for e in _query(tmp_path, "--since", "2026-11-27")] == ["c"]
    assert [e["request_id"] for e in _query(tmp_path, "--until", "2026-11-26T09:00:01Z")] == ["a"]
    assert len(_query(tmp_path, "--limit", "2")) == 2
    assert all("_chain" not in e for e in _query(tmp_path))


def test_query_rejects_a_malformed_date(tmp_path: Path) -> None:
    _write_log(tmp_path)
    result = runner.invoke(app, ["logs", "query", "--dir", str(tmp_path), "--since", "last tuesday"])
    assert result.exit_code == 2 and "--since must be an ISO date" in result.output


def test_query_prints_a_record_with_a_lone_surrogate_as_escaped_json(tmp_path: Path) -> None:
    log = SegmentEventLog(tmp_path, clock=lambda: dt.datetime(2026, 11, 27, tzinfo=dt.UTC))
    log.export([{"event": "exchange", "ts": "2026-11-26T09:00:00Z", "system": "bot", "note": "a\ud800b"}, {"event": "exchange", "ts": "2026-11-26T09:00:01Z", "system": "bot"}])
    log.shutdown()
    assert [e.get("note") for e in _query(tmp_path)] == ["a\ud800b", None]


def test_query_refuses_an_unknown_action_naming_the_valid_ones(tmp_path: Path) -> None:
    _write_log(tmp_path)
    result = runner.invoke(app, ["logs", "query", "--dir", str(tmp_path), "--action", "nuke"])
    assert result.exit_code == 2
    assert "'nuke' is not one of" in result.output
    assert all(action in result.output for action in ("allow", "flag", "redact", "block", "escalate"))


def test_query_says_so_on_stderr_when_no_event_matches(tmp_path: Path) -> None:
    _write_log(tmp_path)
    result = runner.invoke(app, ["logs", "query", "--dir", str(tmp_path), "--system", "nobody"])
    assert result.exit_code == 0
    assert result.stdout == "" and "no events match" in result.stderr
    found = runner.invoke(app, ["logs", "query", "--dir", str(tmp_path), "--system", "other"])
    assert "no events match" not in found.stderr


def test_version_option_prints_the_installed_version() -> None:
    from aimsguard.agent._version import __version__

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"aimsguard {__version__}"


def test_verify_takes_one_directory_per_replica_and_fails_if_any_chain_does(tmp_path: Path) -> None:
    replicas = [tmp_path / f"replica-{i}" for i in range(3)]
    for directory in replicas:
        _write_log(directory)
    args = [arg for directory in replicas for arg in ("--dir", str(directory))]
    result = runner.invoke(app, ["logs", "verify", *args])
    assert result.exit_code == 0, result.output
    assert result.stdout.count(": OK: 4 records") == 3 and "3 of 3 chains OK" in result.stdout
    path = list_segments(replicas[1])[0].path
    path.write_bytes(path.read_bytes().replace(b'"action":"block","request_id":"b","conversation_id"', b'"action":"allow","request_id":"b","conversation_id"'))
    result = runner.invoke(app, ["logs", "verify", *args])
    assert result.exit_code == 1
    assert f"{replicas[1]}: PROBLEM {path.name} line 3 seq 2: changed" in result.stdout and "2 of 3 chains OK" in result.stdout
