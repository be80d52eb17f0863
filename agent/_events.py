"""The event chain: structlog processors that turn what happened into flat event records.

The chain is built once from the policy (decide at construction time): stamp the
schema, time and policy version, drop message content unless the policy opts in, then
hand the record to the event bus. Nothing here waits on I/O.
"""

from __future__ import annotations

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


def _through(processors: list[Processor], kind: str, fields: dict[str, Any]) -> dict[str, Any]:
    """The chain called as structlog calls it, but by no bound logger: the application's own
    structlog settings (a WARNING level filter, say) can never filter the audit trail, and an
    event costs a third of what a bound logger's call did (~4 us, not 13). ``fields`` is
    taken over (a call's own keyword arguments)."""
    event: Any = fields
    event["event"] = kind
    for processor in processors:
        event = processor(None, "info", event)
    return event  # a dict: _as_dict ends every chain


def event_record(policy: Policy, kind: str, **fields: Any) -> dict[str, Any]:
    """One event as the emitter would put it on the bus, for writers without a bus (CLI commands)."""
    return _through(_processors(policy), kind, fields)


class EventEmitter:
    def __init__(self, policy: Policy, bus: EventBus) -> None:
        self._processors = _processors(policy)
        self._bus = bus
        self.content_logged = policy.event_log.content is not ContentLogging.NONE

    def emit(self, kind: str, **fields: Any) -> None:
        self._bus.emit(_through(self._processors, kind, fields))
