"""Dialect: what one wire API looks like, for the exchange driver.

A dialect parses a request into the texts the input checks read (and writes redacted
texts back), reads and replaces the texts of an answer or of one stream event (tool-call
arguments included), and builds the bodies aimsguard answers with itself: the fallback,
whole or streamed, and errors. The driver (``_driver``) owns everything else, so a new
wire API is one dialect module plus one registration in ``dialect_for``; no code outside
a dialect asks which API it is serving.
"""

from __future__ import annotations

import abc
import json
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from ._errors import AimsguardError, RequestError

__all__ = ["JSON_VALUE", "ChunkView", "Dialect", "ParsedRequest", "RequestLimits", "StreamPiece"]


class _JsonValue:
    def __repr__(self) -> str:
        return "JSON_VALUE"


JSON_VALUE = _JsonValue()
"""Ends a text's location when the text is the JSON of a value (a tool call's input object):
the redacted text is decoded back into the value."""


@dataclass(frozen=True, slots=True)
class RequestLimits:
    """What one request may carry before its cost, not its meaning, refuses it (413)."""

    max_messages: int
    max_message_chars: int


@dataclass
class ParsedRequest:
    """A validated request, with where each checked text lives in the raw body."""

    body: dict[str, Any]
    model: str | None
    stream: bool
    texts: list[str]
    _locations: list[tuple[Any, ...]]
    roles: list[str] | None = None  # the role of each text's message, where the API has roles

    def with_texts(self, texts: list[str]) -> bytes:
        """The body with each checked text replaced (by its redacted form)."""
        for location, text in zip(self._locations, texts, strict=True):
            value: Any = text
            if location[-1] is JSON_VALUE:
                location, value = location[:-1], json_value(text)
            container: Any = self.body
            for key in location[:-1]:
                container = container[key]
            container[location[-1]] = value
        return json.dumps(self.body, ensure_ascii=False).encode()

    @property
    def question(self) -> str | None:
        return self.texts[-1] if self.texts else None

    @property
    def system_prompt(self) -> str | None:
        """The system and developer messages, for the output checks that guard them."""
        parts = [t for t, role in zip(self.texts, self.roles or [], strict=False) if role in ("system", "developer")]
        return "\n".join(parts) or None


def json_value(text: str) -> Any:
    """A value back from its checked JSON text. Redaction keeps JSON valid (placeholders
    hold no quotes); a restored value that broke it leaves an empty object, never the text unchecked."""
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return {}


@dataclass(slots=True)
class StreamPiece:
    """Text one stream event adds to one window: a choice's text (key: its index) or one
    tool call's arguments (key: (choice index, call index)). ``put`` writes back what may
    be released of it."""

    key: Hashable
    choice: int
    text: str
    put: Callable[[str], None]
    tool_call: bool = False


@dataclass(slots=True)
class ChunkView:
    """The texts of one stream event, in order (a choice's tool calls before its text),
    and the choices that end with it (index → finish reason)."""

    pieces: list[StreamPiece] = field(default_factory=list)
    finished: dict[int, str] = field(default_factory=dict)
    choices: list[int] = field(default_factory=list)  # every choice the event speaks of, in order
    ended: list[Hashable] = field(default_factory=list)
    """Windows this event closes (an Anthropic ``content_block_stop``): what they hold back goes
    out, checked, just before it."""
    whole: list[tuple[Hashable, str, Callable[[str], None]]] = field(default_factory=list)
    """Texts the event repeats whole (a Responses ``.done`` event): (window, text, put). The
    driver writes what the window released in their place (or checks the text now when it
    never came in pieces)."""


class Dialect(abc.ABC):
    """One wire API. Instances are stateless and shared."""

    operation: str
    """The exchange's operation, as in ``gen_ai.operation.name``."""
    input_keys: tuple[str, ...]
    """The request fields that hold the input texts (the SDK hooks read only these)."""
    done_event: bytes | None = None
    """The event that ends a stream, when the API has one."""
    refusal_reason: str = "content_filter"
    """The finish (stop) reason of an answer aimsguard refused or replaced by the fallback."""
    passed_headers: tuple[str, ...] = ()
    """Request headers the gateway passes to the upstream beside the common ones (the API's
    version and feature headers; the caller's credentials when the policy sets no key)."""

    def credentials(self, api_key: str) -> dict[str, str]:
        """The headers that carry an upstream's configured key (in place of the caller's)."""
        return {"authorization": f"Bearer {api_key}"}

    def parse(self, raw: bytes, limits: RequestLimits | None = None) -> ParsedRequest:
        try:
            body = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            # JSONDecodeError's message names the position only, never the content.
            raise RequestError(f"the request body is not valid JSON: {exc}", code="invalid_json") from None
        except RecursionError:
            raise RequestError("the request body nests JSON too deeply to be read", code="invalid_json") from None
        return self.parse_body(body, limits)

    def parse_body(self, body: Any, limits: RequestLimits | None = None) -> ParsedRequest:
        """Validate a decoded request; ``with_texts`` later edits this very dict."""
        if not isinstance(body, dict):
            raise RequestError("the request body must be a JSON object", code="invalid_request")
        parsed = self._parse(body, limits)
        if limits is not None:
            too_long = next((text for text in parsed.texts if len(text) > limits.max_message_chars), None)
            if too_long is not None:
                raise RequestError(
                    f"a message of {len(too_long)} characters exceeds the limit of {limits.max_message_chars} "
                    "(gateway.max_message_chars)",
                    status_code=413,
                    code="message_too_long",
                )
        return parsed

    @staticmethod
    def check_count(count: int, limits: RequestLimits | None, param: str) -> None:
        """Refuse a request with more messages than the policy allows, before reading them."""
        if limits is not None and count > limits.max_messages:
            raise RequestError(
                f"{count} {param} exceed the limit of {limits.max_messages} (gateway.max_messages)",
                status_code=413,
                code="too_many_messages",
                param=param,
            )

    @abc.abstractmethod
    def _parse(self, body: dict[str, Any], limits: RequestLimits | None) -> ParsedRequest: ...

    # -- a whole answer -------------------------------------------------------------------

    @abc.abstractmethod
    def answer_texts(self, answer: dict[str, Any]) -> list[str]:
        """The texts of a complete answer, as output check segments."""

    @abc.abstractmethod
    def replace_answer_texts(self, answer: dict[str, Any], texts: list[str], finish_reason: str | None = None) -> None:
        """Write checked texts back; with a ``finish_reason`` the answer is refused with ``texts[0]``."""

    @abc.abstractmethod
    def finish_reasons(self, answer: dict[str, Any]) -> list[str]: ...

    @abc.abstractmethod
    def usage_of(self, answer: dict[str, Any]) -> tuple[int | None, int | None]:
        """(input tokens, output tokens) an answer or event reports."""

    @staticmethod
    def model_of(answer: dict[str, Any]) -> str | None:
        model = answer.get("model")
        return model if isinstance(model, str) else None

    # -- a stream ------------------------------------------------------------------------

    @abc.abstractmethod
    def chunk_view(self, chunk: dict[str, Any]) -> ChunkView: ...

    def stream_template(self, template: dict[str, Any] | None, chunk: dict[str, Any]) -> dict[str, Any]:
        """What the dialect keeps of a stream so far, given back to it whenever aimsguard writes
        events of its own into that stream (``rest_chunk``, ``fallback_chunks``). By default the
        first event (its id, model and creation time are kept); a dialect whose events depend on
        what came before (open content blocks, sequence numbers) keeps its own state here."""
        return template or chunk

    @abc.abstractmethod
    def stream_error(self, chunk: dict[str, Any]) -> str | None:
        """The error code when the event reports an upstream error (the stream ends there)."""

    @abc.abstractmethod
    def trimmed(self, chunk: dict[str, Any]) -> dict[str, Any] | None:
        """A rewritten event without what has become empty; None when nothing is left to send."""

    @abc.abstractmethod
    def rest_chunk(self, *, request_id: str, model: str | None, template: dict[str, Any] | None, key: Hashable, text: str) -> dict[str, Any]:
        """An event carrying text a window releases late (see ``StreamPiece.key``)."""

    @abc.abstractmethod
    def encode_event(self, chunk: dict[str, Any]) -> bytes: ...

    # -- what aimsguard answers itself ----------------------------------------------------

    @abc.abstractmethod
    def fallback_answer(self, *, request_id: str, model: str | None, text: str, handoff_id: str | None = None) -> dict[str, Any]: ...

    @abc.abstractmethod
    def fallback_chunks(
        self, *, request_id: str, model: str | None, text: str, template: dict[str, Any] | None = None, handoff_id: str | None = None
    ) -> list[dict[str, Any]]: ...

    @abc.abstractmethod
    def refused_answer(self, answer: dict[str, Any], text: str, handoff_id: str | None) -> None:
        """Refuse an upstream answer in place: every text becomes ``text`` (tool calls dropped)."""

    @abc.abstractmethod
    def error_body(self, error: AimsguardError) -> dict[str, Any]: ...

    # -- APIs without a text answer (embeddings) ------------------------------------------

    has_output: bool = True
    """False: the answer has no text (a vector): no output checks, and the answer is relayed
    as it comes, never buffered."""

    def refusal(self, action: str, stopped: bool) -> AimsguardError | None:
        """The error a stopped exchange is answered with when the API has no fallback answer
        (None: the fallback text, in the API's shape)."""
        return None

    def with_released(self, template: dict[str, Any] | None, released: dict[Hashable, str]) -> dict[str, Any] | None:
        """The template told what each window released, before a stopped stream's fallback."""
        return template

    def usage_of_tail(self, tail: bytes) -> tuple[int | None, int | None]:
        """(input tokens, output tokens) from the last bytes of an answer relayed unread."""
        return None, None
