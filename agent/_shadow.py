"""Shadow policies: a candidate version of a system's checks, run on live traffic, never applied.

When a system has ``shadow: {candidate, checks}``, each exchange's texts (as received,
and the answer as the user got it) are checked again by the candidate's checks *after*
the exchange is finished and recorded: a task on the event loop, so nothing waits for it,
and long texts go to the check pool as the live checks' do. Every candidate verdict is a
``shadow.verdict`` event (findings by kind and place, never text) with the live action of
the check of the same id, so ``aimsguard shadow`` can tell which decisions would change.

A candidate costs about as much CPU as the live checks it mirrors (``bench/bench_shadow.py``):
``sample_rate`` sends only that share of exchanges to it. At most ``max_in_flight`` shadow runs wait at once; past that a run is dropped and counted
(``aimsguard_shadow_runs_total{outcome="dropped"}``): under load the candidate sees less
traffic, the live path never waits. A shadow check that raises is counted (``failed``)
and written with its outcome; it never reaches the user.
"""

from __future__ import annotations

import asyncio
import random
from typing import TYPE_CHECKING, Any

import structlog
from prometheus_client import CollectorRegistry, Counter

from aimsguard.guardrails import CheckRequest, GuardrailRegistry, Stage

from ._exchange import Exchange
from ._pipeline import Pipeline, StageResult

if TYPE_CHECKING:
    from ._guard import Guard

__all__ = ["ShadowRunner"]

log = structlog.get_logger("aimsguard.agent")


class ShadowRunner:
    def __init__(self, guard: Guard, registry: GuardrailRegistry, metrics_registry: CollectorRegistry | None) -> None:
        self.guard = guard
        self.pipelines: dict[str, Pipeline] = {}
        self.candidates: dict[str, str] = {}
        self.limits: dict[str, int] = {}
        self.rates: dict[str, float] = {}
        self._random = random.Random()
        for system_id, system in guard.policy.systems.items():
            if system.shadow is None:
                continue
            # Its own name in the check pool: the live checks' entries must never be replaced.
            candidate = system.model_copy(update={"checks": system.shadow.checks})
            self.pipelines[system_id] = Pipeline(f"{system_id}~shadow", candidate, registry, guard.check_pool)
            self.candidates[system_id] = system.shadow.candidate
            self.limits[system_id] = system.shadow.max_in_flight
            self.rates[system_id] = system.shadow.sample_rate
        self.runs = Counter(
            "aimsguard_shadow_runs_total",
            "Shadow runs of a candidate policy's checks: done, dropped (too many waiting), failed, or no_loop (sync caller).",
            ["system", "outcome"], registry=metrics_registry if metrics_registry is not None else CollectorRegistry(),
        )
        self._tasks: dict[str, set[asyncio.Task[None]]] = {system_id: set() for system_id in self.pipelines}

    def draws(self, system_id: str) -> bool:
        """Whether this exchange goes to the candidate too (its ``sample_rate`` share of traffic)."""
        rate = self.rates.get(system_id)
        return rate is not None and (rate >= 1.0 or self._random.random() < rate)

    def start(self, exchange: Exchange) -> None:
        """After the exchange is recorded: check its texts with the candidate, in the background."""
        system_id = exchange.system_id
        if system_id not in self.pipelines or not exchange.shadow_input:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.runs.labels(system_id, "no_loop").inc()
            return
        tasks = self._tasks[system_id]
        if len(tasks) >= self.limits[system_id]:
            self.runs.labels(system_id, "dropped").inc()
            return
        live = {(v.stage.value, v.guardrail): v.action.value for v in exchange.verdicts}
        task = loop.create_task(
            self._run(system_id, exchange.request_id, exchange.shadow_input, exchange.shadow_output or [], live)
        )
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def _run(self, system_id: str, request_id: str, inputs: list[str], outputs: list[str], live: dict[tuple[str, str], str]) -> None:
        pipeline = self.pipelines[system_id]
        try:
            stages: list[tuple[Stage, list[str]]] = [(Stage.INPUT, inputs)] + ([(Stage.OUTPUT, outputs)] if outputs else [])
            for stage, texts in stages:
                request = CheckRequest(
                    stage=stage, texts=texts, system_id=system_id, conversation_id=f"shadow-{request_id}",
                    question=inputs[-1] if stage is Stage.OUTPUT and inputs else None,
                )
                result = await pipeline.run(request)
                self._record(system_id, request_id, stage, result, live)
        except Exception as exc:  # noqa: BLE001 - a candidate's failure never reaches the live path
            log.warning("shadow_run_failed", system=system_id, error_type=type(exc).__name__)
            self.runs.labels(system_id, "failed").inc()
            return
        self.runs.labels(system_id, "done").inc()

    def _record(self, system_id: str, request_id: str, stage: Stage, result: StageResult, live: dict[tuple[str, str], str]) -> None:
        for verdict in result.verdicts:
            record: dict[str, Any] = verdict.to_record()
            self.guard.events.emit(
                "shadow.verdict", system=system_id, request_id=request_id, candidate=self.candidates[system_id],
                live_action=live.get((stage.value, verdict.guardrail)), **record,
            )

    async def idle(self) -> None:
        """Wait for the shadow runs in flight on this loop (tests, shutdown)."""
        pending = [t for tasks in self._tasks.values() for t in tasks]
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)

    def close(self) -> None:
        for pipeline in self.pipelines.values():
            pipeline.close()
