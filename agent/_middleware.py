"""The ASGI middleware: guard OpenAI-compatible chat and completion calls.

Pure ASGI, so it sits in front of any Starlette or FastAPI app (or any ASGI app).
``POST /v1/chat/completions`` and ``POST /v1/completions`` are guarded; everything
else passes straight through. A request may name its AI system with the
``x-aimsguard-system`` header or a ``/systems/{id}`` path prefix; otherwise the
middleware's own system (or the policy's default) is used.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
import time
from typing import Any

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aimsguard.guardrails import Action

from ._errors import AimsguardError, GuardrailFailed, RequestError, UnknownSystemError, UpstreamError, error_site
from ._exchange import UNKNOWN_SYSTEM, Exchange, ExchangeStatus, client_id, new_id, parse_traceparent
from ._guard import Guard
from ._outcomes import read_decision
from ._openai import (
    CHAT_PATH,
    COMPLETIONS_PATH,
    Operation,
    ParsedRequest,
    answer_texts,
    chunk_texts,
    error_body,
    fallback_chunks,
    fallback_completion,
    handoff_field,
    held_back_chunk,
    parse_request,
    replace_answer_texts,
    usage_of,
)
from ._sse import DONE, SseSplitter, data_of, encode_data
from ._streaming import StreamingOutputGuard

__all__ = ["AimsguardMiddleware", "SCOPE_KEY"]

log = structlog.get_logger("aimsguard.agent")

HANDOFF_HEADER = b"x-aimsguard-handoff-id"
SCOPE_KEY = "aimsguard"
"""Key in the ASGI scope where the middleware leaves the exchange for the app behind it."""

_OPERATIONS: dict[str, Operation] = {CHAT_PATH: "chat", COMPLETIONS_PATH: "text_completion"}
_SYSTEM_PREFIX = "/systems/"


def _split_system_prefix(path: str) -> tuple[str, str | None]:
    if not path.startswith(_SYSTEM_PREFIX):
        return path, None
    system_id, _, rest = path[len(_SYSTEM_PREFIX) :].partition("/")
    return "/" + rest, system_id or None


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


def _principal(scope: Scope) -> str:
    """Who is calling, as far as the credentials tell: a hash of the Authorization header.

    Per-conversation state (the personal-data vault) is scoped to it, so knowing another
    caller's conversation id is not enough to read their data back.
    """
    authorization = _header(scope, b"authorization")
    return hashlib.sha256(authorization.encode("latin-1")).hexdigest()[:16] if authorization else ""


def _trace_fields(traceparent: str | None) -> dict[str, str]:
    """Join the client's trace when it sent a valid W3C traceparent."""
    parsed = parse_traceparent(traceparent)
    return {"trace_id": parsed[0], "parent_span_id": parsed[1]} if parsed else {}


class AimsguardMiddleware:
    def __init__(self, app: ASGIApp, *, guard: Guard, system: str | None = None, front_door: str = "middleware") -> None:
        self.app = app
        self.guard = guard
        self.system = system
        self.front_door = front_door
        self.max_body_bytes = guard.policy.gateway.max_body_bytes
        self.max_response_bytes = guard.policy.gateway.max_response_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, path_system = _split_system_prefix(scope["path"])
        if path_system is not None:
            scope = {**scope, "path": path, "raw_path": path.encode(), SCOPE_KEY + ".system": path_system}
        operation = _OPERATIONS.get(path)
        if operation is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        await _GuardedCall(self, scope, receive, send, operation, path_system).run()


class _GuardedCall:
    """One guarded request: all per-request state lives here, never on the middleware."""

    def __init__(
        self, mw: AimsguardMiddleware, scope: Scope, receive: Receive, send: Send, operation: Operation, path_system: str | None
    ) -> None:
        self.mw = mw
        self.guard = mw.guard
        self.scope = scope
        self.receive = receive
        self.send = send
        self.operation = operation
        self.path_system = path_system
        self.exchange: Exchange | None = None
        self.response_started = False
        self.stream_closed = asyncio.Event()  # set when aimsguard ended the response itself
        self.client_disconnected = False

    # -- the request ------------------------------------------------------------------

    async def run(self) -> None:
        request_id = client_id(_header(self.scope, b"x-request-id")) or new_id()
        requested = self.path_system or _header(self.scope, b"x-aimsguard-system")
        try:
            if self.mw.system is not None:
                # Bound to one system: a client may not pick another (with weaker checks).
                if self.path_system not in (None, self.mw.system):
                    raise UnknownSystemError(self.path_system, [self.mw.system])
                requested = self.mw.system
            system_id = self.guard.resolve_system(requested)
            self.exchange = self.guard.begin(
                system_id,
                self.mw.front_door,
                request_id=request_id,
                conversation_id=client_id(_header(self.scope, b"x-aimsguard-conversation-id")) or "",
                operation=self.operation,
                metadata={"principal": _principal(self.scope)},
                **_trace_fields(_header(self.scope, b"traceparent")),
            )
            self.guard.ensure_accepting()
            raw = await self._read_body()
            request = parse_request(self.operation, raw)
            raw = self._take_decision(request, raw)
        except AimsguardError as error:
            self._reject_exchange(request_id, requested, error)
            await self._send_error(error)
            self._finish()
            return
        except (_ClientGone, asyncio.CancelledError):
            self.client_disconnected = True
            self._finish()
            if isinstance(sys.exc_info()[1], asyncio.CancelledError):
                raise
            return
        await self._guard_and_forward(request, raw)

    def _take_decision(self, request: ParsedRequest, raw: bytes) -> bytes:
        """Record the outcome and groups the request carries; the body without their field."""
        assert self.exchange is not None
        system_id = self.exchange.system_id
        decision, stripped = read_decision(
            self.guard.system(system_id).fairness, system_id, request.body, lambda name: _header(self.scope, name.encode("latin-1"))
        )
        self.exchange.metadata.update(decision)
        return json.dumps(request.body, ensure_ascii=False).encode() if stripped else raw

    def _reject_exchange(self, request_id: str, requested: str | None, error: AimsguardError) -> None:
        if self.exchange is None:
            # No known system: recorded under a marker, never the client's text (it may be
            # anything, personal data included, and would become a metric label).
            self.exchange = self.guard.begin(UNKNOWN_SYSTEM, self.mw.front_door, request_id=request_id, operation=self.operation)
        self.exchange.status = ExchangeStatus.REJECTED
        self.exchange.error_code = error.code

    async def _read_body(self) -> bytes:
        content_type = (_header(self.scope, b"content-type") or "").split(";")[0].strip().lower()
        if content_type != "application/json":
            raise RequestError(
                f"expected Content-Type application/json, got {content_type or 'none'!r}",
                status_code=415,
                code="unsupported_media_type",
            )
        limit = self.mw.max_body_bytes
        declared = _header(self.scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise _too_large(limit)
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                self.client_disconnected = True
                raise _ClientGone
            body = message.get("body", b"")
            size += len(body)
            if size > limit:
                raise _too_large(limit)
            chunks.append(body)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _guard_and_forward(self, request: ParsedRequest, raw: bytes) -> None:
        exchange = self.exchange
        assert exchange is not None
        exchange.model = request.model
        exchange.stream = request.stream
        exchange.input_roles = list(request.roles or [])
        if self.guard.is_stopped(exchange.system_id):
            # The stop switch (EU AI Act Art. 14): no checks, no upstream, the fallback.
            exchange.status = ExchangeStatus.STOPPED
            try:
                await self._send_fallback(request)
            finally:
                self._finish()
            return
        if request.system_prompt:
            exchange.metadata["system_prompt"] = request.system_prompt  # for the prompt-leak check; never logged
        try:
            result = await self.guard.check_input(exchange, request.texts)
            if result.failed_closed:
                await self._send_error(self._guardrail_failed(result.failed_closed, "input"))
                return
            if result.action.stops_exchange:
                await self._send_fallback(request)
                return
            await self._forward(request, request.with_texts(result.texts) if result.redacted else raw)
        except (asyncio.CancelledError, _ClientGone):
            exchange.status = ExchangeStatus.CLIENT_DISCONNECTED
            raise
        except Exception as exc:
            exchange.status = ExchangeStatus.ERROR
            exchange.error_code = type(exc).__name__
            if not self.response_started:
                await self._send_error(_InternalError())
                log.error("guarded_call_failed", request_id=exchange.request_id, **error_site(exc))
                return
            raise
        finally:
            self._finish()

    def _finish(self) -> None:
        if self.exchange is not None:
            if self.client_disconnected and self.exchange.status is ExchangeStatus.OK:
                self.exchange.status = ExchangeStatus.CLIENT_DISCONNECTED
            self.guard.finish(self.exchange)
            self.exchange = None

    # -- the app behind ----------------------------------------------------------------

    async def _forward(self, request: ParsedRequest, raw: bytes) -> None:
        exchange = self.exchange
        assert exchange is not None
        # No compressed answers from the app: the output checks must be able to read them.
        headers = [(k, v) for k, v in self.scope["headers"] if k not in (b"content-length", b"accept-encoding")]
        headers.append((b"content-length", str(len(raw)).encode()))
        scope = {**self.scope, "headers": headers, SCOPE_KEY: exchange}
        responder = _Responder(self, request)
        body_sent = False

        async def receive() -> Message:
            nonlocal body_sent
            if not body_sent:
                body_sent = True
                return {"type": "http.request", "body": raw, "more_body": False}
            return await self._wait_for_disconnect()

        # The app behind is the AI system; the gateway refines these times to the upstream call.
        exchange.upstream_started = time.perf_counter()
        try:
            await self.mw.app(scope, receive, responder.send)
        except Exception:
            # Once aimsguard has ended the response itself, the app is told to stop (its
            # next send raises, and under ASGI < 2.4 it also sees a disconnect); how it
            # stops is not an error of this exchange.
            if not self.stream_closed.is_set():
                raise
        finally:
            exchange.upstream_finished = exchange.upstream_finished or time.perf_counter()
            responder.record_streams()

    async def _wait_for_disconnect(self) -> Message:
        """After the body: the client's disconnect, or ours when aimsguard ended the response."""
        if self.stream_closed.is_set():
            return {"type": "http.disconnect"}
        client = asyncio.ensure_future(self.receive())
        closed = asyncio.ensure_future(self.stream_closed.wait())
        try:
            done, _ = await asyncio.wait({client, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (client, closed):
                if not task.done():
                    task.cancel()
        if client in done:
            message = client.result()
            if message["type"] == "http.disconnect":
                self.client_disconnected = True
            return message
        return {"type": "http.disconnect"}

    # -- what aimsguard answers itself ----------------------------------------------------

    def _guardrail_failed(self, guardrails: list[str], stage: str) -> GuardrailFailed:
        assert self.exchange is not None
        self.exchange.status = ExchangeStatus.ERROR
        self.exchange.error_code = GuardrailFailed.code
        return GuardrailFailed(guardrails, stage)

    def _aimsguard_headers(self, action: Action | None = None) -> list[tuple[bytes, bytes]]:
        assert self.exchange is not None
        headers = [(b"x-aimsguard-request-id", self.exchange.request_id.encode())]
        if action is not None:
            headers.append((b"x-aimsguard-action", action.value.encode()))
        if self.exchange.handoff_id is not None:
            headers.append((HANDOFF_HEADER, self.exchange.handoff_id.encode()))
        return headers

    async def _send_error(self, error: AimsguardError) -> None:
        if self.exchange is not None:
            self.exchange.http_status = error.status_code
            self.exchange.error_code = self.exchange.error_code or error.code
        body = json.dumps(error_body(error)).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        if self.exchange is not None:
            headers += self._aimsguard_headers()
        await self._send_whole(error.status_code, headers, body)

    async def _send_fallback(self, request: ParsedRequest) -> None:
        exchange = self.exchange
        assert exchange is not None
        text = self.guard.fallback_text(exchange)
        exchange.finish_reasons = ["content_filter"]
        exchange.http_status = 200
        if request.stream:
            chunks = fallback_chunks(
                self.operation, request_id=exchange.request_id, model=request.model, text=text, handoff_id=exchange.handoff_id
            )
            body = b"".join(encode_data(c) for c in chunks) + encode_data(DONE)
            content_type = b"text/event-stream; charset=utf-8"
        else:
            completion = fallback_completion(
                self.operation, request_id=exchange.request_id, model=request.model, text=text, handoff_id=exchange.handoff_id
            )
            body = json.dumps(completion, ensure_ascii=False).encode()
            content_type = b"application/json"
        headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
        exchange.mark_first_token()
        await self._send_whole(200, headers + self._aimsguard_headers(exchange.action), body)

    async def _send_whole(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        self.response_started = True
        await self.send({"type": "http.response.start", "status": status, "headers": headers})
        await self.send({"type": "http.response.body", "body": body, "more_body": False})


class _Responder:
    """Watches and rewrites what the app sends back for one guarded request."""

    def __init__(self, call: _GuardedCall, request: ParsedRequest) -> None:
        self.call = call
        self.exchange = call.exchange
        assert self.exchange is not None
        self.guard = call.guard
        self.operation = call.operation
        self.request = request
        self.start: Message | None = None
        self.mode: str = "pending"  # "json", "sse", "passthrough" or "done"
        self.buffer: list[bytes] = []
        self.buffered = 0
        self.splitter = SseSplitter()
        self.guards: dict[int | tuple[int, int], StreamingOutputGuard] = {}
        self.template: dict[str, Any] | None = None
        self.streams_recorded = False
        self.malformed = False  # the app sent a stream event that is not OpenAI-shaped JSON

    async def send(self, message: Message) -> None:
        if self.mode == "done":
            if self.call.stream_closed.is_set():
                raise _ResponseEnded("aimsguard ended this response")  # stops the app reading its upstream
            return
        if message["type"] == "http.response.start":
            await self._on_start(message)
            return
        if message["type"] != "http.response.body":
            await self.call.send(message)
            return
        body, more = message.get("body", b""), message.get("more_body", False)
        if self.mode == "json":
            await self._on_json_body(body, more)
        elif self.mode == "sse":
            await self._on_sse_body(body, more)
        else:
            if self.exchange.first_token_at is None and body:
                self.exchange.mark_first_token()
            await self.call.send(message)

    def record_streams(self) -> None:
        """Record the last verdicts of each streamed choice, once, however the stream ended."""
        if self.guards and not self.streams_recorded:
            self.streams_recorded = True
            self.guard.record_stream(self.exchange, list(self.guards.values()))

    async def _on_start(self, message: Message) -> None:
        exchange = self.exchange
        status = message["status"]
        exchange.http_status = status
        headers = list(message.get("headers", []))
        content_type = next((v.decode("latin-1").lower() for k, v in headers if k.lower() == b"content-type"), "")
        if status >= 400 or status < 200:
            exchange.status = ExchangeStatus.UPSTREAM_ERROR
            self.mode = "passthrough"
        elif content_type.startswith("text/event-stream"):
            self.mode = "sse"
        elif content_type.startswith("application/json"):
            self.mode = "json"
        else:
            self.mode = "passthrough"
        if self.mode == "sse":
            # The stream is rewritten (held back, redacted): its length is not the app's.
            headers = [(k, v) for k, v in headers if k.lower() != b"content-length"]
        message = {**message, "headers": headers + self.call._aimsguard_headers()}
        if self.mode == "json":
            self.start = message  # held until the answer has been checked
            return
        self.call.response_started = True
        await self.call.send(message)

    # -- a whole answer -------------------------------------------------------------------

    async def _on_json_body(self, body: bytes, more: bool) -> None:
        self.buffered += len(body)
        if self.buffered > self.call.mw.max_response_bytes:
            self.exchange.status = ExchangeStatus.UPSTREAM_ERROR
            self.mode = "done"
            self.call.stream_closed.set()
            await self.call._send_error(
                RequestError(
                    f"the AI system's answer exceeds {self.call.mw.max_response_bytes} bytes",
                    status_code=502,
                    code="upstream_response_too_large",
                )
            )
            return
        self.buffer.append(body)
        if more:
            return
        raw = b"".join(self.buffer)
        try:
            answer = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            answer = None
        if not isinstance(answer, dict):
            # An answer the output checks cannot read is not passed on unchecked.
            self.exchange.status = ExchangeStatus.UPSTREAM_ERROR
            self.mode = "done"
            await self.call._send_error(
                RequestError("the AI system's answer is not JSON aimsguard can check", status_code=502, code="upstream_malformed_response")
            )
            return
        self.exchange.response_model = answer.get("model") if isinstance(answer.get("model"), str) else None
        self.exchange.input_tokens, self.exchange.output_tokens = usage_of(answer)
        texts = answer_texts(self.operation, answer)
        self.exchange.finish_reasons = [str(c.get("finish_reason")) for c in answer.get("choices", []) if isinstance(c, dict)]
        result = await self.guard.check_output(self.exchange, texts)
        action: Action | None = None
        if result.failed_closed:
            self.mode = "done"
            await self.call._send_error(self.call._guardrail_failed(result.failed_closed, "output"))
            return
        if result.action.stops_exchange:
            replace_answer_texts(self.operation, answer, [self.guard.fallback_text(self.exchange)], "content_filter")
            answer.update(handoff_field(self.exchange.handoff_id))
            self.exchange.finish_reasons = ["content_filter"] * len(self.exchange.finish_reasons)
            action = result.action
        elif result.redacted:
            replace_answer_texts(self.operation, answer, result.texts)
            action = result.action
        else:
            await self._send_held(raw)
            return
        await self._send_held(json.dumps(answer, ensure_ascii=False).encode(), action)

    async def _send_held(self, body: bytes, action: Action | None = None) -> None:
        assert self.start is not None
        headers = [(k, v) for k, v in self.start["headers"] if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        if action is not None:
            headers.append((b"x-aimsguard-action", action.value.encode()))
        if self.exchange.handoff_id is not None:
            headers.append((HANDOFF_HEADER, self.exchange.handoff_id.encode()))
        self.exchange.mark_first_token()
        self.mode = "done"
        self.call.response_started = True
        await self.call.send({**self.start, "headers": headers})
        await self.call.send({"type": "http.response.body", "body": body, "more_body": False})

    # -- a streamed answer ----------------------------------------------------------------

    async def _on_sse_body(self, body: bytes, more: bool) -> None:
        out: list[bytes] = []
        for raw_event in self.splitter.feed(body):
            if await self._on_event(raw_event, out):
                await self._end_stream(out)
                return
        if not more:
            # The stream ended, with or without [DONE]: a last event without its blank
            # line is handled like any other, then what is held back is checked and released.
            rest = self.splitter.rest()
            if rest.strip() and await self._on_event(rest, out):
                await self._end_stream(out)
                return
            if await self._release_rest(out):
                await self._end_stream(out)
                return
            self.record_streams()
            self.mode = "done"
            await self.call.send({"type": "http.response.body", "body": b"".join(out), "more_body": False})
            return
        if out:
            await self.call.send({"type": "http.response.body", "body": b"".join(out), "more_body": True})

    async def _on_event(self, raw_event: bytes, out: list[bytes]) -> bool:
        """Handle one upstream event, appending what the client gets to ``out``. True: stop."""
        if not raw_event.strip():
            return False
        data = data_of(raw_event)
        if data is None:
            out.append(raw_event + b"\n\n")
            return False
        if data.strip() == DONE:
            if await self._release_rest(out):
                return True
            out.append(encode_data(DONE))
            return False
        if not data.strip():
            return False  # an empty keep-alive
        try:
            chunk = json.loads(data)
        except json.JSONDecodeError:
            chunk = None
        if not isinstance(chunk, dict):
            # Text the checks cannot read must not reach the client unchecked.
            self.malformed = True
            return True
        if chunk.get("error"):
            # The stream ends here: what was held back is checked and goes out before the error.
            if await self._release_rest(out):
                return True
            self.exchange.status = ExchangeStatus.UPSTREAM_ERROR
            error = chunk["error"]
            self.exchange.error_code = str(error.get("code") or error.get("type")) if isinstance(error, dict) else "upstream_error"
            out.append(raw_event + b"\n\n")
            return False
        self.template = self.template or chunk
        if isinstance(chunk.get("model"), str):
            self.exchange.response_model = chunk["model"]
        input_tokens, output_tokens = usage_of(chunk)
        if input_tokens is not None or output_tokens is not None:
            self.exchange.input_tokens, self.exchange.output_tokens = input_tokens, output_tokens
        changed = False
        for index, holder, key, choice in chunk_texts(self.operation, chunk):
            # Tool-call arguments stream as text too, each call under its own window.
            for call_index, function in _tool_call_deltas(holder):
                tool_guard = self._stream_guard((index, call_index))
                arguments = function["arguments"]
                released_arguments = await tool_guard.feed(arguments) if arguments else ""
                if tool_guard.stopped:
                    return True
                if released_arguments != arguments:
                    function["arguments"] = released_arguments
                    changed = True
            stream_guard = self._stream_guard(index)
            incoming = holder.get(key) or ""
            released = await stream_guard.feed(incoming) if incoming else ""
            if choice.get("finish_reason") is not None and not stream_guard.stopped:
                if await self._release_rest(out, choice=index, calls_only=True):
                    return True  # the rest of a tool call goes out before the choice's end
                released += await stream_guard.finish()
                self.exchange.finish_reasons.append(str(choice["finish_reason"]))
            if stream_guard.stopped:
                return True
            if released != incoming:
                holder[key] = released
                changed = True
            if released:
                self.exchange.mark_first_token()
        if not changed:
            out.append(raw_event + b"\n\n")
            return False
        chunk["choices"] = [c for c in chunk["choices"] if isinstance(c, dict) and not _empty_choice(self.operation, c)]
        if chunk["choices"] or chunk.get("usage"):
            out.append(encode_data(chunk))
        return False

    def _stream_guard(self, key: int | tuple[int, int]) -> StreamingOutputGuard:
        """The window of a choice's content (key: choice index) or of one of its tool
        calls' arguments (key: choice index, call index)."""
        if key not in self.guards:
            self.guards[key] = self.guard.stream_guard(self.exchange)
        return self.guards[key]

    async def _release_rest(self, out: list[bytes], choice: int | None = None, calls_only: bool = False) -> bool:
        """Check and release what the windows still hold back. True: a check stopped it."""
        for key, stream_guard in self.guards.items():
            index = key[0] if isinstance(key, tuple) else key
            if (choice is not None and index != choice) or (calls_only and not isinstance(key, tuple)):
                continue
            rest = await stream_guard.finish()
            if stream_guard.stopped:
                return True
            if not rest:
                continue
            chunk = held_back_chunk(
                self.operation, request_id=self.exchange.request_id, model=self.request.model, template=self.template, key=key, text=rest
            )
            out.append(encode_data(chunk))
            self.exchange.mark_first_token()
        return False

    async def _end_stream(self, out: list[bytes]) -> None:
        """A check stopped the stream: end it with the fallback text (or, when checks failed
        closed, an error event), then tell the app to stop."""
        failed = [name for g in self.guards.values() if g.result is not None for name in g.result.failed_closed]
        self.record_streams()
        if self.malformed:
            self.exchange.status = ExchangeStatus.UPSTREAM_ERROR
            self.exchange.error_code = "upstream_malformed_stream"
            error = UpstreamError("the AI system sent a stream event aimsguard cannot read; the stream was stopped")
            error.code = "upstream_malformed_stream"
            out.append(encode_data(error_body(error)))
        elif failed:
            out.append(encode_data(error_body(self.call._guardrail_failed(failed, "output"))))
        else:
            text = self.guard.fallback_text(self.exchange)
            chunks = fallback_chunks(
                self.operation,
                request_id=self.exchange.request_id,
                model=self.request.model,
                text=text,
                template=self.template,
                handoff_id=self.exchange.handoff_id,  # the headers have gone: the id rides in the chunk
            )
            out.extend(encode_data(c) for c in chunks)
            out.append(encode_data(DONE))
            self.exchange.finish_reasons.append("content_filter")
        self.exchange.mark_first_token()
        self.mode = "done"
        self.call.stream_closed.set()
        await self.call.send({"type": "http.response.body", "body": b"".join(out), "more_body": False})


def _tool_call_deltas(delta: dict[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    """(call index, function dict) of a streamed delta's tool calls that carry argument text."""
    calls = delta.get("tool_calls")
    if not isinstance(calls, list):
        return []
    found = []
    for call in calls:
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict) and isinstance(function.get("arguments"), str) and isinstance(call.get("index", 0), int):
            found.append((call.get("index", 0), function))
    return found


def _empty_choice(operation: Operation, choice: dict[str, Any]) -> bool:
    if choice.get("finish_reason") is not None or choice.get("logprobs"):
        return False
    if operation == "text_completion":
        return not choice.get("text")
    delta = choice.get("delta")
    return isinstance(delta, dict) and not any(v for k, v in delta.items())


def _too_large(limit: int) -> RequestError:
    return RequestError(f"the request body exceeds the limit of {limit} bytes", status_code=413, code="request_too_large")


class _ResponseEnded(OSError):
    """Raised into the app when it sends after aimsguard has ended the response."""


class _ClientGone(Exception):
    """The client disconnected while the request was being read."""


class _InternalError(AimsguardError):
    status_code = 500
    code = "internal_error"

    def __init__(self) -> None:
        super().__init__("aimsguard failed while handling this request; it has been logged")
