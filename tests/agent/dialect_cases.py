"""One case per wire API for the end-to-end tests (``test_dialects_e2e.py``): the same test
bodies run for every dialect, driven by that API's official client through every front door.

A case has two sides:
- the fake upstream's: where a request's texts are, and a whole answer, a stream and an
  error in the API's own shape;
- the client's: the official client (async), how to ask it, and the ``Reply`` read back.

The fake upstream follows a script in the last user message, as it received it (redacted):
``say: X`` answers X (streamed 3 characters a chunk; ``say/N: X`` N a chunk); ``tool: {json}``
answers a tool call with those arguments (streamed 5 characters a chunk); ``fail:500`` answers
500 with an error of the API's shape; anything else "A plain answer.". The word LEAK in an
answer becomes an address the user never gave (``LEAKED``), for the output checks to catch.
Every answer reports 7 input and 5 output tokens.

A new dialect is one subclass here, added to ``CASES``.
"""

from __future__ import annotations

import abc
import json
from dataclasses import dataclass, field
from typing import Any

import anthropic
import openai

from aimsguard.agent import Guard, guard_anthropic, guard_openai

PLAIN = "A plain answer."
LEAKED = "dana.scully.canary@example.net"
INPUT_TOKENS, OUTPUT_TOKENS = 7, 5
TOOL_NAME = "send_mail"


@dataclass
class Reply:
    """What the client got back, whatever the API."""

    text: str
    finish: str | None
    tool_input: Any = None  # the first tool call's arguments, decoded
    handoff_id: str | None = None
    events: list[Any] = field(default_factory=list)  # the stream's events/chunks as the client parsed them


@dataclass(frozen=True)
class Script:
    """What the fake upstream is asked to do by the user's last message."""

    text: str = PLAIN
    chunk: int = 3
    tool: Any = None
    fail: int | None = None

    @classmethod
    def of(cls, message: str) -> Script:
        message = message.replace("LEAK", LEAKED)
        if message.startswith("fail:"):
            return cls(fail=int(message[5:]))
        if message.startswith("tool: "):
            return cls(text="", tool=json.loads(message[6:]), chunk=5)
        if message.startswith("say"):
            head, _, text = message.partition(": ")
            return cls(text=text, chunk=int(head[4:]) if head.startswith("say/") else 3)
        return cls()

    def pieces(self, text: str) -> list[str]:
        return [text[i : i + self.chunk] for i in range(0, len(text), self.chunk)]


def sse(data: Any, event: str | None = None) -> bytes:
    line = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return (f"event: {event}\n" if event else "").encode() + f"data: {line}\n\n".encode()


class DialectCase(abc.ABC):
    name: str
    path: str
    operation: str
    refusal_reason: str  # the finish reason of aimsguard's fallback

    # -- the fake upstream's side -------------------------------------------------------

    @abc.abstractmethod
    def user_text(self, payload: dict[str, Any]) -> str:
        """The last user message's text in a request."""

    @abc.abstractmethod
    def system_text(self, payload: dict[str, Any]) -> str | None: ...

    @abc.abstractmethod
    def answer(self, script: Script) -> dict[str, Any]: ...

    @abc.abstractmethod
    def stream(self, script: Script) -> list[bytes]: ...

    @abc.abstractmethod
    def error(self, status: int, message: str) -> dict[str, Any]: ...

    # -- the client's side ---------------------------------------------------------------

    @abc.abstractmethod
    def client(self, base_url: str, api_key: str = "test-key") -> Any:
        """The official async client for a server at ``base_url`` (no /v1)."""

    @abc.abstractmethod
    def guarded(self, client: Any, guard: Guard, system: str | None = None) -> Any:
        """The client wrapped by the SDK hook."""

    @abc.abstractmethod
    async def ask(self, client: Any, text: str, *, stream: bool = False, system: str | None = None) -> Reply: ...

    status_error: type[Exception]
    """What the client raises for an HTTP error (with ``status_code`` and ``body``)."""

    @staticmethod
    @abc.abstractmethod
    def error_code(body: Any) -> str | None:
        """aimsguard's error code in an error body as the client parsed it."""

    def __repr__(self) -> str:
        return self.name


def _handoff(obj: Any) -> str | None:
    extra = getattr(obj, "model_extra", None) or {}
    aimsguard = extra.get("aimsguard")
    return aimsguard.get("handoff_id") if isinstance(aimsguard, dict) else None


class OpenAIChatCase(DialectCase):
    name = "openai-chat"
    path = "/v1/chat/completions"
    operation = "chat"
    refusal_reason = "content_filter"
    status_error = openai.APIStatusError

    def user_text(self, payload: dict[str, Any]) -> str:
        content = payload["messages"][-1]["content"]
        return content if isinstance(content, str) else "".join(part.get("text", "") for part in content)

    def system_text(self, payload: dict[str, Any]) -> str | None:
        return next((m["content"] for m in payload["messages"] if m["role"] == "system"), None)

    def answer(self, script: Script) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": script.text or None}
        if script.tool is not None:
            message["tool_calls"] = [
                {"id": "call_1", "type": "function", "function": {"name": TOOL_NAME, "arguments": json.dumps(script.tool)}}
            ]
        return {
            "id": "chatcmpl-fake", "object": "chat.completion", "created": 1, "model": "fake-model",
            "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if script.tool is not None else "stop"}],
            "usage": {"prompt_tokens": INPUT_TOKENS, "completion_tokens": OUTPUT_TOKENS, "total_tokens": INPUT_TOKENS + OUTPUT_TOKENS},
        }

    def stream(self, script: Script) -> list[bytes]:
        base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1, "model": "fake-model"}

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            return sse({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})

        events = [chunk({"role": "assistant", "content": ""})]
        events += [chunk({"content": piece}) for piece in script.pieces(script.text)]
        if script.tool is not None:
            events.append(chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": TOOL_NAME, "arguments": ""}}]}))
            events += [chunk({"tool_calls": [{"index": 0, "function": {"arguments": p}}]}) for p in script.pieces(json.dumps(script.tool))]
        events.append(chunk({}, "tool_calls" if script.tool is not None else "stop"))
        usage = {"prompt_tokens": INPUT_TOKENS, "completion_tokens": OUTPUT_TOKENS, "total_tokens": INPUT_TOKENS + OUTPUT_TOKENS}
        events.append(sse({**base, "choices": [], "usage": usage}))
        return [*events, sse("[DONE]")]

    def error(self, status: int, message: str) -> dict[str, Any]:
        return {"error": {"message": message, "type": "server_error", "param": None, "code": "overloaded"}}

    def client(self, base_url: str, api_key: str = "test-key") -> Any:
        return openai.AsyncOpenAI(base_url=base_url + "/v1", api_key=api_key, max_retries=0)

    def guarded(self, client: Any, guard: Guard, system: str | None = None) -> Any:
        return guard_openai(client, guard, system)

    async def ask(self, client: Any, text: str, *, stream: bool = False, system: str | None = None) -> Reply:
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": text}]
        response = await client.chat.completions.create(model="fake-model", messages=messages, stream=stream)
        if not stream:
            choice = response.choices[0]
            calls = choice.message.tool_calls or []
            tool = json.loads(calls[0].function.arguments) if calls else None
            return Reply(choice.message.content or "", choice.finish_reason, tool, _handoff(response))
        chunks = [chunk async for chunk in response]
        text_out, arguments, finish, handoff = "", "", None, None
        for chunk in chunks:
            handoff = handoff or _handoff(chunk)
            for choice in chunk.choices:
                text_out += choice.delta.content or ""
                for call in choice.delta.tool_calls or []:
                    arguments += (call.function.arguments or "") if call.function else ""
                finish = choice.finish_reason or finish
        return Reply(text_out, finish, json.loads(arguments) if arguments else None, handoff, chunks)

    @staticmethod
    def error_code(body: Any) -> str | None:
        # openai's error carries the body's "error" object as .body
        return body.get("code") if isinstance(body, dict) else None


class AnthropicMessagesCase(DialectCase):
    name = "anthropic-messages"
    path = "/v1/messages"
    operation = "chat"
    refusal_reason = "refusal"
    status_error = anthropic.APIStatusError

    @staticmethod
    def _text(content: Any) -> str:
        return content if isinstance(content, str) else "".join(b.get("text", "") for b in content if b.get("type") == "text")

    def user_text(self, payload: dict[str, Any]) -> str:
        return self._text(payload["messages"][-1]["content"])

    def system_text(self, payload: dict[str, Any]) -> str | None:
        system = payload.get("system")
        return None if system is None else self._text(system)

    def _content(self, script: Script) -> list[dict[str, Any]]:
        content: list[dict[str, Any]] = [{"type": "text", "text": script.text}] if script.text else []
        if script.tool is not None:
            content.append({"type": "tool_use", "id": "toolu_1", "name": TOOL_NAME, "input": script.tool})
        return content

    def answer(self, script: Script) -> dict[str, Any]:
        return {
            "id": "msg_fake", "type": "message", "role": "assistant", "model": "fake-model", "content": self._content(script),
            "stop_reason": "tool_use" if script.tool is not None else "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": INPUT_TOKENS, "output_tokens": OUTPUT_TOKENS},
        }

    def stream(self, script: Script) -> list[bytes]:
        def event(kind: str, **fields: Any) -> bytes:
            return sse({"type": kind, **fields}, event=kind)

        message = {**self.answer(script), "content": [], "stop_reason": None, "usage": {"input_tokens": INPUT_TOKENS, "output_tokens": 1}}
        events = [event("message_start", message=message), event("ping")]
        index = 0
        if script.text:
            events.append(event("content_block_start", index=index, content_block={"type": "text", "text": ""}))
            events += [event("content_block_delta", index=index, delta={"type": "text_delta", "text": p}) for p in script.pieces(script.text)]
            events.append(event("content_block_stop", index=index))
            index += 1
        if script.tool is not None:
            block = {"type": "tool_use", "id": "toolu_1", "name": TOOL_NAME, "input": {}}
            events.append(event("content_block_start", index=index, content_block=block))
            events += [
                event("content_block_delta", index=index, delta={"type": "input_json_delta", "partial_json": p})
                for p in script.pieces(json.dumps(script.tool))
            ]
            events.append(event("content_block_stop", index=index))
        stop = "tool_use" if script.tool is not None else "end_turn"
        events.append(event("message_delta", delta={"stop_reason": stop, "stop_sequence": None}, usage={"output_tokens": OUTPUT_TOKENS}))
        return [*events, event("message_stop")]

    def error(self, status: int, message: str) -> dict[str, Any]:
        return {"type": "error", "error": {"type": "api_error", "message": message}}

    def client(self, base_url: str, api_key: str = "test-key") -> Any:
        return anthropic.AsyncAnthropic(base_url=base_url, api_key=api_key, max_retries=0)

    def guarded(self, client: Any, guard: Guard, system: str | None = None) -> Any:
        return guard_anthropic(client, guard, system)

    async def ask(self, client: Any, text: str, *, stream: bool = False, system: str | None = None) -> Reply:
        kwargs: dict[str, Any] = {"model": "fake-model", "max_tokens": 256, "messages": [{"role": "user", "content": text}]}
        if system:
            kwargs["system"] = system
        if not stream:
            message = await client.messages.create(**kwargs)
            return self._reply(message, _handoff(message))
        events, handoff = [], None
        async with client.messages.stream(**kwargs) as messages:  # the SDK's own accumulation of the events
            async for event in messages:
                events.append(event)
                handoff = handoff or _handoff(event) or (_handoff(event.message) if event.type == "message_start" else None)
            message = await messages.get_final_message()
        return self._reply(message, handoff, events)

    @staticmethod
    def _reply(message: Any, handoff: str | None, events: list[Any] | None = None) -> Reply:
        text = "".join(block.text for block in message.content if block.type == "text")
        tool = next((block.input for block in message.content if block.type == "tool_use"), None)
        return Reply(text, message.stop_reason, tool, handoff, events or [])

    @staticmethod
    def error_code(body: Any) -> str | None:
        error = body.get("error") if isinstance(body, dict) else None
        return error.get("code") if isinstance(error, dict) else None


class OpenAIResponsesCase(DialectCase):
    """OpenAI's Responses API: typed stream events, ``instructions`` as the system prompt. The
    client reads the deltas and the final response, and checks they agree (the ``.done`` and
    ``response.completed`` events repeat every text whole)."""

    name = "openai-responses"
    path = "/v1/responses"
    operation = "chat"
    refusal_reason = "content_filter"  # incomplete_details.reason of a filtered response
    status_error = openai.APIStatusError
    usage = {"input_tokens": INPUT_TOKENS, "output_tokens": OUTPUT_TOKENS, "total_tokens": INPUT_TOKENS + OUTPUT_TOKENS}

    def user_text(self, payload: dict[str, Any]) -> str:
        value = payload["input"]
        if isinstance(value, str):
            return value
        content = value[-1]["content"]
        return content if isinstance(content, str) else "".join(part.get("text", "") for part in content)

    def system_text(self, payload: dict[str, Any]) -> str | None:
        return payload.get("instructions")

    @staticmethod
    def _output(text: str, tool: Any) -> list[dict[str, Any]]:
        output: list[dict[str, Any]] = []
        if text:
            output.append({"id": "msg_1", "type": "message", "role": "assistant", "status": "completed",
                           "content": [{"type": "output_text", "text": text, "annotations": []}]})
        if tool is not None:
            output.append({"id": "fc_1", "type": "function_call", "call_id": "call_1", "name": TOOL_NAME,
                           "arguments": json.dumps(tool), "status": "completed"})
        return output

    def _response(self, output: list[dict[str, Any]], status: str = "completed") -> dict[str, Any]:
        return {"id": "resp_fake", "object": "response", "created_at": 1, "model": "fake-model", "status": status,
                "output": output, "parallel_tool_calls": True, "tool_choice": "auto", "tools": [], "usage": self.usage}

    def answer(self, script: Script) -> dict[str, Any]:
        return self._response(self._output(script.text, script.tool))

    def stream(self, script: Script) -> list[bytes]:
        events: list[dict[str, Any]] = []

        def emit(kind: str, **fields: Any) -> None:
            events.append({"type": kind, **fields, "sequence_number": len(events)})

        text, tool = script.text, script.tool
        emit("response.created", response={**self._response([], "in_progress"), "usage": None})
        index = 0
        if text:
            message = {"id": "msg_1", "type": "message", "role": "assistant", "status": "in_progress", "content": []}
            emit("response.output_item.added", output_index=0, item=message)
            part = {"type": "output_text", "text": "", "annotations": []}
            emit("response.content_part.added", item_id="msg_1", output_index=0, content_index=0, part=part)
            for piece in script.pieces(text):
                emit("response.output_text.delta", item_id="msg_1", output_index=0, content_index=0, delta=piece, logprobs=[])
            emit("response.output_text.done", item_id="msg_1", output_index=0, content_index=0, text=text, logprobs=[])
            emit("response.content_part.done", item_id="msg_1", output_index=0, content_index=0, part={**part, "text": text})
            emit("response.output_item.done", output_index=0, item=self._output(text, None)[0])
            index = 1
        if tool is not None:
            arguments = json.dumps(tool)
            call = {"id": "fc_1", "type": "function_call", "call_id": "call_1", "name": TOOL_NAME, "arguments": "", "status": "in_progress"}
            emit("response.output_item.added", output_index=index, item=call)
            for piece in script.pieces(arguments):
                emit("response.function_call_arguments.delta", item_id="fc_1", output_index=index, delta=piece)
            emit("response.function_call_arguments.done", item_id="fc_1", output_index=index, arguments=arguments)
            emit("response.output_item.done", output_index=index, item=self._output("", tool)[0])
        emit("response.completed", response=self.answer(script))
        return [sse(event, event=event["type"]) for event in events]

    def error(self, status: int, message: str) -> dict[str, Any]:
        return {"error": {"message": message, "type": "server_error", "param": None, "code": "overloaded"}}

    def client(self, base_url: str, api_key: str = "test-key") -> Any:
        return openai.AsyncOpenAI(base_url=base_url + "/v1", api_key=api_key, max_retries=0)

    def guarded(self, client: Any, guard: Guard, system: str | None = None) -> Any:
        return guard_openai(client, guard, system)

    @staticmethod
    def _finish(response: Any) -> str:
        details = response.incomplete_details
        return details.reason if details is not None and details.reason else response.status

    async def ask(self, client: Any, text: str, *, stream: bool = False, system: str | None = None) -> Reply:
        kwargs: dict[str, Any] = {"model": "fake-model", "input": [{"role": "user", "content": [{"type": "input_text", "text": text}]}]}
        if system:
            kwargs["instructions"] = system
        if not stream:
            response = await client.responses.create(**kwargs)
            tool = next((json.loads(item.arguments) for item in response.output if item.type == "function_call"), None)
            return Reply(response.output_text, self._finish(response), tool, _handoff(response))
        events = [event async for event in await client.responses.create(stream=True, **kwargs)]
        deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
        arguments = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
        final = next(e.response for e in events if e.type in ("response.completed", "response.incomplete"))
        # What the deltas said, what the .done events repeat and what the final response says agree.
        assert final.output_text == deltas == "".join(e.text for e in events if e.type == "response.output_text.done")
        calls = [item.arguments for item in final.output if item.type == "function_call"]
        assert calls == ([arguments] if calls else []), (calls, arguments)
        return Reply(deltas, self._finish(final), json.loads(arguments) if calls else None, _handoff(final), events)

    @staticmethod
    def error_code(body: Any) -> str | None:
        return body.get("code") if isinstance(body, dict) else None


CASES: list[DialectCase] = [OpenAIChatCase(), AnthropicMessagesCase(), OpenAIResponsesCase()]
