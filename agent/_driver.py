"""The exchange driver: one exchange from request to record, whatever the front door.

The middleware (and through it the gateway) and the SDK hooks are thin adapters: they
move bytes or client objects; the driver decides. It parses the request with the
route's dialect, runs the input checks (the stop switch first), checks a whole answer,
or runs a stream through its windows (one per choice and per tool call: hold back,
release, stop), builds what aimsguard answers itself and records the exchange once.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, Final

from aimsguard.guardrails import Action

from ._dialect import Dialect, ParsedRequest, RequestLimits
from ._errors import AimsguardError, GuardrailFailed
from ._exchange import Exchange, ExchangeStatus
from ._guard import Guard
from ._streaming import StreamingOutputGuard

__all__ = ["SAME", "AnswerDecision", "ExchangeDriver", "InputDecision"]


class _Same:
    def __repr__(self) -> str:
        return "SAME"


SAME: Final = _Same()
"""In what ``on_event`` returns: the event as it came, to pass on untouched (byte for byte)."""


@dataclass(frozen=True, slots=True)
class InputDecision:
    """What the input checks decided: go on (with ``texts``), the fallback, or an error."""

    texts: list[str] | None = None
    redacted: bool = False
    fallback: bool = False
    error: GuardrailFailed | None = None


@dataclass(frozen=True, slots=True)
class AnswerDecision:
    """A checked whole answer: ``changed`` when it was redacted or refused in place;
    ``error`` when checks failed closed (the answer is refused in place all the same)."""

    changed: bool = False
    action: Action | None = None
    error: GuardrailFailed | None = None


class ExchangeDriver:
    """Not shared between exchanges."""

    def __init__(self, guard: Guard, exchange: Exchange, dialect: Dialect) -> None:
        self.guard = guard
        self.exchange = exchange
        self.dialect = dialect
        self.request: ParsedRequest | None = None
        self.windows: dict[Hashable, StreamingOutputGuard] = {}
        self.template: dict[str, Any] | None = None  # the first stream event: its id and model are kept
        self._streams_recorded = False
        self._finished = False

    # -- the request --------------------------------------------------------------------------

    @property
    def limits(self) -> RequestLimits:
        gateway = self.guard.policy.gateway
        return RequestLimits(max_messages=gateway.max_messages, max_message_chars=gateway.max_message_chars)

    def read(self, raw: bytes) -> ParsedRequest:
        """Parse a request body (raises ``RequestError``) and note what the exchange needs of it."""
        return self.take(self.dialect.parse(raw, self.limits))

    def read_fields(self, fields: dict[str, Any]) -> ParsedRequest:
        """The same for a request given as keyword arguments (an SDK call)."""
        return self.take(self.dialect.parse_body(fields, self.limits))

    def take(self, request: ParsedRequest) -> ParsedRequest:
        exchange = self.exchange
        exchange.model = request.model or exchange.model
        exchange.stream = request.stream or exchange.stream
        exchange.input_roles = list(request.roles or [])
        if request.system_prompt:
            exchange.metadata["system_prompt"] = request.system_prompt  # for the prompt-leak check; never logged
        self.request = request
        return request

    async def check_input(self, texts: list[str] | None = None) -> InputDecision:
        """The stop switch (EU AI Act Art. 14: no checks, no upstream), then the input checks."""
        exchange = self.exchange
        if self.guard.is_stopped(exchange.system_id):
            exchange.status = ExchangeStatus.STOPPED
            return InputDecision(fallback=True)
        if texts is None:
            assert self.request is not None
            texts = self.request.texts
        result = await self.guard.check_input(exchange, texts)
        if result.failed_closed:
            return InputDecision(fallback=True, error=self.guardrail_failed(result.failed_closed, "input"))
        if result.action.stops_exchange:
            return InputDecision(fallback=True)
        return InputDecision(texts=list(result.texts), redacted=result.redacted)

    def guardrail_failed(self, guardrails: list[str], stage: str) -> GuardrailFailed:
        self.exchange.status = ExchangeStatus.ERROR
        self.exchange.error_code = GuardrailFailed.code
        return GuardrailFailed(guardrails, stage)

    # -- what aimsguard answers itself ----------------------------------------------------------

    @property
    def fallback_text(self) -> str:
        return self.guard.fallback_text(self.exchange)

    @property
    def _model(self) -> str | None:
        return self.request.model if self.request is not None else self.exchange.model

    def fallback_answer(self) -> dict[str, Any]:
        exchange = self.exchange
        exchange.finish_reasons = [self.dialect.refusal_reason]
        exchange.mark_first_token()
        return self.dialect.fallback_answer(
            request_id=exchange.request_id, model=self._model, text=self.fallback_text, handoff_id=exchange.handoff_id
        )

    def fallback_chunks(self) -> list[dict[str, Any]]:
        """The fallback as a stream: at the start, or ending a stream a check stopped (the
        headers have gone: the handoff id rides in the chunk)."""
        self.record_streams()  # first: the fallback depends on the recorded action (block or escalate)
        exchange = self.exchange
        exchange.finish_reasons.append(self.dialect.refusal_reason)
        exchange.mark_first_token()
        self.template = self.dialect.with_released(self.template, {key: w.released_text for key, w in self.windows.items()})
        return self.dialect.fallback_chunks(
            request_id=exchange.request_id, model=self._model, text=self.fallback_text, template=self.template, handoff_id=exchange.handoff_id
        )

    def refusal(self) -> AimsguardError | None:
        """For an API without a text answer (embeddings): the error a stopped exchange gets instead of the fallback."""
        exchange = self.exchange
        return self.dialect.refusal(exchange.action.value, exchange.status is ExchangeStatus.STOPPED)

    # -- a whole answer -----------------------------------------------------------------------

    def note_usage(self, input_tokens: int | None, output_tokens: int | None) -> None:
        """Token counts an answer or event reports (either may be missing)."""
        exchange = self.exchange
        exchange.input_tokens = input_tokens if input_tokens is not None else exchange.input_tokens
        exchange.output_tokens = output_tokens if output_tokens is not None else exchange.output_tokens

    async def check_answer(self, answer: dict[str, Any]) -> AnswerDecision:
        """Run the output checks on a complete answer; redact or refuse it in place."""
        exchange, dialect = self.exchange, self.dialect
        exchange.response_model = dialect.model_of(answer) or exchange.response_model
        exchange.input_tokens, exchange.output_tokens = dialect.usage_of(answer)
        exchange.finish_reasons = dialect.finish_reasons(answer)
        if not dialect.has_output:
            exchange.mark_first_token()
            return AnswerDecision()
        result = await self.guard.check_output(exchange, dialect.answer_texts(answer))
        exchange.mark_first_token()
        if result.action.stops_exchange:
            error = self.guardrail_failed(result.failed_closed, "output") if result.failed_closed else None
            dialect.refused_answer(answer, self.fallback_text, exchange.handoff_id)
            exchange.finish_reasons = [dialect.refusal_reason] * len(exchange.finish_reasons)
            return AnswerDecision(changed=True, action=result.action, error=error)
        if result.redacted:
            dialect.replace_answer_texts(answer, list(result.texts))
            return AnswerDecision(changed=True, action=result.action)
        return AnswerDecision()

    # -- a stream -----------------------------------------------------------------------------

    def window(self, key: Hashable) -> StreamingOutputGuard:
        """The window of one choice's text or of one tool call's arguments (see ``StreamPiece.key``)."""
        window = self.windows.get(key)
        if window is None:
            window = self.windows[key] = self.guard.stream_guard(self.exchange)
        return window

    @property
    def stopped(self) -> bool:
        for window in self.windows.values():  # a loop, not any(): asked several times a chunk
            if window.stopped:
                return True
        return False

    async def release(self, key: Hashable, text: str) -> str:
        """Add text to a window; what may be released now."""
        released = await self.window(key).feed(text) if text else ""
        if released:
            self.exchange.mark_first_token()
        return released

    async def on_event(self, chunk: dict[str, Any]) -> list[dict[str, Any] | _Same]:
        """One stream event in; the events the client gets out. Check ``stopped`` after."""
        exchange, dialect = self.exchange, self.dialect
        error_code = dialect.stream_error(chunk)
        if error_code is not None:
            # The stream ends here: what was held back is checked and goes out before the error.
            rest = await self.release_rest()
            exchange.status = ExchangeStatus.UPSTREAM_ERROR
            exchange.error_code = error_code
            return [*rest, SAME]
        self.template = dialect.stream_template(self.template, chunk)
        exchange.response_model = dialect.model_of(chunk) or exchange.response_model
        input_tokens, output_tokens = dialect.usage_of(chunk)  # an event may report one count only
        exchange.input_tokens = input_tokens if input_tokens is not None else exchange.input_tokens
        exchange.output_tokens = output_tokens if output_tokens is not None else exchange.output_tokens
        view = dialect.chunk_view(chunk)
        # What goes out before the event: the rest of windows it closes (tool-call arguments
        # before a choice's end, a content block before its stop).
        before: list[dict[str, Any] | _Same] = []
        for key in view.ended:
            before.extend(await self._rest_of(key))
            if self.stopped:
                return []
        changed = False
        finished: set[int] = set()
        for key, text, put in view.whole:
            window = self.windows.get(key)
            if window is None:  # a text that never came in pieces is checked now, whole
                released = await self.release(key, text) + await self.window(key).finish()
                if self.stopped:
                    return []
            else:
                released = window.released_text
            if released != text:
                put(released)
                changed = True
        for piece in view.pieces:
            released = await self.release(piece.key, piece.text)
            if self.stopped:
                return []
            finish_reason = None if piece.tool_call else view.finished.get(piece.choice)
            if finish_reason is not None:
                finished.add(piece.choice)
                before.extend(await self.release_rest(choice=piece.choice, calls_only=True))
                released += await self.window(piece.key).finish()
                if self.stopped:
                    return []
                exchange.finish_reasons.append(finish_reason)
                if released:  # a short answer goes out whole at its end: its first token is now
                    exchange.mark_first_token()
            if released != piece.text:
                piece.put(released)
                changed = True
        for choice, finish_reason in view.finished.items():
            if choice not in finished:  # an event that ends a choice without text of its own
                before.extend(await self.release_rest(choice=choice))
                if self.stopped:
                    return []
                exchange.finish_reasons.append(finish_reason)
        if not changed:
            return [*before, SAME]
        trimmed = dialect.trimmed(chunk)
        return [*before, trimmed] if trimmed is not None else before

    async def release_rest(self, choice: int | None = None, calls_only: bool = False) -> list[dict[str, Any] | _Same]:
        """Check and release what the windows still hold back (at the stream's end, or a
        choice's tool calls at its end). Check ``stopped`` after."""
        out: list[dict[str, Any] | _Same] = []
        for key, window in list(self.windows.items()):
            index = key[0] if isinstance(key, tuple) else key
            if (choice is not None and index != choice) or (calls_only and not isinstance(key, tuple)):
                continue
            rest = await self._rest_of(key)
            if self.stopped:
                return []
            out.extend(rest)
        return out

    async def _rest_of(self, key: Hashable) -> list[dict[str, Any] | _Same]:
        """One window finished: its checked rest as an event (none when nothing was held). Check ``stopped`` after."""
        window = self.windows.get(key)
        rest = await window.finish() if window is not None and not window.finished else ""
        if not rest:
            return []
        self.exchange.mark_first_token()
        return [self.dialect.rest_chunk(request_id=self.exchange.request_id, model=self._model, template=self.template, key=key, text=rest)]

    def failed_closed(self) -> GuardrailFailed | None:
        """When a stopped stream was stopped by checks that failed closed: the error to end it with."""
        failed = [name for w in self.windows.values() if w.result is not None for name in w.result.failed_closed]
        if not failed:
            return None
        self.record_streams()
        return self.guardrail_failed(failed, "output")

    def record_streams(self) -> None:
        """Record the windows' last verdicts, once, however the stream ended."""
        if self.windows and not self._streams_recorded:
            self._streams_recorded = True
            self.guard.record_stream(self.exchange, list(self.windows.values()))

    @property
    def finished(self) -> bool:
        return self._finished

    def finish(self) -> None:
        """Write the exchange event. Idempotent."""
        if self._finished:
            return
        self._finished = True
        self.record_streams()
        self.guard.finish(self.exchange)
