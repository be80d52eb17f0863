"""The OpenAI-compatible wire format: read requests and answers, write fallbacks and errors.

Only the parts aimsguard needs are validated (pydantic, unknown fields kept), so a
request carrying provider extensions passes through unchanged apart from the texts the
checks redacted.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ._errors import AimsguardError, RequestError

__all__ = [
    "CHAT_PATH",
    "COMPLETIONS_PATH",
    "ParsedRequest",
    "answer_texts",
    "chunk_texts",
    "error_body",
    "fallback_chunks",
    "fallback_completion",
    "handoff_field",
    "held_back_chunk",
    "parse_body",
    "parse_request",
    "replace_answer_texts",
    "usage_of",
]

CHAT_PATH = "/v1/chat/completions"
COMPLETIONS_PATH = "/v1/completions"
Operation = Literal["chat", "text_completion"]


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class _TextPart(_Open):
    type: str
    text: str | None = None


class _Message(_Open):
    role: str = Field(min_length=1)
    content: str | list[_TextPart] | None = None


class _ChatRequest(_Open):
    model: str | None = None
    messages: list[_Message] = Field(min_length=1)
    stream: bool = False


class _CompletionRequest(_Open):
    model: str | None = None
    prompt: str | list[str]
    stream: bool = False


@dataclass
class ParsedRequest:
    """A validated request, with where each checked text lives in the raw body."""

    operation: Operation
    body: dict[str, Any]
    model: str | None
    stream: bool
    texts: list[str]
    _locations: list[tuple[Any, ...]]
    roles: list[str] | None = None  # the role of each text's message (chat)

    def with_texts(self, texts: list[str]) -> bytes:
        """The body with each checked text replaced (by its redacted form)."""
        for location, text in zip(self._locations, texts, strict=True):
            container: Any = self.body
            for key in location[:-1]:
                container = container[key]
            container[location[-1]] = text
        return json.dumps(self.body, ensure_ascii=False).encode()

    @property
    def question(self) -> str | None:
        return self.texts[-1] if self.texts else None

    @property
    def system_prompt(self) -> str | None:
        """The system and developer messages, for the output checks that guard them."""
        parts = [t for t, role in zip(self.texts, self.roles or [], strict=False) if role in ("system", "developer")]
        return "\n".join(parts) or None


def parse_request(operation: Operation, raw: bytes) -> ParsedRequest:
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        # JSONDecodeError's message names the position only, never the content.
        raise RequestError(f"the request body is not valid JSON: {exc}", code="invalid_json") from None
    return parse_body(operation, body)


def parse_body(operation: Operation, body: Any) -> ParsedRequest:
    """Validate a decoded request; ``with_texts`` later edits this very dict."""
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object", code="invalid_request")
    model_cls = _ChatRequest if operation == "chat" else _CompletionRequest
    try:
        parsed = model_cls.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(p) for p in first["loc"])
        raise RequestError(f"invalid request: {param}: {first['msg']}", param=param) from None
    texts: list[str] = []
    locations: list[tuple[Any, ...]] = []
    roles: list[str] = []
    if isinstance(parsed, _ChatRequest):
        for i, message in enumerate(parsed.messages):
            if isinstance(message.content, str):
                texts.append(message.content)
                locations.append(("messages", i, "content"))
                roles.append(message.role)
            elif isinstance(message.content, list):
                for j, part in enumerate(message.content):
                    if part.type == "text" and part.text is not None:
                        texts.append(part.text)
                        locations.append(("messages", i, "content", j, "text"))
                        roles.append(message.role)
    elif isinstance(parsed.prompt, str):
        texts.append(parsed.prompt)
        locations.append(("prompt",))
    else:
        for i, prompt in enumerate(parsed.prompt):
            texts.append(prompt)
            locations.append(("prompt", i))
    return ParsedRequest(operation, body, parsed.model, parsed.stream, texts, locations, roles or None)


# -- answers -------------------------------------------------------------------------


def _choice_text_slot(operation: Operation, choice: dict[str, Any], *, streaming: bool) -> tuple[dict[str, Any], str] | None:
    """The dict and key that hold a choice's text, if it is a string."""
    if operation == "text_completion":
        holder, key = choice, "text"
    else:
        holder = choice.get("delta" if streaming else "message")
        key = "content"
    if isinstance(holder, dict) and isinstance(holder.get(key), str):
        return holder, key
    return None


def _tool_call_arguments(choice: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``function`` dicts of a chat answer's tool calls whose arguments are text."""
    message = choice.get("message")
    calls = message.get("tool_calls") if isinstance(message, dict) else None
    if not isinstance(calls, list):
        return []
    functions = [call.get("function") for call in calls if isinstance(call, dict)]
    return [f for f in functions if isinstance(f, dict) and isinstance(f.get("arguments"), str)]


def answer_texts(operation: Operation, answer: dict[str, Any]) -> list[str]:
    """The texts of a complete (non-streamed) answer, as output check segments: one per
    choice ('' where it has none), then the arguments of every tool call, in order."""
    choices = _choices(answer)
    texts = []
    for choice in choices:
        slot = _choice_text_slot(operation, choice, streaming=False)
        texts.append(slot[0][slot[1]] if slot else "")
    texts.extend(function["arguments"] for choice in choices for function in _tool_call_arguments(choice))
    return texts


def replace_answer_texts(operation: Operation, answer: dict[str, Any], texts: list[str], finish_reason: str | None = None) -> None:
    """Write checked texts back, in the order ``answer_texts`` gave them.

    With a ``finish_reason`` (the answer was refused) every choice gets ``texts[0]`` and
    loses its tool calls: calls the checks did not approve must not run.
    """
    choices = _choices(answer)
    for index, choice in enumerate(choices):
        text = texts[0] if finish_reason is not None else texts[index]
        slot = _choice_text_slot(operation, choice, streaming=False)
        if slot is not None:
            slot[0][slot[1]] = text
        elif operation == "chat" and isinstance(choice.get("message"), dict):
            choice["message"]["content"] = text
        if finish_reason is not None:
            choice["finish_reason"] = finish_reason
            if operation == "chat" and isinstance(choice.get("message"), dict):
                choice["message"].pop("tool_calls", None)
    if finish_reason is None:
        functions = [function for choice in choices for function in _tool_call_arguments(choice)]
        for function, text in zip(functions, texts[len(choices) :], strict=False):
            function["arguments"] = text


def chunk_texts(operation: Operation, chunk: dict[str, Any]) -> Iterator[tuple[int, dict[str, Any], str, dict[str, Any]]]:
    """Each choice of a streamed chunk: (choice index, text holder, key, choice).

    Choices without text (a role-only or a finishing chunk) are included too: the
    finishing chunk is where the held-back text is released.
    """
    for choice in _choices(chunk):
        holder = choice if operation == "text_completion" else choice.get("delta")
        key = "text" if operation == "text_completion" else "content"
        index = choice.get("index", 0)
        if isinstance(holder, dict) and isinstance(index, int) and isinstance(holder.get(key), (str, type(None))):
            yield index, holder, key, choice


def _choices(answer: dict[str, Any]) -> list[dict[str, Any]]:
    choices = answer.get("choices")
    return [c for c in choices if isinstance(c, dict)] if isinstance(choices, list) else []


def usage_of(answer: dict[str, Any]) -> tuple[int | None, int | None]:
    usage = answer.get("usage")
    if not isinstance(usage, dict):
        return None, None
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    return (prompt if isinstance(prompt, int) else None, completion if isinstance(completion, int) else None)


# -- what aimsguard answers itself ---------------------------------------------------------


def handoff_field(handoff_id: str | None) -> dict[str, Any]:
    """The top-level ``aimsguard`` field that tells a client where its human answer will be
    (``GET /v1/handoffs/{id}``); empty without a handoff. OpenAI clients keep unknown fields."""
    return {"aimsguard": {"handoff_id": handoff_id}} if handoff_id else {}


def fallback_completion(
    operation: Operation, *, request_id: str, model: str | None, text: str, handoff_id: str | None = None
) -> dict[str, Any]:
    """A whole answer carrying the policy's fallback text, shaped as the client expects."""
    if operation == "chat":
        choice: dict[str, Any] = {
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "finish_reason": "content_filter",
            "logprobs": None,
        }
        kind = "chat.completion"
    else:
        choice = {"index": 0, "text": text, "finish_reason": "content_filter", "logprobs": None}
        kind = "text_completion"
    return {
        "id": f"aimsguard-{request_id}",
        "object": kind,
        "created": int(time.time()),
        "model": model or "aimsguard",
        "choices": [choice],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        **handoff_field(handoff_id),
    }


def fallback_chunks(
    operation: Operation,
    *,
    request_id: str,
    model: str | None,
    text: str,
    template: dict[str, Any] | None = None,
    index: int = 0,
    handoff_id: str | None = None,
) -> list[dict[str, Any]]:
    """The streamed chunks that end a stream with the fallback text.

    ``template`` is an upstream chunk whose id, model and creation time are kept, so a
    stream stopped midway stays one consistent stream to the client.
    """
    base = {
        "id": f"aimsguard-{request_id}",
        "object": "chat.completion.chunk" if operation == "chat" else "text_completion",
        "created": int(time.time()),
        "model": model or "aimsguard",
    }
    if template:
        base.update({k: template[k] for k in ("id", "object", "created", "model", "system_fingerprint") if k in template})
    if operation == "chat":
        content: dict[str, Any] = {"index": index, "delta": {"role": "assistant", "content": text}, "finish_reason": None}
        end: dict[str, Any] = {"index": index, "delta": {}, "finish_reason": "content_filter"}
    else:
        content = {"index": index, "text": text, "finish_reason": None}
        end = {"index": index, "text": "", "finish_reason": "content_filter"}
    return [{**base, "choices": [content], **handoff_field(handoff_id)}, {**base, "choices": [end]}]


def held_back_chunk(
    operation: Operation, *, request_id: str, model: str | None, template: dict[str, Any] | None, key: int | tuple[int, int], text: str
) -> dict[str, Any]:
    """A chunk carrying text a hold-back window releases at the end: a choice's content
    (key: choice index) or a tool call's arguments (key: choice index, call index)."""
    index = key[0] if isinstance(key, tuple) else key
    chunk = fallback_chunks(operation, request_id=request_id, model=model, text=text, template=template, index=index)[0]
    if operation == "chat":
        choice = chunk["choices"][0]
        choice["delta"] = (
            {"tool_calls": [{"index": key[1], "function": {"arguments": text}}]} if isinstance(key, tuple) else {"content": text}
        )
    return chunk


def error_body(error: AimsguardError) -> dict[str, Any]:
    return {
        "error": {
            "message": str(error),
            "type": error.error_type,
            "param": getattr(error, "param", None),
            "code": error.code,
        }
    }
