"""What the ``aimsguard`` commands share: the default policy path, loading it (or exit 2), and logging.

Logs are JSON lines on standard error, never on stdout.

stdout carries what a command produces (scan results, a report); logs go to stderr. The
logger is made on whatever ``sys.stderr`` is at the moment a line is logged, not when the
command started: a test runner (or a caller embedding a command) swaps and closes streams,
and a logger holding a closed one would turn every later log line into an error.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any, NoReturn

import structlog
import typer

from ._errors import AimsguardError
from ._policy import Policy, load_policy

__all__ = ["DEFAULT_CONFIG", "configure_cli_logging", "fail", "policy_or_exit"]

DEFAULT_CONFIG = Path("configs/aimsguard.yaml")


def fail(error: AimsguardError | str) -> NoReturn:
    """Print the error and exit with status 2 (a usage or policy error)."""
    typer.echo(f"error: {error}", err=True)
    raise typer.Exit(2)


def policy_or_exit(config: Path, system: str | None = None) -> Policy:
    """The policy, which must define ``system`` when one is given; else the error and exit status 2."""
    try:
        policy = load_policy(config)
    except AimsguardError as error:
        fail(error)
    if system is not None and system not in policy.systems:
        fail(f"unknown system {system!r} (the policy has: {', '.join(policy.systems)})")
    return policy


def _stderr_logger(*_: Any) -> structlog.PrintLogger:
    return structlog.PrintLogger(sys.stderr)


def configure_cli_logging(level: int = logging.INFO) -> None:
    """Log at ``level`` and above. Document-writing commands pass WARNING: their output is the document."""
    logging.basicConfig(level=level, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per upstream call is noise
    if level > logging.INFO:
        logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )


def record_cli_event(policy: Policy, kind: str, **fields: Any) -> None:
    """Write one audit event of a CLI command (who changed what) into the policy's event log,
    synced before the command reports success. The gateway's writers share the chain through
    its lock; a log that cannot be written is said on stderr, the change itself stands."""
    from ._events import event_record
    from ._guard import open_event_log

    try:
        event_log = open_event_log(policy, fsync=True)
    except Exception as error:  # noqa: BLE001 - the store has the change; the audit gap must be said
        typer.echo(f"warning: the event log cannot be opened ({type(error).__name__}: {error}); {kind} is not recorded there", err=True)
        return
    try:
        event_log.export([event_record(policy, kind, **fields)])
        if event_log.lost or not event_log.force_flush():
            typer.echo(f"warning: the event log did not take {kind} (disk full or not writable)", err=True)
    finally:
        event_log.shutdown()

