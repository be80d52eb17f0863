"""The ``aimsguard report`` and ``aimsguard docs`` commands (registered in cli.py).

The work is done by ``aimsguard.collectors.report`` and ``._techdocs``; this module only
reads options, shows progress on a terminal, and turns errors into exit status 2.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from ._cli_support import DEFAULT_CONFIG, configure_cli_logging, fail, policy_or_exit
from ._errors import AimsguardError
from ._policy import Policy

__all__ = ["DOCS_FOLDER", "docs_command", "report_command"]

DOCS_FOLDER = Path("var/docs")  # where ``docs`` writes unless told (-o)

def _incident_records(policy: Policy) -> list[Any] | None:
    """The records store's incidents, or None (the report then reads incident.* events)."""
    if policy.records is None:
        return None
    from aimsguard.collectors.records import RecordsError, RecordsStore

    try:
        return RecordsStore(policy.records.url.get_secret_value()).list_incidents(limit=1_000_000)
    except RecordsError as error:
        typer.echo(f"warning: cannot read incidents from the records store ({error}); using the incident events", err=True)
        return None


def _review_records(policy: Policy, since: Any, end: Any) -> tuple[list[Any] | None, list[Any] | None, list[Any] | None]:
    """Review samples (with labels) of the two months, handoffs, and policy evidence from the
    records store; Nones when there is no store or it cannot be read (said on stderr)."""
    if policy.records is None:
        return None, None, None
    from aimsguard.collectors.records import RecordsError, RecordsStore
    from aimsguard.collectors.report import PolicyEvidence

    store = RecordsStore(policy.records.url.get_secret_value())
    try:
        samples = store.review_samples(since=since, until=end)
        handoffs = store.list_handoffs(limit=1_000_000)
        evidence = [PolicyEvidence.model_validate(body) for body in store.policy_evidence()]
        return samples, handoffs, evidence
    except RecordsError as error:
        typer.echo(f"warning: cannot read review samples from the records store ({error}); the report leaves effectiveness out", err=True)
        return None, None, None
    finally:
        store.dispose()


def report_command(
    month: Annotated[str, typer.Option(help="the month to report on, YYYY-MM (UTC)")],
    config: Annotated[Path, typer.Option("--config", "-c", help="policy file (YAML)")] = DEFAULT_CONFIG,
    system: Annotated[str | None, typer.Option(help="only this AI system (default: every system)")] = None,
    format: Annotated[str, typer.Option("--format", "-f", help="html, md, pdf or json")] = "html",  # noqa: A002
    output: Annotated[Path | None, typer.Option("--output", "-o", help="file to write (default: aimsguard-report-MONTH.FORMAT)")] = None,
    events: Annotated[Path | None, typer.Option("--events", help="event log directory (default: the policy's)")] = None,
) -> None:
    """Write the monthly measurement report (ISO 42001 9.1) from the event log."""
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from aimsguard.collectors.report import ReportFormat, build_monthly_report, month_bounds, previous_month, read_report_events, write_report

    try:
        fmt = ReportFormat(format)
        start, end = month_bounds(month)
    except ValueError as error:
        fail(str(error) if "month" in str(error) else f"--format must be html, md, pdf or json (got {format!r})")
    policy = policy_or_exit(config, system)
    directory = events or policy.event_log.directory
    if not Path(directory).is_dir():
        fail(f"no event log at {directory}")
    output = output or Path(f"aimsguard-report-{month}{'-' + system if system else ''}.{fmt.value}")
    since, _ = month_bounds(previous_month(month))
    console = Console(stderr=True)
    records = _incident_records(policy)
    samples, handoffs, evidence = _review_records(policy, since, end)

    def build(on_progress: Any = None) -> Any:
        return build_monthly_report(
            read_report_events(directory, since, end), month=month, policy=policy, system=system, incident_records=records,
            review_samples=samples, handoff_records=handoffs, policy_evidence=evidence, event_log=str(directory), on_progress=on_progress,
        )

    if console.is_terminal:
        columns = (SpinnerColumn(), TextColumn("{task.description}"), TextColumn("{task.completed:,} events"), TimeElapsedColumn())
        with Progress(*columns, console=console, transient=True) as progress:
            task = progress.add_task(f"reading {start:%Y-%m} (and the month before)", total=None)
            report = build(lambda seen: progress.update(task, completed=seen))
            progress.update(task, description=f"rendering {fmt.value}")
            written = write_report(report, fmt, output)
    else:
        report = build()
        written = write_report(report, fmt, output)
    missed = [f"{s.system}/{o.id}" for s in report.systems for o in s.objectives if o.status == "missed"]
    typer.echo(f"wrote {written[0]} ({report.events:,} events; objectives missed: {', '.join(missed) or 'none'})", err=True)


def docs_command(
    system: Annotated[str, typer.Option(help="the AI system to document")],
    config: Annotated[Path, typer.Option("--config", "-c", help="policy file (YAML)")] = DEFAULT_CONFIG,
    format: Annotated[str, typer.Option("--format", "-f", help="md or html")] = "md",  # noqa: A002
    output: Annotated[Path | None, typer.Option("--output", "-o", help=f"file to write (default: {DOCS_FOLDER}/aimsguard-docs-SYSTEM.FORMAT)")] = None,
    alert_rules: Annotated[Path | None, typer.Option(help="Prometheus rule file (default: prometheus/aimsguard-alerts.yml beside the policy)")] = None,
) -> None:
    """Write the technical documentation of one AI system (ISO 42001 A.6.2.7) from the running policy."""
    from aimsguard.collectors.report import ReportFormat, write_document

    from ._techdocs import build_techdoc, techdoc_document

    configure_cli_logging(logging.WARNING)
    if format not in ("md", "html"):
        fail(f"--format must be md or html (got {format!r})")
    policy = policy_or_exit(config, system)
    rules = alert_rules or config.resolve().parent / "prometheus" / "aimsguard-alerts.yml"
    try:
        doc = techdoc_document(build_techdoc(policy, system, alert_rules=rules))
    except AimsguardError as error:
        fail(error)
    if output is None:
        # A folder of its own, not whatever directory the command happens to run in.
        DOCS_FOLDER.mkdir(parents=True, exist_ok=True)
        output = DOCS_FOLDER / f"aimsguard-docs-{system}.{format}"
    write_document(doc, ReportFormat(format), output)
    typer.echo(f"wrote {output}", err=True)
    sys.stderr.flush()
