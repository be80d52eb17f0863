"""The event chain: structlog processors that turn what happened into flat event records.

The chain is built once from the policy (decide at construction time): stamp the
schema, time and policy version, drop message content unless the policy opts in, then
hand the record to the event bus. Nothing here waits on I/O.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any

import structlog
from structlog.typing import Processor

from aimsguard.collectors import EventBus

from ._exchange import new_id
from ._policy import ContentLogging, Policy

__all__ = ["CONTENT_KEYS", "EVENT_SCHEMA", "EventEmitter", "event_record"]

EVENT_SCHEMA = "aimsguard.event/1"
CONTENT_KEYS = ("input", "output")


class _BusSink:
    """The structlog "logger" at the end of the chain: puts the record on the bus."""

    def __init__(self, bus: EventBus) -> None:
        self._bus = bus

    def msg(self, **event: Any) -> None:
        self._bus.emit(event)

    info = msg


def _stamp(policy_version: str) -> Processor:
    def stamp(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        event["schema"] = EVENT_SCHEMA
        event["policy_version"] = policy_version
        # A unique id per event, so records (incidents) can link the events behind them.
        event["event_id"] = new_id()
        return event

    return stamp


def _drop_content(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in CONTENT_KEYS:
        event.pop(key, None)
    return event


def _as_dict(_: Any, __: str, event: MutableMapping[str, Any]) -> dict[str, Any]:
    return dict(event)


def _processors(policy: Policy) -> list[Processor]:
    processors: list[Processor] = [
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
        _stamp(policy.policy_version),
    ]
    if policy.event_log.content is ContentLogging.NONE:
        processors.append(_drop_content)
    processors.append(_as_dict)
    return processors


def event_record(policy: Policy, kind: str, **fields: Any) -> dict[str, Any]:
    """One event as the emitter would put it on the bus, for writers without a bus (CLI commands)."""
    event: Any = {**fields, "event": kind}
    for processor in _processors(policy):
        event = processor(None, "info", event)
    return dict(event)


class EventEmitter:
    def __init__(self, policy: Policy, bus: EventBus) -> None:
        processors = _processors(policy)
        self.content_logged = policy.event_log.content is not ContentLogging.NONE
        # An explicit wrapper class: the application's own structlog settings (a WARNING
        # level filter, say) must never filter the audit trail.
        self._logger = structlog.wrap_logger(
            _BusSink(bus),
            processors=processors,
            wrapper_class=structlog.make_filtering_bound_logger(logging.NOTSET),
            cache_logger_on_first_use=True,
        )

    def emit(self, kind: str, **fields: Any) -> None:
        self._logger.info(kind, **fields)
