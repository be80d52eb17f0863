"""Signing out ends a session everywhere, not just in the browser that signed out.

The session cookie is signed, not stored: without a record on the server, a copy taken
before sign-out would keep working until it expires. So every sign-in gets a random
session id (kept in the cookie), signing out records that id as revoked until the cookie
would have expired anyway, and every request that carries a session is looked up.

With a records store the revocations live there (one table, only a hash of each id), so
every replica and worker process sharing the database refuses the copied cookie; this
process also keeps the ones it made in memory, so they hold while the store is down.
Without a store, memory is all there is (a single-process console).

With shared state (``state.url``), a revocation is also put there, and every replica
looks there first: refused at once on every replica even without a shared records store,
while the store stays the durable copy (asked when the shared state does not know the id,
since Redis may have restarted empty). The shared state failing: ``state.fail_modes.sessions``
``store`` asks the store alone, ``closed`` refuses the session.
"""

from __future__ import annotations

import hashlib
import threading
import time
from datetime import datetime, timedelta, timezone

from starlette.concurrency import run_in_threadpool

from aimsguard.collectors import State, StateError
from aimsguard.collectors.records import RecordsStore

from .._policy import SessionsFailMode
from .._state import StateMonitor

__all__ = ["SESSION_ID", "SessionRevocations"]

SESSION_ID = "sid"
_MEMORY_LIMIT = 100_000  # revocations kept in memory without a store (expired ones go first)


class SessionRevocations:
    """Revoked console sessions: in the records store when there is one, and in memory."""

    def __init__(
        self,
        store: RecordsStore | None,
        max_age_s: float,
        state: State | None = None,
        monitor: StateMonitor | None = None,
        fail_mode: SessionsFailMode = SessionsFailMode.STORE,
    ) -> None:
        self._store = store
        self._max_age_s = max_age_s
        self._state = state if state is not None and state.kind != "memory" else None  # memory: this process's dict below
        self._monitor = monitor
        self._fail_mode = fail_mode
        self._memory: dict[str, float] = {}  # id hash -> monotonic time the cookie expires
        self._lock = threading.Lock()

    async def revoke(self, session_id: str) -> None:
        """Refused here at once, and (with shared state or a store) on every replica. Raises
        ``RecordsError`` when the store cannot take it: the revocation then holds here and
        in the shared state only."""
        if self._state is not None:
            try:
                await self._state.put(_state_key(session_id), b"1", self._max_age_s)
                self._ok()
            except StateError as exc:
                self._failed(exc)
        await run_in_threadpool(self._revoke, session_id)

    def _revoke(self, session_id: str) -> None:
        now = time.monotonic()
        with self._lock:
            self._memory = {key: until for key, until in self._memory.items() if until > now}
            if len(self._memory) >= _MEMORY_LIMIT:
                del self._memory[next(iter(self._memory))]
            self._memory[_hash(session_id)] = now + self._max_age_s
        if self._store is not None:
            self._store.revoke_session(session_id, until=datetime.now(timezone.utc) + timedelta(seconds=self._max_age_s))

    async def is_revoked(self, session_id: str) -> bool:
        """Raises ``RecordsError`` when the store must be asked and cannot be read (and this
        process did not revoke it)."""
        with self._lock:
            if self._memory.get(_hash(session_id), 0.0) > time.monotonic():
                return True
        if self._state is not None:
            try:
                revoked = await self._state.exists(_state_key(session_id))
                self._ok()
            except StateError as exc:
                self._failed(exc)
                if self._fail_mode is SessionsFailMode.CLOSED:
                    return True
            else:
                if revoked:
                    return True
        return self._store is not None and await run_in_threadpool(self._store.session_revoked, session_id)

    def _failed(self, exc: StateError) -> None:
        if self._monitor is not None:
            self._monitor.failed("sessions", self._fail_mode.value, exc)

    def _ok(self) -> None:
        if self._monitor is not None:
            self._monitor.ok("sessions")


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def _state_key(session_id: str) -> str:
    return f"session:revoked:{_hash(session_id)}"
