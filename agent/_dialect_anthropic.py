"""The Anthropic Messages dialect (``POST /v1/messages``).

What the checks read of a request: the top-level ``system`` (a string or text blocks), each
message's text (a string or text blocks), what tools returned (``tool_result`` content),
plain-text documents, and the input of earlier ``tool_use`` blocks (as JSON text). Of an
answer: its ``text`` blocks and each ``tool_use`` block's input, in order. A stream is
typed events (``event:`` line and JSON data); each content block is its own window
(``(0, index)``), closed at its ``content_block_stop``: the rest a window held back goes out
as a delta just before it. ``thinking`` blocks pass unchanged: their signature covers the
text, and a changed one would be refused when the client sends it back.

aimsguard's own answers are Anthropic-shaped: the fallback is a message with
``stop_reason: "refusal"`` (what Anthropic answers when its own classifiers stop a
message; the OpenAI dialects' ``content_filter``), errors are ``{"type": "error",
"error": {"type", "message"}}`` with the status the API would use.
"""

from __future__ import annotations

import json
from collections.abc import Hashable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ._dialect import JSON_VALUE, ChunkView, Dialect, ParsedRequest, RequestLimits, StreamPiece, json_value
from ._errors import AimsguardError, RequestError

__all__ = ["ANTHROPIC_MESSAGES", "MESSAGES_PATH", "AnthropicMessages"]

MESSAGES_PATH = "/v1/messages"

# Anthropic's error types by HTTP status (https://docs.anthropic.com/en/api/errors).
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    415: "invalid_request_error",
    429: "rate_limit_error",
    529: "overloaded_error",
}


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class _Block(_Open):
    type: str
    text: str | None = None
    content: str | list[_Block] | None = None  # a tool_result's
    input: Any = None  # a tool_use's
    source: dict[str, Any] | None = None  # a document's


class _Message(_Open):
    role: str = Field(min_length=1)
    content: str | list[_Block]


class _MessagesRequest(_Open):
    model: str | None = None
    messages: list[_Message] = Field(min_length=1)
    system: str | list[_Block] | None = None
    stream: bool = False


def _validated(body: dict[str, Any]) -> _MessagesRequest:
    try:
        return _MessagesRequest.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(p) for p in first["loc"])
        raise RequestError(f"invalid request: {param}: {first['msg']}", param=param) from None


class _Texts:
    """Texts found in a request, with where each lives and the role it speaks with."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.locations: list[tuple[Any, ...]] = []
        self.roles: list[str] = []

    def add(self, text: str, location: tuple[Any, ...], role: str) -> None:
        self.texts.append(text)
        self.locations.append(location)
        self.roles.append(role)

    def blocks(self, blocks: list[_Block], where: tuple[Any, ...], role: str) -> None:
        for j, block in enumerate(blocks):
            at = (*where, j)
            if block.type == "text" and block.text is not None:
                self.add(block.text, (*at, "text"), role)
            elif block.type == "tool_result":
                # What a tool returned is read as the tool's words (indirect injection).
                if isinstance(block.content, str):
                    self.add(block.content, (*at, "content"), "tool")
                elif isinstance(block.content, list):
                    self.blocks(block.content, (*at, "content"), "tool")
            elif block.type == "tool_use" and block.input is not None:
                self.add(json.dumps(block.input, ensure_ascii=False), (*at, "input", JSON_VALUE), role)
            elif block.type == "document" and block.source and block.source.get("type") == "text" and isinstance(block.source.get("data"), str):
                self.add(block.source["data"], (*at, "source", "data"), role)


def _content(answer: dict[str, Any]) -> list[dict[str, Any]]:
    content = answer.get("content")
    return [block for block in content if isinstance(block, dict)] if isinstance(content, list) else []


def _checked_blocks(answer: dict[str, Any]) -> list[dict[str, Any]]:
    """The blocks whose text the checks read: text, and tool_use input."""
    return [b for b in _content(answer) if (b.get("type") == "text" and isinstance(b.get("text"), str)) or b.get("type") == "tool_use"]


def _setter(holder: dict[str, Any], key: str) -> Any:
    def put(text: str) -> None:
        holder[key] = text

    return put


def _event(kind: str, **fields: Any) -> dict[str, Any]:
    return {"type": kind, **fields}


def _handoff(handoff_id: str | None) -> dict[str, Any]:
    """Where the human answer will be (``GET /v1/handoffs/{id}``); the SDK keeps unknown fields."""
    return {"aimsguard": {"handoff_id": handoff_id}} if handoff_id else {}


class AnthropicMessages(Dialect):
    operation = "chat"
    input_keys = ("system", "messages")
    refusal_reason = "refusal"
    passed_headers = ("anthropic-version", "anthropic-beta", "x-api-key", "authorization")

    def credentials(self, api_key: str) -> dict[str, str]:
        return {"x-api-key": api_key}

    # -- the request ------------------------------------------------------------------------

    def _parse(self, body: dict[str, Any], limits: RequestLimits | None) -> ParsedRequest:
        if isinstance(body.get("messages"), list):
            self.check_count(len(body["messages"]), limits, "messages")  # before validating thousands of them
        parsed = _validated(body)
        found = _Texts()
        if isinstance(parsed.system, str):
            found.add(parsed.system, ("system",), "system")
        elif isinstance(parsed.system, list):
            found.blocks(parsed.system, ("system",), "system")
        for i, message in enumerate(parsed.messages):
            if isinstance(message.content, str):
                found.add(message.content, ("messages", i, "content"), message.role)
            else:
                found.blocks(message.content, ("messages", i, "content"), message.role)
        return ParsedRequest(body, parsed.model, parsed.stream, found.texts, found.locations, found.roles or None)

    # -- a whole answer ---------------------------------------------------------------------

    def answer_texts(self, answer: dict[str, Any]) -> list[str]:
        return [
            block["text"] if block.get("type") == "text" else json.dumps(block.get("input") or {}, ensure_ascii=False)
            for block in _checked_blocks(answer)
        ]

    def replace_answer_texts(self, answer: dict[str, Any], texts: list[str], finish_reason: str | None = None) -> None:
        if finish_reason is not None:
            # Blocks the checks did not approve are dropped, tool calls first among them.
            answer["content"] = [{"type": "text", "text": texts[0]}]
            answer["stop_reason"] = finish_reason
            answer["stop_sequence"] = None
            return
        for block, text in zip(_checked_blocks(answer), texts, strict=False):
            if block.get("type") == "text":
                block["text"] = text
            else:
                block["input"] = json_value(text)

    def refused_answer(self, answer: dict[str, Any], text: str, handoff_id: str | None) -> None:
        self.replace_answer_texts(answer, [text], self.refusal_reason)
        answer.update(_handoff(handoff_id))

    def finish_reasons(self, answer: dict[str, Any]) -> list[str]:
        reason = answer.get("stop_reason")
        return [reason] if isinstance(reason, str) else []

    def usage_of(self, answer: dict[str, Any]) -> tuple[int | None, int | None]:
        """A whole answer's usage, or a stream's: ``message_start`` (in its message) and the
        running totals of ``message_delta``."""
        message = answer.get("message")
        usage = answer.get("usage") if "usage" in answer else message.get("usage") if isinstance(message, dict) else None
        if not isinstance(usage, dict):
            return None, None
        tokens_in, tokens_out = usage.get("input_tokens"), usage.get("output_tokens")
        return (tokens_in if isinstance(tokens_in, int) else None, tokens_out if isinstance(tokens_out, int) else None)

    @staticmethod
    def model_of(answer: dict[str, Any]) -> str | None:
        message = answer.get("message")
        model = answer.get("model") or (message.get("model") if isinstance(message, dict) else None)
        return model if isinstance(model, str) else None

    # -- a stream ---------------------------------------------------------------------------

    def stream_template(self, template: dict[str, Any] | None, chunk: dict[str, Any]) -> dict[str, Any]:
        """The stream's state: the message's id and model, each block's type, the open blocks."""
        state = template if template is not None else {"id": None, "model": None, "blocks": {}, "open": []}
        kind = chunk.get("type")
        if kind == "message_start" and isinstance(chunk.get("message"), dict):
            state["id"], state["model"] = chunk["message"].get("id"), chunk["message"].get("model")
        elif kind == "content_block_start" and isinstance(chunk.get("index"), int) and isinstance(chunk.get("content_block"), dict):
            state["blocks"][chunk["index"]] = chunk["content_block"].get("type")
            state["open"].append(chunk["index"])
        elif kind == "content_block_stop" and chunk.get("index") in state["open"]:
            state["open"].remove(chunk["index"])
        return state

    def chunk_view(self, chunk: dict[str, Any]) -> ChunkView:
        view = ChunkView()
        kind, index = chunk.get("type"), chunk.get("index")
        if kind == "content_block_delta" and isinstance(index, int) and isinstance(chunk.get("delta"), dict):
            delta = chunk["delta"]
            if delta.get("type") == "text_delta" and isinstance(delta.get("text"), str):
                view.pieces.append(StreamPiece((0, index), 0, delta["text"], _setter(delta, "text")))
            elif delta.get("type") == "input_json_delta" and isinstance(delta.get("partial_json"), str):
                view.pieces.append(StreamPiece((0, index), 0, delta["partial_json"], _setter(delta, "partial_json"), tool_call=True))
        elif kind == "content_block_start" and isinstance(index, int) and isinstance(chunk.get("content_block"), dict):
            block = chunk["content_block"]
            if block.get("type") == "text" and block.get("text"):  # the API starts blocks empty; text here is checked all the same
                view.pieces.append(StreamPiece((0, index), 0, block["text"], _setter(block, "text")))
        elif kind == "content_block_stop" and isinstance(index, int):
            view.ended.append((0, index))
        elif kind == "message_delta" and isinstance(chunk.get("delta"), dict) and chunk["delta"].get("stop_reason"):
            view.finished[0] = str(chunk["delta"]["stop_reason"])
        if view.pieces or view.finished:
            view.choices.append(0)
        return view

    def stream_error(self, chunk: dict[str, Any]) -> str | None:
        if chunk.get("type") != "error":
            return None
        error = chunk.get("error")
        return str(error.get("type") or "upstream_error") if isinstance(error, dict) else "upstream_error"

    def trimmed(self, chunk: dict[str, Any]) -> dict[str, Any] | None:
        """A delta whose text was all held back is not sent (a block's start always is)."""
        delta = chunk.get("delta")
        if chunk.get("type") == "content_block_delta" and isinstance(delta, dict) and not (delta.get("text") or delta.get("partial_json")):
            return None
        return chunk

    def rest_chunk(self, *, request_id: str, model: str | None, template: dict[str, Any] | None, key: Hashable, text: str) -> dict[str, Any]:
        index = key[1] if isinstance(key, tuple) else key
        blocks = template["blocks"] if template else {}
        return _event("content_block_delta", index=index, delta=self._delta(blocks.get(index), text))

    @staticmethod
    def _delta(block_type: str | None, text: str) -> dict[str, Any]:
        if block_type in ("tool_use", "server_tool_use"):
            return {"type": "input_json_delta", "partial_json": text}
        return {"type": "text_delta", "text": text}

    def encode_event(self, chunk: dict[str, Any]) -> bytes:
        data = json.dumps(chunk, ensure_ascii=False, separators=(",", ":"))
        return f"event: {chunk.get('type', 'message')}\ndata: {data}\n\n".encode()

    # -- what aimsguard answers itself ------------------------------------------------------

    def _message(self, request_id: str, model: str | None, content: list[dict[str, Any]], stop_reason: str | None) -> dict[str, Any]:
        return {
            "id": f"msg_aimsguard-{request_id}",
            "type": "message",
            "role": "assistant",
            "model": model or "aimsguard",
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }

    def fallback_answer(self, *, request_id: str, model: str | None, text: str, handoff_id: str | None = None) -> dict[str, Any]:
        answer = self._message(request_id, model, [{"type": "text", "text": text}], self.refusal_reason)
        return {**answer, **_handoff(handoff_id)}

    def fallback_chunks(
        self, *, request_id: str, model: str | None, text: str, template: dict[str, Any] | None = None, handoff_id: str | None = None
    ) -> list[dict[str, Any]]:
        """The events that end a stream with the fallback text: from ``message_start`` when the
        stream has not begun; otherwise into the open text block (as OpenAI's fallback continues
        the choice's text), or a new text block after closing open tool calls."""
        events: list[dict[str, Any]] = []
        if template is None or template.get("id") is None:
            events.append(_event("message_start", message=self._message(request_id, model, [], None)))
            blocks: dict[int, str | None] = {}
            open_blocks: list[int] = []
        else:
            blocks, open_blocks = template["blocks"], list(template["open"])
        into = open_blocks[-1] if open_blocks and blocks.get(open_blocks[-1]) == "text" else None
        events.extend(_event("content_block_stop", index=i) for i in open_blocks if i != into)  # tool calls end unfinished
        index = into if into is not None else max(blocks, default=-1) + 1
        if into is None:
            events.append(_event("content_block_start", index=index, content_block={"type": "text", "text": ""}))
        events.append(_event("content_block_delta", index=index, delta={"type": "text_delta", "text": text}))
        events.append(_event("content_block_stop", index=index))
        events.append(
            _event("message_delta", delta={"stop_reason": self.refusal_reason, "stop_sequence": None}, usage={"output_tokens": 0})
        )
        events.append(_event("message_stop"))
        events[0].update(_handoff(handoff_id))  # the headers may have gone: the first event says where the answer will be
        return events

    def error_body(self, error: AimsguardError) -> dict[str, Any]:
        """An error in Anthropic's shape; aimsguard's code rides beside the type."""
        status = error.status_code
        kind = _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
        return {"type": "error", "error": {"type": kind, "message": str(error), "code": error.code}}


ANTHROPIC_MESSAGES = AnthropicMessages()
