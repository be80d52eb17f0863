"""SDK hooks for Python code that calls a model itself.

Three ways in, all running the same pipeline and emitting the same events as the
gateway:

- ``GuardedExchange``: an (async) context manager around one call, for full control;
- ``guarded``: a decorator for a sync or async function from prompt/messages to text;
- ``guard_openai``: wraps an official ``openai`` client (sync or async, streaming or
  not); ``client.chat.completions.create``, ``client.completions.create``,
  ``client.responses.create`` and ``client.embeddings.create`` (input checks only; a
  stopped exchange raises ``Blocked``) are guarded (``client.responses.stream`` and
  ``.parse`` raise ``NotImplementedError`` rather than bypass the checks);
- ``guard_anthropic``: wraps an official ``anthropic`` client the same way;
  ``client.messages.create`` and ``client.messages.stream`` are guarded.

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

from ._dialect import Dialect
from ._dialect_anthropic import ANTHROPIC_MESSAGES
from ._dialect_openai import OPENAI_CHAT, OPENAI_COMPLETIONS, OPENAI_EMBEDDINGS
from ._dialect_responses import OPENAI_RESPONSES
from ._driver import SAME, ExchangeDriver
from ._errors import AimsguardError
from ._exchange import Exchange, ExchangeStatus
from ._guard import Guard
from ._outcomes import decision_fields, split_decision
from ._routes import ROUTES

__all__ = ["Blocked", "GuardedExchange", "guard_anthropic", "guard_openai", "guarded"]

T = TypeVar("T")
# The dialect a GuardedExchange reads by default: the first route's for its operation (OpenAI
# chat for "chat"; a client wrapper sets its own API's dialect).
_BY_OPERATION: dict[str, Dialect] = {}
for _dialect in ROUTES.values():
    _BY_OPERATION.setdefault(_dialect.operation, _dialect)


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
        operation: str = "chat",
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
        self.driver = ExchangeDriver(guard, self.exchange, _BY_OPERATION.get(operation, OPENAI_CHAT))
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
        single = isinstance(texts, str)
        decision = await self.driver.check_input([texts] if single else list(texts))
        if decision.fallback:  # a check that failed closed stops it too: the caller gets the fallback
            raise Blocked(self.exchange, self.fallback)
        assert decision.texts is not None
        self.exchange.upstream_started = _now()
        return decision.texts[0] if single else decision.texts

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
        driver = self.driver
        try:
            async for chunk in chunks:
                released = await driver.release(0, chunk)
                if driver.stopped:
                    break
                if released:
                    yield released
            if not driver.stopped:
                rest = await driver.window(0).finish()
                if rest:
                    self.exchange.mark_first_token()
                    yield rest
            self.exchange.upstream_finished = _now()
            driver.record_streams()  # before the fallback: it depends on the recorded action (block or escalate)
            if driver.stopped:
                yield self.fallback
        finally:
            self.exchange.upstream_finished = self.exchange.upstream_finished or _now()
            driver.record_streams()

    def record_usage(self, input_tokens: int | None = None, output_tokens: int | None = None, response_model: str | None = None) -> None:
        self.exchange.input_tokens = input_tokens if input_tokens is not None else self.exchange.input_tokens
        self.exchange.output_tokens = output_tokens if output_tokens is not None else self.exchange.output_tokens
        self.exchange.response_model = response_model or self.exchange.response_model

    def finish(self, error: BaseException | None = None) -> None:
        """Write the exchange event (done for you on leaving the ``with`` block)."""
        if self.driver.finished:
            return
        if isinstance(error, (asyncio.CancelledError, GeneratorExit, KeyboardInterrupt)):
            self.exchange.status = ExchangeStatus.CLIENT_DISCONNECTED
        elif error is not None and not isinstance(error, Blocked) and self.exchange.status is ExchangeStatus.OK:
            self.exchange.status = ExchangeStatus.ERROR
            self.exchange.error_code = type(error).__name__
        self.driver.finish()

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
    parsed = OPENAI_CHAT.parse_body({"messages": copy.deepcopy(value)})
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


# -- the official clients' wrappers ------------------------------------------------------


class _Objects:
    """How one client library's objects are made from the driver's dicts: a whole answer,
    and a stream event (``like``: the event it replaces, or None for one of aimsguard's own)."""

    def __init__(self, answer: Callable[[dict[str, Any]], Any], event: Callable[[dict[str, Any], Any], Any]) -> None:
        self.answer = answer
        self.event = event


def _openai_objects(answer_type: Any, chunk_type: Any) -> _Objects:
    # Built the way the client builds streamed chunks: without validation (a streamed text
    # chunk has no finish reason, which Completion's model would refuse).
    return _Objects(answer_type.model_validate, lambda data, like: (type(like) if like is not None else chunk_type).construct(**data))


def _rebuilt(cls: Any, data: dict[str, Any]) -> Any:
    """The client's answer object from a checked dict: validated, or where the upstream left
    out fields the client's model requires, built the way the client built it."""
    from openai._models import construct_type_unchecked
    from pydantic import ValidationError

    try:
        return cls.model_validate(data)
    except ValidationError:
        return construct_type_unchecked(type_=cls, value=data)


def _responses_objects() -> _Objects:
    from openai._models import construct_type_unchecked
    from openai.types.responses import Response, ResponseStreamEvent

    # Events differ in type: each is built as the one its "type" names, unvalidated, as the client does.
    return _Objects(
        lambda data: _rebuilt(Response, data),
        lambda data, like: construct_type_unchecked(type_=ResponseStreamEvent, value=data),  # type: ignore[arg-type]
    )


def _unguarded(name: str, instead: str) -> Callable[..., Any]:
    """A client method aimsguard cannot guard yet: refused, never passed unchecked."""

    def refuse(*_: Any, **__: Any) -> Any:
        raise NotImplementedError(f"client.{name} is not guarded by aimsguard; use client.{instead}")

    return refuse


def _anthropic_objects() -> _Objects:
    from anthropic import types

    events = {
        "message_start": types.RawMessageStartEvent,
        "message_delta": types.RawMessageDeltaEvent,
        "message_stop": types.RawMessageStopEvent,
        "content_block_start": types.RawContentBlockStartEvent,
        "content_block_delta": types.RawContentBlockDeltaEvent,
        "content_block_stop": types.RawContentBlockStopEvent,
    }
    # Events differ in type: each is built as the one its "type" names, as the client does.
    return _Objects(types.Message.model_validate, lambda data, like: events[data["type"]].construct(**data))


def guard_openai(client: Any, guard: Guard, system: str | None = None) -> Any:
    """Return ``client`` with chat and text completions, Responses and embeddings guarded;
    everything else untouched.

    A decision system passes its outcome and groups as ``extra_body={"aimsguard": {...}}``:
    recorded for the bias monitor, never sent upstream.
    """
    import openai
    from openai.types import Completion, CreateEmbeddingResponse
    from openai.types.chat import ChatCompletion, ChatCompletionChunk

    is_async = isinstance(client, openai.AsyncOpenAI)
    chat = _GuardedCreate(client.chat.completions, guard, system, OPENAI_CHAT, _openai_objects(ChatCompletion, ChatCompletionChunk), is_async)
    completions = _GuardedCreate(client.completions, guard, system, OPENAI_COMPLETIONS, _openai_objects(Completion, Completion), is_async)
    embeddings = _GuardedCreate(
        client.embeddings, guard, system, OPENAI_EMBEDDINGS, _openai_objects(CreateEmbeddingResponse, CreateEmbeddingResponse), is_async
    )
    responses = _Namespace(
        client.responses,
        create=_GuardedCreate(client.responses, guard, system, OPENAI_RESPONSES, _responses_objects(), is_async).create,
        stream=_unguarded("responses.stream", "responses.create(stream=True)"),
        parse=_unguarded("responses.parse", "responses.create"),
    )
    return _Namespace(
        client, chat=_Namespace(client.chat, completions=chat), completions=completions, embeddings=embeddings, responses=responses
    )


def guard_anthropic(client: Any, guard: Guard, system: str | None = None) -> Any:
    """Return an ``anthropic`` client (``Anthropic`` or ``AsyncAnthropic``) with
    ``messages.create`` (streaming or not) and ``messages.stream`` guarded; everything else
    untouched. A decision is passed as with ``guard_openai``: ``extra_body={"aimsguard": {...}}``.
    """
    import anthropic

    is_async = isinstance(client, anthropic.AsyncAnthropic)
    messages = _GuardedMessages(client.messages, guard, system, ANTHROPIC_MESSAGES, _anthropic_objects(), is_async)
    return _Namespace(client, messages=messages)


class _Namespace:
    def __init__(self, wrapped: Any, **overrides: Any) -> None:
        self._wrapped = wrapped
        self.__dict__.update(overrides)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._wrapped, name)


class _GuardedCreate:
    def __init__(self, resource: Any, guard: Guard, system: str | None, dialect: Dialect, objects: _Objects, is_async: bool) -> None:
        self._resource = resource
        self._guard = guard
        self._system = system
        self._dialect = dialect
        self._objects = objects
        self._is_async = is_async

    def __getattr__(self, name: str) -> Any:
        return getattr(self._resource, name)

    def _call(self, kwargs: dict[str, Any]) -> _ClientCall:
        return _ClientCall(self._guard, self._system, self._dialect, self._objects, kwargs)

    def create(self, **kwargs: Any) -> Any:
        if self._is_async:
            return self._acreate(**kwargs)
        call = self._call(kwargs)
        with call.finishing():
            kwargs = _run_sync(self._guard, call.before())
            if call.fallback is not None:
                return call.fallback_response()
            response = self._resource.create(**kwargs)
            if call.stream:
                return _SyncStream(call, response)
            return _run_sync(self._guard, call.after(response))

    async def _acreate(self, **kwargs: Any) -> Any:
        call = self._call(kwargs)
        with call.finishing():
            kwargs = await call.before()
            if call.fallback is not None:
                return call.fallback_response(is_async=True)
            response = await self._resource.create(**kwargs)
            if call.stream:
                return _AsyncStream(call, response)
            return await call.after(response)


class _GuardedMessages(_GuardedCreate):
    """Anthropic's ``messages``: ``create`` as above, and ``stream``, the SDK's own helper
    (text events, ``get_final_message()``) over the guarded stream of events."""

    def stream(self, **kwargs: Any) -> Any:
        from anthropic.lib.streaming import AsyncMessageStream, MessageStream

        if "output_format" in kwargs:
            raise TypeError("guard_anthropic: messages.stream(output_format=...) is not guarded; pass output_config instead")
        if self._is_async:
            return _StreamManager(lambda: self._acreate(**kwargs, stream=True), AsyncMessageStream)
        return _StreamManager(lambda: self.create(**kwargs, stream=True), MessageStream)


class _StreamManager:
    """What ``messages.stream`` returns: a (async) context manager giving the SDK's MessageStream."""

    def __init__(self, open_stream: Callable[[], Any], stream_type: Any) -> None:
        from anthropic import NOT_GIVEN

        self._open = open_stream
        self._type = stream_type
        self._not_given = NOT_GIVEN
        self._stream: Any = None

    def __enter__(self) -> Any:
        self._stream = self._type(self._open(), output_format=self._not_given)
        return self._stream

    def __exit__(self, *_: object) -> None:
        if self._stream is not None:
            self._stream.close()

    async def __aenter__(self) -> Any:
        self._stream = self._type(await self._open(), output_format=self._not_given)
        return self._stream

    async def __aexit__(self, *_: object) -> None:
        if self._stream is not None:
            await self._stream.close()


def _take_decision(kwargs: dict[str, Any]) -> tuple[dict[str, Any], Any, dict[Any, Any]]:
    """A decision in ``extra_body={"aimsguard": {...}}``: (the call's kwargs without it, outcome, groups)."""
    extra = kwargs.get("extra_body")
    if not isinstance(extra, dict) or "aimsguard" not in extra:
        return kwargs, None, {}
    outcome, groups = split_decision(extra["aimsguard"], "extra_body.aimsguard")
    rest = {key: value for key, value in extra.items() if key != "aimsguard"}
    kwargs = {key: value for key, value in kwargs.items() if key != "extra_body"}
    return ({**kwargs, "extra_body": rest} if rest else kwargs), outcome, groups


class _ClientCall:
    """One ``create`` call of an official client, adapted to the exchange driver: the client's objects in and out."""

    def __init__(self, guard: Guard, system: str | None, dialect: Dialect, objects: _Objects, kwargs: dict[str, Any]) -> None:
        self.guard = guard
        self.dialect = dialect
        self.objects = objects
        self.kwargs, outcome, groups = _take_decision(kwargs)
        self.stream = bool(kwargs.get("stream"))
        self.ex = GuardedExchange(
            guard, system, model=kwargs.get("model"), operation=dialect.operation, stream=self.stream, outcome=outcome, groups=groups
        )
        self.driver = self.ex.driver = ExchangeDriver(guard, self.ex.exchange, dialect)  # this API's dialect, whatever the operation
        self.fallback: str | None = None

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
        keys = [key for key in self.dialect.input_keys if key in self.kwargs]
        parsed = self.driver.read_fields({key: copy.deepcopy(self.kwargs[key]) for key in keys})
        try:
            texts = await self.ex.check_input(parsed.texts)
        except Blocked as blocked:
            if self.driver.refusal() is not None:
                raise  # an API without a text answer (embeddings) has no fallback to return
            self.fallback = blocked.fallback
            return self.kwargs
        if texts != parsed.texts:
            parsed.with_texts(texts)
            return {**self.kwargs, **{key: parsed.body[key] for key in keys}}
        return self.kwargs

    def fallback_response(self, is_async: bool = False) -> Any:
        assert self.fallback is not None
        if not self.stream:
            return self.objects.answer(self.driver.fallback_answer())
        return _ListStream([self.objects.event(c, None) for c in self.driver.fallback_chunks()], is_async)

    async def after(self, response: Any) -> Any:
        self.ex.exchange.upstream_finished = _now()
        if not self.dialect.has_output:  # a vector: nothing to check, and too large to copy for nothing
            usage = getattr(response, "usage", None)
            self.driver.note_usage(getattr(usage, "prompt_tokens", None), None)
            self.ex.exchange.mark_first_token()
            return response
        answer = response.model_dump()
        decision = await self.driver.check_answer(answer)  # checks that failed closed: the refusal
        return _rebuilt(type(response), answer) if decision.changed else response

    async def on_chunk(self, chunk: Any) -> list[Any]:
        """One streamed chunk in; the chunks the caller gets out (none, it, or the fallback's)."""
        events = await self.driver.on_event(chunk.model_dump())
        if self.driver.stopped:
            return self._stop_chunks()
        return [chunk if event is SAME else self.objects.event(event, chunk) for event in events]  # type: ignore[arg-type]

    async def on_end(self) -> list[Any]:
        self.ex.exchange.upstream_finished = _now()
        events = await self.driver.release_rest()
        if self.driver.stopped:
            return self._stop_chunks()
        self.driver.record_streams()
        return [self.objects.event(event, None) for event in events if isinstance(event, dict)]

    def _stop_chunks(self) -> list[Any]:
        return [self.objects.event(c, None) for c in self.driver.fallback_chunks()]


class _SyncStream:
    """Iterates a guarded client Stream; a ``with`` block or ``close()`` ends it."""

    def __init__(self, call: _ClientCall, stream: Any) -> None:
        self._call = call
        self._stream = stream
        self.response = getattr(stream, "response", None)

    def __iter__(self) -> Iterator[Any]:
        call, error = self._call, None
        try:
            for chunk in self._stream:
                yield from _run_sync(call.guard, call.on_chunk(chunk))
                if call.driver.stopped:
                    return
            yield from _run_sync(call.guard, call.on_end())
        except BaseException as exc:
            error = exc
            raise
        finally:
            self._stream.close()
            call.driver.record_streams()
            call.ex.finish(error)

    def close(self) -> None:
        self._stream.close()
        self._call.driver.record_streams()
        self._call.ex.finish(GeneratorExit())

    def __enter__(self) -> _SyncStream:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class _AsyncStream:
    def __init__(self, call: _ClientCall, stream: Any) -> None:
        self._call = call
        self._stream = stream
        self.response = getattr(stream, "response", None)

    async def __aiter__(self) -> AsyncIterator[Any]:
        call, error = self._call, None
        try:
            async for chunk in self._stream:
                for out in await call.on_chunk(chunk):
                    yield out
                if call.driver.stopped:
                    return
            for out in await call.on_end():
                yield out
        except BaseException as exc:
            error = exc
            raise
        finally:
            await self._stream.close()
            call.driver.record_streams()
            call.ex.finish(error)

    async def close(self) -> None:
        await self._stream.close()
        self._call.driver.record_streams()
        self._call.ex.finish(GeneratorExit())

    async def __aenter__(self) -> _AsyncStream:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()


async def _closed() -> None:
    pass


class _ListStream:
    """The fallback, streamed: iterable sync or async, like the client's own Stream."""

    response = None

    def __init__(self, chunks: list[Any], is_async: bool) -> None:
        self._chunks = chunks
        self._is_async = is_async

    def __iter__(self) -> Iterator[Any]:
        return iter(self._chunks)

    async def __aiter__(self) -> AsyncIterator[Any]:
        for chunk in self._chunks:
            yield chunk

    def close(self) -> Any:
        """Nothing to close; awaitable when the client is async, as its own stream's close is."""
        return _closed() if self._is_async else None

    def __enter__(self) -> _ListStream:
        return self

    def __exit__(self, *_: object) -> None:
        pass

    async def __aenter__(self) -> _ListStream:
        return self

    async def __aexit__(self, *_: object) -> None:
        pass
