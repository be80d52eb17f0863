"""SDK hooks for Python code that calls a model itself.

Three ways in, all running the same pipeline and emitting the same events as the
gateway:

- ``GuardedExchange``: an (async) context manager around one call, for full control;
- ``guarded``: a decorator for a sync or async function from prompt/messages to text;
- ``guard_openai``: wraps an official ``openai`` client (sync or async, streaming or
  not); ``client.chat.completions.create`` and ``client.completions.create`` are guarded.

Sync code is served by one event-loop thread per Guard, so the pipeline stays async
and a sync caller never needs a running loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import inspect
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from aimsguard.guardrails import Action

from ._errors import AimsguardError
from ._exchange import Exchange, ExchangeStatus
from ._guard import Guard
from ._outcomes import decision_fields, split_decision
from ._openai import (
    Operation,
    answer_texts,
    chunk_texts,
    fallback_chunks,
    fallback_completion,
    handoff_field,
    held_back_chunk,
    parse_body,
    replace_answer_texts,
    usage_of,
)
from ._streaming import StreamingOutputGuard

__all__ = ["Blocked", "GuardedExchange", "guard_openai", "guarded"]

T = TypeVar("T")


class Blocked(AimsguardError):
    """A check stopped the exchange. ``fallback`` is the policy's answer for the user."""

    status_code = 200
    code = "blocked"

    def __init__(self, exchange: Exchange, fallback: str) -> None:
        self.stopped = exchange.status is ExchangeStatus.STOPPED
        why = "the system's stop switch" if self.stopped else f"a check ({exchange.action.value})"
        super().__init__(f"exchange {exchange.request_id} was stopped by {why}")
        self.action = exchange.action
        self.request_id = exchange.request_id
        self.fallback = fallback
        self.handoff_id = exchange.handoff_id  # escalated: where the person's answer will be


# -- running async checks from sync code -------------------------------------------------


class _LoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, name="aimsguard-sdk", daemon=True).start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()


_loops: dict[int, _LoopThread] = {}
_loops_lock = threading.Lock()


def _run_sync(guard: Guard, coro: Coroutine[Any, Any, T]) -> T:
    with _loops_lock:
        runner = _loops.get(id(guard))
        if runner is None:
            runner = _loops[id(guard)] = _LoopThread()
    return runner.run(coro)


# -- the context manager -------------------------------------------------------------------


class GuardedExchange:
    """One guarded call. Use ``async with`` (or ``with`` from sync code)::

        async with GuardedExchange(guard, system="support-bot") as ex:
            prompt = await ex.check_input(prompt)       # raises Blocked when stopped
            answer = await ex.check_output(await llm(prompt))  # the fallback when stopped
    """

    def __init__(
        self,
        guard: Guard,
        system: str | None = None,
        *,
        conversation_id: str | None = None,
        model: str | None = None,
        metadata: dict[str, Any] | None = None,
        operation: Operation = "chat",
        stream: bool = False,
        outcome: str | None = None,
        groups: Mapping[str, str] | None = None,
    ) -> None:
        self.guard = guard
        self.exchange = guard.begin(
            guard.resolve_system(system),
            "sdk",
            conversation_id=conversation_id or "",
            model=model,
            metadata=dict(metadata or {}),
            operation=operation,
            stream=stream,
        )
        self._finished = False
        self.record_decision(outcome, groups)

    def record_decision(self, outcome: str | None = None, groups: Mapping[str, str] | None = None) -> None:
        """Attach a decision outcome and sensitive-feature groups (categories from the system's
        ``fairness`` section) for the bias monitor; may be called until the exchange finishes.
        Raises ``RequestError`` naming the allowed values when one is not in the policy."""
        system_id = self.exchange.system_id
        decision = decision_fields(self.guard.system(system_id).fairness, system_id, outcome, groups, where="decision")
        if "groups" in decision:
            decision["groups"] = {**self.exchange.metadata.get("groups", {}), **decision["groups"]}
        self.exchange.metadata.update(decision)

    @property
    def request_id(self) -> str:
        return self.exchange.request_id

    @property
    def action(self) -> Action:
        return self.exchange.action

    @property
    def fallback(self) -> str:
        return self.guard.fallback_text(self.exchange)

    @property
    def handoff_id(self) -> str | None:
        """The handoff ticket when the exchange escalated (fetch the answer: ``GET /v1/handoffs/{id}``)."""
        return self.exchange.handoff_id

    async def check_input(self, texts: str | list[str]) -> Any:
        """Run the input checks; return the texts as they may go on (redacted). Raises Blocked."""
        self.guard.ensure_accepting()
        if self.guard.is_stopped(self.exchange.system_id):
            self.exchange.status = ExchangeStatus.STOPPED
            raise Blocked(self.exchange, self.fallback)
        single = isinstance(texts, str)
        result = await self.guard.check_input(self.exchange, [texts] if single else list(texts))
        if result.action.stops_exchange:
            raise Blocked(self.exchange, self.fallback)
        self.exchange.upstream_started = _now()
        return result.texts[0] if single else result.texts

    async def check_documents(self, documents: Sequence[str]) -> list[str]:
        """Screen retrieved documents for injected instructions; return the ones safe to use.

        A document the checks would stop is left out (and recorded); the exchange goes on.
        """
        self.guard.ensure_accepting()
        results = await self.guard.check_documents(self.exchange, list(documents))
        return [document for document, result in zip(documents, results) if not result.action.stops_exchange]

    async def check_output(self, text: str) -> str:
        """Run the output checks on a whole answer; return what the user may see."""
        self.exchange.upstream_finished = self.exchange.upstream_finished or _now()
        result = await self.guard.check_output(self.exchange, [text])
        self.exchange.mark_first_token()
        return self.fallback if result.action.stops_exchange else result.texts[0]

    async def stream(self, chunks: AsyncIterator[str]) -> AsyncIterator[str]:
        """Guard a streamed answer: yields released text, then the fallback if a check stops it."""
        stream_guard = self.guard.stream_guard(self.exchange)
        recorded = False

        def record() -> None:
            nonlocal recorded
            if not recorded:
                recorded = True
                self.exchange.upstream_finished = _now()
                self.guard.record_stream(self.exchange, [stream_guard])

        try:
            async for chunk in chunks:
                released = await stream_guard.feed(chunk)
                if stream_guard.stopped:
                    break
                if released:
                    self.exchange.mark_first_token()
                    yield released
            rest = await stream_guard.finish()
            if rest:
                self.exchange.mark_first_token()
                yield rest
            record()  # before the fallback: it depends on the recorded action (block or escalate)
            if stream_guard.stopped:
                yield self.fallback
        finally:
            record()

    def record_usage(self, input_tokens: int | None = None, output_tokens: int | None = None, response_model: str | None = None) -> None:
        self.exchange.input_tokens = input_tokens if input_tokens is not None else self.exchange.input_tokens
        self.exchange.output_tokens = output_tokens if output_tokens is not None else self.exchange.output_tokens
        self.exchange.response_model = response_model or self.exchange.response_model

    def finish(self, error: BaseException | None = None) -> None:
        """Write the exchange event (done for you on leaving the ``with`` block)."""
        if self._finished:
            return
        self._finished = True
        if isinstance(error, (asyncio.CancelledError, GeneratorExit, KeyboardInterrupt)):
            self.exchange.status = ExchangeStatus.CLIENT_DISCONNECTED
        elif error is not None and not isinstance(error, Blocked) and self.exchange.status is ExchangeStatus.OK:
            self.exchange.status = ExchangeStatus.ERROR
            self.exchange.error_code = type(error).__name__
        self.guard.finish(self.exchange)

    async def __aenter__(self) -> GuardedExchange:
        return self

    async def __aexit__(self, _: object, error: BaseException | None, __: object) -> None:
        self.finish(error)

    def __enter__(self) -> GuardedExchange:
        return self

    def __exit__(self, _: object, error: BaseException | None, __: object) -> None:
        self.finish(error)

    # sync faces of the same steps
    def check_input_sync(self, texts: str | list[str]) -> Any:
        return _run_sync(self.guard, self.check_input(texts))

    def check_output_sync(self, text: str) -> str:
        return _run_sync(self.guard, self.check_output(text))

    def check_documents_sync(self, documents: Sequence[str]) -> list[str]:
        return _run_sync(self.guard, self.check_documents(documents))


def _now() -> float:
    return time.perf_counter()


# -- the decorator ---------------------------------------------------------------------------


def _input_texts(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str, Any]:
    """Where the function's input is: ('prompt'|'messages'|'arg0', value)."""
    for key in ("messages", "prompt"):
        if key in kwargs:
            return key, kwargs[key]
    if args:
        return "arg0", args[0]
    raise TypeError("a guarded function takes its prompt or messages as the first argument or as prompt=/messages=")


def _texts_of(value: Any) -> tuple[list[str], Callable[[list[str]], Any]]:
    """The texts in a prompt (str) or a messages list, and how to put redacted ones back."""
    if isinstance(value, str):
        return [value], lambda texts: texts[0]
    parsed = parse_body("chat", {"messages": copy.deepcopy(value)})
    return parsed.texts, lambda texts: (parsed.with_texts(texts), parsed.body["messages"])[1]


def guarded(
    guard: Guard, system: str | None = None, *, on_block: str = "fallback"
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Guard a function ``f(prompt_or_messages, ...) -> str`` (sync or async).

    The input (a string or an OpenAI-style messages list, first argument or
    ``prompt=``/``messages=``) is checked and redacted before the call, the returned
    text after it. When a check stops the exchange the function returns the policy's
    fallback text (``on_block="fallback"``) or raises ``Blocked`` (``on_block="raise"``).
    A decision system's call may carry ``aimsguard={"outcome": ..., "groups": {...}}``: it is
    recorded for the bias monitor and not passed to the function.
    """
    if on_block not in ("fallback", "raise"):
        raise ValueError("on_block must be 'fallback' or 'raise'")

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        async def run(call: Callable[[tuple[Any, ...], dict[str, Any]], Awaitable[str]], args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
            outcome, groups = split_decision(kwargs.pop("aimsguard", None), "aimsguard")
            where, value = _input_texts(args, kwargs)
            texts, put_back = _texts_of(value)
            async with GuardedExchange(guard, system, outcome=outcome, groups=groups) as ex:
                try:
                    redacted = await ex.check_input(texts)
                except Blocked:
                    if on_block == "raise":
                        raise
                    return ex.fallback
                if where == "arg0":
                    args = (put_back(redacted), *args[1:])
                else:
                    kwargs = {**kwargs, where: put_back(redacted)}
                answer = await ex.check_output(await call(args, kwargs))
                if ex.action.stops_exchange and on_block == "raise":
                    raise Blocked(ex.exchange, ex.fallback)
                return answer

        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> str:
                async def call(a: tuple[Any, ...], k: dict[str, Any]) -> str:
                    return await func(*a, **k)

                return await run(call, args, kwargs)

            return async_wrapper

        @functools.wraps(func)
        def sync_wrapper(*args: Any, **kwargs: Any) -> str:
            async def call(a: tuple[Any, ...], k: dict[str, Any]) -> str:
                # The user's function runs off the checks' loop thread so it may block freely.
                return await asyncio.to_thread(func, *a, **k)

            return _run_sync(guard, run(call, args, kwargs))

        return sync_wrapper

    return decorate


# -- the openai client wrapper ---------------------------------------------------------------


def guard_openai(client: Any, guard: Guard, system: str | None = None) -> Any:
    """Return ``client`` with chat and text completions guarded; everything else untouched.

    A decision system passes its outcome and groups as ``extra_body={"aimsguard": {...}}``:
    recorded for the bias monitor, never sent upstream.
    """
    import openai

    is_async = isinstance(client, openai.AsyncOpenAI)
    return _GuardedClient(client, guard, system, is_async)


class _GuardedClient:
    def __init__(self, client: Any, guard: Guard, system: str | None, is_async: bool) -> None:
        self._client = client
        self.chat = _Namespace(client.chat, completions=_GuardedCreate(client.chat.completions, guard, system, "chat", is_async))
        self.completions = _GuardedCreate(client.completions, guard, system, "text_completion", is_async)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


class _Namespace:
    def __init__(self, wrapped: Any, **overrides: Any) -> None:
        self._wrapped = wrapped
        self.__dict__.update(overrides)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._wrapped, name)


class _GuardedCreate:
    def __init__(self, resource: Any, guard: Guard, system: str | None, operation: Operation, is_async: bool) -> None:
        self._resource = resource
        self._guard = guard
        self._system = system
        self._operation = operation
        self._is_async = is_async

    def __getattr__(self, name: str) -> Any:
        return getattr(self._resource, name)

    def create(self, **kwargs: Any) -> Any:
        if self._is_async:
            return self._acreate(**kwargs)
        call = _OpenAICall(self._guard, self._system, self._operation, kwargs)
        with call.finishing():
            kwargs = _run_sync(self._guard, call.before())
            if call.fallback is not None:
                return call.fallback_response()
            response = self._resource.create(**kwargs)
            if call.stream:
                return _SyncStream(call, response)
            return _run_sync(self._guard, call.after(response))

    async def _acreate(self, **kwargs: Any) -> Any:
        call = _OpenAICall(self._guard, self._system, self._operation, kwargs)
        with call.finishing():
            kwargs = await call.before()
            if call.fallback is not None:
                return call.fallback_response(is_async=True)
            response = await self._resource.create(**kwargs)
            if call.stream:
                return _AsyncStream(call, response)
            return await call.after(response)


def _take_decision(kwargs: dict[str, Any]) -> tuple[dict[str, Any], Any, dict[Any, Any]]:
    """A decision in ``extra_body={"aimsguard": {...}}``: (the call's kwargs without it, outcome, groups)."""
    extra = kwargs.get("extra_body")
    if not isinstance(extra, dict) or "aimsguard" not in extra:
        return kwargs, None, {}
    outcome, groups = split_decision(extra["aimsguard"], "extra_body.aimsguard")
    rest = {key: value for key, value in extra.items() if key != "aimsguard"}
    kwargs = {key: value for key, value in kwargs.items() if key != "extra_body"}
    return ({**kwargs, "extra_body": rest} if rest else kwargs), outcome, groups


class _OpenAICall:
    """The guarded steps of one openai ``create`` call, on the client's own objects."""

    def __init__(self, guard: Guard, system: str | None, operation: Operation, kwargs: dict[str, Any]) -> None:
        self.guard = guard
        self.operation = operation
        self.kwargs, outcome, groups = _take_decision(kwargs)
        self.stream = bool(kwargs.get("stream"))
        self.ex = GuardedExchange(
            guard, system, model=kwargs.get("model"), operation=operation, stream=self.stream, outcome=outcome, groups=groups
        )
        self.fallback: str | None = None
        self.stream_guards: dict[int | tuple[int, int], StreamingOutputGuard] = {}
        self.template: dict[str, Any] | None = None
        self._streams_recorded = False

    @contextlib.contextmanager
    def finishing(self) -> Iterator[None]:
        """Record the exchange when ``create`` returns, unless a stream goes on being read."""
        try:
            yield
        except BaseException as error:
            self.ex.finish(error)
            raise
        finally:
            if not self.stream or self.fallback is not None:
                self.ex.finish()

    async def before(self) -> dict[str, Any]:
        key = "messages" if self.operation == "chat" else "prompt"
        parsed = parse_body(self.operation, {key: copy.deepcopy(self.kwargs.get(key))})
        self.ex.exchange.input_roles = list(parsed.roles or [])
        if parsed.system_prompt:
            self.ex.exchange.metadata["system_prompt"] = parsed.system_prompt
        try:
            texts = await self.ex.check_input(parsed.texts)
        except Blocked as blocked:
            self.fallback = blocked.fallback
            return self.kwargs
        if texts != parsed.texts:
            parsed.with_texts(texts)
            return {**self.kwargs, key: parsed.body[key]}
        return self.kwargs

    def fallback_response(self, is_async: bool = False) -> Any:
        from openai.types import Completion
        from openai.types.chat import ChatCompletion, ChatCompletionChunk

        assert self.fallback is not None
        model = self.kwargs.get("model")
        if not self.stream:
            body = fallback_completion(
                self.operation, request_id=self.ex.request_id, model=model, text=self.fallback, handoff_id=self.ex.handoff_id
            )
            return (ChatCompletion if self.operation == "chat" else Completion).model_validate(body)
        cls = ChatCompletionChunk if self.operation == "chat" else Completion
        data = fallback_chunks(self.operation, request_id=self.ex.request_id, model=model, text=self.fallback, handoff_id=self.ex.handoff_id)
        chunks = [_build(cls, c) for c in data]
        return _ListStream(chunks, is_async)

    async def after(self, response: Any) -> Any:
        answer = response.model_dump()
        exchange = self.ex.exchange
        exchange.input_tokens, exchange.output_tokens = usage_of(answer)
        exchange.response_model = answer.get("model")
        exchange.finish_reasons = [str(c.get("finish_reason")) for c in answer.get("choices", [])]
        texts = answer_texts(self.operation, answer)
        exchange.upstream_finished = _now()
        result = await self.guard.check_output(exchange, texts)
        exchange.mark_first_token()
        if result.action.stops_exchange:
            replace_answer_texts(self.operation, answer, [self.ex.fallback], "content_filter")
            answer.update(handoff_field(self.ex.handoff_id))
        elif result.redacted:
            replace_answer_texts(self.operation, answer, result.texts)
        else:
            return response
        return type(response).model_validate(answer)

    async def on_chunk(self, chunk: Any) -> list[Any]:
        """One streamed chunk in; the chunks the caller gets out (none, it, or the fallback's)."""
        data = chunk.model_dump()
        self.template = self.template or data
        exchange = self.ex.exchange
        input_tokens, output_tokens = usage_of(data)
        if input_tokens is not None or output_tokens is not None:
            exchange.input_tokens, exchange.output_tokens = input_tokens, output_tokens
        exchange.response_model = data.get("model") or exchange.response_model
        before: list[Any] = []  # the rest of tool-call arguments, sent before a choice's end
        for (index, holder, key, choice), obj_choice in zip(chunk_texts(self.operation, data), chunk.choices, strict=False):
            for call in (getattr(obj_choice.delta, "tool_calls", None) or []) if self.operation == "chat" else []:
                arguments = getattr(call.function, "arguments", None) if call.function is not None else None
                if not arguments:
                    continue
                tool_guard = self._stream_guard((index, call.index))
                released_arguments = await tool_guard.feed(arguments)
                if tool_guard.stopped:
                    return self._stop_chunks(type(chunk))
                call.function.arguments = released_arguments
            stream_guard = self._stream_guard(index)
            incoming = holder.get(key) or ""
            released = await stream_guard.feed(incoming) if incoming else ""
            if choice.get("finish_reason") is not None:
                for guard_key, tool_guard in list(self.stream_guards.items()):
                    if isinstance(guard_key, tuple) and guard_key[0] == index:
                        rest = await tool_guard.finish()
                        if tool_guard.stopped:
                            return self._stop_chunks(type(chunk))
                        if rest:
                            before.append(self._rest_chunk(type(chunk), guard_key, rest))
                released += await stream_guard.finish()
                exchange.finish_reasons.append(str(choice["finish_reason"]))
            if stream_guard.stopped:
                return self._stop_chunks(type(chunk))
            if released:
                exchange.mark_first_token()
            if released != incoming:
                if self.operation == "chat":
                    obj_choice.delta.content = released
                else:
                    obj_choice.text = released
        return [*before, chunk]

    def _stream_guard(self, key: int | tuple[int, int]) -> StreamingOutputGuard:
        """The window of a choice's content (key: choice index) or of a tool call's arguments."""
        if key not in self.stream_guards:
            self.stream_guards[key] = self.guard.stream_guard(self.ex.exchange)
        return self.stream_guards[key]

    def _rest_chunk(self, chunk_type: type, key: int | tuple[int, int], rest: str) -> Any:
        data = held_back_chunk(self.operation, request_id=self.ex.request_id, model=None, template=self.template, key=key, text=rest)
        return _build(chunk_type, data)

    async def on_end(self, chunk_type: type | None) -> list[Any]:
        exchange = self.ex.exchange
        exchange.upstream_finished = _now()
        out: list[Any] = []
        for key, stream_guard in self.stream_guards.items():
            rest = await stream_guard.finish()
            if stream_guard.stopped and chunk_type is not None:
                return self._stop_chunks(chunk_type)
            if rest and chunk_type is not None:
                out.append(self._rest_chunk(chunk_type, key, rest))
        self.record_streams()
        return out

    def record_streams(self) -> None:
        """Record the streamed choices' last verdicts once, however the stream ended."""
        if self.stream_guards and not self._streams_recorded:
            self._streams_recorded = True
            self.guard.record_stream(self.ex.exchange, list(self.stream_guards.values()))

    def _stop_chunks(self, chunk_type: type) -> list[Any]:
        self.record_streams()
        data = fallback_chunks(
            self.operation, request_id=self.ex.request_id, model=None, text=self.ex.fallback, template=self.template, handoff_id=self.ex.handoff_id
        )
        return [_build(chunk_type, c) for c in data]


def _build(cls: Any, data: dict[str, Any]) -> Any:
    """An openai object from our dict, built the way the client builds streamed chunks:
    without validation (a streamed text chunk has no finish reason, which Completion's
    model would refuse)."""
    return cls.construct(**data)


class _SyncStream:
    """Iterates a guarded openai Stream; a ``with`` block or ``close()`` ends it."""

    def __init__(self, call: _OpenAICall, stream: Any) -> None:
        self._call = call
        self._stream = stream
        self.response = getattr(stream, "response", None)

    def __iter__(self) -> Iterator[Any]:
        call, chunk_type, error = self._call, None, None
        try:
            for chunk in self._stream:
                chunk_type = type(chunk)
                out = _run_sync(call.guard, call.on_chunk(chunk))
                yield from out
                if call.ex.action.stops_exchange:
                    return
            yield from _run_sync(call.guard, call.on_end(chunk_type))
        except BaseException as exc:
            error = exc
            raise
        finally:
            self._stream.close()
            call.record_streams()
            call.ex.finish(error)

    def close(self) -> None:
        self._stream.close()
        self._call.record_streams()
        self._call.ex.finish(GeneratorExit())

    def __enter__(self) -> _SyncStream:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class _AsyncStream:
    def __init__(self, call: _OpenAICall, stream: Any) -> None:
        self._call = call
        self._stream = stream
        self.response = getattr(stream, "response", None)

    async def __aiter__(self) -> AsyncIterator[Any]:
        call, chunk_type, error = self._call, None, None
        try:
            async for chunk in self._stream:
                chunk_type = type(chunk)
                for out in await call.on_chunk(chunk):
                    yield out
                if call.ex.action.stops_exchange:
                    return
            for out in await call.on_end(chunk_type):
                yield out
        except BaseException as exc:
            error = exc
            raise
        finally:
            await self._stream.close()
            call.record_streams()
            call.ex.finish(error)

    async def close(self) -> None:
        await self._stream.close()
        self._call.record_streams()
        self._call.ex.finish(GeneratorExit())

    async def __aenter__(self) -> _AsyncStream:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()


class _ListStream:
    """The fallback, streamed: iterable sync or async, like the client's own Stream."""

    def __init__(self, chunks: list[Any], is_async: bool) -> None:
        self._chunks = chunks
        self._is_async = is_async

    def __iter__(self) -> Iterator[Any]:
        return iter(self._chunks)

    async def __aiter__(self) -> AsyncIterator[Any]:
        for chunk in self._chunks:
            yield chunk

    def close(self) -> None:
        pass

    def __enter__(self) -> _ListStream:
        return self

    def __exit__(self, *_: object) -> None:
        pass

    async def __aenter__(self) -> _ListStream:
        return self

    async def __aexit__(self, *_: object) -> None:
        pass
