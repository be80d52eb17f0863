"""Exchange: everything aimsguard knows about one interaction, filled in as it goes."""

from __future__ import annotations

import enum
import os
import random
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aimsguard.guardrails import Action, Verdict

__all__ = ["UNKNOWN_SYSTEM", "Exchange", "ExchangeStatus", "client_id", "new_id", "parse_traceparent"]

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")
_MAX_ID_LENGTH = 128
UNKNOWN_SYSTEM = "_unknown"
"""Recorded as the system when a request named none the policy knows (never the client's text)."""


def new_id() -> str:
    """A random id: the hex of a version 4 UUID, as ``uuid.uuid4().hex`` (built from the
    bytes directly: a third of its cost, and the gateway makes three or four per request)."""
    raw = bytearray(os.urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40  # version 4
    raw[8] = raw[8] & 0x3F | 0x80  # RFC 4122 variant
    return raw.hex()


def client_id(value: str | None) -> str | None:
    """An id a client sent, kept only if it is a plausible id (never free text)."""
    if value and len(value) <= _MAX_ID_LENGTH and value.isascii() and value.replace("-", "").replace("_", "").replace(".", "").isalnum():
        return value
    return None


def _trace_id() -> str:
    return f"{random.getrandbits(128):032x}"


def _span_id() -> str:
    return f"{random.getrandbits(64):016x}"


def parse_traceparent(value: str | None) -> tuple[str, str] | None:
    """(trace id, parent span id) from a W3C traceparent header, if it is a valid one."""
    match = _TRACEPARENT.match(value.strip().lower()) if value else None
    if match is None or set(match.group(1)) == {"0"} or set(match.group(2)) == {"0"}:
        return None
    return match.group(1), match.group(2)


class ExchangeStatus(str, enum.Enum):
    OK = "ok"
    BLOCKED = "blocked"
    ESCALATED = "escalated"
    REJECTED = "rejected"  # the request itself was invalid
    UPSTREAM_ERROR = "upstream_error"
    CLIENT_DISCONNECTED = "client_disconnected"
    ERROR = "error"
    STOPPED = "stopped"  # the system's stop switch is on: the fallback, no upstream call


@dataclass(slots=True)
class Exchange:
    system_id: str
    front_door: str  # "middleware", "gateway" or "sdk"
    request_id: str = field(default_factory=new_id)
    conversation_id: str = ""
    trace_id: str = field(default_factory=_trace_id)
    span_id: str = field(default_factory=_span_id)
    parent_span_id: str | None = None
    operation: str = "chat"  # "chat" or "text_completion", as in gen_ai.operation.name
    model: str | None = None
    response_model: str | None = None
    stream: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)
    input_texts: list[str] = field(default_factory=list)  # as they went on (redacted)
    input_roles: list[str] = field(default_factory=list)  # the message role of each input text (chat)
    output_texts: list[str] = field(default_factory=list)  # as the user got them
    logged_input: list[str] = field(default_factory=list)  # as they may be logged or kept on a handoff ticket
    # The input as received and the verdicts that mask it: masked into logged_input only when
    # something asks for it (the content log, a handoff ticket), not on every request.
    unmasked_input: tuple[list[str], list[Verdict]] | None = None
    logged_output: list[str] = field(default_factory=list)
    # Content not to be logged or kept, by stage ("input"/"output"): a content-masking check
    # (personal data) did not run on it, so nothing says what to mask. Value: which check, how.
    withheld: dict[str, str] = field(default_factory=dict)
    # The texts a shadow candidate checks after the answer (kept only when the system has one).
    shadow_input: list[str] | None = None
    shadow_output: list[str] | None = None
    verdicts: list[Verdict] = field(default_factory=list)
    action: Action = Action.ALLOW
    status: ExchangeStatus = ExchangeStatus.OK
    http_status: int | None = None
    error_code: str | None = None
    finish_reasons: list[str] = field(default_factory=list)
    input_tokens: int | None = None
    output_tokens: int | None = None
    started_at: float = field(default_factory=time.time)
    started: float = field(default_factory=time.perf_counter)
    first_token_at: float | None = None
    upstream_started: float | None = None
    upstream_finished: float | None = None
    input_checks_s: float = 0.0
    output_checks_s: float = 0.0
    handoff_id: str | None = None  # the human handoff ticket, when the exchange escalated
    documents_checked: int = 0
    documents_dropped: int = 0
    key_id: str | None = None  # the virtual API key's public id, when the caller presented one
    key_tokens: int | None = None  # the tokens counted against that key (see _callers.count_tokens)
    key_tokens_estimated: bool = False

    def __post_init__(self) -> None:
        if not self.conversation_id:
            # A fresh id of our own, never one a client chose: placeholders are kept per
            # conversation, and a guessable id would let one caller read another's.
            self.conversation_id = new_id()

    def mark_first_token(self) -> None:
        if self.first_token_at is None:
            self.first_token_at = time.perf_counter()

    def record(self, verdicts: list[Verdict], action: Action) -> None:
        self.verdicts.extend(verdicts)
        if action.severity > self.action.severity:
            self.action = action
