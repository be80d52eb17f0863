"""The shared state at run time: the store the policy's ``state`` section names, the vault's
key, and what each use did when the store failed.

Each use of the shared state has its own fail mode (``state.fail_modes``): the personal-data
vault, console sign-in throttling, console session revocations, the stop switch's fast path
(and the callers' limits, when they use it). A failure is counted in
``aimsguard_state_errors_total{use,outcome}`` (outcome: the fail mode that was applied) and
written as a ``state.failed`` event when a use starts failing (then at most once a minute);
the first success after that writes ``state.recovered``. Nothing needs a restart: every
call tries the store again.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter

from aimsguard.collectors import State, open_state
from aimsguard.guardrails import Stage

from ._errors import PolicyProblem
from ._policy import Policy

__all__ = ["STATE_KEY_ENV", "StateMonitor", "new_state_key", "state_for", "state_key", "state_key_problem"]

log = structlog.get_logger("aimsguard.agent")

STATE_KEY_ENV = "AIMSGUARD_STATE_KEY"
_EVENT_EVERY_S = 60.0


def state_for(policy: Policy) -> State:
    """The store the policy names (in this process when it names none)."""
    config = policy.state
    return open_state(
        config.url.get_secret_value() if config.url is not None else None,
        prefix=config.prefix,
        timeout_s=config.timeout_ms / 1000,
        max_connections=config.max_connections,
    )


def new_state_key() -> str:
    """A fresh key for ``AIMSGUARD_STATE_KEY`` (32 random bytes, URL-safe base64)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


def _needs_key(policy: Policy) -> bool:
    """A shared vault is in use: a URL, and a system with a personal-data check."""
    return policy.state.shared and any(
        check.guardrail == "pii" for system in policy.systems.values() for stage in Stage for check in system.checks.for_stage(stage)
    )


def state_key_problem(policy: Policy) -> PolicyProblem | None:
    """Why the vault's key is missing or unusable, when the policy needs one."""
    if not _needs_key(policy):
        return None
    try:
        state_key(policy)
    except ValueError as exc:
        return PolicyProblem("state.key", str(exc))
    return None


def state_key(policy: Policy) -> bytes | None:
    """The vault's 32-byte key: ``$AIMSGUARD_STATE_KEY``, else ``state.key``; None when no
    shared vault is in use. Raises ``ValueError`` saying what is wrong."""
    if not _needs_key(policy):
        return None
    text = os.environ.get(STATE_KEY_ENV) or (policy.state.key.get_secret_value() if policy.state.key else "")
    if not text:
        raise ValueError(
            f"a shared personal-data vault (state.url with a pii check) is encrypted at rest: set ${STATE_KEY_ENV} "
            "(or state.key) to 32 bytes in URL-safe base64; `aimsguard state keygen` makes one"
        )
    try:
        key = base64.urlsafe_b64decode(text.strip() + "=" * (-len(text.strip()) % 4))
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != 32:
        raise ValueError(f"${STATE_KEY_ENV} / state.key must be 32 bytes in URL-safe base64 (44 characters); `aimsguard state keygen` makes one")
    return key


class StateMonitor:
    """Counts and records the shared state's failures per use, and the recoveries."""

    def __init__(self, registry: CollectorRegistry | None, emit: Callable[..., Any]) -> None:
        self.errors = Counter(
            "aimsguard_state_errors_total",
            "Shared-state operations that failed, by use and the fail mode applied.",
            ["use", "outcome"],
            registry=registry if registry is not None else CollectorRegistry(),
        )
        self._emit = emit
        self._failing: dict[str, float] = {}  # use -> when its last event was written
        self._lock = threading.Lock()

    def failed(self, use: str, outcome: str, exc: BaseException) -> None:
        self.errors.labels(use, outcome).inc()
        now = time.monotonic()
        with self._lock:
            last = self._failing.get(use)
            due = last is None or now - last >= _EVENT_EVERY_S
            if due:
                self._failing[use] = now
        if due:
            log.error("state_failed", use=use, outcome=outcome, error_type=type(exc).__name__)
            self._emit("state.failed", use=use, outcome=outcome, error_type=type(exc).__name__)

    def ok(self, use: str) -> None:
        if use not in self._failing:  # the common case, without the lock
            return
        with self._lock:
            was_failing = self._failing.pop(use, None) is not None
        if was_failing:
            log.info("state_recovered", use=use)
            self._emit("state.recovered", use=use)
