"""The stop switch (EU AI Act Art. 14): stop or resume each AI system, with a reason.

Stopping needs a reason and an explicit confirmation box (no JavaScript dialogs): a
stopped system answers every client with its fallback until someone resumes it.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from ._context import RESPONDERS, Console, StoreUnavailable, text_field

__all__ = ["ROUTES"]


async def systems(console: Console, request: Request) -> Response:
    console.require(request, *RESPONDERS)
    try:
        stored: set[str] | None = await console.store_call("records", console.records.stopped_systems)
    except StoreUnavailable:
        stored = None  # show what this replica enforces (a stop must stay visible while the store is down)
    unpersisted = console.guard.oversight.unpersisted()
    rows = [
        {
            "id": sid,
            "config": console.guard.system(sid),
            "stopped": console.guard.is_stopped(sid) if stored is None or sid in unpersisted else sid in stored,
            "unpersisted": sid in unpersisted,
        }
        for sid in console.systems
    ]
    return console.render(request, "systems.html", rows=rows, store_down=stored is None)


async def switch(console: Console, request: Request) -> Response:
    user = console.require(request, *RESPONDERS)
    form = await console.form(request, user)
    system = str(request.path_params["system"])
    direction = request.path_params["direction"]
    if system not in console.systems or direction not in ("stop", "resume"):
        raise HTTPException(404, "There is no such AI system in the policy.")
    stop = direction == "stop"
    reason = text_field(form, "reason", limit=500, label="the reason")
    if form.get("confirm") != "yes":
        raise HTTPException(422, f"Tick the confirmation box to {'stop' if stop else 'resume'} {system}.")
    persisted = await console.act("system.stop" if stop else "system.resume", "set_stopped", system, stop, by=user.name, reason=reason)
    message = f"{system} is stopped: clients get its fallback answer." if stop else f"{system} is answering again."
    if not persisted:
        message = (
            f"{system} is stopped on this replica, but the records store could not be written: other replicas "
            "do not know yet. The write is retried every few seconds."
        )
    return console.redirect(request, "systems", message)


ROUTES = [
    ("/systems", systems, "systems"),
    ("/systems/{system}/{direction}", switch, "system_switch", ("POST",)),
]
