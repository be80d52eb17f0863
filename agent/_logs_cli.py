"""``aimsguard logs``: verify the tamper-evident event log, and query it.

``verify`` exits 0 when the log is intact, 1 when it found problems (each printed on its
own line: segment, line, seq, what happened), 2 for a usage error; ``--pubkey`` also checks
each digest's signature, ``--anchor`` a head kept elsewhere. ``anchor`` prints that head,
``keygen`` makes a signing key pair. ``query`` prints the matching events as JSON lines,
oldest first.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from aimsguard.collectors import read_events, verify_event_log
from aimsguard.collectors.eventlog import SigningKeyError, anchor_event_log, generate_key_pair, load_public_key, load_signer
from aimsguard.guardrails import Action

from ._cli_support import DEFAULT_CONFIG, fail, policy_or_exit

app = typer.Typer(help="Verify and query the tamper-evident event log.", no_args_is_help=True)

_ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="policy file (YAML) naming the event log directory")]
_DirOption = Annotated[Path | None, typer.Option("--dir", help="event log directory (instead of the policy's)")]


def _directory(config: Path, directory: Path | None) -> Path:
    if directory is None:
        directory = policy_or_exit(config).event_log.directory
    if not directory.is_dir():
        fail(f"no event log directory at {directory}")
    return directory


def _moment(value: str | None, option: str) -> dt.datetime | None:
    if value is None:
        return None
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        fail(f"{option} must be an ISO date or date-time (2026-11-01 or 2026-11-01T12:00:00Z), not {value!r}")
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


@app.command()
def verify(
    config: _ConfigOption = DEFAULT_CONFIG,
    directory: Annotated[
        list[Path] | None,
        typer.Option("--dir", help="event log directory (instead of the policy's); repeat it for each replica of a fleet"),
    ] = None,
    pubkey: Annotated[Path | None, typer.Option("--pubkey", help="Ed25519 public key (PEM): every digest must be signed by it")] = None,
    anchor: Annotated[Path | None, typer.Option("--anchor", help="an anchor `logs anchor` printed: the log must still hold its record")] = None,
) -> None:
    """Rehash every record and digest; name each record or segment that was changed, removed,
    reordered, truncated or deleted. A fleet writes one chain per replica: give each of their
    directories (``--dir`` again), and each is verified as its own chain."""
    try:
        public_key = load_public_key(pubkey) if pubkey is not None else None
    except SigningKeyError as exc:
        fail(str(exc))
    if anchor is not None and directory is not None and len(directory) > 1:
        fail("--anchor belongs to one chain: verify that directory alone with it")
    anchored = _read_anchor(anchor) if anchor is not None else None
    directories = [_directory(config, d) for d in directory] if directory else [_directory(config, None)]
    failed = 0
    for each in directories:
        prefix = f"{each}: " if len(directories) > 1 else ""
        failed += not _verify_one(each, prefix, public_key, anchored)
    if len(directories) > 1:
        typer.echo(f"{len(directories) - failed} of {len(directories)} chains OK")
    if failed:
        raise typer.Exit(1)


def _verify_one(directory: Path, prefix: str, public_key: Any, anchored: dict[str, Any] | None) -> bool:
    report = verify_event_log(directory, public_key=public_key, anchor=anchored)
    for notice in report.notices:
        typer.echo(f"{prefix}note: {notice}")
    for problem in report.problems:
        typer.echo(f"{prefix}PROBLEM {problem}")
    summary = (
        f"{report.records} records in {report.segments} segments"
        f" ({report.deleted_by_retention} earlier segments deleted by retention, as recorded)"
    )
    if not report.ok:
        typer.echo(f"{prefix}FAILED: {len(report.problems)} problem(s); {summary}")
        return False
    if public_key is not None:
        summary += f"; {report.signed_digests} digests signed by the given key"
    if anchored is not None:
        summary += f"; the anchored record seq {anchored['last_seq']} is intact"
    typer.echo(f"{prefix}OK: {summary}")
    # Keep these somewhere else: they are what makes cutting the newest records detectable.
    typer.echo(f"{prefix}head: seq {report.last_seq} hash {report.last_hash}; last digest {report.last_digest_hash}")
    return True


def _read_anchor(path: Path) -> dict[str, Any]:
    try:
        anchor = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        fail(f"cannot read the anchor {path}: {exc}")
    if not isinstance(anchor, dict):
        fail(f"{path} is not an anchor (a JSON object from `aimsguard logs anchor`)")
    return anchor


@app.command()
def anchor(
    config: _ConfigOption = DEFAULT_CONFIG,
    directory: _DirOption = None,
    key: Annotated[Path | None, typer.Option("--key", help="Ed25519 private key (PEM) to sign with (default: the policy's event_log.signing_key)")] = None,
) -> None:
    """Print the log's head (last seq and hash, newest digest) as one JSON line, signed when a
    key is given: store it elsewhere, and check it later with `logs verify --anchor FILE`."""
    if key is None and directory is None:
        key = policy_or_exit(config).event_log.signing_key
    try:
        signer = load_signer(key)
    except SigningKeyError as exc:
        fail(str(exc))
    typer.echo(orjson.dumps(anchor_event_log(_directory(config, directory), signer)).decode())


@app.command()
def keygen(
    out: Annotated[Path, typer.Argument(help="where to write the private key; the public key goes to OUT.pub")],
) -> None:
    """Make an Ed25519 key pair for signing the event log's digests (event_log.signing_key)."""
    try:
        public = generate_key_pair(out)
    except (SigningKeyError, OSError) as exc:
        fail(str(exc))
    typer.echo(f"private key: {out} (mode 0600; name it in event_log.signing_key)\npublic key: {public} (for `logs verify --pubkey`)")


@app.command()
def query(
    config: _ConfigOption = DEFAULT_CONFIG,
    directory: _DirOption = None,
    since: Annotated[str | None, typer.Option(help="from this ISO date/time (inclusive, UTC unless given)")] = None,
    until: Annotated[str | None, typer.Option(help="up to this ISO date/time (exclusive)")] = None,
    system: Annotated[str | None, typer.Option(help="AI system id")] = None,
    action: Annotated[Action | None, typer.Option(help="the decision", case_sensitive=False)] = None,
    event: Annotated[str | None, typer.Option("--event", help="event kind, e.g. exchange or guardrail.verdict")] = None,
    request_id: Annotated[str | None, typer.Option(help="request id")] = None,
    conversation_id: Annotated[str | None, typer.Option(help="conversation id")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="print at most this many events")] = None,
) -> None:
    """Print the matching events as JSON lines, oldest first."""
    wanted = {
        key: value
        for key, value in (
            ("system", system),
            ("action", action.value if action is not None else None),
            ("event", event),
            ("request_id", request_id),
            ("conversation_id", conversation_id),
        )
        if value is not None
    }
    events = read_events(_directory(config, directory), since=_moment(since, "--since"), until=_moment(until, "--until"))
    out = sys.stdout.buffer
    count = 0
    for count, record in enumerate(_matching(events, wanted), 1):
        out.write(_json_line(record))
        if limit is not None and count >= limit:
            break
    out.flush()
    if count == 0:
        typer.echo("no events match", err=True)  # stderr: stdout stays a (here empty) stream of JSON lines


def _json_line(record: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(record) + b"\n"
    except TypeError:
        # orjson refuses a lone surrogate (kept, escaped, by the writer); the standard
        # library writes it escaped again, so the line stays valid JSON.
        return json.dumps(record, ensure_ascii=True, default=str).encode() + b"\n"


def _matching(events: Iterator[dict[str, Any]], wanted: dict[str, str]) -> Iterator[dict[str, Any]]:
    items = list(wanted.items())
    for record in events:
        if all(record.get(key) == value for key, value in items):
            yield record
