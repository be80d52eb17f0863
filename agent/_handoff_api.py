"""``GET /v1/handoffs/{id}``: where a client whose request was escalated reads the person's answer.

The id came back with the fallback answer (``aimsguard.handoff_id`` in the body, the
``x-aimsguard-handoff-id`` header). Ids are unguessable; when the original request
carried credentials, only a request with the same credentials may read the ticket (the
middleware's principal hash); anyone else gets the same 404 as for an unknown id.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from aimsguard.collectors.records import Handoff, RecordsError

from ._errors import RequestError
from ._guard import Guard
from ._middleware import _principal
from ._dialect_openai import error_body

__all__ = ["handoff_route"]

_HANDOFF_ID = re.compile(r"^hnd_[A-Za-z0-9_\-]{8,64}$")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def handoff_view(handoff: Handoff) -> dict[str, Any]:
    """What the client may see: the status and the person's answer, nothing reviewers wrote for themselves."""
    answered = handoff.answered_at is not None  # closing an answered ticket keeps its answer readable
    return {
        "id": handoff.id,
        "object": "aimsguard.handoff",
        "status": handoff.status.value,
        "answer": handoff.answer if answered else None,
        "created_at": _iso(handoff.created_at),
        "answered_at": _iso(handoff.answered_at),
    }


def _not_found() -> Response:
    error = RequestError("no handoff with that id (or not yours to read)", status_code=404, code="handoff_not_found", param="id")
    return JSONResponse(error_body(error), status_code=404)


def handoff_route(guard: Guard) -> Route:
    async def get_handoff(request: Request) -> Response:
        handoff_id = request.path_params["handoff_id"]
        if guard.records is None or not _HANDOFF_ID.match(handoff_id):
            return _not_found()
        try:
            handoff = await run_in_threadpool(guard.records.get_handoff, handoff_id)
        except RecordsError as exc:
            guard.oversight.failed("handoff_read", exc)
            error = RequestError("the handoff records cannot be read right now; try again shortly", status_code=503, code="records_unavailable")
            return JSONResponse(error_body(error), status_code=503, headers={"retry-after": "5"})
        if handoff is None or (handoff.principal and handoff.principal != _principal(request.scope)):
            return _not_found()
        return JSONResponse(handoff_view(handoff), headers={"cache-control": "no-store"})

    return Route("/v1/handoffs/{handoff_id}", get_handoff, methods=["GET"])
