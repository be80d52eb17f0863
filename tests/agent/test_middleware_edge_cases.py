"""What an app behind the middleware may send, and what must still never pass unchecked."""

import gzip
import json
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from aimsguard.agent import AimsguardMiddleware
from aimsguard.collectors import read_events


def _chunk(text: str | None, finish: str | None = None, **extra: Any) -> bytes:
    delta = {"content": text} if text is not None else {}
    data = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


def sse_app(parts: list[bytes], headers: dict[str, str] | None = None, sent: list[int] | None = None):
    """An ASGI app that answers every request with these raw body parts."""

    async def app(scope, receive, send):
        await receive()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream"), *[(k.encode(), v.encode()) for k, v in (headers or {}).items()]]})
        for part in parts:
            if sent is not None:
                sent.append(1)
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    return app


async def _stream(guard, app, spec: str = "2.3", **headers) -> str:
    async def wrapped(scope, receive, send):
        if scope["type"] == "http":
            scope = {**scope, "asgi": {"version": "3.0", "spec_version": spec}}
        await AimsguardMiddleware(app, guard=guard)(scope, receive, send)

    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=wrapped), base_url="http://t") as client:
        response = await client.post("/v1/chat/completions", json=body, headers=headers)
    return response.text


def _content(text: str) -> str:
    out = ""
    for event in text.split("\n\n"):
        if event.startswith("data: {"):
            data = json.loads(event[6:])
            for choice in data.get("choices") or []:
                out += choice.get("delta", {}).get("content") or ""
    return out


def _exchange(guard, events) -> dict:
    guard.flush()
    (event,) = events.events("exchange")
    return event


@pytest.mark.anyio
async def test_streamed_output_is_logged_as_the_user_saw_it(make_guard, events) -> None:
    guard = make_guard(lambda d: d["event_log"].update(content="redacted"))
    text = await _stream(guard, sse_app([_chunk("Your ticket INT-4821 "), _chunk("is closed.", "stop"), b"data: [DONE]\n\n"]))
    assert _content(text) == "Your ticket [INTERNAL-CODE] is closed."
    assert _exchange(guard, events)["output"] == ["Your ticket [INTERNAL-CODE] is closed."]


@pytest.mark.anyio
async def test_line_separator_characters_inside_content_do_not_split_events(make_guard, events) -> None:
    guard = make_guard()
    text = await _stream(guard, sse_app([_chunk("Note\u2028: you get a guaranteed refund on INT-4821", "stop"), b"data: [DONE]\n\n"]))
    assert "guaranteed" not in text and "4821" not in text
    assert _exchange(guard, events)["status"] == "blocked"


@pytest.mark.anyio
async def test_a_last_event_without_its_blank_line_is_still_checked(make_guard, events) -> None:
    guard = make_guard()
    last = _chunk("and a guaranteed refund!", "stop").rstrip(b"\n")
    text = await _stream(guard, sse_app([_chunk("Hello, "), last]))
    assert "guaranteed" not in text
    assert _exchange(guard, events)["status"] == "blocked"


@pytest.mark.anyio
async def test_a_null_error_field_is_not_an_upstream_error(make_guard, events) -> None:
    guard = make_guard()
    text = await _stream(guard, sse_app([_chunk("Your ticket INT-4821 ", error=None), _chunk("is closed.", "stop", error=None), b"data: [DONE]\n\n"]))
    assert _content(text) == "Your ticket [INTERNAL-CODE] is closed."
    assert _exchange(guard, events)["status"] == "ok"


@pytest.mark.anyio
async def test_an_event_that_is_not_json_stops_the_stream_with_an_error(make_guard, events) -> None:
    guard = make_guard()
    text = await _stream(guard, sse_app([_chunk("Hello "), b"data: guaranteed refund INT-4821\n\n", _chunk("more", "stop")]))
    assert "4821" not in text and "guaranteed" not in text
    assert '"code":"upstream_malformed_stream"' in text
    event = _exchange(guard, events)
    assert event["status"] == "upstream_error" and event["error_code"] == "upstream_malformed_stream"


@pytest.mark.anyio
async def test_an_apps_content_length_on_a_rewritten_stream_is_dropped(make_guard, events) -> None:
    guard = make_guard()
    parts = [_chunk("Your ticket INT-4821 is closed.", "stop"), b"data: [DONE]\n\n"]
    length = str(sum(map(len, parts)))
    text = await _stream(guard, sse_app(parts, headers={"content-length": length}))
    assert _content(text) == "Your ticket [INTERNAL-CODE] is closed."
    assert _exchange(guard, events)["status"] == "ok"


@pytest.mark.anyio
async def test_an_app_that_would_compress_still_has_its_answer_checked(make_guard) -> None:
    async def chat(request: Request):
        await request.body()
        return JSONResponse({"choices": [{"index": 0, "message": {"role": "assistant", "content": "Ticket INT-4821. " * 40}, "finish_reason": "stop"}]})

    inner = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])
    inner.add_middleware(GZipMiddleware, minimum_size=10)
    app = AimsguardMiddleware(inner, guard=make_guard())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        response = await client.post("/v1/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
                                     headers={"accept-encoding": "gzip"})
    assert "4821" not in response.text and response.headers["x-aimsguard-action"] == "redact"


@pytest.mark.anyio
async def test_an_unreadable_json_answer_fails_closed(make_guard, events) -> None:
    async def app(scope, receive, send):
        await receive()
        body = gzip.compress(b'{"choices": [{"message": {"content": "INT-4821"}}]}')
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json"), (b"content-encoding", b"gzip")]})
        await send({"type": "http.response.body", "body": body})

    guard = make_guard()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=AimsguardMiddleware(app, guard=guard)), base_url="http://t") as client:
        response = await client.post("/v1/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 502 and response.json()["error"]["code"] == "upstream_malformed_response"


@pytest.mark.anyio
@pytest.mark.parametrize("spec", ["2.3", "2.4"])
async def test_a_stopped_stream_stops_the_app_too(make_guard, spec: str) -> None:
    sent: list[int] = []
    parts = [_chunk("You get a guaranteed refund "), *[_chunk(f"word{i} ") for i in range(200)], _chunk("", "stop")]

    async def chat(request: Request):
        await request.body()

        async def events():
            for part in parts:
                sent.append(1)
                yield part

        return StreamingResponse(events(), media_type="text/event-stream")

    app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])
    guard = make_guard(lambda d: d["systems"]["support-bot"]["streaming"].update(holdback_chars=42))
    text = await _stream(guard, app, spec=spec)
    assert "content_filter" in text
    assert len(sent) < 50  # the app stopped producing soon after aimsguard ended the response


@pytest.mark.anyio
async def test_a_middleware_bound_to_a_system_ignores_a_clients_choice(make_guard, events) -> None:
    guard = make_guard()
    app = AimsguardMiddleware(sse_app([_chunk("hi", "stop")]), guard=guard, system="support-bot")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        other = await client.post("/systems/other/v1/chat/completions", json=body)
        assert other.status_code == 404
        await client.post("/v1/chat/completions", json=body, headers={"x-aimsguard-system": "other"})
    guard.flush()
    assert [e["system"] for e in events.events("exchange")] == ["_unknown", "support-bot"]  # never the client's text


@pytest.mark.anyio
async def test_a_lone_surrogate_from_a_client_does_not_cost_the_event_log_a_batch(make_guard, events) -> None:
    async def app(scope, receive, send):
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b'{"choices": [{"index": 0, "message": {"content": "ok"}}]}'})

    guard = make_guard()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=AimsguardMiddleware(app, guard=guard)), base_url="http://t") as client:
        for i in range(3):
            await client.post("/v1/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": "hi"}]})
        await client.post("/v1/chat/completions", content=b'{"model": "\\ud800", "messages": [{"role": "user", "content": "hi"}]}',
                          headers={"content-type": "application/json"})
    guard.flush()
    lines = list(read_events(guard.event_log.directory))
    assert sum(1 for line in lines if line["event"] == "exchange") == 4


@pytest.mark.anyio
@pytest.mark.parametrize("cut", [3, 7, 12])
async def test_a_placeholder_split_across_chunks_is_restored_and_never_shown_in_part(make_guard, events, cut: int) -> None:
    guard = make_guard(lambda d: d["systems"]["support-bot"]["streaming"].update(holdback_chars=42))
    answer = "Sure, we will write to <EMAIL_ADDRESS_1> today, and also leak ceo@example.com now."
    at = answer.index("<EMAIL") + cut
    app = sse_app([_chunk(answer[:at]), _chunk(answer[at:]), _chunk("", "stop"), b"data: [DONE]\n\n"])
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "my email is jane@example.org"}]}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=AimsguardMiddleware(app, guard=guard)), base_url="http://t") as client:
        text = (await client.post("/v1/chat/completions", json=body)).text
    assert _content(text) == "Sure, we will write to jane@example.org today, and also leak <EMAIL_ADDRESS> now."
    assert "_1>" not in text and "ceo@" not in text  # no placeholder (or part of one) reached the client


@pytest.mark.anyio
async def test_tool_call_arguments_get_placeholders_restored_and_leaks_redacted(make_guard) -> None:
    async def app(scope, receive, send):
        await receive()
        answer = {"id": "c", "object": "chat.completion", "created": 1, "model": "m", "choices": [{
            "index": 0, "finish_reason": "tool_calls",
            "message": {"role": "assistant", "content": None, "tool_calls": [{
                "id": "call_1", "type": "function",
                "function": {"name": "send_mail", "arguments": json.dumps({"to": "<EMAIL_ADDRESS_1>", "cc": "boss@example.com"})},
            }]},
        }]}
        body = json.dumps(answer).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})

    guard = make_guard()
    body = {"model": "m", "messages": [{"role": "user", "content": "mail me at jane@example.org"}]}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=AimsguardMiddleware(app, guard=guard)), base_url="http://t") as client:
        answer = (await client.post("/v1/chat/completions", json=body)).json()
    arguments = json.loads(answer["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"])
    assert arguments == {"to": "jane@example.org", "cc": "<EMAIL_ADDRESS>"}


def _tool_chunk(arguments: str | None = None, finish: str | None = None, first: bool = False) -> bytes:
    call: dict[str, Any] = {"index": 0}
    if first:
        call.update({"id": "call_1", "type": "function", "function": {"name": "send_mail", "arguments": ""}})
    elif arguments is not None:
        call["function"] = {"arguments": arguments}
    delta = {"tool_calls": [call]} if (first or arguments is not None) else {}
    data = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return f"data: {json.dumps(data)}\n\n".encode()


@pytest.mark.anyio
async def test_streamed_tool_call_arguments_are_restored_and_checked(make_guard) -> None:
    guard = make_guard(lambda d: d["systems"]["support-bot"]["streaming"].update(holdback_chars=42))
    arguments = json.dumps({"to": "<EMAIL_ADDRESS_1>", "cc": "boss@example.com", "body": "hello there"})
    pieces = [arguments[i : i + 5] for i in range(0, len(arguments), 5)]
    app = sse_app([_tool_chunk(first=True), *[_tool_chunk(p) for p in pieces], _tool_chunk(finish="tool_calls"), b"data: [DONE]\n\n"])
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "mail me at jane@example.org"}]}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=AimsguardMiddleware(app, guard=guard)), base_url="http://t") as client:
        text = (await client.post("/v1/chat/completions", json=body)).text
    received, finished_at, position = "", None, 0
    for event in text.split("\n\n"):
        if not event.startswith("data: {"):
            continue
        position += 1
        choice = json.loads(event[6:])["choices"][0]
        for call in choice["delta"].get("tool_calls") or []:
            assert finished_at is None, "tool-call text after the choice finished"
            received += (call.get("function") or {}).get("arguments") or ""
        if choice.get("finish_reason"):
            finished_at = position
    assert json.loads(received) == {"to": "jane@example.org", "cc": "<EMAIL_ADDRESS>", "body": "hello there"}
    assert "boss@" not in text and "_1>" not in text


def _echo_app():
    """Answers with the user's last message, as a model repeating it would."""

    async def app(scope, receive, send):
        message = await receive()
        text = json.loads(message["body"])["messages"][-1]["content"]
        body = json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]}).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})

    return app


@pytest.mark.anyio
async def test_placeholders_are_restored_only_for_the_caller_who_gave_the_data(make_guard) -> None:
    app = AimsguardMiddleware(_echo_app(), guard=make_guard())

    async def ask(authorization: str, content: str) -> str:
        headers = {"authorization": authorization, "x-aimsguard-conversation-id": "shared-conversation"}
        body = {"model": "m", "messages": [{"role": "user", "content": content}]}
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            return (await client.post("/v1/chat/completions", json=body, headers=headers)).json()["choices"][0]["message"]["content"]

    assert await ask("Bearer alice", "my email is jane@example.org") == "my email is jane@example.org"
    assert await ask("Bearer mallory", "Repeat exactly: <EMAIL_ADDRESS_1>") == "Repeat exactly: <EMAIL_ADDRESS_1>"
    assert await ask("Bearer alice", "Repeat exactly: <EMAIL_ADDRESS_1>") == "Repeat exactly: jane@example.org"


@pytest.mark.anyio
async def test_logged_content_masks_what_was_blocked_or_flagged_too(make_guard, events) -> None:
    guard = make_guard(lambda d: d["event_log"].update(content="redacted"))
    app = AimsguardMiddleware(_echo_app(), guard=guard)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        body = {"model": "m", "messages": [{"role": "user", "content": "my card is 4111 1111 1111 1111, mail jane@example.org"}]}
        await client.post("/v1/chat/completions", json=body)
    guard.flush()
    (event,) = events.events("exchange")
    assert event["status"] == "blocked"
    assert event["input"] == ["my card is <CREDIT_CARD>, mail <EMAIL_ADDRESS_1>"]


@pytest.mark.anyio
async def test_an_unknown_system_named_by_a_client_never_becomes_a_label(make_guard, events) -> None:
    from aimsguard.agent._gateway import render_metrics

    guard = make_guard()
    app = AimsguardMiddleware(_echo_app(), guard=guard)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        response = await client.post("/v1/chat/completions", json=body, headers={"x-aimsguard-system": "jane.doe@example.com"})
    assert response.status_code == 404
    guard.flush()
    assert "jane.doe" not in render_metrics(guard).decode()
    assert "jane.doe" not in json.dumps(events.events())


@pytest.mark.anyio
async def test_a_streamed_leak_that_is_only_flagged_is_still_masked_in_the_log(make_guard, events) -> None:
    def flag_leaks_and_log_content(data):
        data["event_log"]["content"] = "redacted"
        for check in data["systems"]["support-bot"]["checks"]["output"]:
            if check["guardrail"] == "pii":
                check["settings"]["leak_action"] = "flag"

    guard = make_guard(flag_leaks_and_log_content)
    text = await _stream(guard, sse_app([_chunk("Ask our colleague "), _chunk("dana@example.net about it.", "stop"), b"data: [DONE]\n\n"]))
    assert "dana@example.net" in _content(text)  # flagged, so the user sees it...
    guard.flush()
    (event,) = events.events("exchange")
    assert event["output"] == ["Ask our colleague <EMAIL_ADDRESS> about it."]  # ...but the log does not
