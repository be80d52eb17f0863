"""``aimsguard keys``: create, list and revoke the virtual API keys of the policy's systems.

Keys live in the policy's records store. ``create`` prints the key once (only its hash is
kept); ``revoke`` ends it on every replica within about a second (see ``_callers``).
Exit status 2 for a usage, policy or store error.
"""

from __future__ import annotations

import asyncio
import getpass
import json
from pathlib import Path
from typing import Annotated

import typer

from aimsguard.collectors.records import ApiKey, RecordConflict, RecordNotFound, RecordsError, RecordsStore

from ._cli_support import DEFAULT_CONFIG, fail, policy_or_exit, record_cli_event
from ._policy import Policy

app = typer.Typer(help="Virtual API keys of the AI systems (the records store keeps their hashes).", no_args_is_help=True)

_ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="policy file (YAML) naming the records store")]


def _store(policy: Policy) -> RecordsStore:
    if policy.records is None:
        fail("API keys live in the records store: add records: {url: ...} to the policy")
    store = RecordsStore(policy.records.url.get_secret_value())
    try:
        store.upgrade()
    except RecordsError as error:
        fail(f"the records store cannot be used: {error}")
    return store


def _by() -> str:
    return f"cli:{getpass.getuser()}"


def _line(key: ApiKey) -> dict[str, object]:
    return {
        "id": key.id,
        "system": key.system,
        "name": key.name,
        "rpm": key.rpm,
        "tokens_per_day": key.tokens_per_day,
        "created_by": key.created_by,
        "created_at": key.created_at.isoformat(),
        "revoked_at": key.revoked_at.isoformat() if key.revoked_at else None,
    }


@app.command("create")
def create(
    system: Annotated[str, typer.Option("--system", help="the AI system the key calls")],
    rpm: Annotated[int | None, typer.Option("--rpm", min=1, help="requests per minute (default: no limit)")] = None,
    tokens_per_day: Annotated[int | None, typer.Option("--tokens-per-day", min=1, help="tokens per UTC day (default: no limit)")] = None,
    name: Annotated[str, typer.Option("--name", help="who or what the key is for")] = "",
    config: _ConfigOption = DEFAULT_CONFIG,
) -> None:
    """Make a key and print it once: it cannot be shown again (only its hash is kept)."""
    policy = policy_or_exit(config, system)
    store = _store(policy)
    try:
        key, secret = store.create_key(system=system, by=_by(), name=name[:200], rpm=rpm, tokens_per_day=tokens_per_day)
    except RecordsError as error:
        fail(f"the records store failed: {error}")
    finally:
        store.dispose()
    record_cli_event(policy, "key.created", key_id=key.id, system=system, rpm=rpm, tokens_per_day=tokens_per_day, by=key.created_by)
    typer.echo(f"key {key.id} for {system} (shown once; keep it in a secret store):", err=True)
    typer.echo(secret)


@app.command("list")
def list_keys(
    system: Annotated[str | None, typer.Option("--system", help="only this system's keys")] = None,
    revoked: Annotated[bool, typer.Option("--revoked/--no-revoked", help="include revoked keys")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of a table")] = False,
    config: _ConfigOption = DEFAULT_CONFIG,
) -> None:
    """The keys (never their secrets), newest first."""
    policy = policy_or_exit(config, system)
    store = _store(policy)
    try:
        keys = store.list_keys(system=system, include_revoked=revoked)
    except RecordsError as error:
        fail(f"the records store failed: {error}")
    finally:
        store.dispose()
    if as_json:
        for key in keys:
            typer.echo(json.dumps(_line(key)))
        return
    typer.echo(f"{'id':<12}  {'system':<20}  {'rpm':>7}  {'tokens/day':>12}  {'status':<8}  name")
    for key in keys:
        status = "revoked" if key.revoked else "active"
        typer.echo(f"{key.id:<12}  {key.system:<20}  {key.rpm or '-':>7}  {key.tokens_per_day or '-':>12}  {status:<8}  {key.name}")


@app.command("revoke")
def revoke(
    key_id: Annotated[str, typer.Argument(help="the key's id (the part after ag-)")],
    config: _ConfigOption = DEFAULT_CONFIG,
) -> None:
    """Revoke a key for good; every replica refuses it within about a second."""
    from ._callers import broadcast_revocation

    policy = policy_or_exit(config)
    store = _store(policy)
    try:
        key = store.revoke_key(key_id.removeprefix("ag-").split("-")[0], by=_by())
    except RecordNotFound:
        fail(f"no key with id {key_id!r}")
    except RecordConflict:
        fail(f"key {key_id!r} is revoked already")
    except RecordsError as error:
        fail(f"the records store failed: {error}")
    finally:
        store.dispose()
    record_cli_event(policy, "key.revoked", key_id=key.id, system=key.system, by=_by())
    try:
        asyncio.run(broadcast_revocation(policy))
    except Exception as error:  # the store has it: replicas see it there, a little later
        typer.echo(f"warning: the shared state could not be told ({type(error).__name__}); replicas notice from the store", err=True)
    typer.echo(f"key {key.id} of {key.system} revoked")
