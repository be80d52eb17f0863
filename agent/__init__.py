"""aimsguard's runtime: policy, pipeline, middleware, gateway and SDK hooks."""

from ._errors import (
    AimsguardError,
    EventLogUnavailable,
    GuardrailError,
    GuardrailFailed,
    PolicyError,
    PolicyProblem,
    RequestError,
    UnknownSystemError,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from ._exchange import Exchange, ExchangeStatus
from ._gateway import create_gateway
from ._guard import Guard
from ._middleware import AimsguardMiddleware
from ._oversight import HumanOversight
from ._pipeline import Pipeline, StageResult
from ._policy import FailMode, Policy, load_policy, parse_policy
from ._sdk import Blocked, GuardedExchange, guard_anthropic, guard_openai, guarded
from ._streaming import StreamingOutputGuard

__all__ = [
    "AimsguardError",
    "AimsguardMiddleware",
    "Blocked",
    "EventLogUnavailable",
    "Exchange",
    "ExchangeStatus",
    "FailMode",
    "Guard",
    "GuardedExchange",
    "GuardrailError",
    "GuardrailFailed",
    "HumanOversight",
    "Pipeline",
    "Policy",
    "PolicyError",
    "PolicyProblem",
    "RequestError",
    "StageResult",
    "StreamingOutputGuard",
    "UnknownSystemError",
    "UpstreamError",
    "UpstreamTimeout",
    "UpstreamUnavailable",
    "create_gateway",
    "guard_anthropic",
    "guard_openai",
    "guarded",
    "load_policy",
    "parse_policy",
]
