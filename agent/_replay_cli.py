"""``aimsguard replay`` and ``aimsguard shadow``: before/after tables for a candidate policy (see ``_replay``)."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Annotated, Any

import typer

from ._cli_support import DEFAULT_CONFIG, configure_cli_logging, fail, policy_or_exit
from ._errors import AimsguardError
from ._logs_cli import _moment
from ._policy import Policy, load_policy

__all__ = ["replay_command", "shadow_command"]

_Config = Annotated[Path, typer.Option("--config", "-c", help="the policy in force (YAML): its event log, records store and checks")]
_System = Annotated[str | None, typer.Option(help="AI system (default: the policy's)")]
_Since = Annotated[str | None, typer.Option(help="from this ISO date/time (inclusive, UTC unless given)")]
_Until = Annotated[str | None, typer.Option(help="up to this ISO date/time (exclusive)")]
_Format = Annotated[str, typer.Option("--format", "-f", help="text or json")]
_Record = Annotated[bool, typer.Option("--record", help="keep the table in the records store as evidence for the change")]


def _setup(config: Path, system: str | None, fmt: str, since: str | None, until: str | None) -> tuple[Policy, str, Any, Any]:
    """The policy in force, the system, and the time window; exit status 2 on a usage error."""
    configure_cli_logging(logging.WARNING)
    if fmt not in ("text", "json"):
        fail(f"--format must be text or json, not {fmt!r}")
    policy = policy_or_exit(config)
    chosen = system or policy.default_system_id
    if chosen is None or chosen not in policy.systems:
        fail(f"unknown system {chosen!r} (the policy has: {', '.join(policy.systems)}); name one with --system")
    return policy, chosen, _moment(since, "--since"), _moment(until, "--until")


def _event_log(policy: Policy) -> Path:
    directory = Path(policy.event_log.directory)
    if not directory.is_dir():
        fail(f"no event log at {directory}")
    return directory


def _samples(policy: Policy, since: Any, until: Any, system: str) -> list[Any]:
    """Review samples with labels from the records store (none when there is none or it fails)."""
    if policy.records is None:
        return []
    from aimsguard.collectors.records import RecordsError, RecordsStore

    store = RecordsStore(policy.records.url.get_secret_value())
    try:
        return store.review_samples(since=since, until=until, system=system)
    except RecordsError as error:
        typer.echo(f"warning: cannot read labels from the records store ({error}); precision and recall are left out", err=True)
        return []
    finally:
        store.dispose()


def _emit(result: Any, fmt: str, title: str, evidence: dict[str, Any], policy: Policy, record: bool) -> None:
    if fmt == "json":
        typer.echo(json.dumps({"title": title, **result.as_dict()}, ensure_ascii=False))
    else:
        typer.echo(title)
        typer.echo(result.render())
    if record:
        if policy.records is None:
            fail("--record needs a records store in the policy (records: {url: ...})")
        from aimsguard.collectors.records import RecordsError, RecordsStore
        from aimsguard.collectors.report import PolicyEvidence

        body = PolicyEvidence(
            **evidence, decisions=result.decisions, changed=result.changed, by_change=result.by_change(),
            precision_change=result.precision_change(), recall_change=result.recall_change(),
        )
        store = RecordsStore(policy.records.url.get_secret_value())
        try:
            store.upgrade()
            store.add_policy_evidence(kind=body.kind, candidate_version=body.candidate_version, body=body.model_dump())
        except RecordsError as error:
            fail(f"cannot record the evidence: {error}")
        finally:
            store.dispose()
        typer.echo(f"recorded as evidence for {body.candidate_version}", err=True)


def replay_command(
    policy_file: Annotated[Path, typer.Option("--policy", help="the candidate policy (YAML)")],
    config: _Config = DEFAULT_CONFIG,
    system: _System = None,
    since: _Since = None,
    until: _Until = None,
    jsonl: Annotated[Path | None, typer.Option("--jsonl", help="replay these JSON lines instead of the event log's content")] = None,
    fmt: _Format = "text",
    record: _Record = False,
) -> None:
    """What a candidate policy would have decided on logged traffic (or a JSONL file), against what was decided."""
    from aimsguard.collectors import read_events
    from aimsguard.guardrails import default_registry

    from ._pipeline import Pipeline
    from ._replay import replay_events, replay_lines

    policy, system_id, start, end = _setup(config, system, fmt, since, until)
    try:
        candidate_policy = load_policy(policy_file)
    except AimsguardError as error:
        fail(error)
    if system_id not in candidate_policy.systems:
        fail(f"the candidate policy has no system {system_id!r}")
    try:
        candidate = Pipeline(f"{system_id}~candidate", candidate_policy.systems[system_id], default_registry())
        current = Pipeline(system_id, policy.systems[system_id], default_registry())
    except AimsguardError as error:
        fail(error)
    try:
        if jsonl is not None:
            try:
                with jsonl.open(encoding="utf-8") as handle:
                    result = asyncio.run(replay_lines(handle, system_id, current, candidate))
            except OSError as exc:
                fail(f"cannot read {jsonl}: {exc.strerror}")
            source = f"{jsonl}"
        else:
            directory = _event_log(policy)
            samples = _samples(policy, start, end, system_id)
            result = asyncio.run(replay_events(read_events(directory, since=start, until=end), system_id, current, candidate, samples))
            source = f"the event log {directory}"
    finally:
        candidate.close()
        current.close()
    title = f"replay of {candidate_policy.policy_version} ({policy_file}) for {system_id} over {source}"
    evidence = {"kind": "replay", "candidate_version": candidate_policy.policy_version, "since": since, "until": until}
    _emit(result, fmt, title, evidence, policy, record)


def shadow_command(
    config: _Config = DEFAULT_CONFIG,
    system: _System = None,
    since: _Since = None,
    until: _Until = None,
    fmt: _Format = "text",
    record: _Record = False,
) -> None:
    """What a shadow candidate decided beside live traffic (``shadow.verdict`` events), against the live checks."""
    from aimsguard.collectors import read_events
    from aimsguard.collectors._compare import compare, shadow_decisions

    policy, system_id, start, end = _setup(config, system, fmt, since, until)
    found = shadow_decisions(read_events(_event_log(policy), since=start, until=end), system_id)
    if not found:
        fail(f"no shadow.verdict events for {system_id} in that time (is systems.{system_id}.shadow set?)")
    samples = _samples(policy, start, end, system_id)
    for candidate, decisions in sorted(found.items()):
        result = compare(decisions, samples)
        evidence = {"kind": "shadow", "candidate_version": candidate, "ran_under": policy.policy_version, "since": since, "until": until}
        _emit(result, fmt, f"shadow candidate {candidate!r} for {system_id}", evidence, policy, record)
