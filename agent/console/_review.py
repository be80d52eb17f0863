"""Reviewer pages: judge sampled decisions of the checks (right / wrong / unsure).

A sample shows the check's decision, its reasons and findings, and the content exactly as
the event log holds it (none at all when content is not logged). Other reviewers' labels
stay hidden until you have given yours, so a double-labelled sample gets two independent
judgements (the agreement figures depend on it).
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from aimsguard.collectors.records import ReviewLabelValue

from ._context import REVIEWERS, Console, choice_field

__all__ = ["ROUTES"]

LABELS = tuple(v.value for v in ReviewLabelValue)


async def queue(console: Console, request: Request) -> Response:
    console.require(request, *REVIEWERS)
    counts = await console.store_call("records", console.records.review_open_counts)
    rows = sorted(((system, check, n) for (system, check), n in counts.items()), key=lambda r: (r[0], r[1]))
    return console.render(request, "review.html", rows=rows, total=sum(counts.values()))


async def next_sample(console: Console, request: Request) -> Response:
    user = console.require(request, *REVIEWERS)
    form = await console.form(request, user)
    system = form.get("system") or None
    if system not in (None, *console.systems):
        raise HTTPException(422, "Unknown system.")
    sample = await console.act("review.next", "next_review_sample", user.name, system=system)
    if sample is None:
        return console.redirect(request, "review", "Nothing left for you to label.")
    return console.redirect(request, "review_sample", sample_id=sample.id)


async def detail(console: Console, request: Request) -> Response:
    user = console.require(request, *REVIEWERS)
    sample = await console.store_call("records", console.records.get_review_sample, _id(request))
    if sample is None:
        raise HTTPException(404, "There is no such sample.")
    mine = next((l for l in sample.labels if l.reviewer == user.name), None)
    return console.render(request, "review_sample.html", sample=sample, mine=mine, labels=LABELS)


async def label(console: Console, request: Request) -> Response:
    user = console.require(request, *REVIEWERS)
    form = await console.form(request, user)
    value = choice_field(form, "label", LABELS, "right, wrong or unsure")
    sample_id = _id(request)
    await console.act("review.label", "label", sample_id, user.name, value)
    following = await console.act("review.next", "next_review_sample", user.name)
    if following is None:
        return console.redirect(request, "review", f"Labelled {sample_id} as {value}. Nothing left for you to label.")
    return console.redirect(request, "review_sample", f"Labelled {sample_id} as {value}.", sample_id=following.id)


def _id(request: Request) -> str:
    return str(request.path_params["sample_id"])


ROUTES = [
    ("/review", queue, "review"),
    ("/review/next", next_sample, "review_next", ("POST",)),
    ("/review/{sample_id}", detail, "review_sample"),
    ("/review/{sample_id}/label", label, "review_label", ("POST",)),
]
