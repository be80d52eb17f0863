"""The demo: a small OpenAI-compatible support bot, and the gateway guarding it.

The bot answers from the example knowledge base (the best BM25 passage for the last
user message), streamed word by word or whole, and reports token usage. A message that
starts with "repeat after me:" is echoed back, which makes the output checks easy to
try by hand.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from aimsguard.guardrails.knowledge import KnowledgeBase

__all__ = ["DEMO_MODEL", "create_demo_upstream"]

DEMO_MODEL = "acme-support-demo"
_ECHO = "repeat after me:"
_UNKNOWN = "I'm not sure about that. Please contact our support team through the help centre."


def _last_user_text(payload: dict[str, Any]) -> str:
    if "prompt" in payload:
        prompt = payload["prompt"]
        return prompt if isinstance(prompt, str) else " ".join(prompt)
    for message in reversed(payload.get("messages", [])):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
            return content or ""
    return ""


def _answer(kb: KnowledgeBase, question: str) -> str:
    if question.lower().startswith(_ECHO):
        return question[len(_ECHO) :].strip()
    passages = kb.search(question, k=1)
    return passages[0].chunk.text if passages else _UNKNOWN


def _count_tokens(text: str) -> int:
    return len(text.split())


def create_demo_upstream(kb: KnowledgeBase, *, token_delay_s: float = 0.02) -> Starlette:
    """The demo support bot as an ASGI app (serve it with uvicorn)."""

    async def completions(request: Request) -> Response:
        try:
            payload = json.loads(await request.body())
        except json.JSONDecodeError:
            return JSONResponse({"error": {"message": "invalid JSON", "type": "invalid_request_error", "code": None}}, 400)
        chat = request.url.path.endswith("/chat/completions")
        question = _last_user_text(payload)
        answer = _answer(kb, question)
        model = payload.get("model") or DEMO_MODEL
        usage = {
            "prompt_tokens": _count_tokens(question),
            "completion_tokens": _count_tokens(answer),
            "total_tokens": _count_tokens(question) + _count_tokens(answer),
        }
        base = {
            "id": f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex[:24]}",
            "created": int(time.time()),
            "model": model,
        }
        if payload.get("stream"):
            include_usage = bool((payload.get("stream_options") or {}).get("include_usage"))
            return StreamingResponse(_stream(base, chat, answer, usage, include_usage, token_delay_s), media_type="text/event-stream")
        if chat:
            choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}
            return JSONResponse({**base, "object": "chat.completion", "choices": [choice], "usage": usage})
        choice = {"index": 0, "text": answer, "finish_reason": "stop", "logprobs": None}
        return JSONResponse({**base, "object": "text_completion", "choices": [choice], "usage": usage})

    async def models(_: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": DEMO_MODEL, "object": "model", "created": 0, "owned_by": "aimsguard-demo"}]})

    return Starlette(
        routes=[
            Route("/v1/chat/completions", completions, methods=["POST"]),
            Route("/v1/completions", completions, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
        ]
    )


async def _stream(
    base: dict[str, Any], chat: bool, answer: str, usage: dict[str, int], include_usage: bool, delay: float
) -> AsyncIterator[bytes]:
    def event(choices: list[dict[str, Any]], **extra: Any) -> bytes:
        kind = "chat.completion.chunk" if chat else "text_completion"
        return f"data: {json.dumps({**base, 'object': kind, 'choices': choices, **extra})}\n\n".encode()

    if chat:
        yield event([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
    words = answer.split(" ")
    for i, word in enumerate(words):
        piece = word if i == 0 else " " + word
        if delay:
            await asyncio.sleep(delay)
        if chat:
            yield event([{"index": 0, "delta": {"content": piece}, "finish_reason": None}])
        else:
            yield event([{"index": 0, "text": piece, "finish_reason": None}])
    if chat:
        yield event([{"index": 0, "delta": {}, "finish_reason": "stop"}])
    else:
        yield event([{"index": 0, "text": "", "finish_reason": "stop"}])
    if include_usage:
        yield event([], usage=usage)
    yield b"data: [DONE]\n\n"
