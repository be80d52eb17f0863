"""Reviewer pages: the handoff queue and one handoff (claim, answer, return to the bot, close).

A handoff holds the conversation as the guardrails left it (redacted) and the verdicts
that escalated it; the reviewer's answer is what the client later reads from
``GET /v1/handoffs/{id}``.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from aimsguard.collectors.records import HandoffStatus

from ._context import REVIEWERS, Console, text_field

__all__ = ["ROUTES"]

STATUSES = tuple(s.value for s in HandoffStatus)
MAX_ANSWER = 8000
MAX_NOTE = 2000


async def queue(console: Console, request: Request) -> Response:
    user = console.require(request, *REVIEWERS)
    status = request.query_params.get("status") or None
    system = request.query_params.get("system") or None
    if status not in (None, *STATUSES) or system not in (None, *console.systems):
        raise HTTPException(400, "Unknown status or system in the filter.")
    handoffs = await console.store_call("records", console.records.list_handoffs, status=status, system=system, limit=200)
    return console.render(request, "handoffs.html", handoffs=handoffs, status=status or "", system=system or "", statuses=STATUSES, me=user.name)


async def detail(console: Console, request: Request) -> Response:
    user = console.require(request, *REVIEWERS)
    handoff = await _handoff(console, request)
    return console.render(request, "handoff.html", handoff=handoff, me=user.name)


async def claim_next(console: Console, request: Request) -> Response:
    user = console.require(request, *REVIEWERS)
    form = await console.form(request, user)
    system = form.get("system") or None
    if system not in (None, *console.systems):
        raise HTTPException(422, "Unknown system.")
    handoff = await console.act("handoff.claim", "claim_next", user.name, system=system)
    if handoff is None:
        return console.redirect(request, "handoffs", "The queue is empty: nothing to claim.")
    return console.redirect(request, "handoff", f"You claimed handoff {handoff.id}.", handoff_id=handoff.id)


async def claim(console: Console, request: Request) -> Response:
    user = console.require(request, *REVIEWERS)
    await console.form(request, user)
    handoff_id = _id(request)
    await console.act("handoff.claim", "claim", handoff_id, user.name)
    return console.redirect(request, "handoff", f"You claimed handoff {handoff_id}.", handoff_id=handoff_id)


async def answer(console: Console, request: Request) -> Response:
    user = console.require(request, *REVIEWERS)
    form = await console.form(request, user)
    text = text_field(form, "answer", limit=MAX_ANSWER, label="the answer")
    handoff_id = _id(request)
    await console.act("handoff.answer", "answer", handoff_id, user.name, text)
    return console.redirect(request, "handoff", "Your answer was sent: the client receives it with this handoff.", handoff_id=handoff_id)


async def return_to_bot(console: Console, request: Request) -> Response:
    return await _finish_with_note(console, request, "handoff.return", "return_to_bot", "The conversation was handed back to the assistant.")


async def close(console: Console, request: Request) -> Response:
    return await _finish_with_note(console, request, "handoff.close", "close", "The handoff was closed.")


async def _finish_with_note(console: Console, request: Request, action: str, method: str, done: str) -> Response:
    """The two ways a reviewer ends a handoff without answering it: an optional note, then ``done``."""
    user = console.require(request, *REVIEWERS)
    form = await console.form(request, user)
    note = text_field(form, "note", limit=MAX_NOTE)
    handoff_id = _id(request)
    await console.act(action, method, handoff_id, user.name, note)
    return console.redirect(request, "handoff", done, handoff_id=handoff_id)


def _id(request: Request) -> str:
    return str(request.path_params["handoff_id"])


async def _handoff(console: Console, request: Request) -> object:
    handoff = await console.store_call("records", console.records.get_handoff, _id(request))
    if handoff is None:
        raise HTTPException(404, "There is no such handoff.")
    return handoff


ROUTES = [
    ("/handoffs", queue, "handoffs"),
    ("/handoffs/claim-next", claim_next, "handoffs_claim_next", ("POST",)),
    ("/handoffs/{handoff_id}", detail, "handoff"),
    ("/handoffs/{handoff_id}/claim", claim, "handoff_claim", ("POST",)),
    ("/handoffs/{handoff_id}/answer", answer, "handoff_answer", ("POST",)),
    ("/handoffs/{handoff_id}/return", return_to_bot, "handoff_return", ("POST",)),
    ("/handoffs/{handoff_id}/close", close, "handoff_close", ("POST",)),
]
