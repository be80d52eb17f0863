"""Responder pages: incidents (list, report one by hand, acknowledge, resolve).

Resolving asks for the cause and the corrective action (ISO/IEC 42001 10.2); a serious
incident shows its EU AI Act Art. 73 reporting deadline.
"""

from __future__ import annotations

from datetime import datetime, timezone

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from aimsguard.collectors.records import IncidentCategory, IncidentSeverity, IncidentStatus

from ._context import RESPONDERS, Console, choice_field, text_field

__all__ = ["ROUTES"]

STATUSES = tuple(s.value for s in IncidentStatus)
SEVERITIES = tuple(s.value for s in IncidentSeverity)
CATEGORIES = tuple(c.value for c in IncidentCategory)
MAX_TEXT = 4000


async def incidents(console: Console, request: Request) -> Response:
    console.require(request, *RESPONDERS)
    status = request.query_params.get("status") or None
    system = request.query_params.get("system") or None
    if status not in (None, *STATUSES) or system not in (None, *console.systems):
        raise HTTPException(400, "Unknown status or system in the filter.")
    found = await console.store_call("records", console.records.list_incidents, status=status, system=system, limit=200)
    return console.render(
        request, "incidents.html", incidents=found, status=status or "", system=system or "", statuses=STATUSES, severities=SEVERITIES,
        categories=CATEGORIES, now=_now(),
    )


async def detail(console: Console, request: Request) -> Response:
    console.require(request, *RESPONDERS)
    incident = await console.store_call("records", console.records.get_incident, _id(request))
    if incident is None:
        raise HTTPException(404, "There is no such incident.")
    return console.render(request, "incident.html", incident=incident, now=_now())


async def report(console: Console, request: Request) -> Response:
    user = console.require(request, *RESPONDERS)
    form = await console.form(request, user)
    incident = await console.act(
        "incident.report",
        "report_incident",
        system=choice_field(form, "system", console.systems, "the AI system"),
        title=text_field(form, "title", limit=200, label="a title"),
        severity=choice_field(form, "severity", SEVERITIES, "a severity"),
        reporter=user.name,
        description=text_field(form, "description", limit=MAX_TEXT),
        serious=form.get("serious") == "yes",
        category=choice_field(form, "category", ("", *CATEGORIES), "a category") or None,
    )
    return console.redirect(request, "incident", f"Incident {incident.id} was recorded.", incident_id=incident.id)


async def acknowledge(console: Console, request: Request) -> Response:
    user = console.require(request, *RESPONDERS)
    await console.form(request, user)
    incident_id = _id(request)
    await console.act("incident.acknowledge", "acknowledge", incident_id, user.name)
    return console.redirect(request, "incident", "You acknowledged the incident.", incident_id=incident_id)


async def resolve(console: Console, request: Request) -> Response:
    user = console.require(request, *RESPONDERS)
    form = await console.form(request, user)
    cause = text_field(form, "cause", limit=MAX_TEXT, label="the cause")
    corrective_action = text_field(form, "corrective_action", limit=MAX_TEXT, label="the corrective action")
    incident_id = _id(request)
    await console.act("incident.resolve", "resolve", incident_id, user.name, cause=cause, corrective_action=corrective_action)
    return console.redirect(request, "incident", "The incident is resolved.", incident_id=incident_id)


def _id(request: Request) -> str:
    return str(request.path_params["incident_id"])


def _now() -> datetime:
    return datetime.now(timezone.utc)


ROUTES = [
    ("/incidents", incidents, "incidents"),
    ("/incidents/report", report, "incidents_report", ("POST",)),
    ("/incidents/{incident_id}", detail, "incident"),
    ("/incidents/{incident_id}/acknowledge", acknowledge, "incident_acknowledge", ("POST",)),
    ("/incidents/{incident_id}/resolve", resolve, "incident_resolve", ("POST",)),
]
