"""The guardrail pipeline of one AI system: run a stage's checks, combine their verdicts.

Checks of a stage run concurrently, each within its own time budget. A check that
raises or overruns gets an ``error``/``timeout`` verdict whose action is decided by the
check's fail mode: ``open`` allows, ``closed`` blocks. The most severe action wins, and
redactions from every check are applied together.

Where a check runs: input past its ``max_chars`` is not checked (``over_limit`` decides);
input past its guardrail's ``offload_above_chars`` is analysed in the check pool's worker
processes, where the budget stops the work at the deadline (unless, up to 1,024 characters,
the guardrail's quick look already knows the analysis would find nothing); shorter input
runs in place. The in-place checks of requests that reach a stage in the same turn of the
event loop run together, check by check (``CheckBatcher``: their code and data stay in the
CPU's caches from one request to the next).
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from aimsguard.guardrails import (
    Action,
    CheckRequest,
    Guardrail,
    GuardrailRegistry,
    Outcome,
    Stage,
    Verdict,
    apply_redactions,
    most_severe,
)

from ._batching import CheckBatcher
from ._checkpool import CheckPool, CheckPoolError
from ._errors import GuardrailError, error_site
from ._policy import CheckConfig, FailMode, SystemConfig, validated_settings

__all__ = ["BoundCheck", "Pipeline", "StageResult"]

log = structlog.get_logger("aimsguard.agent")

# Up to this size, a text a guardrail would send to the check pool is first given its quick
# look here (``Guardrail.quick_analysis``; PII: its recognizers' pre-checks, about 1 us a
# character): a stream's windows of 300 characters cost 0.3 ms so instead of a 1.8 ms round
# trip to a worker (issue 11). Longer texts go to the pool unread: the look itself would
# hold the event loop for longer than the hop.
_QUICK_LOOK_CHARS = 1_024


@dataclass(frozen=True, slots=True)
class StageResult:
    action: Action
    verdicts: list[Verdict]
    texts: list[str]  # after redaction; the input texts when nothing was redacted
    duration_s: float

    @property
    def redacted(self) -> bool:
        return any(v.redactions for v in self.verdicts)

    @property
    def failed_closed(self) -> list[str]:
        """The checks that stopped the stage by failing, when no working check stopped it."""
        stoppers = [v for v in self.verdicts if v.action.stops_exchange]
        if stoppers and all(v.outcome is not Outcome.OK for v in stoppers):
            return [v.guardrail for v in stoppers]
        return []


@dataclass(frozen=True, slots=True)
class BoundCheck:
    """A loaded guardrail with the policy settings that govern how it runs."""

    config: CheckConfig
    guardrail: Guardrail
    pool: CheckPool | None = None
    key: str = ""  # the guardrail's key in the pool

    async def run(self, request: CheckRequest) -> Verdict:
        size = _size(request)
        if (refused := self._over_limit(request.stage, size)) is not None:
            return refused
        if self.offloads(size):
            if size <= _QUICK_LOOK_CHARS:
                verdict = await self._run_quick_look(request)
                if verdict is not None:
                    return verdict
            return await self._run_in_pool(request)
        if self.guardrail.inline:
            return self._run_here(request)
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.budget_s):
                verdict = await self.guardrail.check(request)
        except TimeoutError:
            return self._overran(request.stage, started)
        except Exception as exc:  # a failing check must never fail the request by accident
            return self._raised(request.stage, exc, started)
        return self._stamped(verdict, started)

    def run_inline(self, request: CheckRequest) -> Verdict:
        """Run an inline check in place (the caller knows the input is short: see ``offloads``)."""
        size = _size(request)
        if (refused := self._over_limit(request.stage, size)) is not None:
            return refused
        return self._run_here(request)

    def decided(self, request: CheckRequest, analysis: tuple[bool, Any], started: float) -> Verdict:
        """The verdict on ``request`` from a worker's answer (``_checkpool._analysed``): what
        its ``analyse`` returned, or the name of the exception it raised. Input over the check's
        ``max_chars`` gets its ``over_limit`` verdict, whatever the worker found (the batch lane
        is sent short inputs whole: the limit is the policy's word, not the worker's)."""
        size = _size(request)
        if (refused := self._over_limit(request.stage, size)) is not None:
            return refused
        ok, value = analysis
        if not ok:
            return self._worker_raised(request.stage, value, started)
        try:
            verdict = self.guardrail.decide(request, value)
        except Exception as exc:
            return self._raised(request.stage, exc, started)
        return self._stamped(verdict, started)

    def offloads(self, size: int) -> bool:
        limit = self.guardrail.offload_above_chars
        return self.pool is not None and limit is not None and size > limit and self.pool.warm()

    def _run_here(self, request: CheckRequest) -> Verdict:
        started = time.perf_counter()
        # Judged by the CPU time this thread spent, not the wall clock: a short check that
        # waited for the interpreter lock (another thread, a fork of the check pool) did not
        # overrun, and failing it would turn a stall elsewhere into a 503 for the user.
        # A cyclic collection the check's allocations trigger (over the whole heap of loaded
        # models) is deferred until it has run: it is not the check's cost.
        collecting = gc.isenabled()
        gc.disable()
        cpu_started = time.thread_time()
        try:
            verdict = self.guardrail.check_inline(request)  # type: ignore[attr-defined]
        except Exception as exc:
            return self._raised(request.stage, exc, started)
        finally:
            if collecting:
                gc.enable()
        # The CPU clock (a system call) is read again only when the wall clock is over the
        # budget: the CPU time spent is never more than the wall time.
        if time.perf_counter() - started > self.budget_s and time.thread_time() - cpu_started > self.budget_s:
            return self._overran(request.stage, started)
        return self._stamped(verdict, started)

    async def _run_quick_look(self, request: CheckRequest) -> Verdict | None:
        """Decided here when the guardrail's quick look already knows what its analysis would
        find (``quick_analysis``); None: it cannot tell, the analysis goes to the pool."""
        started = time.perf_counter()
        try:
            analysis = self.guardrail.quick_analysis(request)
            if analysis is None:
                return None
            verdict = await self._decision(request, analysis, started)
        except TimeoutError:
            return self._overran(request.stage, started)
        except Exception as exc:
            return self._raised(request.stage, exc, started)
        return self._stamped(verdict, started)

    async def _run_in_pool(self, request: CheckRequest) -> Verdict:
        assert self.pool is not None
        started = time.perf_counter()
        try:
            analysis = await self.pool.run(self.key, request, self.budget_s)
            verdict = await self._decision(request, analysis, started)
        except TimeoutError:
            return self._overran(request.stage, started)
        except CheckPoolError as exc:
            return self._worker_raised(request.stage, exc.error_type, started)
        except Exception as exc:
            return self._raised(request.stage, exc, started)
        return self._stamped(verdict, started)

    async def _decision(self, request: CheckRequest, analysis: Any, started: float) -> Verdict:
        """The guardrail's decision on ``analysis``; one that waits for I/O within what is left
        of the check's budget (TimeoutError past it)."""
        if not self.guardrail.decides_with_io:
            return self.guardrail.decide(request, analysis)
        async with asyncio.timeout(max(0.0, started + self.budget_s - time.perf_counter())):
            return await self.guardrail.decide_async(request, analysis)

    def _over_limit(self, stage: Stage, size: int) -> Verdict | None:
        """The ``over_limit`` verdict when input of ``size`` characters is over the check's
        ``max_chars`` (not checked at all), else None."""
        if self.config.max_chars is None or size <= self.config.max_chars:
            return None
        over_limit = self.config.over_limit
        return Verdict(
            guardrail=self.guardrail.instance_id,
            stage=stage,
            action=Action.ALLOW if over_limit is FailMode.OPEN else Action.BLOCK,
            outcome=Outcome.OVER_LIMIT,
            fail_mode=over_limit.value,
            reasons=(f"input of {size} characters is over the check's max_chars ({self.config.max_chars}), not checked; failing {over_limit.value}",),
            started=time.perf_counter(),
        )

    @property
    def budget_s(self) -> float:
        return self.config.timeout_ms / 1000

    def _stamped(self, verdict: Verdict, started: float) -> Verdict:
        verdict.guardrail = self.guardrail.instance_id
        verdict.started = started
        verdict.duration_s = time.perf_counter() - started
        return verdict

    def _overran(self, stage: Stage, started: float) -> Verdict:
        return self._failed(stage, Outcome.TIMEOUT, f"exceeded its {self.config.timeout_ms:g} ms budget", started)

    def _raised(self, stage: Stage, exc: Exception, started: float) -> Verdict:
        # The exception's message may quote the text, so only its type and place are recorded.
        log.warning("guardrail_error", guardrail=self.guardrail.instance_id, **error_site(exc))
        return self._failed(stage, Outcome.ERROR, f"raised {type(exc).__name__}", started)

    def _worker_raised(self, stage: Stage, error_type: str, started: float) -> Verdict:
        log.warning("guardrail_error", guardrail=self.guardrail.instance_id, error_type=error_type, where="check worker")
        return self._failed(stage, Outcome.ERROR, f"raised {error_type} in a check worker", started)

    def _failed(self, stage: Stage, outcome: Outcome, why: str, started: float) -> Verdict:
        fail_mode = self.config.fail_mode
        return Verdict(
            guardrail=self.guardrail.instance_id,
            stage=stage,
            action=Action.ALLOW if fail_mode is FailMode.OPEN else Action.BLOCK,
            outcome=outcome,
            fail_mode=fail_mode.value,
            reasons=(f"check {why}; failing {fail_mode.value}",),
            duration_s=time.perf_counter() - started,
            started=started,
        )


def _size(request: CheckRequest) -> int:
    return sum(len(text) for text in request.texts)


class Pipeline:
    def __init__(
        self,
        system_id: str,
        system: SystemConfig,
        registry: GuardrailRegistry,
        pool: CheckPool | None = None,
        shared: dict[str, object] | None = None,
    ) -> None:
        self.system_id = system_id
        self.system = system
        # Per-system state the checks share (the personal-data vault, the knowledge base's
        # place, and from the runtime where a fleet keeps the vault).
        self.shared: dict[str, object] = {"knowledge_base": system.knowledge_base, **(shared or {})}
        # The worker processes for long inputs: the Guard's, shared by its systems, or this
        # pipeline's own (forked only when first needed).
        self.pool = pool if pool is not None else CheckPool({})
        self.owns_pool = pool is None
        self.checks: dict[Stage, list[BoundCheck]] = {
            stage: [self._build(system_id, stage, config, registry, self.shared, self.pool) for config in system.checks.for_stage(stage)]
            for stage in Stage
        }
        self.all_inline = {stage: all(c.guardrail.inline for c in checks) for stage, checks in self.checks.items()}
        self.document_checks = [c for c in self.checks[Stage.INPUT] if c.guardrail.screens_documents]
        self.batcher = CheckBatcher(self.pool)

    @staticmethod
    def _build(
        system_id: str, stage: Stage, config: CheckConfig, registry: GuardrailRegistry, shared: dict[str, object], pool: CheckPool
    ) -> BoundCheck:
        cls = registry.get(config.guardrail)
        guardrail = cls(validated_settings(config, registry), instance_id=config.instance_id, shared=shared)
        try:
            guardrail.load()
        except Exception as exc:
            raise GuardrailError(config.instance_id, f"failed to load: {exc}") from exc
        if guardrail.offload_above_chars is None:
            return BoundCheck(config, guardrail)
        key = f"{system_id}/{stage.value}/{config.instance_id}"
        pool.checks[key] = guardrail
        return BoundCheck(config, guardrail, pool, key)

    def close(self) -> None:
        if self.owns_pool:
            self.pool.close()

    async def run(self, request: CheckRequest) -> StageResult:
        return await self._run(self.checks[request.stage], self.all_inline[request.stage], request, batched=True)

    async def run_checks(self, checks: Sequence[BoundCheck], request: CheckRequest) -> StageResult:
        """Run some of a stage's checks (a stream's checks that read the same window)."""
        return await self._run(list(checks), all(c.guardrail.inline for c in checks), request)

    async def screen_document(self, request: CheckRequest) -> StageResult:
        """Run the checks that judge third-party text (``screens_documents``) on one document."""
        return await self._run(self.document_checks, all(c.guardrail.inline for c in self.document_checks), request)

    async def _run(self, checks: list[BoundCheck], all_inline: bool, request: CheckRequest, batched: bool = False) -> StageResult:
        started = time.perf_counter()
        if not checks:
            return StageResult(Action.ALLOW, [], list(request.texts), 0.0)
        size = _size(request)
        if all_inline and not any(check.offloads(size) for check in checks):
            if batched:
                verdicts = await self.batcher.run(checks, request)
            else:
                verdicts = [check.run_inline(request) for check in checks]
        else:
            verdicts = await self._run_mixed(checks, request, size)
        action = most_severe(v.action for v in verdicts)
        texts = list(request.texts)
        if any(v.redactions for v in verdicts):
            findings = [f for v in verdicts for f in v.redactions]
            texts = [apply_redactions(text, findings, segment) for segment, text in enumerate(request.texts)]
        return StageResult(action, verdicts, texts, time.perf_counter() - started)

    @staticmethod
    async def _run_mixed(checks: list[BoundCheck], request: CheckRequest, size: int) -> list[Verdict]:
        """Checks of which some do not run in place (a quick look, a worker, an async guardrail).

        Input past the quick look's reach goes to the pool for certain: when there are several
        checks, each runs in a task of its own, in the policy's order, so a worker starts on its
        job while the checks after it run here. Otherwise the ones that run in place run first, here: they are short
        (under their ``offload_above_chars``), and in a task each they would cost a turn of the
        loop. The others are awaited: one directly, so a quick look that decides at once costs
        no turn of the loop either (a stream's window under the example policy: pii-out's quick
        look with output-rules in place); several together."""
        if size > _QUICK_LOOK_CHARS and len(checks) > 1:
            return list(await asyncio.gather(*(check.run(request) for check in checks)))
        in_place = [check.guardrail.inline and not check.offloads(size) for check in checks]
        verdicts: list[Verdict | None] = [check.run_inline(request) if here else None for check, here in zip(checks, in_place)]
        others = [index for index, here in enumerate(in_place) if not here]
        if len(others) == 1:
            verdicts[others[0]] = await checks[others[0]].run(request)
        elif others:
            for index, verdict in zip(others, await asyncio.gather(*(checks[index].run(request) for index in others))):
                verdicts[index] = verdict
        return verdicts  # type: ignore[return-value]  # every place is filled

    def describe(self) -> dict[Stage, Sequence[dict[str, object]]]:
        return {
            stage: [
                {**check.guardrail.describe(), "fail_mode": check.config.fail_mode.value, "timeout_ms": check.config.timeout_ms}
                for check in checks
            ]
            for stage, checks in self.checks.items()
        }
