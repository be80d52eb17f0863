"""The OpenAI-compatible dialects: chat completions, (legacy) text completions and embeddings.

Only the parts aimsguard needs are validated (pydantic, unknown fields kept), so a
request carrying provider extensions passes through unchanged apart from the texts the
checks redacted.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Hashable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ._dialect import ChunkView, Dialect, ParsedRequest, RequestLimits, StreamPiece
from ._errors import AimsguardError, RequestError
from ._sse import DONE, encode_data

__all__ = [
    "CHAT_PATH",
    "COMPLETIONS_PATH",
    "EMBEDDINGS_PATH",
    "OPENAI_CHAT",
    "OPENAI_COMPLETIONS",
    "OPENAI_EMBEDDINGS",
    "error_body",
    "handoff_field",
]

CHAT_PATH = "/v1/chat/completions"
COMPLETIONS_PATH = "/v1/completions"
EMBEDDINGS_PATH = "/v1/embeddings"


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


def _validated(model_cls: type[BaseModel], body: dict[str, Any]) -> Any:
    try:
        return model_cls.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(p) for p in first["loc"])
        raise RequestError(f"invalid request: {param}: {first['msg']}", param=param) from None


def error_body(error: AimsguardError) -> dict[str, Any]:
    """An error in OpenAI's shape (also what aimsguard's own endpoints answer)."""
    return {"error": {"message": str(error), "type": error.error_type, "param": getattr(error, "param", None), "code": error.code}}


def handoff_field(handoff_id: str | None) -> dict[str, Any]:
    """The top-level ``aimsguard`` field that tells a client where its human answer will be
    (``GET /v1/handoffs/{id}``); empty without a handoff. OpenAI clients keep unknown fields."""
    return {"aimsguard": {"handoff_id": handoff_id}} if handoff_id else {}


def _choices(answer: dict[str, Any]) -> list[dict[str, Any]]:
    choices = answer.get("choices")
    return [c for c in choices if isinstance(c, dict)] if isinstance(choices, list) else []


def _setter(holder: dict[str, Any], key: str) -> Any:
    def put(text: str) -> None:
        holder[key] = text

    return put


class _OpenAIDialect(Dialect):
    """What chat and text completions share; subclasses say where a choice's text lives."""

    done_event = encode_data(DONE)
    passed_headers = ("openai-organization", "openai-project", "authorization")
    object_name: str
    chunk_object_name: str
    answer_holder: str | None  # the key of a whole answer's choice that holds its text dict (None: the choice itself)
    delta_holder: str | None
    text_key: str

    request_model: type[BaseModel]

    def _parse(self, body: dict[str, Any], limits: RequestLimits | None) -> ParsedRequest:
        key = self.input_keys[0]
        if isinstance(body.get(key), list):
            self.check_count(len(body[key]), limits, key)  # before validating thousands of them
        return self._located(body, _validated(self.request_model, body))

    def _located(self, body: dict[str, Any], parsed: Any) -> ParsedRequest:
        """The texts of a validated request and where each lives in ``body``."""
        raise NotImplementedError

    # -- answers ----------------------------------------------------------------------------

    def _slot(self, choice: dict[str, Any], holder_key: str | None) -> tuple[dict[str, Any], str] | None:
        holder = choice if holder_key is None else choice.get(holder_key)
        if isinstance(holder, dict) and isinstance(holder.get(self.text_key), str):
            return holder, self.text_key
        return None

    def _tool_functions(self, choice: dict[str, Any]) -> list[dict[str, Any]]:
        return []

    def answer_texts(self, answer: dict[str, Any]) -> list[str]:
        """One segment per choice ('' where it has none), then every tool call's arguments, in order."""
        choices = _choices(answer)
        texts = []
        for choice in choices:
            slot = self._slot(choice, self.answer_holder)
            texts.append(slot[0][slot[1]] if slot else "")
        texts.extend(function["arguments"] for choice in choices for function in self._tool_functions(choice))
        return texts

    def replace_answer_texts(self, answer: dict[str, Any], texts: list[str], finish_reason: str | None = None) -> None:
        choices = _choices(answer)
        for index, choice in enumerate(choices):
            text = texts[0] if finish_reason is not None else texts[index]
            slot = self._slot(choice, self.answer_holder)
            if slot is not None:
                slot[0][slot[1]] = text
            elif self.answer_holder is not None and isinstance(choice.get(self.answer_holder), dict):
                choice[self.answer_holder][self.text_key] = text
            if finish_reason is not None:
                choice["finish_reason"] = finish_reason
                self._drop_tool_calls(choice)  # calls the checks did not approve must not run
        if finish_reason is None:
            functions = [function for choice in choices for function in self._tool_functions(choice)]
            for function, text in zip(functions, texts[len(choices) :], strict=False):
                function["arguments"] = text

    def _drop_tool_calls(self, choice: dict[str, Any]) -> None:
        pass

    def refused_answer(self, answer: dict[str, Any], text: str, handoff_id: str | None) -> None:
        self.replace_answer_texts(answer, [text], "content_filter")
        answer.update(handoff_field(handoff_id))

    def finish_reasons(self, answer: dict[str, Any]) -> list[str]:
        return [str(c.get("finish_reason")) for c in _choices(answer)]

    def usage_of(self, answer: dict[str, Any]) -> tuple[int | None, int | None]:
        usage = answer.get("usage")
        if not isinstance(usage, dict):
            return None, None
        prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
        return (prompt if isinstance(prompt, int) else None, completion if isinstance(completion, int) else None)

    # -- streams ------------------------------------------------------------------------------

    def _delta_tool_calls(self, holder: dict[str, Any], index: int) -> list[StreamPiece]:
        return []

    def chunk_view(self, chunk: dict[str, Any]) -> ChunkView:
        view = ChunkView()
        for choice in _choices(chunk):
            holder = choice if self.delta_holder is None else choice.get(self.delta_holder)
            index = choice.get("index", 0)
            if not isinstance(holder, dict) or not isinstance(index, int) or not isinstance(holder.get(self.text_key), (str, type(None))):
                continue
            view.choices.append(index)
            view.pieces.extend(self._delta_tool_calls(holder, index))
            view.pieces.append(StreamPiece(index, index, holder.get(self.text_key) or "", _setter(holder, self.text_key)))
            if choice.get("finish_reason") is not None:
                view.finished[index] = str(choice["finish_reason"])
        return view

    def stream_error(self, chunk: dict[str, Any]) -> str | None:
        error = chunk.get("error")
        if not error:
            return None
        return str(error.get("code") or error.get("type")) if isinstance(error, dict) else "upstream_error"

    def _empty(self, choice: dict[str, Any]) -> bool:
        if choice.get("finish_reason") is not None or choice.get("logprobs"):
            return False
        if self.delta_holder is None:
            return not choice.get(self.text_key)
        holder = choice.get(self.delta_holder)
        return isinstance(holder, dict) and not any(holder.values())

    def trimmed(self, chunk: dict[str, Any]) -> dict[str, Any] | None:
        # Called for every event whose text was held back (most of a checked stream's): kept plain.
        choices = chunk.get("choices") or ()
        chunk["choices"] = kept = [c for c in choices if isinstance(c, dict) and not self._empty(c)]
        return chunk if kept or chunk.get("usage") else None

    def encode_event(self, chunk: dict[str, Any]) -> bytes:
        return encode_data(chunk)

    # -- what aimsguard answers itself ----------------------------------------------------------

    def _choice(self, index: int, text: str, finish_reason: str | None, *, whole: bool) -> dict[str, Any]:
        raise NotImplementedError

    def fallback_answer(self, *, request_id: str, model: str | None, text: str, handoff_id: str | None = None) -> dict[str, Any]:
        """A whole answer carrying the policy's fallback text, shaped as the client expects."""
        return {
            "id": f"aimsguard-{request_id}",
            "object": self.object_name,
            "created": int(time.time()),
            "model": model or "aimsguard",
            "choices": [{**self._choice(0, text, "content_filter", whole=True), "logprobs": None}],
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
            **handoff_field(handoff_id),
        }

    def _chunk_base(self, request_id: str, model: str | None, template: dict[str, Any] | None) -> dict[str, Any]:
        """``template`` is an upstream chunk whose id, model and creation time are kept, so a
        stream stopped midway stays one consistent stream to the client."""
        base = {"id": f"aimsguard-{request_id}", "object": self.chunk_object_name, "created": int(time.time()), "model": model or "aimsguard"}
        if template:
            base.update({k: template[k] for k in ("id", "object", "created", "model", "system_fingerprint") if k in template})
        return base

    def fallback_chunks(
        self, *, request_id: str, model: str | None, text: str, template: dict[str, Any] | None = None, handoff_id: str | None = None
    ) -> list[dict[str, Any]]:
        """The streamed events that end a stream with the fallback text."""
        base = self._chunk_base(request_id, model, template)
        return [
            {**base, "choices": [self._choice(0, text, None, whole=False)], **handoff_field(handoff_id)},
            {**base, "choices": [self._choice(0, "", "content_filter", whole=False)]},
        ]

    def rest_chunk(self, *, request_id: str, model: str | None, template: dict[str, Any] | None, key: Hashable, text: str) -> dict[str, Any]:
        index = key[0] if isinstance(key, tuple) else key
        assert isinstance(index, int)
        return {**self._chunk_base(request_id, model, template), "choices": [self._choice(index, text, None, whole=False)]}

    def error_body(self, error: AimsguardError) -> dict[str, Any]:
        return error_body(error)


class OpenAIChat(_OpenAIDialect):
    operation = "chat"
    input_keys = ("messages",)
    object_name = "chat.completion"
    chunk_object_name = "chat.completion.chunk"
    answer_holder = "message"
    delta_holder = "delta"
    text_key = "content"

    request_model = _ChatRequest

    def _located(self, body: dict[str, Any], parsed: Any) -> ParsedRequest:
        texts: list[str] = []
        locations: list[tuple[Any, ...]] = []
        roles: list[str] = []
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
        return ParsedRequest(body, parsed.model, parsed.stream, texts, locations, roles or None)

    def _tool_functions(self, choice: dict[str, Any]) -> list[dict[str, Any]]:
        """The ``function`` dicts of an answer's tool calls whose arguments are text."""
        message = choice.get("message")
        calls = message.get("tool_calls") if isinstance(message, dict) else None
        if not isinstance(calls, list):
            return []
        functions = [call.get("function") for call in calls if isinstance(call, dict)]
        return [f for f in functions if isinstance(f, dict) and isinstance(f.get("arguments"), str)]

    def _drop_tool_calls(self, choice: dict[str, Any]) -> None:
        if isinstance(choice.get("message"), dict):
            choice["message"].pop("tool_calls", None)

    def _delta_tool_calls(self, holder: dict[str, Any], index: int) -> list[StreamPiece]:
        """Tool-call arguments stream as text too, each call under its own window."""
        calls = holder.get("tool_calls")
        if not isinstance(calls, list):
            return []
        pieces = []
        for call in calls:
            function = call.get("function") if isinstance(call, dict) else None
            call_index = call.get("index", 0) if isinstance(call, dict) else None
            if isinstance(function, dict) and isinstance(function.get("arguments"), str) and isinstance(call_index, int):
                pieces.append(StreamPiece((index, call_index), index, function["arguments"], _setter(function, "arguments"), tool_call=True))
        return pieces

    def _choice(self, index: int, text: str, finish_reason: str | None, *, whole: bool) -> dict[str, Any]:
        if whole:
            return {"index": index, "message": {"role": "assistant", "content": text}, "finish_reason": finish_reason}
        delta: dict[str, Any] = {"role": "assistant", "content": text} if finish_reason is None else {}
        return {"index": index, "delta": delta, "finish_reason": finish_reason}

    def rest_chunk(self, *, request_id: str, model: str | None, template: dict[str, Any] | None, key: Hashable, text: str) -> dict[str, Any]:
        chunk = super().rest_chunk(request_id=request_id, model=model, template=template, key=key, text=text)
        chunk["choices"][0]["delta"] = (
            {"tool_calls": [{"index": key[1], "function": {"arguments": text}}]} if isinstance(key, tuple) else {"content": text}
        )
        return chunk


class OpenAICompletions(_OpenAIDialect):
    operation = "text_completion"
    input_keys = ("prompt",)
    object_name = "text_completion"
    chunk_object_name = "text_completion"
    answer_holder = None
    delta_holder = None
    text_key = "text"

    request_model = _CompletionRequest

    def _located(self, body: dict[str, Any], parsed: Any) -> ParsedRequest:
        if isinstance(parsed.prompt, str):
            return ParsedRequest(body, parsed.model, parsed.stream, [parsed.prompt], [("prompt",)])
        locations: list[tuple[Any, ...]] = [("prompt", i) for i in range(len(parsed.prompt))]
        return ParsedRequest(body, parsed.model, parsed.stream, list(parsed.prompt), locations)

    def _choice(self, index: int, text: str, finish_reason: str | None, *, whole: bool) -> dict[str, Any]:
        return {"index": index, "text": text, "finish_reason": finish_reason}


OPENAI_CHAT = OpenAIChat()
OPENAI_COMPLETIONS = OpenAICompletions()


class _EmbeddingRequest(_Open):
    model: str | None = None
    input: str | list[str] | list[int] | list[list[int]]


class OpenAIEmbeddings(Dialect):
    """``POST /v1/embeddings``: input checks only. A vector has no text to check or to replace
    with a fallback, so a stopped exchange is answered with an error (``refusal``), and the
    answer is relayed as it comes, unbuffered (its usage read from its tail).

    Token-array inputs (``[1, 2, 3]``, ``[[1, 2], [3]]``) are refused with 400
    ``input_not_checkable``: the checks read text, and decoding tokens needs the model's own
    tokenizer, which aimsguard cannot fetch at run time. (LangChain's ``OpenAIEmbeddings`` sends
    token arrays unless ``check_embedding_ctx_length=False``.)
    """

    operation = "embeddings"
    input_keys = ("input",)
    has_output = False

    def _parse(self, body: dict[str, Any], limits: RequestLimits | None) -> ParsedRequest:
        if isinstance(body.get("input"), list):
            self.check_count(len(body["input"]), limits, "input")
        parsed = _validated(_EmbeddingRequest, body)
        if isinstance(parsed.input, str):
            return ParsedRequest(body, parsed.model, False, [parsed.input], [("input",)], ["user"])
        if parsed.input and not all(isinstance(item, str) for item in parsed.input):
            raise RequestError(
                "input: token arrays cannot be checked (aimsguard reads text); send the text itself",
                code="input_not_checkable",
                param="input",
            )
        texts = list(parsed.input)
        return ParsedRequest(body, parsed.model, False, texts, [("input", i) for i in range(len(texts))], ["user"] * len(texts))

    def refusal(self, action: str, stopped: bool) -> AimsguardError:
        if stopped:
            return RequestError("this AI system is stopped (its stop switch is on); nothing was sent", status_code=503, code="system_stopped")
        return RequestError(
            f"the input was stopped by the system's checks ({action}); nothing was sent to the model", code="content_blocked", param="input"
        )

    def answer_texts(self, answer: dict[str, Any]) -> list[str]:
        return []

    def replace_answer_texts(self, answer: dict[str, Any], texts: list[str], finish_reason: str | None = None) -> None:
        pass

    def finish_reasons(self, answer: dict[str, Any]) -> list[str]:
        return []

    def usage_of(self, answer: dict[str, Any]) -> tuple[int | None, int | None]:
        usage = answer.get("usage")
        tokens = usage.get("prompt_tokens") if isinstance(usage, dict) else None
        return (tokens if isinstance(tokens, int) else None), None

    def usage_of_tail(self, tail: bytes) -> tuple[int | None, int | None]:
        """The usage at the end of an answer relayed unread (its ``data`` holds only numbers)."""
        found = _PROMPT_TOKENS.findall(tail)
        return (int(found[-1]) if found else None), None

    def chunk_view(self, chunk: dict[str, Any]) -> ChunkView:
        return ChunkView()

    def stream_error(self, chunk: dict[str, Any]) -> str | None:
        return None

    def trimmed(self, chunk: dict[str, Any]) -> dict[str, Any] | None:
        return chunk

    def rest_chunk(self, *, request_id: str, model: str | None, template: dict[str, Any] | None, key: Hashable, text: str) -> dict[str, Any]:
        raise NotImplementedError("embeddings do not stream")

    def encode_event(self, chunk: dict[str, Any]) -> bytes:
        return encode_data(chunk)

    def fallback_answer(self, *, request_id: str, model: str | None, text: str, handoff_id: str | None = None) -> dict[str, Any]:
        raise NotImplementedError("an embedding has no fallback: see refusal")

    def fallback_chunks(
        self, *, request_id: str, model: str | None, text: str, template: dict[str, Any] | None = None, handoff_id: str | None = None
    ) -> list[dict[str, Any]]:
        raise NotImplementedError("an embedding has no fallback: see refusal")

    def refused_answer(self, answer: dict[str, Any], text: str, handoff_id: str | None) -> None:
        pass

    def error_body(self, error: AimsguardError) -> dict[str, Any]:
        return error_body(error)


_PROMPT_TOKENS = re.compile(rb'"prompt_tokens"\s*:\s*(\d+)')

OPENAI_EMBEDDINGS = OpenAIEmbeddings()
