"""The gateway: a Starlette app that forwards to each system's upstream, guarded.

The middleware in front does the checking; the app behind only forwards with httpx,
streaming end to end, and turns upstream failures into OpenAI-style errors the clients
already understand. It also serves ``/metrics`` (Prometheus), ``/healthz``, ``/readyz`` and
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

import httpx
import structlog
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route

from ._errors import AimsguardError, UpstreamError, UpstreamTimeout, UpstreamUnavailable
from ._exchange import Exchange, ExchangeStatus
from ._guard import Guard
from ._handoff_api import handoff_route
from ._middleware import SCOPE_KEY, AimsguardMiddleware
from ._dialect_openai import error_body
from ._routes import ROUTES
from ._outcomes import handle_feedback
from ._sse import encode_data

__all__ = ["app_from_environment", "create_gateway", "render_metrics"]

log = structlog.get_logger("aimsguard.agent")

_FORWARDED_HEADERS = ("accept", "content-type", "openai-organization", "openai-project", "user-agent")
_MAX_ERROR_BODY = 64 * 1024


class _Upstreams:
    """One pooled httpx client per system with an upstream."""

    def __init__(self, guard: Guard, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.clients: dict[str, httpx.AsyncClient] = {}
        for system_id, system in guard.policy.systems.items():
            upstream = system.upstream
            if upstream is None:
                continue
            timeout = httpx.Timeout(upstream.timeout_s, connect=upstream.connect_timeout_s)
            headers = dict(upstream.headers)
            if upstream.api_key is not None:
                headers["authorization"] = f"Bearer {upstream.api_key.get_secret_value()}"
            self.clients[system_id] = httpx.AsyncClient(
                base_url=str(upstream.base_url).rstrip("/"),
                timeout=timeout,
                headers=headers,
                transport=transport,
                limits=httpx.Limits(max_connections=512, max_keepalive_connections=128),
            )

    async def aclose(self) -> None:
        for client in self.clients.values():
            await client.aclose()


def create_gateway(guard: Guard, *, transport: httpx.AsyncBaseTransport | None = None, owns_guard: bool = False) -> Starlette:
    """The gateway app for a loaded policy. ``transport`` lets tests swap the network.
    ``owns_guard``: close the guard when the app shuts down (a worker process's own guard)."""
    upstreams = _Upstreams(guard, transport)

    async def forward(request: Request) -> Response:
        exchange: Exchange = request.scope[SCOPE_KEY]
        system = guard.system(exchange.system_id)
        client = upstreams.clients.get(exchange.system_id)
        if client is None or system.upstream is None:
            return _upstream_error(exchange, UpstreamUnavailable(f"system {exchange.system_id!r} has no upstream configured"))
        body = await request.body()
        if system.upstream.model is not None:
            body = _with_model(body, system.upstream.model)
        headers = {k: v for k, v in request.headers.items() if k in _FORWARDED_HEADERS}
        headers["accept-encoding"] = "identity"  # answers are read and checked here, not relayed as bytes
        if system.upstream.api_key is None and "authorization" in request.headers:
            headers["authorization"] = request.headers["authorization"]
        path = request.url.path.removeprefix("/v1")
        upstream_request = client.build_request("POST", path, content=body, headers=headers)
        exchange.upstream_started = time.perf_counter()
        try:
            response = await client.send(upstream_request, stream=True)
        except httpx.TimeoutException:
            return _upstream_error(exchange, UpstreamTimeout(f"the AI system {exchange.system_id!r} did not answer in time"))
        except httpx.TransportError as exc:
            return _upstream_error(
                exchange, UpstreamUnavailable(f"the AI system {exchange.system_id!r} cannot be reached ({type(exc).__name__})")
            )
        if response.status_code >= 400:
            return await _relay_error(exchange, response)
        media_type = response.headers.get("content-type", "application/json")
        if media_type.startswith("text/event-stream"):
            # The background task closes the upstream response even if the stream never starts.
            return StreamingResponse(_relay_stream(exchange, response), media_type=media_type, background=BackgroundTask(response.aclose))
        try:
            content = await _read_bounded(response, guard.policy.gateway.max_response_bytes)
        except httpx.HTTPError as exc:
            return _upstream_error(exchange, _translate(exc, exchange.system_id))
        except _TooLarge:
            error = UpstreamError(f"the AI system's answer exceeds {guard.policy.gateway.max_response_bytes} bytes")
            error.code = "upstream_response_too_large"
            return _upstream_error(exchange, error)
        finally:
            await response.aclose()
            exchange.upstream_finished = time.perf_counter()
        return Response(content, status_code=response.status_code, media_type=media_type)

    async def models(request: Request) -> Response:
        try:
            system_id = guard.resolve_system(_requested_system(request))
        except AimsguardError as error:
            return JSONResponse(error_body(error), status_code=error.status_code)
        client = upstreams.clients.get(system_id)
        if client is None:
            return JSONResponse({"object": "list", "data": []})
        try:
            response = await client.get("/models")
        except httpx.HTTPError as exc:
            error = _translate(exc, system_id)
            return JSONResponse(error_body(error), status_code=error.status_code)
        if response.status_code >= 400 or not response.headers.get("content-type", "").startswith("application/json"):
            error = UpstreamError(f"the AI system {system_id!r} answered HTTP {response.status_code} to a model listing")
            error.code = f"upstream_http_{response.status_code}"
            return JSONResponse(error_body(error), status_code=502)
        return Response(response.content, status_code=response.status_code, media_type="application/json")

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
        ],
        middleware=[Middleware(AimsguardMiddleware, guard=guard, front_door="gateway")],
        lifespan=lifespan,
    )


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


def _translate(exc: httpx.HTTPError, system_id: str) -> UpstreamError:
    if isinstance(exc, httpx.TimeoutException):
        return UpstreamTimeout(f"the AI system {system_id!r} did not answer in time", system_id=system_id)
    return UpstreamUnavailable(f"the AI system {system_id!r} failed: {type(exc).__name__}", system_id=system_id)


def _upstream_error(exchange: Exchange, error: UpstreamError) -> Response:
    exchange.upstream_finished = time.perf_counter()
    exchange.status = ExchangeStatus.UPSTREAM_ERROR
    exchange.error_code = error.code
    log.warning("upstream_error", system=exchange.system_id, code=error.code, request_id=exchange.request_id)
    return JSONResponse(error_body(error), status_code=error.status_code)


async def _relay_error(exchange: Exchange, response: httpx.Response) -> Response:
    """Pass an upstream's error on: its own body when it is OpenAI-shaped JSON, else ours."""
    try:
        raw = b""
        async for part in response.aiter_raw():
            raw += part
            if len(raw) > _MAX_ERROR_BODY:
                break
    except httpx.HTTPError:
        raw = b""
    finally:
        await response.aclose()
    exchange.upstream_finished = time.perf_counter()
    exchange.status = ExchangeStatus.UPSTREAM_ERROR
    payload: Any = None
    with contextlib.suppress(ValueError):
        payload = json.loads(raw)
    if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
        exchange.error_code = str(payload["error"].get("code") or payload["error"].get("type") or f"upstream_{response.status_code}")
        return JSONResponse(payload, status_code=response.status_code)
    error = UpstreamError(f"the AI system {exchange.system_id!r} answered HTTP {response.status_code}")
    error.status_code = response.status_code if response.status_code < 500 else 502
    error.code = exchange.error_code = f"upstream_http_{response.status_code}"
    return JSONResponse(error_body(error), status_code=error.status_code)


class _TooLarge(Exception):
    pass


async def _read_bounded(response: httpx.Response, limit: int) -> bytes:
    """The (decoded) body, refusing to hold more than ``limit`` bytes of it."""
    parts: list[bytes] = []
    size = 0
    async for part in response.aiter_bytes():
        size += len(part)
        if size > limit:
            raise _TooLarge
        parts.append(part)
    return b"".join(parts)


async def _relay_stream(exchange: Exchange, response: httpx.Response) -> AsyncIterator[bytes]:
    try:
        async for part in response.aiter_bytes():
            yield part
    except httpx.HTTPError as exc:
        error = _translate(exc, exchange.system_id)
        error.code = "upstream_stream_interrupted"
        log.warning("upstream_stream_interrupted", system=exchange.system_id, request_id=exchange.request_id)
        yield b"\n\n" + encode_data(error_body(error))
    finally:
        await response.aclose()
        exchange.upstream_finished = time.perf_counter()
