"""aimsguard's errors: one small tree.

    AimsguardError
     ├── PolicyError             the policy file cannot be read or is invalid
     ├── RequestError            the client's request cannot be served (4xx)
     │    ├── UnknownSystemError
     │    └── RouteNotGuarded    a model call to a route no dialect reads, and the policy blocks it
     ├── GuardrailError          a check could not be built or loaded
     │    └── GuardrailFailed    a check failed at run time and its policy fails closed
     ├── EventLogUnavailable     the event log cannot be written and the policy fails closed
     └── UpstreamError           the AI system behind aimsguard failed
          ├── UpstreamUnavailable   it could not be reached
          └── UpstreamTimeout       it did not answer in time

Each carries the context a reader needs (file and key path, guardrail name, status) and
knows the OpenAI-style error it becomes on the wire.
"""

from __future__ import annotations

import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "AimsguardError",
    "EventLogUnavailable",
    "GuardrailError",
    "GuardrailFailed",
    "PolicyError",
    "PolicyProblem",
    "RequestError",
    "RouteNotGuarded",
    "UnknownSystemError",
    "UpstreamError",
    "UpstreamTimeout",
    "UpstreamUnavailable",
    "error_site",
]


def error_site(exc: BaseException) -> dict[str, Any]:
    """Where an unexpected exception came from, for the operational log.

    Only the type and the innermost frame: an exception's message or a traceback's
    locals may quote the user's text, which must not reach the logs.
    """
    frames = traceback.extract_tb(exc.__traceback__)
    where = f"{frames[-1].filename}:{frames[-1].lineno} in {frames[-1].name}" if frames else "unknown"
    return {"error_type": type(exc).__name__, "where": where}


class AimsguardError(Exception):
    status_code: int = 500
    error_type: str = "server_error"
    code: str = "aimsguard_error"


@dataclass(frozen=True)
class PolicyProblem:
    key_path: str
    message: str

    def __str__(self) -> str:
        return f"{self.key_path or '(top level)'}: {self.message}"


class PolicyError(AimsguardError):
    code = "policy_invalid"

    def __init__(self, file: str, problems: Sequence[PolicyProblem]) -> None:
        self.file = file
        self.problems = list(problems)
        lines = "\n".join(f"  {file}: {problem}" for problem in self.problems)
        super().__init__(f"invalid policy {file} ({len(self.problems)} problem(s)):\n{lines}")


class RequestError(AimsguardError):
    """The request is wrong; the message says how, and never echoes the body."""

    status_code = 400
    error_type = "invalid_request_error"

    def __init__(self, message: str, *, status_code: int = 400, code: str = "invalid_request", param: str | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.param = param


class UnknownSystemError(RequestError):
    def __init__(self, system_id: str, known: Sequence[str]) -> None:
        super().__init__(
            f"unknown AI system {system_id!r}; this gateway serves: {', '.join(known)}",
            status_code=404,
            code="unknown_system",
        )
        self.system_id = system_id


class RouteNotGuarded(RequestError):
    """A model call aimsguard cannot read (its checks would be bypassed), refused by the
    system's ``unknown_routes: block``: 403, not 404, as the route may well exist upstream."""

    status_code = 403

    def __init__(self, method: str, path: str, guarded: Sequence[str]) -> None:
        super().__init__(
            f"{method} {path} is a model call aimsguard cannot check, and this system's policy blocks such routes "
            f"(unknown_routes: block); the guarded routes are POST {', '.join(guarded)}",
            status_code=403,
            code="route_not_guarded",
        )


class GuardrailError(AimsguardError):
    code = "guardrail_error"

    def __init__(self, guardrail: str, message: str) -> None:
        super().__init__(f"guardrail {guardrail!r}: {message}")
        self.guardrail = guardrail


class GuardrailFailed(GuardrailError):
    """Checks failed (error or timeout) and their fail mode is ``closed``: nothing went on.

    Answered as an error rather than as the fallback text, so a broken check is never
    mistaken for a decision about the user's content.
    """

    status_code = 503
    code = "guardrail_failed"

    def __init__(self, guardrails: list[str], stage: str) -> None:
        names = ", ".join(guardrails)
        super().__init__(names, f"failed on the {stage} stage and the policy fails closed; the request was not passed on")
        self.guardrails = guardrails


class EventLogUnavailable(AimsguardError):
    status_code = 503
    code = "event_log_unavailable"


class UpstreamError(AimsguardError):
    status_code = 502
    error_type = "upstream_error"
    code = "upstream_error"

    def __init__(self, message: str, *, system_id: str = "") -> None:
        super().__init__(message)
        self.system_id = system_id


class UpstreamUnavailable(UpstreamError):
    code = "upstream_unavailable"


class UpstreamTimeout(UpstreamError):
    status_code = 504
    code = "upstream_timeout"
