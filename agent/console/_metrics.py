"""The console's own Prometheus counters (low-cardinality labels only: never a user name)."""

from __future__ import annotations

import weakref

from prometheus_client import CollectorRegistry, Counter

__all__ = ["ConsoleMetrics"]

_BY_REGISTRY: weakref.WeakKeyDictionary[CollectorRegistry, ConsoleMetrics] = weakref.WeakKeyDictionary()


class ConsoleMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.logins = Counter(
            "aimsguard_console_logins", "Console login attempts by outcome (ok, wrong_credentials, throttled)", ["outcome"], registry=registry
        )
        self.refused = Counter(
            "aimsguard_console_refused_requests",
            "Console requests refused, by reason (unauthenticated, forbidden, csrf)",
            ["reason"],
            registry=registry,
        )
        self.actions = Counter(
            "aimsguard_console_actions", "Oversight actions taken in the console, by action and outcome", ["action", "outcome"], registry=registry
        )
        self.store_failures = Counter(
            "aimsguard_console_store_failures",
            "Console pages or actions that failed because the records store or event log could not be read or written (fail closed)",
            ["source"],
            registry=registry,
        )

    @classmethod
    def for_registry(cls, registry: CollectorRegistry | None) -> ConsoleMetrics:
        """One set per registry: a second console on the same guard shares the counters."""
        if registry is None:
            return cls(CollectorRegistry())
        metrics = _BY_REGISTRY.get(registry)
        if metrics is None:
            metrics = _BY_REGISTRY[registry] = cls(registry)
        return metrics
