"""Signed digests and anchors: `logs keygen`, `logs verify --pubkey/--anchor`, `logs anchor`."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aimsguard.agent.cli import app
from aimsguard.collectors import SegmentEventLog, verify_event_log
from aimsguard.collectors.eventlog import SIGNING_KEY_ENV, SigningKeyError, anchor_event_log, list_segments, load_public_key, load_signer
from aimsguard.collectors.eventlog._format import digest_hash

runner = CliRunner()


def _keys(tmp_path: Path, name: str = "signing.pem") -> tuple[Path, Path]:
    result = runner.invoke(app, ["logs", "keygen", str(tmp_path / name)])
    assert result.exit_code == 0, result.output
    return tmp_path / name, tmp_path / f"{name}.pub"


def _write(directory: Path, key: Path | None, *, days: tuple[str, ...] = ("2026-11-25", "2026-11-26"), close: bool = True) -> SegmentEventLog:
    log = SegmentEventLog(directory, clock=lambda: dt.datetime(2026, 11, 26, 12, tzinfo=dt.UTC), signer=load_signer(key, environ={}))
    for day in days:
        log.export([{"event": "exchange", "ts": f"{day}T10:00:0{n}.000000Z", "n": n} for n in range(5)])
    if close:
        log.shutdown()
    return log


def _verify(directory: Path, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["logs", "verify", "--dir", str(directory), *args])
    return result.exit_code, result.output


def test_a_signed_log_verifies_with_its_public_key(tmp_path: Path) -> None:
    private, public = _keys(tmp_path)
    assert private.stat().st_mode & 0o777 == 0o600
    _write(tmp_path / "events", private)
    code, output = _verify(tmp_path / "events", "--pubkey", str(public))
    assert code == 0, output
    assert "2 digests signed by the given key" in output


def test_a_changed_digest_fails_verify_pubkey_even_when_its_hash_was_recomputed(tmp_path: Path) -> None:
    private, public = _keys(tmp_path)
    _write(tmp_path / "events", private)
    newest = list_segments(tmp_path / "events")[-1]
    digest = json.loads(newest.digest_path.read_text())
    digest["max_ts"] = "2027-01-01T00:00:00.000000Z"  # hide the segment from read_events windows
    digest["digest_hash"] = digest_hash(digest)  # what anyone can recompute: an unsigned chain accepts it
    newest.digest_path.write_text(json.dumps(digest))
    assert verify_event_log(tmp_path / "events").ok
    code, output = _verify(tmp_path / "events", "--pubkey", str(public))
    assert code == 1
    assert f"PROBLEM {newest.name}: signature invalid: the signature does not match" in output


def test_unsigned_digests_and_another_key_fail_verify_pubkey(tmp_path: Path) -> None:
    private, _ = _keys(tmp_path)
    _, other_public = _keys(tmp_path, "other.pem")
    _write(tmp_path / "unsigned", None)
    _write(tmp_path / "signed", private)
    problems = verify_event_log(tmp_path / "unsigned", public_key=load_public_key(other_public)).problems
    assert [p.kind for p in problems] == ["digest unsigned", "digest unsigned"]
    problems = verify_event_log(tmp_path / "signed", public_key=load_public_key(other_public)).problems
    assert [p.kind for p in problems] == ["signature invalid"] * 2 and "signed with another key" in problems[0].detail


def test_the_signing_key_can_come_from_the_environment(tmp_path: Path) -> None:
    private, public = _keys(tmp_path)
    signer = load_signer(None, environ={SIGNING_KEY_ENV: private.read_text()})
    assert signer is not None and signer.key_id == load_signer(private, environ={}).key_id  # type: ignore[union-attr]
    assert load_signer(None, environ={}) is None
    with pytest.raises(SigningKeyError, match="not an Ed25519 private key|not an unencrypted PEM private key"):
        load_signer(public, environ={})
    with pytest.raises(SigningKeyError, match="cannot read"):
        load_signer(tmp_path / "missing.pem", environ={})


def test_an_anchor_kept_elsewhere_catches_the_newest_records_cut_with_the_head_marker(tmp_path: Path) -> None:
    private, public = _keys(tmp_path)
    directory = tmp_path / "events"
    _write(directory, private, close=False)
    result = runner.invoke(app, ["logs", "anchor", "--dir", str(directory), "--key", str(private)])
    assert result.exit_code == 0, result.output
    anchor = json.loads(result.stdout)
    assert (anchor["last_seq"], anchor["last_digest"]["last_seq"]) == (9, 4) and anchor["signature"]["alg"] == "ed25519"
    anchor_file = tmp_path / "anchor.json"
    anchor_file.write_text(result.stdout)
    assert _verify(directory, "--pubkey", str(public), "--anchor", str(anchor_file))[0] == 0

    # Cut the last two records and rewrite the writers' head marker to match: the log alone looks whole.
    newest = list_segments(directory)[-1].path
    lines = newest.read_bytes().splitlines(keepends=True)
    newest.write_bytes(b"".join(lines[:-2]))
    last = json.loads(lines[-3])["_chain"]
    (directory / ".writer.lock").write_text(f"2 {newest.name} {sum(map(len, lines[:-2]))} {last['seq']} {last['hash']}\n")
    assert verify_event_log(directory).ok
    code, output = _verify(directory, "--anchor", str(anchor_file))
    assert code == 1 and "the anchor says seq 9" in output and "no longer holds it" in output


def test_a_forged_anchor_fails_its_signature(tmp_path: Path) -> None:
    private, public = _keys(tmp_path)
    _write(tmp_path / "events", private)
    anchor = anchor_event_log(tmp_path / "events", load_signer(private, environ={}))
    assert verify_event_log(tmp_path / "events", public_key=load_public_key(public), anchor=anchor).ok
    forged = {**anchor, "last_seq": 4, "last_hash": json.loads(list_segments(tmp_path / "events")[0].digest_path.read_text())["last_hash"]}
    problems = verify_event_log(tmp_path / "events", public_key=load_public_key(public), anchor=forged).problems
    assert [(p.kind, p.detail) for p in problems] == [("anchor", "the anchor's signature: the signature does not match")]
