"""The event log viewer: filter by time, system, kind, action and request id; newest first.

It reads the log through ``read_events`` (streaming, in write order) and keeps only the
newest matches it needs for the page, so memory stays bounded however long the range.
It shows the events exactly as the log holds them: message text appears only when the
policy logs (redacted) content. A scan that takes too long stops and says so.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from ._context import RESPONDERS, Console, EventReader

__all__ = ["ROUTES", "EventFilter", "scan_events"]

ACTIONS = ("allow", "flag", "redact", "block", "escalate")
LIMITS = (50, 100, 200, 500)
MAX_PAGE = 20
KNOWN_KINDS = (
    "exchange",
    "guardrail.verdict",
    "route.unguarded",
    "policy.loaded",
    "handoff.*",
    "incident.*",
    "system.*",
    "console.*",
    "feedback",
    "bias.*",
)
SCAN_BUDGET_S = 5.0
_TIME_FORMAT = "%Y-%m-%dT%H:%M"  # what <input type="datetime-local"> sends


@dataclass(frozen=True)
class EventFilter:
    since: datetime
    until: datetime | None = None
    system: str | None = None
    kind: str | None = None  # exact, or a family such as "incident.*"
    action: str | None = None
    request_id: str | None = None

    def matches(self, event: dict[str, Any]) -> bool:
        if self.system and event.get("system") != self.system:
            return False
        if self.kind:
            kind = str(event.get("event", ""))
            if self.kind.endswith(".*"):
                if not kind.startswith(self.kind[:-1]):
                    return False
            elif kind != self.kind:
                return False
        if self.action and event.get("action") != self.action:
            return False
        return not (self.request_id and event.get("request_id") != self.request_id)


@dataclass
class ScanResult:
    events: list[dict[str, Any]] = field(default_factory=list)  # newest first
    matched: int = 0
    cut_short: bool = False


def scan_events(
    read_events: EventReader, directory: Any, wanted: EventFilter, *, keep: int, budget_s: float = SCAN_BUDGET_S, clock: Callable[[], float] = time.monotonic
) -> ScanResult:
    """The newest ``keep`` events matching ``wanted`` (newest first), streaming through the log."""
    newest: deque[dict[str, Any]] = deque(maxlen=keep)
    result = ScanResult()
    deadline = clock() + budget_s
    for index, event in enumerate(read_events(directory, since=wanted.since, until=wanted.until)):
        if wanted.matches(event):
            newest.append(event)
            result.matched += 1
        if index % 1000 == 999 and clock() > deadline:
            result.cut_short = True
            break
    result.events = list(reversed(newest))
    return result


async def events(console: Console, request: Request) -> Response:
    console.require(request, *RESPONDERS)
    params = request.query_params
    wanted = _filter(console, params)
    limit = int(params["limit"]) if params.get("limit", "").isdigit() and int(params["limit"]) in LIMITS else LIMITS[1]
    page = min(int(params["page"]), MAX_PAGE) if params.get("page", "").isdigit() else 0
    if console.read_events is None:
        raise HTTPException(503, "No event log reader is available.")
    directory = console.guard.policy.event_log.directory
    result = await console.store_call("event_log", scan_events, console.read_events, directory, wanted, keep=(page + 1) * limit)
    shown = result.events[page * limit : (page + 1) * limit]
    form = {
        "since": wanted.since.strftime(_TIME_FORMAT),
        "until": wanted.until.strftime(_TIME_FORMAT) if wanted.until else "",
        "system": wanted.system or "",
        "event": wanted.kind or "",
        "action": wanted.action or "",
        "request_id": wanted.request_id or "",
        "limit": limit,
    }
    return console.render(
        request,
        "events.html",
        rows=[{"event": e, "json": json.dumps(e, indent=2, ensure_ascii=False, default=str, sort_keys=True)} for e in shown],
        form=form,
        page=page,
        has_older=result.matched > (page + 1) * limit and page < MAX_PAGE,
        matched=result.matched,
        cut_short=result.cut_short,
        actions=ACTIONS,
        limits=LIMITS,
        kinds=KNOWN_KINDS,
    )


def _filter(console: Console, params: Any) -> EventFilter:
    def when(name: str) -> datetime | None:
        raw = params.get(name) or ""
        if not raw:
            return None
        try:
            return datetime.strptime(raw[:16], _TIME_FORMAT).replace(tzinfo=timezone.utc)
        except ValueError:
            raise HTTPException(400, f"'{name}' must be a date and time such as 2026-01-31T14:00 (UTC).") from None

    since = when("since") or datetime.now(timezone.utc).replace(second=0, microsecond=0) - timedelta(hours=24)
    until = when("until")
    if until is not None and until < since:
        raise HTTPException(400, "'until' is before 'since'.")
    system = params.get("system") or None
    if system not in (None, *console.systems):
        raise HTTPException(400, "Unknown system in the filter.")
    action = params.get("action") or None
    if action not in (None, *ACTIONS):
        raise HTTPException(400, "Unknown action in the filter.")
    kind = (params.get("event") or "").strip() or None
    request_id = (params.get("request_id") or "").strip() or None
    for name, value in (("event", kind), ("request_id", request_id)):
        if value is not None and (len(value) > 128 or not value.isascii() or not value.replace("*", "").replace("-", "").replace("_", "").replace(".", "").isalnum()):
            raise HTTPException(400, f"'{name}' must be an id or an event kind (letters, digits, . - _).")
    return EventFilter(since=since, until=until, system=system, kind=kind, action=action, request_id=request_id)


ROUTES = [("/events", events, "events")]
