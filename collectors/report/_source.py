"""Where the report reads its events from: the tamper-evident event log, streamed."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from aimsguard.collectors.eventlog import read_events

__all__ = ["read_report_events"]


def read_report_events(directory: str | Path, since: datetime, until: datetime) -> Iterator[dict[str, Any]]:
    """The events of [since, until) in the event log at ``directory``, oldest first."""
    return read_events(directory, since=since, until=until)
