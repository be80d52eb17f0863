"""Decision outcomes, sensitive-feature groups and ground-truth feedback.

A decision system (a loan assistant, say) tells aimsguard what was decided and for which
groups, so the bias monitor can compare groups. Over HTTP that is a JSON body field
(``aimsguard: {outcome, groups}`` by default; removed before the body goes upstream)
and/or headers the policy names; in the SDK, arguments. Every value must be one of the
categories the policy lists for the system: anything else is refused with a 400 that
names the allowed values (and never echoes what was sent, which could be anything).
The exchange event then carries ``outcome`` and ``groups``.

Ground truth arrives later, keyed by request id: ``POST /v1/feedback`` or
``guard.record_feedback`` write a ``feedback`` event; refused feedback writes
``feedback.rejected``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from aimsguard.collectors import FairnessConfig

from ._errors import AimsguardError, RequestError
from ._exchange import UNKNOWN_SYSTEM, client_id
from ._dialect_openai import error_body

if TYPE_CHECKING:
    from ._guard import Guard

__all__ = [
    "DECISION_KEYS",
    "decision_fields",
    "decision_of",
    "handle_feedback",
    "read_decision",
    "record_feedback",
    "split_decision",
]

DECISION_KEYS = ("outcome", "groups")
"""Keys of the exchange's metadata (and of its event) that hold the decision."""

_MAX_FEEDBACK_BYTES = 8 * 1024
_FEEDBACK_KEYS = {"request_id", "label", "system"}


def _allowed(values: list[str]) -> str:
    return ", ".join(values)


def decision_fields(
    config: FairnessConfig | None, system_id: str, outcome: Any = None, groups: Any = None, *, where: str = "aimsguard"
) -> dict[str, Any]:
    """The validated ``{"outcome": ..., "groups": {...}}`` for an exchange's metadata.

    Raises ``RequestError`` (400) when the system takes no decisions or a value is not one
    of the policy's categories; ``where`` names the field in the error.
    """
    if outcome is None and not groups:
        return {}
    if config is None:
        raise RequestError(
            f"system {system_id!r} takes no outcome or groups: its policy has no fairness section",
            code="fairness_not_configured",
            param=where,
        )
    fields: dict[str, Any] = {}
    if outcome is not None:
        if not isinstance(outcome, str) or outcome not in config.outcomes:
            raise RequestError(
                f"{where}.outcome is not one of the outcomes the policy lists for system {system_id!r} "
                f"(allowed: {_allowed(config.outcomes)})",
                code="invalid_outcome",
                param=f"{where}.outcome",
            )
        fields["outcome"] = outcome
    if groups:
        if not isinstance(groups, Mapping):
            raise _not_groups(where)
        checked: dict[str, str] = {}
        for feature, group in groups.items():
            categories = config.features.get(feature) if isinstance(feature, str) else None
            if categories is None:
                raise RequestError(
                    f"{where}.groups names a feature the policy does not define for system {system_id!r} "
                    f"(features: {_allowed(list(config.features))})",
                    code="invalid_group",
                    param=f"{where}.groups",
                )
            if group not in categories:
                raise RequestError(
                    f"{where}.groups.{feature} is not one of the policy's categories (allowed: {_allowed(categories)})",
                    code="invalid_group",
                    param=f"{where}.groups.{feature}",
                )
            checked[feature] = group
        fields["groups"] = checked
    return fields


def read_decision(
    config: FairnessConfig | None, system_id: str, body: dict[str, Any], header: Callable[[str], str | None]
) -> tuple[dict[str, Any], bool]:
    """The decision a request carries, from its body field and headers (the body wins).

    Returns (metadata fields, whether the body field was removed from ``body``).
    """
    if config is None:
        return {}, False
    source = config.source
    outcome: Any = None
    groups: dict[Any, Any] = {}
    stripped = False
    field = source.body_field
    if field is not None and field in body:
        outcome, groups = split_decision(body.pop(field), field)
        stripped = True
    if outcome is None and source.outcome_header:
        outcome = _stripped(header(source.outcome_header))
    for feature, name in source.group_headers.items():
        if feature not in groups:
            value = _stripped(header(name))
            if value is not None:
                groups[feature] = value
    return decision_fields(config, system_id, outcome, groups, where=field or "aimsguard"), stripped


def split_decision(value: Any, where: str) -> tuple[Any, dict[Any, Any]]:
    """(outcome, groups) of a ``{outcome, groups}`` object, its shape checked (values are not)."""
    if value is None:
        return None, {}
    if not isinstance(value, Mapping) or not set(value) <= set(DECISION_KEYS):
        raise RequestError(f"{where} must be an object with 'outcome' and/or 'groups'", code="invalid_decision", param=where)
    groups = value.get("groups")
    if groups is not None and not isinstance(groups, Mapping):
        raise _not_groups(where)
    return value.get("outcome"), dict(groups or {})


def _not_groups(where: str) -> RequestError:
    return RequestError(f"{where}.groups must be an object of feature: category", code="invalid_group", param=f"{where}.groups")


def _stripped(value: str | None) -> str | None:
    return value.strip() if value is not None and value.strip() else None


def decision_of(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The decision fields of an exchange's metadata, for its event (only those set)."""
    return {key: metadata[key] for key in DECISION_KEYS if key in metadata}


# -- feedback ------------------------------------------------------------------------------


def _check_feedback(config: FairnessConfig | None, system_id: str, request_id: Any, label: Any) -> None:
    if not isinstance(request_id, str) or client_id(request_id) is None:  # the rule for the request ids the middleware accepts
        raise RequestError(
            "request_id must be the id of an exchange (x-aimsguard-request-id)", code="invalid_request_id", param="request_id"
        )
    if config is None:
        raise RequestError(
            f"system {system_id!r} takes no feedback: its policy has no fairness section",
            code="feedback_not_configured",
            param="system",
        )
    if not isinstance(label, str) or label not in config.label_values:
        raise RequestError(
            f"label is not one of the labels the policy lists for system {system_id!r} "
            f"(allowed: {_allowed(config.label_values)})",
            code="invalid_label",
            param="label",
        )


def record_feedback(guard: Guard, request_id: Any, label: Any, *, system: str | None = None, front_door: str = "sdk") -> str:
    """Validate ground truth for an exchange and write its ``feedback`` event; return the system id.

    Refused feedback raises ``RequestError`` (or ``UnknownSystemError``) and writes
    ``feedback.rejected`` with the reason's code.
    """
    system_id: str | None = None
    try:
        system_id = guard.resolve_system(system)
        _check_feedback(guard.system(system_id).fairness, system_id, request_id, label)
    except AimsguardError as error:
        guard.events.emit("feedback.rejected", system=system_id or UNKNOWN_SYSTEM, error_code=error.code, front_door=front_door)
        raise
    guard.events.emit("feedback", system=system_id, request_id=request_id, label=label, front_door=front_door)
    return system_id


async def handle_feedback(guard: Guard, request: Request, system_hint: str | None) -> Response:
    """``POST /v1/feedback {request_id, label, system?}`` → 202, or an OpenAI-style 4xx."""
    try:
        payload = await _feedback_payload(request)
    except RequestError as error:
        # Not feedback at all; still recorded (under a known system only: the hint is client text).
        system_id = system_hint if system_hint in guard.policy.systems else UNKNOWN_SYSTEM
        guard.events.emit("feedback.rejected", system=system_id, error_code=error.code, front_door="gateway")
        return JSONResponse(error_body(error), status_code=error.status_code)
    try:
        system = payload.get("system") or system_hint
        system_id = record_feedback(guard, payload.get("request_id"), payload.get("label"), system=system, front_door="gateway")
    except AimsguardError as error:
        return JSONResponse(error_body(error), status_code=error.status_code)
    return JSONResponse({"status": "accepted", "system": system_id, "request_id": payload["request_id"]}, status_code=202)


def _too_large() -> RequestError:
    return RequestError(f"the feedback body exceeds {_MAX_FEEDBACK_BYTES} bytes", status_code=413, code="request_too_large")


async def _feedback_payload(request: Request) -> dict[str, Any]:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > _MAX_FEEDBACK_BYTES:
        raise _too_large()
    raw = b""
    async for part in request.stream():
        raw += part
        if len(raw) > _MAX_FEEDBACK_BYTES:
            raise _too_large()
    try:
        payload = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RequestError(f"the feedback body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(payload, dict):
        raise RequestError("the feedback body must be a JSON object {request_id, label, system?}", code="invalid_request")
    if not set(payload) <= _FEEDBACK_KEYS:
        raise RequestError("the feedback body takes only request_id, label and system", code="invalid_request")
    if payload.get("system") is not None and not isinstance(payload["system"], str):
        raise RequestError("system must be a string", code="invalid_request", param="system")
    return payload
