"""The ASGI middleware: guard the calls of every route a dialect serves.

Pure ASGI, so it sits in front of any Starlette or FastAPI app (or any ASGI app).
``POST`` to a route of ``_routes`` (``/v1/chat/completions``, ``/v1/completions``,
``/v1/messages``, ``/v1/embeddings``, ...) is guarded through the exchange driver. A model call to a route no dialect reads
(``_routes.unguarded_route``: ``/v1/audio/*``, ``/v1/assistants``, a realtime websocket, ...)
is blocked with 403 ``route_not_guarded`` or passed, as the system's ``unknown_routes``
says, and recorded either way; everything else passes straight through. A request may name its AI system with the
``x-aimsguard-system`` header or a ``/systems/{id}`` path prefix; otherwise the
middleware's own system (or the policy's default) is used.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
import time

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aimsguard.guardrails import Action

from ._callers import Caller, CallerRefused, count_tokens
from ._dialect import Dialect, ParsedRequest
from ._dialect_openai import error_body
from ._driver import SAME, ExchangeDriver
from ._errors import AimsguardError, RequestError, RouteNotGuarded, UnknownSystemError, UpstreamError, error_site
from ._exchange import UNKNOWN_SYSTEM, ExchangeStatus, client_id, new_id, parse_traceparent
from ._guard import Guard
from ._outcomes import read_decision
from ._policy import UnknownRoutes
from ._routes import ROUTES, dialect_for, unguarded_route
from ._sse import DONE, SseSplitter, data_of

__all__ = ["AimsguardMiddleware", "SCOPE_KEY"]

log = structlog.get_logger("aimsguard.agent")

HANDOFF_HEADER = b"x-aimsguard-handoff-id"
SCOPE_KEY = "aimsguard"
"""Key in the ASGI scope where the middleware leaves the exchange for the app behind it."""
UNGUARDED_KEY = "aimsguard.unguarded"
"""Key in the scope of a model call passed unchecked (``unknown_routes: pass``): (its system
id, the caller's virtual key id or None)."""

_SYSTEM_PREFIX = "/systems/"
_TAIL_BYTES = 512


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
    """Who is calling, as far as the credentials tell: a hash of the Authorization header
    (OpenAI's clients) or else of the x-api-key header (Anthropic's).

    Per-conversation state (the personal-data vault) is scoped to it, so knowing another
    caller's conversation id is not enough to read their data back.
    """
    credentials = _header(scope, b"authorization") or _header(scope, b"x-api-key")
    return hashlib.sha256(credentials.encode("latin-1")).hexdigest()[:16] if credentials else ""


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
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, path_system = _split_system_prefix(scope["path"])
        if path_system is not None:
            scope = {**scope, "path": path, "raw_path": path.encode(), SCOPE_KEY + ".system": path_system}
        dialect = dialect_for(path)
        if dialect is not None and scope["method"] == "POST":
            await _GuardedCall(self, scope, receive, send, dialect, path_system).run()
            return
        route = unguarded_route(scope["method"], path)
        if route is None:
            await self.app(scope, receive, send)
            return
        passed_for = self._unguarded(scope, route, path_system)
        if passed_for is None:
            await _send_error(send, RouteNotGuarded(scope["method"], path, sorted(ROUTES)))
            return
        try:
            # Passed unchecked, but never unauthenticated: the system's callers rules still apply.
            caller = await self.guard.callers.admit(passed_for, scope["headers"])
        except CallerRefused as error:
            await _send_error(send, error)
            return
        if caller is not None and caller.key_id is not None:  # the caller's virtual key goes no further, as for guarded calls
            scope = {**scope, "headers": [(k, v) for k, v in scope["headers"] if k not in (b"authorization", b"x-api-key")]}
        await self.app({**scope, UNGUARDED_KEY: (passed_for, caller.key_id if caller else None)}, receive, send)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A model call over a websocket (realtime audio and text) cannot be read either."""
        path, path_system = _split_system_prefix(scope["path"])
        route = unguarded_route("WEBSOCKET", path)
        if route is None:
            await self.app(scope, receive, send)
            return
        passed_for = self._unguarded(scope, route, path_system)
        admitted = passed_for is not None
        try:
            if admitted:
                await self.guard.callers.admit(passed_for, scope["headers"])  # type: ignore[arg-type]
        except CallerRefused:
            admitted = False
        if admitted:
            await self.app(scope, receive, send)
            return
        await receive()  # websocket.connect; closing before accepting answers 403
        await send({"type": "websocket.close", "code": 1008, "reason": "route_not_guarded"})

    def _unguarded(self, scope: Scope, route: str, path_system: str | None) -> str | None:
        """A model call no dialect reads: the system's ``unknown_routes`` decides, recorded
        either way (method, path and route template only: the body is never read). The
        system's id when it passes, None when it is blocked."""
        method = "WEBSOCKET" if scope["type"] == "websocket" else scope["method"]
        requested = self.system if self.system is not None else path_system or _header(scope, b"x-aimsguard-system")
        try:
            system_id = self.guard.resolve_system(requested)
        except UnknownSystemError:
            system_id, passes = UNKNOWN_SYSTEM, False  # no system to say "pass": not passed
        else:
            passes = self.guard.system(system_id).unknown_routes is UnknownRoutes.PASS
        path = _split_system_prefix(scope["path"])[0]
        self.guard.events.emit(
            "route.unguarded",
            system=system_id,
            front_door=self.front_door,
            request_id=client_id(_header(scope, b"x-request-id")) or new_id(),
            method=method,
            path=path,
            route=route,
            action="pass" if passes else "block",
        )
        if not passes:
            log.warning("route_not_guarded", system=system_id, method=method, route=route)
        return system_id if passes else None


class _GuardedCall:
    """One guarded request: all per-request state lives here, never on the middleware.
    It moves bytes; the driver decides."""

    def __init__(
        self, mw: AimsguardMiddleware, scope: Scope, receive: Receive, send: Send, dialect: Dialect, path_system: str | None
    ) -> None:
        self.mw = mw
        self.guard = mw.guard
        self.scope = scope
        self.receive = receive
        self.send = self._after_its_event(send) if self.guard.durable else send
        self.dialect = dialect
        self.path_system = path_system
        self.driver: ExchangeDriver | None = None
        self.response_started = False
        self.stream_closed = asyncio.Event()  # set when aimsguard ended the response itself
        self.client_disconnected = False
        self.caller: Caller | None = None

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
            exchange = self.guard.begin(
                system_id,
                self.mw.front_door,
                request_id=request_id,
                conversation_id=client_id(_header(self.scope, b"x-aimsguard-conversation-id")) or "",
                operation=self.dialect.operation,
                metadata={"principal": _principal(self.scope)},
                **_trace_fields(_header(self.scope, b"traceparent")),
            )
            self.driver = ExchangeDriver(self.guard, exchange, self.dialect)
            # The caller's key and limits, before the body is read: a refused caller costs little.
            self.caller = await self.guard.callers.admit(system_id, self.scope["headers"])
            exchange.key_id = self.caller.key_id if self.caller is not None else None
            self.guard.ensure_accepting()
            raw = await self._read_body()
            request = self.driver.read(raw)
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
        assert self.driver is not None
        exchange = self.driver.exchange
        decision, stripped = read_decision(
            self.guard.system(exchange.system_id).fairness,
            exchange.system_id,
            request.body,
            lambda name: _header(self.scope, name.encode("latin-1")),
        )
        exchange.metadata.update(decision)
        return json.dumps(request.body, ensure_ascii=False).encode() if stripped else raw

    def _reject_exchange(self, request_id: str, requested: str | None, error: AimsguardError) -> None:
        if self.driver is None:
            # No known system: recorded under a marker, never the client's text (it may be
            # anything, personal data included, and would become a metric label).
            exchange = self.guard.begin(UNKNOWN_SYSTEM, self.mw.front_door, request_id=request_id, operation=self.dialect.operation)
            self.driver = ExchangeDriver(self.guard, exchange, self.dialect)
        self.driver.exchange.status = ExchangeStatus.REJECTED
        self.driver.exchange.error_code = error.code
        if isinstance(error, CallerRefused) and error.key_id is not None:
            self.driver.exchange.key_id = error.key_id  # refused for its limits: counted against the key

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
        driver = self.driver
        assert driver is not None
        exchange = driver.exchange
        try:
            decision = await driver.check_input()
            if decision.error is not None:
                await self._send_error(decision.error)
                return
            if decision.fallback:
                await self._send_fallback(request)
                return
            assert decision.texts is not None
            await self._forward(request.with_texts(decision.texts) if decision.redacted else raw)
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
        if self.driver is not None:
            exchange = self.driver.exchange
            if self.client_disconnected and exchange.status is ExchangeStatus.OK:
                exchange.status = ExchangeStatus.CLIENT_DISCONNECTED
            if self.caller is not None and not self.driver.finished:
                exchange.key_tokens, exchange.key_tokens_estimated = count_tokens(exchange)
                self.guard.callers.spend_soon(self.caller, exchange.key_tokens)
            elif exchange.key_id is not None:
                exchange.key_tokens = 0  # refused: nothing spent
            self.driver.finish()

    # -- the app behind ----------------------------------------------------------------

    async def _forward(self, raw: bytes) -> None:
        assert self.driver is not None
        exchange = self.driver.exchange
        # No compressed answers from the app: the output checks must be able to read them.
        # Nor the caller's virtual key: the app (or the gateway's upstream) is served as the
        # system, the caller is known by its key id (the exchange's key_id).
        dropped = (b"content-length", b"accept-encoding", *((b"authorization", b"x-api-key") if exchange.key_id is not None else ()))
        headers = [(k, v) for k, v in self.scope["headers"] if k not in dropped]
        headers.append((b"content-length", str(len(raw)).encode()))
        scope = {**self.scope, "headers": headers, SCOPE_KEY: exchange}
        responder = _Responder(self)
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
            self.driver.record_streams()

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

    def aimsguard_headers(self, action: Action | None = None) -> list[tuple[bytes, bytes]]:
        assert self.driver is not None
        exchange = self.driver.exchange
        headers = [(b"x-aimsguard-request-id", exchange.request_id.encode())]
        if action is not None:
            headers.append((b"x-aimsguard-action", action.value.encode()))
        if exchange.handoff_id is not None:
            headers.append((HANDOFF_HEADER, exchange.handoff_id.encode()))
        return headers

    async def _send_error(self, error: AimsguardError, action: Action | None = None) -> None:
        if self.driver is not None:
            exchange = self.driver.exchange
            exchange.http_status = error.status_code
            exchange.error_code = exchange.error_code or error.code
        body = json.dumps(self.dialect.error_body(error)).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        headers += [(k.encode(), v.encode()) for k, v in getattr(error, "headers", {}).items()]  # retry-after, www-authenticate
        if self.driver is not None:
            headers += self.aimsguard_headers(action)
        await self._send_whole(error.status_code, headers, body)

    async def _send_fallback(self, request: ParsedRequest) -> None:
        driver = self.driver
        assert driver is not None
        refusal = driver.refusal()
        if refusal is not None:  # an API without a text answer (embeddings): an error, not the fallback
            await self._send_error(refusal, driver.exchange.action)
            return
        driver.exchange.http_status = 200
        if request.stream:
            body = b"".join(self.dialect.encode_event(c) for c in driver.fallback_chunks()) + (self.dialect.done_event or b"")
            content_type = b"text/event-stream; charset=utf-8"
        else:
            body = json.dumps(driver.fallback_answer(), ensure_ascii=False).encode()
            content_type = b"application/json"
        headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
        await self._send_whole(200, headers + self.aimsguard_headers(driver.exchange.action), body)

    def _after_its_event(self, send: Send) -> Send:
        """``event_log.durability: request``: the answer's last part leaves only once the
        exchange event is on disk. The exchange is decided by then, so it is recorded first
        (``_finish`` later does nothing); a crash can cost an answer, never its record."""

        async def send_after_event(message: Message) -> None:
            if message["type"] == "http.response.body" and not message.get("more_body", False) and self.driver is not None:
                exchange = self.driver.exchange
                exchange.upstream_finished = exchange.upstream_finished or time.perf_counter()
                self._finish()
                await self.guard.events_written()
            await send(message)

        return send_after_event

    async def _send_whole(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        self.response_started = True
        await self.send({"type": "http.response.start", "status": status, "headers": headers})
        await self.send({"type": "http.response.body", "body": body, "more_body": False})


class _Responder:
    """Watches and rewrites what the app sends back for one guarded request: frames
    bytes into answers and stream events for the driver, and its decisions back into bytes."""

    def __init__(self, call: _GuardedCall) -> None:
        self.call = call
        assert call.driver is not None
        self.driver = call.driver
        self.exchange = call.driver.exchange
        self.dialect = call.dialect
        self.start: Message | None = None
        self.mode: str = "pending"  # "json", "sse", "relay", "passthrough" or "done"
        self.buffer: list[bytes] = []
        self.buffered = 0
        self.splitter = SseSplitter()
        self.malformed = False  # the app sent a stream event the dialect cannot read
        self.tail = b""  # the last bytes of an answer relayed unread

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
        elif self.mode == "relay":
            # Nothing to check in the answer (a vector): relayed as it comes, its usage read from its tail.
            self.tail = (self.tail + body)[-_TAIL_BYTES:]
            if not more:
                self.driver.note_usage(*self.dialect.usage_of_tail(self.tail))
            self.exchange.mark_first_token()
            await self.call.send(message)
        else:
            if self.exchange.first_token_at is None and body:
                self.exchange.mark_first_token()
            await self.call.send(message)

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
            self.mode = "json" if self.dialect.has_output else "relay"
        else:
            self.mode = "passthrough"
        if self.mode == "sse":
            # The stream is rewritten (held back, redacted): its length is not the app's.
            headers = [(k, v) for k, v in headers if k.lower() != b"content-length"]
        message = {**message, "headers": headers + self.call.aimsguard_headers()}
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
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            answer = None
        if not isinstance(answer, dict):
            # An answer the output checks cannot read is not passed on unchecked.
            self.exchange.status = ExchangeStatus.UPSTREAM_ERROR
            self.mode = "done"
            await self.call._send_error(
                RequestError("the AI system's answer is not JSON aimsguard can check", status_code=502, code="upstream_malformed_response")
            )
            return
        decision = await self.driver.check_answer(answer)
        if decision.error is not None:
            self.mode = "done"
            await self.call._send_error(decision.error)
            return
        if not decision.changed:
            await self._send_held(raw)
            return
        await self._send_held(json.dumps(answer, ensure_ascii=False).encode(), decision.action)

    async def _send_held(self, body: bytes, action: Action | None = None) -> None:
        assert self.start is not None
        headers = [(k, v) for k, v in self.start["headers"] if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        if action is not None:
            headers.append((b"x-aimsguard-action", action.value.encode()))
        if self.exchange.handoff_id is not None:
            headers.append((HANDOFF_HEADER, self.exchange.handoff_id.encode()))
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
            if await self._released_rest(out):
                await self._end_stream(out)
                return
            self.driver.record_streams()
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
            if await self._released_rest(out):
                return True
            out.append(raw_event + b"\n\n")
            return False
        if not data.strip():
            return False  # an empty keep-alive
        try:
            chunk = json.loads(data)
        except (json.JSONDecodeError, RecursionError):
            chunk = None
        if not isinstance(chunk, dict):
            # Text the checks cannot read must not reach the client unchecked.
            self.malformed = True
            return True
        events = await self.driver.on_event(chunk)
        if self.driver.stopped:
            return True
        out.extend(raw_event + b"\n\n" if event is SAME else self.dialect.encode_event(event) for event in events)  # type: ignore[arg-type]
        return False

    async def _released_rest(self, out: list[bytes]) -> bool:
        """What the windows still hold back, checked, appended to ``out``. True: a check stopped it."""
        rest = await self.driver.release_rest()
        out.extend(self.dialect.encode_event(event) for event in rest if isinstance(event, dict))
        return self.driver.stopped

    async def _end_stream(self, out: list[bytes]) -> None:
        """A check stopped the stream: end it with the fallback text (or, when checks failed
        closed, an error event), then tell the app to stop."""
        failed = None if self.malformed else self.driver.failed_closed()
        if self.malformed:
            self.driver.record_streams()
            self.exchange.status = ExchangeStatus.UPSTREAM_ERROR
            self.exchange.error_code = "upstream_malformed_stream"
            error = UpstreamError("the AI system sent a stream event aimsguard cannot read; the stream was stopped")
            error.code = "upstream_malformed_stream"
            out.append(self.dialect.encode_event(self.dialect.error_body(error)))
        elif failed is not None:
            out.append(self.dialect.encode_event(self.dialect.error_body(failed)))
        else:
            out.extend(self.dialect.encode_event(c) for c in self.driver.fallback_chunks())
            out.append(self.dialect.done_event or b"")
        self.exchange.mark_first_token()
        self.mode = "done"
        self.call.stream_closed.set()
        await self.call.send({"type": "http.response.body", "body": b"".join(out), "more_body": False})

async def _send_error(send: Send, error: AimsguardError) -> None:
    """An error in OpenAI's shape, outside any exchange."""
    body = json.dumps(error_body(error)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.encode(), v.encode()) for k, v in getattr(error, "headers", {}).items()]
    await send({"type": "http.response.start", "status": error.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


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
