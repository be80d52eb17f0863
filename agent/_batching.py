"""Inline checks of requests that reach a stage in the same turn of the event loop, run together.

Under load, the serving process's CPU is what limits throughput, and the checks cost most of
it. A check costs about three times more in a busy server than in a loop of its own
(measured on bench_load's request: the example policy's checks 0.18 ms with warm caches,
0.5 ms in the gateway), because between two requests the rest of the server (HTTP parsing,
the upstream client, the event log) has pushed its code and tables out of the CPU's caches.
So the requests that are ready in one turn of the loop are checked together, check by check
(each request's personal-data check, then each one's injection check, ...): the second and
later runs of a check find its code and data cached. A request that reaches a stage when
nothing else is ready in the turn (a quiet server) cannot be joined by another: it is checked
at once, without waiting for the end of the turn.

When the check pool is up and the loop has other work ready, a batch (even of one request)
goes to its batch worker instead (``_lane``), in one message, while the serving process goes
on with that work; only the checks' decisions (the personal-data vault's numbering) are made
here, on what the worker found. A few batches wait at the worker at once; past that the next
one runs here, so the two share the work. When nothing else is ready, the batch runs here: the
worker's round trip (~2 ms under load) would only add latency while this process sits idle.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import pickle
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from aimsguard.guardrails import CheckRequest, Verdict

from ._checkpool import CheckPool
from ._lane import LaneAnswer

if TYPE_CHECKING:
    from ._pipeline import BoundCheck

__all__ = ["CheckBatcher"]

_Pending = tuple[Sequence["BoundCheck"], CheckRequest, "asyncio.Future[list[Verdict]]"]


class CheckBatcher:
    """Collects (checks, request) pairs during one turn of an event loop; runs them at its end."""

    MAX_BATCH = 32  # a batch holds the loop for at most ~32 requests' checks (~10 ms at 0.3 ms each)

    def __init__(self, pool: CheckPool | None = None) -> None:
        self._pending: list[_Pending] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pool = pool

    async def run(self, checks: Sequence[BoundCheck], request: CheckRequest) -> list[Verdict]:
        """The verdicts of ``checks`` (all inline, the input short) on ``request``, in order."""
        loop = asyncio.get_running_loop()
        if self._pending and self._loop is not loop:  # used from two loops at once: no batching
            return [check.run_inline(request) for check in checks]
        if not self._pending and not _other_work_ready(loop):
            # Nothing else runs in this turn, so no request can join this one's batch, and a
            # batch with nothing else ready runs here (see _offload): it runs now, without the
            # future and the turn of the loop a batch costs (~5-10 us per stage).
            self._note_in_place()
            return [check.run_inline(request) for check in checks]
        future: asyncio.Future[list[Verdict]] = loop.create_future()
        self._pending.append((checks, request, future))
        if len(self._pending) == 1:
            self._loop = loop
            loop.call_soon(self._drain)
        elif len(self._pending) >= self.MAX_BATCH:
            self._drain()
        return await future

    def _drain(self) -> None:
        batch, self._pending = self._pending, []
        if not batch:
            return  # drained early, when the batch filled up
        if self._offload(batch):
            return
        self._note_in_place()
        self._run_here(batch)

    def _note_in_place(self) -> None:
        if self._pool is not None and self._pool.lane is not None:
            self._pool.record("batches_in_place")

    def _offload(self, batch: list[_Pending]) -> bool:
        """Hand ``batch`` to the batch lane when it is up, idle and knows every check of the
        batch (the pool's workers hold them by key), and this loop has other work ready; False
        when it stays here.

        A lone request goes too: in a busy server the worker, which does nothing else, runs
        its checks faster than this process would, and this process's core is the one that
        limits throughput (interleaved A/B rounds of bench_load's gateways at 16 connections:
        better in 9 of 11, by 0.03-0.05 of the no-check gateway's throughput). But with
        nothing else ready, this process would wait for the worker doing nothing: running the
        batch here gave 0.665-0.69 of the no-check gateway's throughput at 16 connections
        against 0.62 (A/B rounds, 2026-12-06), the same at 64."""
        lane = self._pool.lane if self._pool is not None else None  # there once the pool is started
        if lane is None or not lane.idle or not _other_work_ready(self._loop):
            return False
        if not all(check.key for checks, _, _ in batch for check in checks):
            return False
        jobs = [(_picklable(request), [check.key for check in checks]) for checks, request, _ in batch]
        budget_s = min(check.budget_s for checks, _, _ in batch for check in checks)
        try:
            return lane.submit(jobs, budget_s, functools.partial(self._answered, batch, time.perf_counter()))
        except (pickle.PicklingError, TypeError, AttributeError):  # metadata that does not pickle: checked here
            return False

    def _answered(self, batch: list[_Pending], started: float, answer: LaneAnswer | None) -> None:
        """The lane's answer for ``batch`` (None: late or lost, so it runs here after all)."""
        assert self._pool is not None
        if answer is None:
            self._pool.record("batches_reclaimed")
            self._run_here(batch)
            return
        self._pool.record("batches_offloaded")
        try:
            for (checks, request, future), analyses in zip(batch, answer, strict=True):
                if not future.done():
                    future.set_result([check.decided(request, analysis, started) for check, analysis in zip(checks, analyses, strict=True)])
        except BaseException as exc:  # decided turns a check's failure into a verdict: this is a bug
            _fail(batch, exc)
            raise

    def _run_here(self, batch: list[_Pending]) -> None:
        results: list[list[Verdict | None]] = [[None] * len(checks) for checks, _, _ in batch]
        places: dict[int, tuple[BoundCheck, list[tuple[int, int]]]] = {}
        for number, (checks, _, _) in enumerate(batch):
            for position, check in enumerate(checks):
                places.setdefault(id(check), (check, []))[1].append((number, position))
        try:
            for check, where in places.values():
                for number, position in where:
                    results[number][position] = check.run_inline(batch[number][1])
        except BaseException as exc:  # run_inline turns a check's failure into a verdict: this is a bug
            _fail(batch, exc)
            return
        for (_, _, future), verdicts in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(verdicts)  # type: ignore[arg-type]


def _other_work_ready(loop: asyncio.AbstractEventLoop | None) -> bool:
    """Whether ``loop`` has callbacks ready besides the one running. asyncio's own loop keeps
    them in ``_ready`` (not public API); a loop without it counts as busy, so batches go to the
    worker as they would under load."""
    ready = getattr(loop, "_ready", None)
    return ready is None or len(ready) > 0


def _fail(batch: list[_Pending], exc: BaseException) -> None:
    for _, _, future in batch:
        if not future.done():
            future.set_exception(exc)


def _picklable(request: CheckRequest) -> CheckRequest:
    """``request`` with plain-dict metadata (a mapping proxy does not pickle). A dict is not
    copied, unlike in ``CheckPool.run``: the lane pickles on the loop, before anything else
    runs, where the pool's waiter thread pickles while the loop goes on."""
    if type(request.metadata) is dict:
        return request
    return dataclasses.replace(request, metadata=dict(request.metadata))
