"""The stop switch (EU AI Act Art. 14): stop or resume each AI system, with a reason.

Stopping needs a reason and an explicit confirmation box (no JavaScript dialogs): a
stopped system answers every client with its fallback until someone resumes it.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from ._context import RESPONDERS, Console, text_field

__all__ = ["ROUTES"]


async def systems(console: Console, request: Request) -> Response:
    console.require(request, *RESPONDERS)
    stopped = await console.store_call("records", console.records.stopped_systems)
    rows = [{"id": sid, "config": console.guard.system(sid), "stopped": sid in stopped} for sid in console.systems]
    return console.render(request, "systems.html", rows=rows)


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
    await console.act("system.stop" if stop else "system.resume", "set_stopped", system, stop, by=user.name, reason=reason)
    message = f"{system} is stopped: clients get its fallback answer." if stop else f"{system} is answering again."
    return console.redirect(request, "systems", message)


ROUTES = [
    ("/systems", systems, "systems"),
    ("/systems/{system}/{direction}", switch, "system_switch", ("POST",)),
]
