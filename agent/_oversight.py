"""Human oversight (EU AI Act Art. 14): handoffs to a person, incident handling, stop switches.

``HumanOversight(guard)`` is what people act through (the web console, scripts): each
method changes the records store and writes the matching event, so an action and its
audit record always go together.

``OversightRuntime`` is the Guard's side: it brings the store's schema up at start-up,
queues a handoff ticket when an exchange escalates, calls the handoff webhook, and keeps
the stop switches (and the queued-ticket gauge) fresh with a background poll, so the
request path only reads memory.

Failure choices (each counted and written as an event):
- the store is down when an exchange escalates: the user still gets the fallback, without
  a handoff id (``aimsguard_handoffs_total{outcome="failed"}``, event ``handoff.failed``);
  a store slower than ``records.handoff_timeout_s`` counts as ``timeout`` (the ticket may
  still be written late; it is then in the queue, but the user holds no id for it);
- the stop switches cannot be read: the last state read stays in force (fail open before
  the first successful read), ``aimsguard_records_errors_total{operation="poll"}``;
- a stop cannot be written: it holds in this process and is retried with each poll
  (``operation="stop_switch"``, event ``system.stop_unpersisted``); a resume fails instead;
- the schema upgrade fails at start: retried with each poll (``operation="upgrade"``);
- the database loses the store's tables (recreated empty): a failed poll finds them
  missing (event ``records.schema_missing``) and the next poll re-runs the migrations.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, TypeVar

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge

from aimsguard.collectors._effectiveness import CheckEffectiveness, effectiveness
from aimsguard.collectors._objectives import ObjectiveMetric
from aimsguard.collectors import StateError
from aimsguard.collectors.records import Handoff, Incident, RecordsError, RecordsStore, ReviewSample
from aimsguard.guardrails import Action, Stage, Verdict, apply_redactions, log_masks

from ._errors import UnknownSystemError
from ._exchange import Exchange
from ._webhook import WebhookNotifier

if TYPE_CHECKING:
    from ._guard import Guard

__all__ = ["WITHHELD", "BoundedWrites", "HumanOversight", "OversightMetrics", "OversightRuntime"]

log = structlog.get_logger("aimsguard.agent")

_HIDDEN_ROLES = ("system", "developer")  # instructions, not the conversation: a reviewer does not need them
WITHHELD = "[withheld: the personal-data check did not run]"
_FAILURE_EVENT_EVERY_S = 60.0
EFFECTIVENESS_DAYS = 30  # the window the effectiveness gauges cover
EFFECTIVENESS_EVERY_S = 30.0  # how often the poll recomputes them from the store
_KEPT_STOP = "kept across a records database that was recreated empty"
T = TypeVar("T")


class OversightMetrics:
    def __init__(self, registry: CollectorRegistry | None) -> None:
        r = registry if registry is not None else CollectorRegistry()
        self.handoffs = Counter(
            "aimsguard_handoffs_total",
            "Handoff tickets for escalated exchanges: created, failed (store error) or timeout.",
            ["system", "outcome"], registry=r,
        )
        self.queued = Gauge(
            "aimsguard_handoffs_queued", "Handoff tickets waiting for a person (read from the records store).",
            ["system"], registry=r, multiprocess_mode="max",
        )
        self.webhooks = Counter(
            "aimsguard_handoff_webhooks_total", "Handoff webhook notices: delivered, failed (after retries) or dropped.",
            ["system", "outcome"], registry=r,
        )
        self.incidents = Counter(
            "aimsguard_incidents_total", "Incident records opened, events folded into open ones, and failed writes, by rule.",
            ["system", "rule", "outcome"], registry=r,
        )
        self.stopped = Gauge(
            "aimsguard_system_stopped", "1 while a system's stop switch is on.", ["system"], registry=r, multiprocess_mode="max",
        )
        self.incident_rule_errors = Counter(
            "aimsguard_incident_rule_errors_total", "Event batches the incident rules failed on (a bug or an unexpected event).",
            registry=r,
        )
        self.records_errors = Counter(
            "aimsguard_records_errors_total", "Records store operations that failed, by operation.", ["operation"], registry=r,
        )
        self.review_samples = Counter(
            "aimsguard_review_samples_total", "Checks' decisions drawn for review: queued, failed (the store could not take them) or dropped (its writes were too far behind).",
            ["system", "guardrail", "outcome"], registry=r,
        )
        self.review_open = Gauge(
            "aimsguard_review_samples_open", "Sampled decisions waiting for their labels (read from the records store).",
            ["system", "guardrail"], registry=r, multiprocess_mode="max",
        )
        self.review_labels = Counter(
            "aimsguard_review_labels_total", "Labels people gave sampled decisions: right, wrong or unsure.",
            ["system", "guardrail", "label"], registry=r,
        )

        def gauge(name: str, text: str, labels: tuple[str, ...] = ("system", "guardrail")) -> Gauge:
            return Gauge(name, text, list(labels), registry=r, multiprocess_mode="max")

        window = f"over the last {EFFECTIVENESS_DAYS} days of reviewers' labels (inverse-probability weighted)"
        self.precision = gauge("aimsguard_guardrail_precision", f"Estimated precision of a check's actions {window}.")
        self.precision_lower = gauge("aimsguard_guardrail_precision_lower", "Lower end of the 95% Wilson interval of the estimated precision.")
        self.precision_upper = gauge("aimsguard_guardrail_precision_upper", "Upper end of the 95% Wilson interval of the estimated precision.")
        self.recall = gauge("aimsguard_guardrail_recall", f"Estimated recall of a check {window}.")
        self.recall_lower = gauge("aimsguard_guardrail_recall_lower", "Lower end of the 95% Wilson interval of the estimated recall.")
        self.recall_upper = gauge("aimsguard_guardrail_recall_upper", "Upper end of the 95% Wilson interval of the estimated recall.")
        self.false_positives = gauge("aimsguard_guardrail_false_positives", "Sampled actions reviewers judged wrong, in the window.")
        self.false_negatives = gauge("aimsguard_guardrail_false_negatives", "Sampled allows reviewers judged wrong (missed), in the window.")
        self.labelled = gauge("aimsguard_guardrail_labelled_samples", "Sampled decisions with a usable label (right or wrong, agreed), in the window.")
        self.precision_objective = gauge(
            "aimsguard_guardrail_precision_objective", "The policy's guardrail_precision_min target for a system.", ("system",)
        )
        self.recall_objective = gauge("aimsguard_guardrail_recall_objective", "The policy's guardrail_recall_min target for a system.", ("system",))

    def set_effectiveness(self, figures: Sequence[CheckEffectiveness]) -> None:
        for f in figures:
            labels = (f.system, f.check)
            for gauge, value in (
                (self.precision, f.precision), (self.precision_lower, f.precision_low), (self.precision_upper, f.precision_high),
                (self.recall, f.recall), (self.recall_lower, f.recall_low), (self.recall_upper, f.recall_high),
            ):
                if value is not None:  # no estimate yet: no series, rather than a made-up value
                    gauge.labels(*labels).set(value)
            self.false_positives.labels(*labels).set(f.false_positives)
            self.false_negatives.labels(*labels).set(f.false_negatives)
            self.labelled.labels(*labels).set(f.labelled)

    def count_incident(self, system: str, rule: str, outcome: str) -> None:
        self.incidents.labels(system, rule, outcome).inc()

    def count_webhook(self, system: str, outcome: str) -> None:
        self.webhooks.labels(system, outcome).inc()

    def count_review_sample(self, system: str, check: str, outcome: str) -> None:
        self.review_samples.labels(system, check, outcome).inc()


@dataclass
class _Switch:
    """A stop switch changed in this process."""

    stopped: bool
    by: str
    reason: str
    persisted_at: float | None = None  # time.monotonic() once the store has it


class BoundedWrites:
    """Ticket writes from the request path, on a few threads of their own.

    A slow or hung database then holds only these threads, never the event loop's default
    pool that the rest of the gateway needs; when all are busy, a write fails at once
    (``TimeoutError``) instead of queueing behind them.
    """

    def __init__(self, workers: int = 4) -> None:
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="aimsguard-records-write")
        self._slots = threading.BoundedSemaphore(workers)

    async def run(self, call: Callable[[], T], timeout_s: float) -> T:
        if not self._slots.acquire(blocking=False):
            raise TimeoutError("every records writer is busy")
        try:
            future = self._executor.submit(call)
        except RuntimeError as exc:  # shut down
            self._slots.release()
            raise TimeoutError("the records writers are closed") from exc
        future.add_done_callback(lambda _: self._slots.release())  # the slot frees when the write ends, not at our timeout
        return await asyncio.wait_for(asyncio.wrap_future(future), timeout_s)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


class _Nudges:
    """The stop switch's fast path: a message on the shared state's ``stop`` channel makes
    every replica poll the records store at once, instead of within ``records.stop_poll_s``.
    The store stays the truth; a lost nudge only means waiting for the next poll. Runs its
    own event loop on a thread (the poller is a thread too). The shared state failing:
    counted (``use="stop_switch"``, outcome ``poll``) and retried every second."""

    CHANNEL = "stop"

    def __init__(self, guard: Guard, wake: threading.Event) -> None:
        self._state = guard.state
        self._monitor = guard.state_monitor
        self._wake = wake
        self._loop = asyncio.new_event_loop()
        self._task: asyncio.Task[None] | None = None
        self._thread = threading.Thread(target=self._run, name="aimsguard-stop-nudges", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._task = self._loop.create_task(self._listen())
        try:
            self._loop.run_until_complete(self._task)
        except asyncio.CancelledError:
            pass
        finally:
            self._loop.close()

    async def _listen(self) -> None:
        while True:
            try:
                await self._state.subscribe(self.CHANNEL, lambda _: self._wake.set(), ready=lambda: self._monitor.ok("stop_switch"))
            except StateError as exc:
                self._monitor.failed("stop_switch", "poll", exc)
                await asyncio.sleep(1.0)

    def send(self, system: str) -> None:
        """Nudge every replica (fire and forget; a failure is counted)."""

        async def publish() -> None:
            try:
                await self._state.publish(self.CHANNEL, system.encode())
            except StateError as exc:
                self._monitor.failed("stop_switch", "poll", exc)

        if not self._loop.is_closed():
            asyncio.run_coroutine_threadsafe(publish(), self._loop)

    def close(self) -> None:
        if self._task is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._task.cancel)
        self._thread.join(5)


class OversightRuntime:
    """The Guard's oversight machinery; inert (never stopped, no tickets) without a store."""

    def __init__(self, guard: Guard, metrics: OversightMetrics) -> None:
        self.guard = guard
        self.store = guard.records
        self.metrics = metrics
        self.systems = sorted(guard.policy.systems)
        self._stopped: frozenset[str] = frozenset()
        self._switches: dict[str, _Switch] = {}  # switched here, held until a poll sees the store agree
        self._switch_lock = threading.Lock()
        self._schema_ready = False
        self._poll_failing = False  # an event when polling starts failing, not one per poll
        self._last_failure_event: dict[str, float] = {}
        self._closing = threading.Event()
        self._wake = threading.Event()  # poll now (set by a nudge from another replica, or by close)
        self._poller: threading.Thread | None = None
        self._nudges: _Nudges | None = None
        webhooks = {sid: s.fallback.handoff_webhook for sid, s in guard.policy.systems.items() if s.fallback.handoff_webhook}
        self.webhooks = (
            WebhookNotifier(webhooks, on_outcome=metrics.count_webhook, emit=lambda kind, **fields: guard.events.emit(kind, **fields))
            if webhooks
            else None
        )
        self._writes = BoundedWrites()
        # The checks whose decisions are sampled for review, per system (for the open-samples gauge).
        self._reviewed = [
            (sid, c.config.instance_id)
            for sid, pipeline in guard.pipelines.items()
            if guard.policy.systems[sid].review is not None
            for stage in Stage
            for c in pipeline.checks[stage]
        ]
        # The input checks whose findings are personal data, per system (see ``_conversation``).
        self._masking_checks = {
            sid: frozenset(c.config.instance_id for c in pipeline.checks[Stage.INPUT] if c.guardrail.masks_content)
            for sid, pipeline in guard.pipelines.items()
        }
        for sid, system in guard.policy.systems.items():
            for objective in system.objectives:
                if objective.metric is ObjectiveMetric.GUARDRAIL_PRECISION_MIN:
                    metrics.precision_objective.labels(sid).set(objective.target)
                elif objective.metric is ObjectiveMetric.GUARDRAIL_RECALL_MIN:
                    metrics.recall_objective.labels(sid).set(objective.target)
        self._effectiveness_due = 0.0
        if self.store is None:
            return
        config = guard.policy.records
        assert config is not None
        self.poll_s = config.stop_poll_s
        self.handoff_timeout_s = config.handoff_timeout_s
        self.poll()
        self._poller = threading.Thread(target=self._poll_forever, name="aimsguard-records", daemon=True)
        self._poller.start()
        # The fast path (shared state): a switch here nudges every replica to poll at once.
        self._nudges = _Nudges(guard, self._wake) if guard.state.kind != "memory" else None

    # -- stop switches -----------------------------------------------------------------

    def is_stopped(self, system: str) -> bool:
        return system in self._stopped

    @property
    def stopped_systems(self) -> list[str]:
        return sorted(self._stopped)

    @property
    def records_state(self) -> str:
        """For readiness: ``none`` (no store), ``ok``, or ``failing`` (the last poll could not read it)."""
        if self.store is None:
            return "none"
        return "failing" if self._poll_failing or not self._schema_ready else "ok"

    def unpersisted(self) -> set[str]:
        """Systems whose switch this process changed but could not yet write to the store."""
        with self._switch_lock:
            return {system for system, switch in self._switches.items() if switch.persisted_at is None}

    def switch(self, system: str, stopped: bool, *, by: str, reason: str) -> bool:
        """Change a stop switch here at once and in the store; returns whether the store has it.

        Stopping never fails: it applies here even when the store cannot be written, and the
        write is retried with each poll (other replicas follow once it lands). Resuming is
        written first and raises ``RecordsError`` when it cannot be: a resume that only
        one replica knew of would leave the others stopped without anyone noticing.
        Either way the change is held here until a poll that began after the write sees
        it, so a poll racing the switch cannot undo it.
        """
        assert self.store is not None
        pending = _Switch(stopped, by, reason)
        if not stopped:
            self.store.set_stopped(system, False, by=by, reason=reason)
            pending.persisted_at = time.monotonic()
        with self._switch_lock:
            self._switches[system] = pending
            self._apply(system, stopped)
        persisted = stopped is False or self._persist(system, pending)
        if persisted and self._nudges is not None:
            self._nudges.send(system)
        return persisted

    def _persist(self, system: str, switch: _Switch) -> bool:
        assert self.store is not None
        try:
            self.store.set_stopped(system, switch.stopped, by=switch.by, reason=switch.reason)
        except RecordsError as exc:
            self._failed("stop_switch", exc, event=False)
            return False
        with self._switch_lock:
            switch.persisted_at = time.monotonic()
        return True

    def _apply(self, system: str, stopped: bool) -> None:
        self._stopped = self._stopped | {system} if stopped else self._stopped - {system}
        self.metrics.stopped.labels(system).set(1 if stopped else 0)

    def poll(self) -> None:
        assert self.store is not None
        self._ensure_schema()
        with self._switch_lock:
            unwritten = [(system, switch) for system, switch in self._switches.items() if switch.persisted_at is None]
        for system, switch in unwritten:
            self._persist(system, switch)
        began = time.monotonic()
        try:
            stopped = self.store.stopped_systems()
            queued = self.store.queued_counts()
            in_review = self.store.review_open_counts() if self._reviewed else {}
        except RecordsError as exc:
            self._failed("poll", exc, event=not self._poll_failing)
            self._poll_failing = True
            self._check_schema()
            return
        if self._poll_failing:
            log.info("records_store_recovered", store=self.store.url)
        self._poll_failing = False
        with self._switch_lock:
            for system, switch in list(self._switches.items()):
                if switch.persisted_at is not None and switch.persisted_at <= began:
                    del self._switches[system]  # this read began after the write: the store's word holds again
                else:
                    stopped = stopped | {system} if switch.stopped else stopped - {system}
            self._stopped = frozenset(stopped)
        for system in self.systems:
            self.metrics.stopped.labels(system).set(1 if system in stopped else 0)
            self.metrics.queued.labels(system).set(queued.get(system, 0))
        for system, check in self._reviewed:
            self.metrics.review_open.labels(system, check).set(in_review.get((system, check), 0))
        if self._reviewed and time.monotonic() >= self._effectiveness_due:
            self.refresh_effectiveness()

    def refresh_effectiveness(self) -> list[CheckEffectiveness]:
        """Recompute the effectiveness gauges from the last ``EFFECTIVENESS_DAYS`` of labels
        (every ``EFFECTIVENESS_EVERY_S`` from the poll; call it to have them now)."""
        assert self.store is not None
        self._effectiveness_due = time.monotonic() + EFFECTIVENESS_EVERY_S
        since = datetime.now(timezone.utc) - timedelta(days=EFFECTIVENESS_DAYS)
        try:
            # Labelled samples only, and each stratum's totals summed by the database: unlabelled
            # samples count through their stratum's weight, never read one by one.
            figures = effectiveness(self.store.review_samples(since=since, labelled_only=True), self.store.review_totals(since=since))
        except RecordsError as exc:
            self._failed("effectiveness", exc, event=False)
            return []
        self.metrics.set_effectiveness(figures)
        return figures

    def _ensure_schema(self) -> None:
        """Bring the schema up; after a failure at start-up, retried on each poll until it works."""
        if self._schema_ready or self.store is None:
            return
        try:
            self.store.upgrade()
        except RecordsError as exc:
            # Not fatal: the guardrails matter more than the queue, and a database that
            # was migrated before works again when it comes back.
            self.failed("upgrade", exc)
            return
        self._schema_ready = True

    def _check_schema(self) -> None:
        """After a failed read: if the database answers but lacks the store's tables (it was
        recreated empty, or they were dropped), bring the schema up again from the next poll
        on, so the store recovers within ``stop_poll_s`` instead of failing until a restart."""
        assert self.store is not None
        if not self._schema_ready:
            return  # the upgrade is retried with each poll already
        try:
            missing = self.store.missing_tables()
        except RecordsError:
            return  # the database itself is away: polling goes on as before
        if missing:
            log.error("records_schema_missing", tables=missing, store=self.store.url)
            self.guard.events.emit("records.schema_missing", tables=missing, stopped_systems=sorted(self._stopped))
            self._schema_ready = False
            # An empty database would read as "nothing stopped": the stops in force here are
            # written back instead (with each poll, like any stop not yet persisted).
            with self._switch_lock:
                for system in self._stopped:
                    switch = self._switches.get(system)
                    if switch is None or switch.persisted_at is not None:  # written before: into the lost tables
                        self._switches[system] = _Switch(True, "aimsguard", _KEPT_STOP)

    def _poll_forever(self) -> None:
        while not self._closing.is_set():
            self._wake.wait(self.poll_s)
            self._wake.clear()
            if self._closing.is_set():
                return
            self.poll()

    def failed(self, operation: str, exc: Exception) -> None:
        """Count a failed store operation; write its event at most once a minute per operation,
        so clients polling through an outage do not flood the event log."""
        now = time.monotonic()
        due = now - self._last_failure_event.get(operation, -_FAILURE_EVENT_EVERY_S) >= _FAILURE_EVENT_EVERY_S
        if due:
            self._last_failure_event[operation] = now
        self._failed(operation, exc, event=due)

    def _failed(self, operation: str, exc: Exception, *, event: bool = True) -> None:
        self.metrics.records_errors.labels(operation).inc()
        if event:
            log.error("records_store_failed", operation=operation, error_type=type(exc).__name__, store=self.store.url if self.store else None)
            self.guard.events.emit("records.failed", operation=operation, error_type=type(exc).__name__)

    # -- escalation ----------------------------------------------------------------------

    async def hand_off(self, exchange: Exchange, pending: Sequence[Verdict] = ()) -> None:
        """Queue a ticket for an escalated exchange; sets ``exchange.handoff_id`` on success."""
        if self.store is None or exchange.handoff_id is not None or exchange.action is not Action.ESCALATE:
            return
        verdicts = [*exchange.verdicts, *(v for v in pending if v not in exchange.verdicts)]  # pending: a stream's, not yet recorded
        escalating = [v for v in verdicts if v.action is Action.ESCALATE]
        reason = "; ".join(dict.fromkeys(r for v in escalating for r in v.reasons)) or ", ".join(v.guardrail for v in escalating)
        store = self.store
        create = functools.partial(
            store.create_handoff,
            system=exchange.system_id,
            request_id=exchange.request_id,
            conversation_id=exchange.conversation_id,
            principal=exchange.metadata.get("principal") or None,
            reason=reason,
            # Reasons come from the policy and the checks (rule reasons, entity kinds), never matched text.
            verdicts=[{**v.summary(), "reasons": list(v.reasons)} for v in verdicts],
            conversation=self._conversation(exchange),
        )
        try:
            handoff = await self._writes.run(create, self.handoff_timeout_s)
        except (RecordsError, TimeoutError) as exc:
            outcome = "timeout" if isinstance(exc, TimeoutError) else "failed"
            self.metrics.handoffs.labels(exchange.system_id, outcome).inc()
            log.error("handoff_failed", system=exchange.system_id, request_id=exchange.request_id, outcome=outcome, error_type=type(exc).__name__)
            self.guard.events.emit(
                "handoff.failed", system=exchange.system_id, request_id=exchange.request_id, outcome=outcome, error_type=type(exc).__name__
            )
            return
        exchange.handoff_id = handoff.id
        self.metrics.handoffs.labels(exchange.system_id, "created").inc()
        self.guard.events.emit(
            "handoff.created",
            handoff_id=handoff.id,
            system=handoff.system,
            request_id=handoff.request_id,
            conversation_id=handoff.conversation_id,
            reason=handoff.reason,
        )
        if self.webhooks is not None:
            self.webhooks.notify(
                handoff.system,
                {
                    "event": "handoff.created",
                    "handoff_id": handoff.id,
                    "system": handoff.system,
                    "reason": handoff.reason,
                    "created_at": handoff.created_at.isoformat(),
                },
            )

    def _conversation(self, exchange: Exchange) -> list[dict[str, str]]:
        """The ticket's messages as a reviewer needs them: what the user wrote, with every
        redaction applied and the personal data a content-masking check found (even if only
        blocked or flagged) masked as ``<KIND>``; the words a rule matched stay readable, as
        they are what the reviewer has to judge. When a content-masking check did not run,
        nothing says what to mask, so the text is withheld."""
        if "input" in exchange.withheld:
            return [{"role": "notice", "content": WITHHELD}]
        if exchange.unmasked_input is not None:
            masking = self._masking_checks.get(exchange.system_id, frozenset())
            received, verdicts = exchange.unmasked_input
            redactions = [f for v in verdicts if v.guardrail not in masking for f in v.findings if f.replacement is not None]
            masks = log_masks(v for v in verdicts if v.guardrail in masking) + [f for f in redactions if not f.restores]
            texts = [apply_redactions(text, masks, segment) for segment, text in enumerate(received)]
        else:  # already masked for the content log, which masks more: never less than it
            texts = self.guard.masked_input(exchange)
        roles = exchange.input_roles or ["user"] * len(texts)
        return [
            {"role": role, "content": text}
            for text, role in zip(texts, roles, strict=False)
            if role not in _HIDDEN_ROLES
        ]

    def close(self) -> None:
        self._closing.set()
        self._wake.set()
        if self._nudges is not None:
            self._nudges.close()
        if self._poller is not None:
            self._poller.join(5)
        if self.webhooks is not None:
            self.webhooks.close()
        self._writes.close()


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    return round((end - start).total_seconds(), 3) if start and end else None


class HumanOversight:
    """What a person does, recorded: each method changes the store and emits its event.

    Reviewer and user names are the console's account names (accountability needs them);
    answers, notes, causes and corrective actions stay in the store, out of the event log.
    """

    def __init__(self, guard: Guard) -> None:
        if guard.records is None:
            raise RuntimeError("the policy has no records store: add `records: {url: ...}` to use human oversight")
        self.guard = guard
        self.store: RecordsStore = guard.records

    def _emit(self, kind: str, **fields: Any) -> None:
        self.guard.events.emit(kind, **fields)

    # -- handoffs ----------------------------------------------------------------------------

    def claim(self, handoff_id: str, reviewer: str) -> Handoff:
        handoff = self.store.claim(handoff_id, reviewer)
        self._claimed(handoff)
        return handoff

    def claim_next(self, reviewer: str, *, system: str | None = None) -> Handoff | None:
        handoff = self.store.claim_next(reviewer, system=system)
        if handoff is not None:
            self._claimed(handoff)
        return handoff

    def _claimed(self, handoff: Handoff) -> None:
        self._emit(
            "handoff.claimed", handoff_id=handoff.id, system=handoff.system, request_id=handoff.request_id,
            reviewer=handoff.claimed_by, waited_s=_seconds(handoff.created_at, handoff.claimed_at),
        )

    def answer(self, handoff_id: str, reviewer: str, text: str) -> Handoff:
        handoff = self.store.answer(handoff_id, reviewer, text)
        self._emit(
            "handoff.answered", handoff_id=handoff.id, system=handoff.system, request_id=handoff.request_id,
            reviewer=reviewer, time_to_answer_s=_seconds(handoff.created_at, handoff.answered_at),
        )
        return handoff

    def return_to_bot(self, handoff_id: str, reviewer: str, note: str = "") -> Handoff:
        handoff = self.store.return_to_bot(handoff_id, reviewer, note)
        self._emit("handoff.returned", handoff_id=handoff.id, system=handoff.system, request_id=handoff.request_id, reviewer=reviewer)
        return handoff

    def close(self, handoff_id: str, reviewer: str, note: str = "") -> Handoff:
        handoff = self.store.close(handoff_id, reviewer, note)
        self._emit("handoff.closed", handoff_id=handoff.id, system=handoff.system, request_id=handoff.request_id, reviewer=reviewer)
        return handoff

    # -- review (issue 16) -------------------------------------------------------------------

    def next_review_sample(self, reviewer: str, *, system: str | None = None) -> ReviewSample | None:
        return self.store.next_review_sample(reviewer, system=system)

    def label(self, sample_id: str, reviewer: str, label: str) -> ReviewSample:
        """A reviewer's judgement of a sampled decision; ``review.labelled`` records who said
        what and how long the sample waited (the label is not content, so it is logged)."""
        sample = self.store.label_review_sample(sample_id, reviewer, label)
        given = next(l for l in sample.labels if l.reviewer == reviewer)
        self.guard.oversight_metrics.review_labels.labels(sample.system, sample.guardrail, given.label.value).inc()
        self._emit(
            "review.labelled", sample_id=sample.id, system=sample.system, guardrail=sample.guardrail, stage=sample.stage,
            action=sample.action, label=given.label.value, reviewer=reviewer, request_id=sample.request_id,
            waited_s=_seconds(sample.created_at, given.labelled_at), nth_label=len(sample.labels), labels_wanted=sample.labels_wanted,
        )
        return sample

    # -- incidents ---------------------------------------------------------------------------

    def acknowledge(self, incident_id: str, user: str) -> Incident:
        incident = self.store.acknowledge_incident(incident_id, user)
        self._emit(
            "incident.acknowledged", incident_id=incident.id, system=incident.system, rule=incident.rule, user=user,
            time_to_acknowledge_s=_seconds(incident.first_seen, incident.acknowledged_at),
        )
        return incident

    def resolve(self, incident_id: str, user: str, *, cause: str, corrective_action: str) -> Incident:
        incident = self.store.resolve_incident(incident_id, user, cause=cause, corrective_action=corrective_action)
        self._emit(
            "incident.resolved", incident_id=incident.id, system=incident.system, rule=incident.rule, severity=incident.severity.value,
            user=user, serious=incident.serious, time_to_resolve_s=_seconds(incident.first_seen, incident.resolved_at),
        )
        return incident

    def report_incident(
        self, *, system: str, title: str, severity: str, reporter: str, description: str = "", serious: bool = False, category: str | None = None
    ) -> Incident:
        self._known(system)
        incident = self.store.report_incident(
            system=system, title=title, severity=severity, reporter=reporter, description=description, serious=serious, category=category
        )
        self.guard.oversight_metrics.count_incident(system, incident.rule, "opened")
        self._emit(
            "incident.opened", incident_id=incident.id, system=system, rule=incident.rule, severity=incident.severity.value,
            count=incident.count, linked_event_ids=[], serious=incident.serious, category=incident.category,  # the typed title stays in the store
            report_deadline=incident.report_deadline.isoformat() if incident.report_deadline else None, reporter=reporter,
        )
        return incident

    # -- stop switch -------------------------------------------------------------------------

    def set_stopped(self, system: str, stopped: bool, *, by: str, reason: str = "") -> bool:
        """Stop (or resume) a system: every request to it gets the fallback, on every replica
        within ``records.stop_poll_s``; at once in this process. Returns whether the store
        has the change; a stop it could not take holds here and is retried (see
        ``OversightRuntime.switch``). The reason stays in the store, out of the event log."""
        self._known(system)
        persisted = self.guard.oversight.switch(system, stopped, by=by, reason=reason)
        self._emit("system.stopped" if stopped else "system.resumed", system=system, by=by)
        if not persisted:
            log.error("stop_switch_unpersisted", system=system)
            self._emit("system.stop_unpersisted", system=system, by=by)
        return persisted

    def _known(self, system: str) -> None:
        if system not in self.guard.policy.systems:
            raise UnknownSystemError(system, sorted(self.guard.policy.systems))
