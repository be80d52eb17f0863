"""The gateway: a Starlette app that forwards to each system's upstream, guarded.

The middleware in front does the checking; the app behind only forwards with aiohttp,
streaming end to end, and turns upstream failures into errors of the route's own API
(OpenAI's or Anthropic's shape) that the clients already understand. Each route's dialect
says which headers go on (``anthropic-version``, ``openai-organization``, the caller's key
when the policy sets none) and how a configured ``api_key`` travels (``authorization:
Bearer`` or ``x-api-key``), so one policy can front OpenAI- and Anthropic-compatible
upstreams side by side. aiohttp, not httpx: measured against the same fast upstream
(``bench/bench_upstream_client.py``), httpx's pool fell from 1,400 to 160 requests/s
between 16 and 64 concurrent requests while aiohttp's held about 10,000.
``upstream.timeout_s`` is one deadline for the whole exchange with the upstream (connect,
send, every byte of the answer or stream), not a limit per read. It also serves ``/metrics`` (Prometheus), ``/healthz``, ``/readyz`` and
``POST /v1/feedback`` (ground truth for the bias monitor, see ``_outcomes``).

    upstream unreachable   → 502 upstream_unavailable
    upstream too slow      → 504 upstream_timeout
    upstream answers 4xx/5xx → the same status, its error body passed on
    stream cut midway      → an SSE ``error`` event, then the stream ends
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import structlog
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route

from ._dialect import Dialect
from ._dialect_anthropic import ANTHROPIC_MESSAGES
from ._dialect_openai import OPENAI_CHAT, error_body
from ._errors import AimsguardError, RequestError, UpstreamError, UpstreamTimeout, UpstreamUnavailable
from ._exchange import Exchange, ExchangeStatus
from ._guard import Guard
from ._handoff_api import handoff_route
from ._middleware import SCOPE_KEY, UNGUARDED_KEY, AimsguardMiddleware
from ._policy import UpstreamConfig
from ._routes import ROUTES
from ._outcomes import handle_feedback

__all__ = ["app_from_environment", "create_gateway", "render_metrics"]

log = structlog.get_logger("aimsguard.agent")

_FORWARDED_HEADERS = ("accept", "content-type", "user-agent")
_CREDENTIAL_HEADERS = ("authorization", "x-api-key")  # a caller's, never sent on when the policy sets a key
_MAX_ERROR_BODY = 64 * 1024
_ANY_METHOD = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


class _Upstreams:
    """One pooled aiohttp session per system with an upstream, opened on first use (a
    session belongs to the event loop that serves the requests)."""

    def __init__(self, guard: Guard) -> None:
        self.guard = guard
        self.sessions: dict[str, aiohttp.ClientSession] = {}

    def has(self, system_id: str) -> bool:
        return self.guard.system(system_id).upstream is not None

    def session(self, system_id: str) -> aiohttp.ClientSession:
        session = self.sessions.get(system_id)
        if session is None or session.closed:
            upstream = self.guard.system(system_id).upstream
            assert upstream is not None
            session = self.sessions[system_id] = aiohttp.ClientSession(
                headers=dict(upstream.headers),
                timeout=aiohttp.ClientTimeout(total=upstream.timeout_s, sock_connect=upstream.connect_timeout_s),
                connector=aiohttp.TCPConnector(limit=512, limit_per_host=0),
                auto_decompress=True,
                skip_auto_headers=("user-agent",),
            )
        return session

    def url(self, system_id: str, path: str) -> str:
        upstream = self.guard.system(system_id).upstream
        assert upstream is not None
        return str(upstream.base_url).rstrip("/") + path

    async def aclose(self) -> None:
        for session in self.sessions.values():
            await session.close()
        self.sessions.clear()


# Errors from aiohttp, translated at the boundary: a deadline → 504, anything else → 502.
_UPSTREAM_ERRORS = (aiohttp.ClientError, TimeoutError)


def create_gateway(guard: Guard, *, owns_guard: bool = False) -> Starlette:
    """The gateway app for a loaded policy. ``owns_guard``: close the guard when the app
    shuts down (a worker process's own guard)."""
    upstreams = _Upstreams(guard)

    async def forward(request: Request) -> Response:
        exchange: Exchange = request.scope[SCOPE_KEY]
        path: str = request.scope["path"]  # a route's exact path: what request.url.path would parse back out, unbuilt
        dialect = ROUTES[path]
        system = guard.system(exchange.system_id)
        if system.upstream is None:
            return _upstream_error(exchange, dialect, UpstreamUnavailable(f"system {exchange.system_id!r} has no upstream configured"))
        body = await request.body()
        if system.upstream.model is not None:
            body = _with_model(body, system.upstream.model)
        headers = _upstream_headers(request, system.upstream, dialect, exchange.key_id)
        url = upstreams.url(exchange.system_id, path.removeprefix("/v1"))
        exchange.upstream_started = time.perf_counter()
        try:
            response = await upstreams.session(exchange.system_id).post(url, data=body, headers=headers)
        except _UPSTREAM_ERRORS as exc:
            if isinstance(exc, TimeoutError):
                return _upstream_error(exchange, dialect, UpstreamTimeout(f"the AI system {exchange.system_id!r} did not answer in time"))
            return _upstream_error(
                exchange, dialect, UpstreamUnavailable(f"the AI system {exchange.system_id!r} cannot be reached ({type(exc).__name__})")
            )
        if response.status >= 400:
            return await _relay_error(exchange, dialect, response)
        media_type = response.headers.get("content-type", "application/json")
        if media_type.startswith("text/event-stream") or not dialect.has_output:  # a vector: relayed unbuffered
            # The background task closes the upstream response even if the stream never starts.
            return StreamingResponse(
                _relay_stream(exchange, dialect, response), media_type=media_type, background=BackgroundTask(response.close)
            )
        try:
            content = await _read_bounded(response, guard.policy.gateway.max_response_bytes)
        except _UPSTREAM_ERRORS as exc:
            response.close()
            return _upstream_error(exchange, dialect, _translate(exc, exchange.system_id))
        except _TooLarge:
            response.close()
            error = UpstreamError(f"the AI system's answer exceeds {guard.policy.gateway.max_response_bytes} bytes")
            error.code = "upstream_response_too_large"
            return _upstream_error(exchange, dialect, error)
        finally:
            exchange.upstream_finished = time.perf_counter()
        response.release()  # read to the end: the connection goes back to the pool
        return Response(content, status_code=response.status, media_type=media_type)

    async def unguarded(request: Request) -> Response:
        """A model call no dialect reads, which the system's policy passes (``unknown_routes:
        pass``; the middleware recorded it): forwarded to the upstream as it is, unchecked, and
        its answer relayed as it comes. Only routes under ``/v1/`` map onto an upstream's base URL."""
        system_id, key_id = request.scope.get(UNGUARDED_KEY, (None, None))
        path = request.url.path
        if system_id is None or not path.startswith("/v1/") or not upstreams.has(system_id):
            error = RequestError(f"{request.method} {path} is not served by this gateway", status_code=404, code="not_found")
            return JSONResponse(error_body(error), status_code=404)
        system = guard.system(system_id)
        assert system.upstream is not None
        # An Anthropic-compatible upstream takes its key and version headers as Messages does.
        dialect = ANTHROPIC_MESSAGES if system.upstream.provider == "anthropic" else OPENAI_CHAT
        headers = _upstream_headers(request, system.upstream, dialect, key_id)
        url = upstreams.url(system_id, path.removeprefix("/v1") + (f"?{request.url.query}" if request.url.query else ""))
        try:
            response = await upstreams.session(system_id).request(request.method, url, data=await request.body(), headers=headers)
        except _UPSTREAM_ERRORS as exc:
            error = _translate(exc, system_id)
            return JSONResponse(error_body(error), status_code=error.status_code)
        return StreamingResponse(
            _relay_bytes(response),
            status_code=response.status,
            media_type=response.headers.get("content-type"),
            background=BackgroundTask(response.close),
        )

    async def models(request: Request) -> Response:
        try:
            system_id = guard.resolve_system(_requested_system(request))
        except AimsguardError as error:
            return JSONResponse(error_body(error), status_code=error.status_code)
        if not upstreams.has(system_id):
            return JSONResponse({"object": "list", "data": []})
        try:
            async with upstreams.session(system_id).get(upstreams.url(system_id, "/models")) as response:
                status, content_type = response.status, response.headers.get("content-type", "")
                content = await _read_bounded(response, _MAX_ERROR_BODY * 16)
        except (*_UPSTREAM_ERRORS, _TooLarge) as exc:
            error = _translate(exc, system_id)
            return JSONResponse(error_body(error), status_code=error.status_code)
        if status >= 400 or not content_type.startswith("application/json"):
            error = UpstreamError(f"the AI system {system_id!r} answered HTTP {status} to a model listing")
            error.code = f"upstream_http_{status}"
            return JSONResponse(error_body(error), status_code=502)
        return Response(content, status_code=status, media_type="application/json")

    async def feedback(request: Request) -> Response:
        return await handle_feedback(guard, request, _requested_system(request))

    async def metrics(_: Request) -> Response:
        return Response(render_metrics(guard), media_type=CONTENT_TYPE_LATEST)

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(_: Request) -> Response:
        event_log_ok = guard.event_log is None or (guard.event_log.healthy and guard.event_log.probe())
        ready = event_log_ok or guard.policy.event_log.fail_mode.value == "open"
        return JSONResponse(
            {
                "status": "ready" if ready else "not_ready",
                "policy_version": guard.policy_version,
                "systems": sorted(guard.policy.systems),
                "event_log": "ok" if event_log_ok else "failing",
                "events_dropped": guard.bus.dropped,
                # Reported, not gating: with the store down, escalations still get the fallback.
                "records": guard.oversight.records_state,
                "stopped_systems": guard.oversight.stopped_systems,
            },
            status_code=200 if ready else 503,
        )

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        guard.check_pool.start()  # the check workers are forked before the first request, not by it
        try:
            yield
        finally:
            await upstreams.aclose()
            # After uvicorn drained the requests: close the segment with its digest, as a worker
            # is then ended by the SIGTERM uvicorn raises again.
            if owns_guard:
                guard.close()
            else:
                guard.flush()
            if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
                multiprocess.mark_process_dead(os.getpid())

    return Starlette(
        routes=[
            *(Route(path, forward, methods=["POST"]) for path in ROUTES),  # every route a dialect guards
            Route("/v1/models", models, methods=["GET"]),
            handoff_route(guard),
            Route("/v1/feedback", feedback, methods=["POST"]),
            Route("/metrics", metrics, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            *_console_routes(guard),
            Route("/{path:path}", unguarded, methods=_ANY_METHOD),  # last: only what unknown_routes passes; anything else is a 404
        ],
        middleware=[Middleware(AimsguardMiddleware, guard=guard, front_door="gateway")],
        lifespan=lifespan,
    )


def _upstream_headers(request: Request, upstream: UpstreamConfig, dialect: Dialect, key_id: str | None) -> dict[str, str]:
    """The caller's headers the route's API passes on, with the upstream's credentials."""
    passed = (*_FORWARDED_HEADERS, *dialect.passed_headers)
    headers = {k: v for k, v in request.headers.items() if k in passed}
    headers["accept-encoding"] = "identity"  # answers are read and checked here, not relayed as bytes
    if upstream.api_key is not None or key_id is not None:
        # A caller's own credentials go on only when the policy sets no key and they are not
        # a virtual key (a caller who authenticated with one is served with the policy's key, or none).
        for name in _CREDENTIAL_HEADERS:
            headers.pop(name, None)
    if upstream.api_key is not None:
        headers.update(dialect.credentials(upstream.api_key.get_secret_value()))
    return headers


def _requested_system(request: Request) -> str | None:
    """The system a request outside the guarded routes names (a /systems/{id} prefix, or the header)."""
    return request.scope.get(SCOPE_KEY + ".system") or request.headers.get("x-aimsguard-system")


def _console_routes(guard: Guard) -> list[Mount]:
    """The web console at /console, when the policy enables it."""
    if not guard.policy.console.enabled:
        return []
    from .console import create_console  # imported here: only gateways with a console need Jinja2 and argon2

    return [Mount("/console", app=create_console(guard, cookie_path="/console"), name="console")]


def render_metrics(guard: Guard) -> bytes:
    """The Prometheus exposition: this process's metrics, or every worker's in multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    if guard.metrics is None:
        return b""
    return generate_latest(guard.metrics.registry)


def app_from_environment() -> Starlette:
    """The gateway for ``AIMSGUARD_CONFIG``: the factory uvicorn's worker processes import."""
    return create_gateway(Guard.from_file(os.environ["AIMSGUARD_CONFIG"]), owns_guard=True)


def _with_model(body: bytes, model: str) -> bytes:
    payload = json.loads(body)  # the middleware has already validated it
    payload["model"] = model
    return json.dumps(payload, ensure_ascii=False).encode()


def _translate(exc: BaseException, system_id: str) -> UpstreamError:
    if isinstance(exc, TimeoutError):
        return UpstreamTimeout(f"the AI system {system_id!r} did not answer in time", system_id=system_id)
    return UpstreamUnavailable(f"the AI system {system_id!r} failed: {type(exc).__name__}", system_id=system_id)


def _upstream_error(exchange: Exchange, dialect: Dialect, error: UpstreamError) -> Response:
    exchange.upstream_finished = time.perf_counter()
    exchange.status = ExchangeStatus.UPSTREAM_ERROR
    exchange.error_code = error.code
    log.warning("upstream_error", system=exchange.system_id, code=error.code, request_id=exchange.request_id)
    return JSONResponse(dialect.error_body(error), status_code=error.status_code)


async def _relay_error(exchange: Exchange, dialect: Dialect, response: aiohttp.ClientResponse) -> Response:
    """Pass an upstream's error on: its own body when it is JSON with an ``error`` object
    (OpenAI's and Anthropic's shapes both have one), else ours in the route's shape."""
    status = response.status
    raw = b""
    try:
        async for part in response.content.iter_any():
            raw += part
            if len(raw) > _MAX_ERROR_BODY:
                break
    except _UPSTREAM_ERRORS:
        raw = b""
    finally:
        response.close()
    exchange.upstream_finished = time.perf_counter()
    exchange.status = ExchangeStatus.UPSTREAM_ERROR
    payload: Any = None
    with contextlib.suppress(ValueError):
        payload = json.loads(raw)
    if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
        exchange.error_code = str(payload["error"].get("code") or payload["error"].get("type") or f"upstream_{status}")
        return JSONResponse(payload, status_code=status)
    error = UpstreamError(f"the AI system {exchange.system_id!r} answered HTTP {status}")
    error.status_code = status if status < 500 else 502
    error.code = exchange.error_code = f"upstream_http_{status}"
    return JSONResponse(dialect.error_body(error), status_code=error.status_code)


class _TooLarge(Exception):
    pass


async def _read_bounded(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """The (decoded) body, refusing to hold more than ``limit`` bytes of it."""
    parts: list[bytes] = []
    size = 0
    async for part in response.content.iter_any():
        size += len(part)
        if size > limit:
            raise _TooLarge
        parts.append(part)
    return b"".join(parts)


async def _relay_bytes(response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    """An unchecked answer, relayed as it comes (a passed unguarded route)."""
    try:
        async for part in response.content.iter_any():
            yield part
    except _UPSTREAM_ERRORS:
        log.warning("upstream_stream_interrupted", route="unguarded")
    else:
        response.release()


async def _relay_stream(exchange: Exchange, dialect: Dialect, response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    try:
        async for part in response.content.iter_any():
            yield part
    except _UPSTREAM_ERRORS as exc:
        error = _translate(exc, exchange.system_id)
        error.code = "upstream_stream_interrupted"
        log.warning("upstream_stream_interrupted", system=exchange.system_id, request_id=exchange.request_id)
        yield b"\n\n" + dialect.encode_event(dialect.error_body(error))
    else:
        response.release()
    finally:
        response.close()  # a no-op once released; otherwise the connection is not reused
        exchange.upstream_finished = time.perf_counter()
