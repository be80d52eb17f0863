"""Guard: the loaded policy at run time, shared by every front door.

It owns the pipelines (one per AI system), the event bus and the event log. The
middleware, the gateway and the SDK hooks all drive an exchange through the same
steps: ``begin`` → ``check_input`` → (the AI system answers) → ``check_output`` or a
``StreamingOutputGuard`` → ``finish``. Each step records what happened as events.
"""

from __future__ import annotations

import atexit
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import structlog

from opentelemetry.sdk.trace.export import SpanExporter

from aimsguard.collectors import BiasMonitor, EventBus, EventExporter, PrometheusMetrics, ReviewSampler, SegmentEventLog, TraceExporter
from aimsguard.collectors._incidents import IncidentExporter
from aimsguard.collectors.eventlog import Signer, SigningKeyError, load_signer
from aimsguard.collectors.records import RecordsStore
from aimsguard.guardrails.pii import SHARED_VAULT, SharedVaultConfig
from aimsguard.guardrails import Action, CheckRequest, GuardrailRegistry, Outcome, Stage, apply_redactions, Verdict, default_registry, log_masks

from ._callers import Callers
from ._checkpool import CheckPool, pool_counter
from ._errors import EventLogUnavailable, PolicyError, PolicyProblem, UnknownSystemError
from ._events import EVENT_SCHEMA, EventEmitter
from ._exchange import Exchange, ExchangeStatus
from ._oversight import BoundedWrites, OversightMetrics, OversightRuntime
from ._outcomes import decision_of, record_feedback
from ._pipeline import Pipeline, StageResult
from ._policy import Durability, FailMode, Policy, SystemConfig, VaultFailMode, load_policy
from ._state import StateMonitor, state_for, state_key
from ._shadow import ShadowRunner
from ._streaming import StreamingOutputGuard
from ._version import __version__

__all__ = ["Guard"]

log = structlog.get_logger("aimsguard.agent")


class Guard:
    def __init__(
        self,
        policy: Policy,
        *,
        registry: GuardrailRegistry | None = None,
        exporters: Sequence[EventExporter] = (),
        event_log: bool = True,
        span_exporter: SpanExporter | None = None,
    ) -> None:
        self.policy = policy
        self.policy_version = policy.policy_version
        registry = registry or default_registry()
        self.providers = {sid: s.upstream.provider if s.upstream else "openai" for sid, s in policy.systems.items()}
        self.metrics = self._metrics(policy)
        # Short-lived state the replicas share (Redis), or this process's own; see agent/_state.py.
        try:
            self.state_key = state_key(policy)
        except ValueError as exc:
            raise PolicyError("<policy>", [PolicyProblem("state.key", str(exc))]) from None
        self.state = state_for(policy)
        self.state_monitor = StateMonitor(self.metrics.registry if self.metrics else None, lambda kind, **fields: self.events.emit(kind, **fields))
        # Worker processes for checks of long inputs, shared by every system's pipeline.
        self.check_pool = CheckPool({})
        self.pipelines = {
            system_id: Pipeline(system_id, system, registry, self.check_pool, self._shared_with_checks(system_id))
            for system_id, system in policy.systems.items()
        }
        # The checks whose findings mask logged content, per system and stage (see ``_note_unmasked``).
        self._masking_checks = {
            (sid, stage): frozenset(c.config.instance_id for c in pipeline.checks[stage] if c.guardrail.masks_content)
            for sid, pipeline in self.pipelines.items()
            for stage in Stage
        }
        if self.metrics is not None:
            self.check_pool.on_count = pool_counter(self.metrics.registry)
        self.event_log = open_event_log(policy, on_lost=self.metrics and self.metrics.count_lost) if event_log else None
        self.traces = self._traces(policy, span_exporter)
        self.bias = self._bias(policy)
        sinks = [sink for sink in (self.event_log, self.metrics, self.traces, self.bias) if sink is not None]
        sinks.extend(exporters)
        # Handoffs, incidents and stop switches live in the records store, when the policy has one.
        self.records = (
            # A ticket write waits no longer for a connection than the answer waits for the ticket.
            RecordsStore(policy.records.url.get_secret_value(), pool_timeout_s=policy.records.handoff_timeout_s)
            if policy.records
            else None
        )
        self.oversight_metrics = OversightMetrics(self.metrics.registry if self.metrics else None)
        if self.records is not None and policy.incidents.rules:
            sinks.append(
                IncidentExporter(
                    self.records,
                    policy.incidents.rules,
                    systems=list(policy.systems),
                    emit=lambda kind, **fields: self.events.emit(kind, **fields),
                    fold_window_s=policy.incidents.fold_window_s,
                    max_event_ids=policy.incidents.max_event_ids,
                    on_outcome=self.oversight_metrics.count_incident,
                    on_error=self.oversight_metrics.incident_rule_errors.inc,
                )
            )
        reviewed = {system_id: s.review for system_id, s in policy.systems.items() if s.review is not None}
        if self.records is not None and reviewed:
            # Built from the same events the event log writes: a sample never holds more than the log.
            sinks.append(ReviewSampler(self.records, reviewed, on_count=self.oversight_metrics.count_review_sample))
        self.bus = EventBus(
            sinks,
            max_queue=policy.event_log.max_queue,
            on_drop=self.metrics and self.metrics.count_drop,
            on_export_failure=self.metrics and self.metrics.count_export_failure,
            on_exported=self.metrics and self.metrics.count_exported,
            durable=self.event_log if policy.event_log.durability is Durability.REQUEST else None,
        )
        self.events = EventEmitter(policy, self.bus)
        self.oversight = OversightRuntime(self, self.oversight_metrics)
        # Virtual API keys and their limits; key reads get threads of their own (a slow store
        # must not hold the event loop's pool).
        self._key_reads = BoundedWrites()
        self.callers = Callers(
            policy,
            self.records,
            self.state,
            monitor=self.state_monitor,
            reads=self._key_reads,
            registry=self.metrics.registry if self.metrics else None,
            store_failed=self.oversight.failed,
        )
        # Candidate checks run beside the live ones after each answer, never applied (see _shadow).
        self.shadow = ShadowRunner(self, registry, self.metrics.registry if self.metrics else None)
        self._closed = False
        # The bus's worker is a daemon thread: without this, a short script's events die with it.
        atexit.register(self.close)
        self.events.emit(
            "policy.loaded",
            systems=sorted(policy.systems),
            checks={
                system_id: {stage.value: [c["id"] for c in described] for stage, described in pipeline.describe().items()}
                for system_id, pipeline in self.pipelines.items()
            },
            version=__version__,
            pid=os.getpid(),
        )
        log.info("policy_loaded", policy_version=self.policy_version, systems=sorted(policy.systems))

    def _shared_with_checks(self, system_id: str) -> dict[str, object]:
        """Where a fleet keeps a system's personal-data vault: the shared state, encrypted."""
        if self.state_key is None:
            return {}
        closed = self.policy.state.fail_modes.vault is VaultFailMode.CLOSED
        outcome = self.policy.state.fail_modes.vault.value
        return {
            SHARED_VAULT: SharedVaultConfig(
                self.state, self.state_key, system_id, closed,
                on_failure=lambda exc: self.state_monitor.failed("vault", outcome, exc),
                on_success=lambda: self.state_monitor.ok("vault"),
            )
        }

    def _metrics(self, policy: Policy) -> PrometheusMetrics | None:
        if not policy.telemetry.metrics:
            return None
        return PrometheusMetrics(
            providers=self.providers,
            version=__version__,
            policy_version=self.policy_version,
            max_models=policy.telemetry.max_model_labels,
        )

    def _bias(self, policy: Policy) -> BiasMonitor | None:
        """The bias monitor, when a system is a decision system (has a fairness section)."""
        fairness = {system_id: s.fairness for system_id, s in policy.systems.items() if s.fairness is not None}
        if not fairness:
            return None
        # It emits from the bus's worker (emit only appends), once self.events exists.
        registry = self.metrics.registry if self.metrics else None
        return BiasMonitor(fairness, registry=registry, emit=lambda kind, **fields: self.events.emit(kind, **fields))

    @staticmethod
    def _traces(policy: Policy, span_exporter: SpanExporter | None) -> TraceExporter | None:
        """Traces go out when a test hands an exporter in, the policy enables them, or the
        standard OTEL_EXPORTER_OTLP_*ENDPOINT variables name a collector."""
        config = policy.telemetry.traces
        from_env = any(os.environ.get(v) for v in ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"))
        if span_exporter is None and not (config.enabled or from_env):
            return None
        if span_exporter is None:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            span_exporter = OTLPSpanExporter(endpoint=str(config.otlp_endpoint) if config.otlp_endpoint else None)
        return TraceExporter(span_exporter, service_name=config.service_name, version=__version__)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], **kwargs: Any) -> Guard:
        registry = kwargs.get("registry")
        return cls(load_policy(path, registry=registry), **kwargs)

    # -- systems -----------------------------------------------------------------

    def resolve_system(self, system_id: str | None) -> str:
        """The system a request is for: the one it names, else the policy's default."""
        chosen = system_id or self.policy.default_system_id
        if chosen is None:
            raise UnknownSystemError("(none named)", sorted(self.policy.systems))
        if chosen not in self.pipelines:
            raise UnknownSystemError(chosen, sorted(self.policy.systems))
        return chosen

    def system(self, system_id: str) -> SystemConfig:
        return self.policy.systems[system_id]

    def is_stopped(self, system_id: str) -> bool:
        """Whether the system's stop switch is on (as last read; see OversightRuntime)."""
        return self.oversight.is_stopped(system_id)

    def ensure_accepting(self) -> None:
        """Refuse new exchanges when the event log is down and the policy fails closed."""
        if (
            self.policy.event_log.fail_mode is FailMode.CLOSED
            and self.event_log is not None
            and not self.event_log.healthy
        ):
            raise EventLogUnavailable("the event log cannot be written and the policy requires it (event_log.fail_mode: closed)")

    # -- the steps of an exchange --------------------------------------------------

    def begin(self, system_id: str, front_door: str, **fields: Any) -> Exchange:
        return Exchange(system_id=system_id, front_door=front_door, **fields)

    def _request(
        self,
        exchange: Exchange,
        stage: Stage,
        texts: Sequence[str],
        question: str | None = None,
        roles: Sequence[str] | None = None,
    ) -> CheckRequest:
        if roles is None and stage is Stage.INPUT and len(exchange.input_roles) == len(texts):
            roles = exchange.input_roles  # the messages' roles, when the texts are still one per message
        return CheckRequest(
            stage=stage,
            texts=texts,
            system_id=exchange.system_id,
            conversation_id=exchange.conversation_id,
            question=question,
            metadata=exchange.metadata,
            roles=roles,
        )

    async def check_input(self, exchange: Exchange, texts: Sequence[str]) -> StageResult:
        exchange.input_texts = list(texts)
        if self.shadow.draws(exchange.system_id):
            exchange.shadow_input = list(texts)
        result = await self.pipelines[exchange.system_id].run(self._request(exchange, Stage.INPUT, texts))
        exchange.input_checks_s += result.duration_s
        self._record(exchange, result)
        exchange.input_texts = list(result.texts)
        exchange.unmasked_input = (list(texts), result.verdicts)  # see masked_input
        self._note_unmasked(exchange, Stage.INPUT, result.verdicts)
        await self.oversight.hand_off(exchange)
        return result

    async def check_documents(self, exchange: Exchange, documents: Sequence[str]) -> list[StageResult]:
        """Screen documents a caller retrieved (RAG context, tool results) for injected instructions.

        Each document gets the system's document-screening input checks (``injection``) on
        its own. A document they would stop is for the caller to drop: it does not stop the
        exchange, since the user asked nothing wrong. Findings are recorded as verdict
        events marked ``source: document`` with the document's index.
        """
        pipeline = self.pipelines[exchange.system_id]
        results = []
        for index, document in enumerate(documents):
            result = await pipeline.screen_document(self._request(exchange, Stage.INPUT, [document], roles=["document"]))
            exchange.input_checks_s += result.duration_s
            exchange.documents_checked += 1
            exchange.documents_dropped += result.action.stops_exchange
            self._emit_verdicts(exchange, result, source="document", document_index=index)
            results.append(result)
        return results

    async def check_output(self, exchange: Exchange, texts: Sequence[str]) -> StageResult:
        if exchange.shadow_input:  # drawn for the shadow candidate at the input
            exchange.shadow_output = list(texts)
        request = self._request(exchange, Stage.OUTPUT, texts, _question(exchange))
        result = await self.pipelines[exchange.system_id].run(request)
        exchange.output_checks_s += result.duration_s
        self._record(exchange, result)
        exchange.output_texts = list(result.texts)
        self._note_unmasked(exchange, Stage.OUTPUT, result.verdicts)
        if self.events.content_logged:
            exchange.logged_output = _masked(texts, result.verdicts)
        await self.oversight.hand_off(exchange)
        return result

    def stream_guard(self, exchange: Exchange) -> StreamingOutputGuard:
        async def checked(result: StageResult) -> None:
            exchange.output_checks_s += result.duration_s
            self._note_unmasked(exchange, Stage.OUTPUT, result.verdicts)  # any piece: the whole text is withheld
            if result.action is Action.ESCALATE:
                # Recorded on the exchange only at the stream's end; the ticket is needed now,
                # before the fallback chunks go out carrying its id.
                exchange.record([], result.action)
                await self.oversight.hand_off(exchange, result.verdicts)

        streaming = self.system(exchange.system_id).streaming
        return StreamingOutputGuard(
            self.pipelines[exchange.system_id],
            self._request(exchange, Stage.OUTPUT, [], _question(exchange)),
            streaming.holdback_chars,
            check_every=streaming.check_every_chars,
            on_checked=checked,
        )

    def record_stream(self, exchange: Exchange, guards: Sequence[StreamingOutputGuard]) -> None:
        """Record what the checks said of each streamed choice, once the stream has ended or stopped."""
        for guard in guards:
            result = guard.recorded()
            if result is not None:
                self._record(exchange, result)
        # What the user saw (redacted, restored data left out), never the upstream's raw text.
        exchange.output_texts = [guard.released_text for guard in guards]
        exchange.logged_output = [guard.logged_text for guard in guards]
        if exchange.shadow_input:
            exchange.shadow_output = list(exchange.output_texts)

    def _note_unmasked(self, exchange: Exchange, stage: Stage, verdicts: Sequence[Verdict]) -> None:
        """Mark the stage's content withheld when a content-masking check did not run on it:
        a timeout or an error leaves no findings, so masking would keep the text raw."""
        masking = self._masking_checks.get((exchange.system_id, stage), frozenset())
        failed = [f"{v.guardrail}: {v.outcome.value}" for v in verdicts if v.guardrail in masking and v.outcome is not Outcome.OK]
        if failed:
            exchange.withheld[stage.value] = ", ".join(failed)

    def _record(self, exchange: Exchange, result: StageResult) -> None:
        exchange.record(result.verdicts, result.action)
        if result.failed_closed:
            exchange.status = ExchangeStatus.ERROR
            exchange.error_code = "guardrail_failed"
        elif result.action is Action.BLOCK:
            exchange.status = ExchangeStatus.BLOCKED
        elif result.action is Action.ESCALATE:
            exchange.status = ExchangeStatus.ESCALATED
        self._emit_verdicts(exchange, result)

    def _emit_verdicts(self, exchange: Exchange, result: StageResult, **context: Any) -> None:
        for verdict in result.verdicts:
            # Every verdict is summarised in the exchange event; one that did something
            # (or failed) also gets an event of its own, with its findings.
            if verdict.action is Action.ALLOW and verdict.outcome is Outcome.OK and not verdict.findings:
                continue
            self.events.emit(
                "guardrail.verdict",
                system=exchange.system_id,
                request_id=exchange.request_id,
                conversation_id=exchange.conversation_id,
                **context,
                **verdict.to_record(),
            )

    def fallback_text(self, exchange: Exchange) -> str:
        fallback = self.system(exchange.system_id).fallback
        if exchange.status is ExchangeStatus.STOPPED:
            return fallback.stopped_message or fallback.message
        return fallback.escalation_message if exchange.action is Action.ESCALATE else fallback.message

    def finish(self, exchange: Exchange) -> None:
        """Write the exchange's summary event. Call exactly once per exchange."""
        now = time.perf_counter()
        fields: dict[str, Any] = {
            "system": exchange.system_id,
            "request_id": exchange.request_id,
            "conversation_id": exchange.conversation_id,
            "trace_id": exchange.trace_id,
            "span_id": exchange.span_id,
            "parent_span_id": exchange.parent_span_id,
            "front_door": exchange.front_door,
            "provider": self.providers.get(exchange.system_id),
            "operation": exchange.operation,
            "model": exchange.model,
            "response_model": exchange.response_model,
            "stream": exchange.stream,
            "status": exchange.status.value,
            "action": exchange.action.value,
            "http_status": exchange.http_status,
            "error_code": exchange.error_code,
            "finish_reasons": exchange.finish_reasons,
            "verdicts": [{**v.summary(), "offset_ms": _ms(v.started - exchange.started)} for v in exchange.verdicts],
            "usage": {"input_tokens": exchange.input_tokens, "output_tokens": exchange.output_tokens},
            "started_at": exchange.started_at,
            "duration_ms": _ms(now - exchange.started),
            "time_to_first_token_ms": _ms(exchange.first_token_at - exchange.started) if exchange.first_token_at else None,
            "upstream_ms": _ms(exchange.upstream_finished - exchange.upstream_started)
            if exchange.upstream_started and exchange.upstream_finished
            else None,
            "upstream_offset_ms": _ms(exchange.upstream_started - exchange.started) if exchange.upstream_started else None,
            "input_checks_ms": _ms(exchange.input_checks_s),
            "output_checks_ms": _ms(exchange.output_checks_s),
            "handoff_id": exchange.handoff_id,
        }
        if exchange.key_id is not None:
            fields.update(key_id=exchange.key_id, key_tokens=exchange.key_tokens, key_tokens_estimated=exchange.key_tokens_estimated)
        fields.update(decision_of(exchange.metadata))  # outcome and groups, when the caller gave them
        if exchange.documents_checked:
            fields["documents"] = {"checked": exchange.documents_checked, "dropped": exchange.documents_dropped}
        if self.events.content_logged:
            # Content is logged only as it left the checks (redacted), and only on opt-in; never
            # when the check that masks it did not run (then the field is null and says why).
            fields["input"] = None if "input" in exchange.withheld else self.masked_input(exchange)
            fields["output"] = None if "output" in exchange.withheld else exchange.logged_output
            if exchange.withheld:
                fields["content_withheld"] = dict(exchange.withheld)
        self.events.emit("exchange", **fields)
        self.shadow.start(exchange)  # after the exchange is recorded: the candidate never holds it up

    @staticmethod
    def masked_input(exchange: Exchange) -> list[str]:
        """The input as the content log and handoff tickets keep it (see ``log_masks``), masked once, when first needed."""
        if exchange.unmasked_input is not None:
            texts, verdicts = exchange.unmasked_input
            exchange.logged_input = _masked(texts, verdicts)
            exchange.unmasked_input = None
        return exchange.logged_input

    def record_feedback(self, request_id: str, label: str, *, system: str | None = None, front_door: str = "sdk") -> str:
        """Ground truth for an earlier exchange (a category of the policy's ``labels``): writes a
        ``feedback`` event for the bias monitor; returns the system id. Raises ``RequestError``."""
        return record_feedback(self, request_id, label, system=system, front_door=front_door)

    @property
    def durable(self) -> bool:
        """Whether answers wait for their events to be on disk (``event_log.durability: request``)."""
        return self.policy.event_log.durability is Durability.REQUEST and self.event_log is not None

    async def events_written(self, timeout: float = 10.0) -> None:
        """Wait until every event emitted so far (an exchange's own, once finished) is on disk.

        When it cannot be (the write failed, or ``timeout``): with ``event_log.fail_mode:
        closed`` raise ``EventLogUnavailable`` (the answer is withheld); else log and go on.
        """
        if await self.bus.written(timeout):
            return
        log.error("event_log_answer_not_durable", fail_mode=self.policy.event_log.fail_mode.value)
        if self.policy.event_log.fail_mode is FailMode.CLOSED:
            raise EventLogUnavailable("the answer's event could not be written and the policy requires it (event_log.durability: request)")

    # -- lifecycle -----------------------------------------------------------------

    def flush(self, timeout: float = 10.0) -> bool:
        return self.bus.force_flush(timeout)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        self.oversight.close()
        self._key_reads.close()
        self.shadow.close()
        self.check_pool.close()
        self.bus.shutdown()
        self.state.close()
        if self.records is not None:
            self.records.dispose()

    def __enter__(self) -> Guard:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def open_event_log(policy: Policy, *, on_lost: Callable[[int], None] | None = None, fsync: bool = False) -> SegmentEventLog:
    """The policy's event log, as every writer of it (gateway workers, CLI commands) opens it:
    they share one chain through its lock file."""
    return SegmentEventLog(
        policy.event_log.directory,
        # Answers wait for their event under durability: request, so it is synced, not just written.
        fsync=fsync or policy.event_log.fsync or policy.event_log.durability is Durability.REQUEST,
        max_segment_bytes=policy.event_log.max_segment_bytes,
        retention_days=policy.event_log.retention_days,
        on_lost=on_lost,
        stamp={"schema": EVENT_SCHEMA, "policy_version": policy.policy_version},
        signer=_signer(policy),
    )


def _signer(policy: Policy) -> Signer | None:
    """The event log's digest signer, if the policy or the environment gives a key."""
    try:
        return load_signer(policy.event_log.signing_key)
    except SigningKeyError as exc:
        raise PolicyError("<policy>", [PolicyProblem("event_log.signing_key", str(exc))]) from None


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def _masked(texts: Sequence[str], verdicts: Sequence[Verdict]) -> list[str]:
    """The texts as they may be logged (see ``log_masks``)."""
    masks = log_masks(verdicts)
    return [apply_redactions(text, masks, segment) for segment, text in enumerate(texts)]


def _question(exchange: Exchange) -> str | None:
    return exchange.input_texts[-1] if exchange.input_texts else None
