"""OpenAI's Responses API (``POST /v1/responses``).

Request: ``instructions`` (the system prompt) and ``input``, a string or a list of items:
messages whose content is a string or parts (``input_text``, ``output_text``), and
``function_call_output`` items (a tool's result, checked like any input). Other items
(images, files, reasoning, references to stored items) carry no text the checks read;
context stored upstream (``previous_response_id``, ``conversation``) is not re-checked.

Answer: ``output`` items: messages with ``output_text`` parts, and ``function_call`` items
whose ``arguments`` are checked like tool calls in chat. A refused answer becomes one
message with the fallback text, ``status: incomplete`` and ``incomplete_details.reason:
content_filter`` (what OpenAI answers when its own filter stops a response).

Stream: typed events. Text comes in ``response.output_text.delta`` (a window per content
part) and ``response.function_call_arguments.delta`` (a window per call); the events that
repeat a text whole (``.done``, ``content_part.done``, ``output_item.done``,
``response.completed``) close those windows and carry what was released, never what the
upstream sent. The stream's state (response id, open items and parts, sequence numbers)
is kept in the driver's template, so a stream stopped midway ends as one consistent
stream: the fallback continues the open text part, every open item is closed, and a
``response.incomplete`` event ends it. Errors in a stream are ``error`` events. Refusal,
reasoning-summary and audio-transcript deltas are not read (and not passed unchecked:
they go out as the upstream sent them; see the README's limits).
"""

from __future__ import annotations

import json
import time
from collections.abc import Hashable
from typing import Any

from ._dialect import ChunkView, Dialect, ParsedRequest, RequestLimits, StreamPiece
from ._dialect_openai import _Open, _validated, error_body, handoff_field
from ._errors import AimsguardError, RequestError

__all__ = ["OPENAI_RESPONSES", "RESPONSES_PATH"]

RESPONSES_PATH = "/v1/responses"
_TEXT_PARTS = ("input_text", "output_text", "text")
_TERMINAL = ("response.completed", "response.incomplete")


class _Part(_Open):
    type: str | None = None
    text: str | None = None


class _Item(_Open):
    type: str | None = None
    role: str | None = None
    content: str | list[_Part] | None = None
    output: str | list[_Part] | None = None


class _ResponsesRequest(_Open):
    model: str | None = None
    instructions: str | None = None
    input: str | list[_Item] | None = None
    stream: bool = False
    background: bool | None = False


def _setter(holder: dict[str, Any], key: str) -> Any:
    def put(text: str) -> None:
        holder[key] = text

    return put


def _text_key(output_index: int, content_index: int) -> tuple[str, int, int]:
    return ("text", output_index, content_index)


def _call_key(output_index: int) -> tuple[str, int]:
    return ("call", output_index)


def _item_slots(index: int, item: Any) -> list[tuple[Hashable, dict[str, Any], str]]:
    """(window key, holder, field) of every text in one output item."""
    if not isinstance(item, dict):
        return []
    if item.get("type") == "function_call" and isinstance(item.get("arguments"), str):
        return [(_call_key(index), item, "arguments")]
    content = item.get("content")
    if item.get("type") != "message" or not isinstance(content, list):
        return []
    return [
        (_text_key(index, j), part, "text")
        for j, part in enumerate(content)
        if isinstance(part, dict) and part.get("type") == "output_text" and isinstance(part.get("text"), str)
    ]


def _message(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "message",
        "role": "assistant",
        "status": status,
        "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
    }


class OpenAIResponses(Dialect):
    operation = "chat"  # gen_ai.operation.name: Responses is chat in the GenAI conventions
    input_keys = ("input", "instructions", "background")  # background: read to refuse it
    passed_headers = ("openai-organization", "openai-project", "authorization")

    # -- the request -------------------------------------------------------------------------

    def _parse(self, body: dict[str, Any], limits: RequestLimits | None) -> ParsedRequest:
        if isinstance(body.get("input"), list):
            self.check_count(len(body["input"]), limits, "input")
        parsed: Any = _validated(_ResponsesRequest, body)
        if parsed.background:
            # The answer would be written upstream later and read with GET /v1/responses/{id},
            # which no check sees (unknown_routes): refused before the model spends anything.
            raise RequestError(
                "background: true is not supported: its answer is fetched later around the checks; send the request without it",
                code="background_not_checkable",
                param="background",
            )
        texts: list[str] = []
        locations: list[tuple[Any, ...]] = []
        roles: list[str] = []

        def add(text: str | None, location: tuple[Any, ...], role: str) -> None:
            if text is not None:
                texts.append(text)
                locations.append(location)
                roles.append(role)

        add(parsed.instructions, ("instructions",), "system")
        if isinstance(parsed.input, str):
            add(parsed.input, ("input",), "user")
        for i, item in enumerate(parsed.input if isinstance(parsed.input, list) else []):
            if item.type in (None, "message"):
                field, role = "content", item.role or "user"
            elif item.type == "function_call_output":
                field, role = "output", "tool"
            else:
                continue
            value = getattr(item, field)
            if isinstance(value, str):
                add(value, ("input", i, field), role)
            elif isinstance(value, list):
                for j, part in enumerate(value):
                    if part.type in _TEXT_PARTS:
                        add(part.text, ("input", i, field, j, "text"), role)
        return ParsedRequest(body, parsed.model, parsed.stream, texts, locations, roles or None)

    # -- a whole answer ---------------------------------------------------------------------

    @staticmethod
    def _slots(answer: dict[str, Any]) -> list[tuple[Hashable, dict[str, Any], str]]:
        """Text parts first, then function-call arguments, in output order."""
        output = answer.get("output")
        slots = [slot for i, item in enumerate(output) for slot in _item_slots(i, item)] if isinstance(output, list) else []
        return [s for s in slots if s[0][0] == "text"] + [s for s in slots if s[0][0] == "call"]  # type: ignore[index]

    def answer_texts(self, answer: dict[str, Any]) -> list[str]:
        """Every text part (one '' segment when there is none, like a chat choice without
        text), then every function call's arguments."""
        slots = self._slots(answer)
        texts = [holder[field] for key, holder, field in slots if key[0] == "text"]  # type: ignore[index]
        return (texts or [""]) + [holder[field] for key, holder, field in slots if key[0] == "call"]  # type: ignore[index]

    def replace_answer_texts(self, answer: dict[str, Any], texts: list[str], finish_reason: str | None = None) -> None:
        if finish_reason is not None:
            answer["output"] = [_message(f"msg_aimsguard_{answer.get('id', '')}", texts[0])]
            answer["status"] = "incomplete"
            answer["incomplete_details"] = {"reason": finish_reason}
            return
        slots = self._slots(answer)
        text_slots = [s for s in slots if s[0][0] == "text"]  # type: ignore[index]
        calls = [s for s in slots if s[0][0] == "call"]  # type: ignore[index]
        for (_, holder, field), text in zip(text_slots, texts, strict=False):
            holder[field] = text
        for (_, holder, field), text in zip(calls, texts[max(1, len(text_slots)) :], strict=False):
            holder[field] = text

    def refused_answer(self, answer: dict[str, Any], text: str, handoff_id: str | None) -> None:
        self.replace_answer_texts(answer, [text], "content_filter")
        answer.update(handoff_field(handoff_id))

    def finish_reasons(self, answer: dict[str, Any]) -> list[str]:
        details = answer.get("incomplete_details")
        if isinstance(details, dict) and details.get("reason"):
            return [str(details["reason"])]
        return [str(answer.get("status"))]

    @staticmethod
    def _response(answer: dict[str, Any]) -> dict[str, Any]:
        """The response object of an answer, or of a lifecycle stream event."""
        response = answer.get("response")
        return response if isinstance(response, dict) else answer

    def usage_of(self, answer: dict[str, Any]) -> tuple[int | None, int | None]:
        usage = self._response(answer).get("usage")
        if not isinstance(usage, dict):
            return None, None
        tokens_in, tokens_out = usage.get("input_tokens"), usage.get("output_tokens")
        return (tokens_in if isinstance(tokens_in, int) else None, tokens_out if isinstance(tokens_out, int) else None)

    def model_of(self, answer: dict[str, Any]) -> str | None:  # type: ignore[override]
        model = self._response(answer).get("model")
        return model if isinstance(model, str) else None

    # -- a stream ---------------------------------------------------------------------------

    def stream_template(self, template: dict[str, Any] | None, chunk: dict[str, Any]) -> dict[str, Any]:
        """The stream so far: the response object, the output items (index → item as added),
        the text parts seen per item, which items are done, the last sequence number."""
        state = template if template is not None and "items" in template else {"response": None, "items": {}, "parts": {}, "done": set(), "seq": -1}
        kind = chunk.get("type")
        if isinstance(chunk.get("sequence_number"), int):
            state["seq"] = max(state["seq"], chunk["sequence_number"])
        if kind in ("response.created", "response.in_progress", "response.queued") and isinstance(chunk.get("response"), dict):
            state["response"] = {k: v for k, v in chunk["response"].items() if k != "output"}
        index = chunk.get("output_index")
        if kind == "response.output_item.added" and isinstance(index, int) and isinstance(chunk.get("item"), dict):
            state["items"][index] = {k: v for k, v in chunk["item"].items() if k not in ("content", "arguments")}
        elif kind == "response.content_part.added" and isinstance(index, int) and isinstance(chunk.get("content_index"), int):
            state["parts"].setdefault(index, []).append(chunk["content_index"])
        elif kind == "response.output_item.done" and isinstance(index, int):
            state["done"].add(index)
        return state

    def with_released(self, template: dict[str, Any] | None, released: dict[Hashable, str]) -> dict[str, Any] | None:
        if template is not None:
            template["released"] = released
        return template

    def chunk_view(self, chunk: dict[str, Any]) -> ChunkView:
        view = ChunkView()
        kind = chunk.get("type")
        index = chunk.get("output_index")
        if kind == "response.output_text.delta" and isinstance(index, int) and isinstance(chunk.get("delta"), str):
            view.pieces.append(StreamPiece(_text_key(index, chunk.get("content_index", 0)), 0, chunk["delta"], _setter(chunk, "delta")))
        elif kind == "response.function_call_arguments.delta" and isinstance(index, int) and isinstance(chunk.get("delta"), str):
            view.pieces.append(StreamPiece(_call_key(index), 0, chunk["delta"], _setter(chunk, "delta"), tool_call=True))
        elif kind == "response.output_text.done" and isinstance(index, int) and isinstance(chunk.get("text"), str):
            self._whole(view, _text_key(index, chunk.get("content_index", 0)), chunk, "text")
        elif kind == "response.content_part.done" and isinstance(index, int) and isinstance(chunk.get("part"), dict):
            part = chunk["part"]
            if part.get("type") == "output_text" and isinstance(part.get("text"), str):
                self._whole(view, _text_key(index, chunk.get("content_index", 0)), part, "text")
        elif kind == "response.function_call_arguments.done" and isinstance(index, int) and isinstance(chunk.get("arguments"), str):
            self._whole(view, _call_key(index), chunk, "arguments")
        elif kind == "response.output_item.done" and isinstance(index, int):
            for key, holder, field in _item_slots(index, chunk.get("item")):
                self._whole(view, key, holder, field)
        elif kind in _TERMINAL and isinstance(chunk.get("response"), dict):
            output = chunk["response"].get("output")
            for i, item in enumerate(output if isinstance(output, list) else []):
                for key, holder, field in _item_slots(i, item):
                    self._whole(view, key, holder, field)
        return view

    @staticmethod
    def _whole(view: ChunkView, key: Hashable, holder: dict[str, Any], field: str) -> None:
        view.ended.append(key)
        view.whole.append((key, holder[field], _setter(holder, field)))

    def stream_error(self, chunk: dict[str, Any]) -> str | None:
        kind = chunk.get("type")
        if kind == "error":
            return str(chunk.get("code") or "upstream_error")
        if kind == "response.failed":
            error = self._response(chunk).get("error")
            return str(error.get("code") or "response_failed") if isinstance(error, dict) else "response_failed"
        if "error" in chunk and kind is None:
            return "upstream_error"
        return None

    def trimmed(self, chunk: dict[str, Any]) -> dict[str, Any] | None:
        if chunk.get("type") in ("response.output_text.delta", "response.function_call_arguments.delta") and not chunk.get("delta"):
            return None
        return chunk

    @staticmethod
    def _next(state: dict[str, Any] | None) -> int:
        if state is None:
            return 0
        state["seq"] += 1
        return int(state["seq"])

    def rest_chunk(self, *, request_id: str, model: str | None, template: dict[str, Any] | None, key: Hashable, text: str) -> dict[str, Any]:
        assert isinstance(key, tuple)
        item = (template or {}).get("items", {}).get(key[1], {})
        event: dict[str, Any] = {"item_id": item.get("id", ""), "output_index": key[1], "delta": text}
        if key[0] == "text":
            event.update(type="response.output_text.delta", content_index=key[2], logprobs=[])
        else:
            event["type"] = "response.function_call_arguments.delta"
        event["sequence_number"] = self._next(template)
        return event

    def encode_event(self, chunk: dict[str, Any]) -> bytes:
        if "type" not in chunk and isinstance(chunk.get("error"), dict):  # one of aimsguard's errors, in the stream's shape
            error = chunk["error"]
            chunk = {"type": "error", "code": error.get("code"), "message": error.get("message"), "param": error.get("param"), "sequence_number": 0}
        data = json.dumps(chunk, ensure_ascii=False)
        return f"event: {chunk.get('type', 'message')}\ndata: {data}\n\n".encode()

    # -- what aimsguard answers itself ------------------------------------------------------

    def fallback_answer(self, *, request_id: str, model: str | None, text: str, handoff_id: str | None = None) -> dict[str, Any]:
        return {
            **self._response_base(request_id, model, None),
            "status": "incomplete",
            "incomplete_details": {"reason": "content_filter"},
            "output": [_message(f"msg_aimsguard_{request_id}", text)],
            "usage": {
                "input_tokens": 0,
                "output_tokens": 0,
                "total_tokens": 0,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens_details": {"reasoning_tokens": 0},
            },
            **handoff_field(handoff_id),
        }

    @staticmethod
    def _response_base(request_id: str, model: str | None, state: dict[str, Any] | None) -> dict[str, Any]:
        base: dict[str, Any] = {
            "id": f"resp_aimsguard_{request_id}",
            "object": "response",
            "created_at": int(time.time()),
            "model": model or "aimsguard",
            "error": None,
            "incomplete_details": None,
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": [],
        }
        if state is not None and isinstance(state.get("response"), dict):
            base.update(state["response"])
        return base

    def fallback_chunks(
        self, *, request_id: str, model: str | None, text: str, template: dict[str, Any] | None = None, handoff_id: str | None = None
    ) -> list[dict[str, Any]]:
        """The fallback as the rest of a stream: ``response.created`` first if the stream had
        not started; the fallback text continues the open text part (or comes as a new
        message); every open item is closed; ``response.incomplete`` ends it."""
        state = template if template is not None and "items" in template else None
        events: list[dict[str, Any]] = []

        def emit(kind: str, **fields: Any) -> None:
            events.append({"type": kind, **fields, "sequence_number": self._next(state) if state is not None else len(events)})

        base = self._response_base(request_id, model, state)
        if state is None or state.get("response") is None:
            emit("response.created", response={**base, "status": "in_progress", "output": []})
        items: dict[int, dict[str, Any]] = dict(state["items"]) if state else {}
        parts: dict[int, list[int]] = state["parts"] if state else {}
        done: set[int] = state["done"] if state else set()
        released: dict[Hashable, str] = (state or {}).get("released", {})
        open_message = next((i for i in sorted(items, reverse=True) if i not in done and items[i].get("type") == "message"), None)
        if open_message is None or not parts.get(open_message):
            open_message = max(items, default=-1) + 1
            items[open_message] = {"id": f"msg_aimsguard_{request_id}", "type": "message", "role": "assistant"}
            emit("response.output_item.added", output_index=open_message, item={**items[open_message], "status": "in_progress", "content": []})
            parts = {**parts, open_message: [0]}
            emit(
                "response.content_part.added",
                item_id=items[open_message]["id"],
                output_index=open_message,
                content_index=0,
                part={"type": "output_text", "text": "", "annotations": []},
            )
        item_id = items[open_message]["id"]
        last_part = parts[open_message][-1]
        key = _text_key(open_message, last_part)
        released = {**released, key: released.get(key, "") + text}
        emit("response.output_text.delta", item_id=item_id, output_index=open_message, content_index=last_part, delta=text, logprobs=[])
        output: list[dict[str, Any]] = []
        for index in sorted(items):
            item = items[index]
            if item.get("type") == "message":
                content = [
                    {"type": "output_text", "text": released.get(_text_key(index, j), ""), "annotations": [], "logprobs": []}
                    for j in parts.get(index, [])
                ]
                if index not in done:
                    for j, part in zip(parts.get(index, []), content, strict=True):
                        emit("response.output_text.done", item_id=item["id"], output_index=index, content_index=j, text=part["text"], logprobs=[])
                        emit("response.content_part.done", item_id=item["id"], output_index=index, content_index=j, part=part)
                finished = {**item, "status": "completed" if index in done else "incomplete", "content": content}
            elif item.get("type") == "function_call":
                if index not in done:
                    continue  # arguments the checks did not approve whole: the call must not run
                finished = {**item, "arguments": released.get(_call_key(index), ""), "status": "completed"}
            else:
                finished = item
            if index not in done:
                emit("response.output_item.done", output_index=index, item=finished)
            output.append(finished)
        response = {**base, "status": "incomplete", "incomplete_details": {"reason": "content_filter"}, "output": output}
        emit("response.incomplete", response={**response, **handoff_field(handoff_id)})
        return events

    def error_body(self, error: AimsguardError) -> dict[str, Any]:
        return error_body(error)


OPENAI_RESPONSES = OpenAIResponses()
