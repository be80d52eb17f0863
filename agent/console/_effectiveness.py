"""The effectiveness page: per check, precision and recall estimated from reviewers' labels
(with their 95% intervals), false positives and negatives, and how oversight works
(per reviewer: time to first action, override rate, agreement)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from aimsguard.collectors._effectiveness import effectiveness, oversight

from ._context import REVIEWERS, RESPONDERS, Console

__all__ = ["ROUTES"]


async def page(console: Console, request: Request) -> Response:
    console.require(request, *REVIEWERS, *RESPONDERS)
    try:
        days = int(request.query_params.get("days") or 30)
    except ValueError:
        raise HTTPException(400, "days must be a whole number.") from None
    if not 1 <= days <= 366:
        raise HTTPException(400, "days must be between 1 and 366.")
    since = datetime.now(timezone.utc) - timedelta(days=days)
    samples = await console.store_call("records", console.records.review_samples, since=since, labelled_only=True)
    totals = await console.store_call("records", console.records.review_totals, since=since)
    handoffs = await console.store_call("records", console.records.list_handoffs, limit=100_000)
    checks = effectiveness(samples, totals)
    people, kappas = oversight(samples, [h for h in handoffs if h.created_at >= since])
    return console.render(request, "effectiveness.html", checks=checks, people=people, kappas=kappas, days=days)


ROUTES = [("/effectiveness", page, "effectiveness")]
