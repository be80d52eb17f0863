"""Model calls to routes no dialect reads: blocked (403 route_not_guarded) or passed, as each
system's ``unknown_routes`` says, and recorded either way, in the middleware and the gateway."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket, WebSocketDisconnect

from aimsguard.agent import AimsguardMiddleware, create_gateway
from aimsguard.agent._gateway import render_metrics
from aimsguard.agent._routes import unguarded_route

from ..conftest import GuardFactory
from ..support import ServerThread


@pytest.mark.parametrize(
    ("method", "path", "route"),
    [
        ("POST", "/v1/audio/transcriptions", "/v1/audio/*"),
        ("POST", "/v1/images/generations", "/v1/images/*"),
        ("POST", "/v1/moderations", "/v1/moderations"),
        ("POST", "/v1/assistants", "/v1/assistants"),
        ("POST", "/v1/threads/thread_abc123/runs", "/v1/threads/*"),  # the id never reaches the template
        ("POST", "/v1/batches", "/v1/batches"),
        ("POST", "/v1/messages/count_tokens", "/v1/messages/*"),
        ("POST", "/v1/complete", "/v1/complete"),
        ("POST", "/v2/chat", "/v2/chat"),
        ("POST", "/v1beta/models/gemini-2.0-flash:generateContent", "/v1beta/models/{model}:{method}"),
        ("WEBSOCKET", "/v1/realtime", "/v1/realtime"),
        # stored model output read back: what a check redacted or blocked, or a background response no check saw
        ("GET", "/v1/responses/resp_abc123", "/v1/responses/*"),
        ("GET", "/v1/chat/completions", "/v1/chat/*"),
        ("GET", "/v1/chat/completions/chatcmpl-abc/messages", "/v1/chat/*"),
        ("GET", "/v1/threads/thread_abc123/messages", "/v1/threads/*"),
        ("GET", "/v1/messages/batches/msgbatch_1/results", "/v1/messages/*"),
        # not model calls, or guarded: not for unknown_routes to decide
        ("GET", "/v1/models", None),
        ("GET", "/v1/files/file-abc", None),
        ("GET", "/v1/batches/batch_abc", None),
        ("DELETE", "/v1/responses/resp_abc123", None),
        ("POST", "/v1/files", None),
        ("POST", "/v1/fine_tuning/jobs", None),
        ("POST", "/v1/models/gpt-4o", None),
        ("POST", "/v1/chat/completions", None),
        ("POST", "/api/v1/audio/speech", None),
        ("POST", "/other", None),
    ],
)
def test_which_routes_are_unguarded_model_calls(method: str, path: str, route: str | None) -> None:
    assert unguarded_route(method, path) == route


def _app(seen: list[str]) -> Starlette:
    async def any_route(request: Request) -> Response:
        seen.append(f"{request.method} {request.url.path}")
        if request.url.path == "/v1/moderations":
            return JSONResponse({"id": "modr-1", "model": "m", "results": []})
        return PlainTextResponse("app")

    async def realtime(socket: WebSocket) -> None:
        await socket.accept()
        await socket.send_text("hello")
        await socket.close()

    return Starlette(routes=[Route("/{path:path}", any_route, methods=["GET", "POST"]), WebSocketRoute("/v1/realtime", realtime)])


def _route_events(guard: Any, events: Any) -> list[dict[str, Any]]:
    guard.flush()
    return events.events("route.unguarded")


def _unguarded_metric(guard: Any) -> dict[str, float]:
    guard.flush()
    prefix = "aimsguard_unguarded_routes_total{"
    return {line.split(" ")[0][len(prefix) - 1 :]: float(line.rsplit(" ", 1)[1]) for line in render_metrics(guard).decode().splitlines() if line.startswith(prefix)}


@pytest.mark.anyio
async def test_the_middleware_blocks_a_model_call_it_cannot_read_and_records_it(make_guard: GuardFactory, events: Any) -> None:
    seen: list[str] = []
    guard = make_guard()
    app = AimsguardMiddleware(_app(seen), guard=guard)
    client = openai.AsyncOpenAI(base_url="http://app/v1", api_key="k", max_retries=0, http_client=httpx.AsyncClient(transport=httpx.ASGITransport(app=app)))
    with pytest.raises(openai.PermissionDeniedError) as caught:
        await client.moderations.create(input="my card is 4111 1111 1111 1111")
    assert caught.value.status_code == 403
    assert caught.value.code == "route_not_guarded" and "unknown_routes: block" in caught.value.message
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as http:
        runs = await http.post("/v1/threads/thread_abc123/runs", json={"assistant_id": "a"})
        assert runs.status_code == 403 and runs.json()["error"]["type"] == "invalid_request_error"
    # A stored answer read back would be the upstream's, unchecked: through the official client too.
    with pytest.raises(openai.PermissionDeniedError) as caught:
        await client.responses.retrieve("resp_abc123")
    assert caught.value.code == "route_not_guarded"
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as http:
        # Not model calls: the app's own business, passed and not recorded.
        assert (await http.get("/v1/models")).text == "app"
        assert (await http.post("/v1/files", content=b"x")).text == "app"
    assert seen == ["GET /v1/models", "POST /v1/files"]
    recorded = _route_events(guard, events)
    assert [(e["method"], e["path"], e["route"], e["action"], e["system"]) for e in recorded] == [
        ("POST", "/v1/moderations", "/v1/moderations", "block", "support-bot"),
        ("POST", "/v1/threads/thread_abc123/runs", "/v1/threads/*", "block", "support-bot"),
        ("GET", "/v1/responses/resp_abc123", "/v1/responses/*", "block", "support-bot"),
    ]
    assert all("input" not in e and "body" not in e for e in recorded)
    metric = _unguarded_metric(guard)
    assert metric == {
        '{action="block",route="/v1/moderations",system="support-bot"}': 1.0,
        '{action="block",route="/v1/threads/*",system="support-bot"}': 1.0,
        '{action="block",route="/v1/responses/*",system="support-bot"}': 1.0,
    }


@pytest.mark.anyio
async def test_the_middleware_passes_and_records_when_the_system_says_pass(make_guard: GuardFactory, events: Any) -> None:
    seen: list[str] = []
    guard = make_guard(unknown_routes="pass")
    app = AimsguardMiddleware(_app(seen), guard=guard)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as http:
        response = await http.post("/systems/support-bot/v1/audio/speech", json={"input": "hello", "voice": "x"})
    assert response.text == "app" and seen == ["POST /v1/audio/speech"]
    [event] = _route_events(guard, events)
    assert (event["action"], event["route"], event["path"], event["front_door"]) == ("pass", "/v1/audio/*", "/v1/audio/speech", "middleware")
    assert _unguarded_metric(guard) == {'{action="pass",route="/v1/audio/*",system="support-bot"}': 1.0}


@pytest.mark.anyio
async def test_a_model_call_for_an_unknown_system_is_blocked(make_guard: GuardFactory, events: Any) -> None:
    guard = make_guard(unknown_routes="pass")
    app = AimsguardMiddleware(_app([]), guard=guard)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as http:
        response = await http.post("/v1/audio/speech", json={}, headers={"x-aimsguard-system": "nobody"})
    assert response.status_code == 403
    [event] = _route_events(guard, events)
    assert (event["system"], event["action"]) == ("_unknown", "block")


def test_a_realtime_websocket_is_refused_or_passed(make_guard: GuardFactory, events: Any) -> None:
    blocking, passing = make_guard(), make_guard(unknown_routes="pass")
    with pytest.raises(WebSocketDisconnect) as caught, TestClient(AimsguardMiddleware(_app([]), guard=blocking)).websocket_connect("/v1/realtime"):
        pass
    assert caught.value.code == 1008
    with TestClient(AimsguardMiddleware(_app([]), guard=passing)).websocket_connect("/v1/realtime") as socket:
        assert socket.receive_text() == "hello"
    blocking.flush()
    assert [(e["method"], e["action"]) for e in _route_events(passing, events)] == [("WEBSOCKET", "block"), ("WEBSOCKET", "pass")]


@pytest.fixture
def vendor() -> Iterator[tuple[ServerThread, list[dict[str, Any]]]]:
    """An upstream with a route aimsguard has no dialect for."""
    seen: list[dict[str, Any]] = []

    async def moderations(request: Request) -> Response:
        seen.append({"body": await request.json(), "authorization": request.headers.get("authorization")})
        return JSONResponse({"id": "modr-1", "model": "omni-moderation", "results": [{"flagged": False}]})

    with ServerThread(Starlette(routes=[Route("/v1/moderations", moderations, methods=["POST"])])) as server:
        yield server, seen


def test_the_gateway_blocks_or_forwards_unchecked_as_the_policy_says(tmp_path: Path, events: Any, vendor: Any) -> None:
    server, seen = vendor
    guards = GuardFactory(tmp_path, events, server.url + "/v1")
    try:
        for unknown_routes in ("block", "pass"):
            guard = guards(unknown_routes=unknown_routes)
            with ServerThread(create_gateway(guard)) as gateway:
                client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="caller-key", max_retries=0)
                if unknown_routes == "block":
                    with pytest.raises(openai.PermissionDeniedError, match="route_not_guarded|cannot check"):
                        client.moderations.create(input="hello")
                    assert seen == []
                else:
                    result = client.moderations.create(input="hello")
                    assert result.results[0].flagged is False
                    assert seen[0]["body"]["input"] == "hello"
                    assert seen[0]["authorization"] == "Bearer demo-key"  # the policy's key, not the caller's
                # A route the vendor does not have is still the gateway's 404, not a pass.
                assert httpx.post(gateway.url + "/v1/nothing/here", json={}).status_code == 404
            recorded = _route_events(guard, events)
            assert [(e["action"], e["route"], e["front_door"]) for e in recorded] == [(unknown_routes, "/v1/moderations", "gateway")]
            events.clear()
    finally:
        guards.close()
