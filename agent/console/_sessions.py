"""Signing out ends a session everywhere, not just in the browser that signed out.

The session cookie is signed, not stored: without a record on the server, a copy taken
before sign-out would keep working until it expires. So every sign-in gets a random
session id (kept in the cookie), signing out records that id as revoked until the cookie
would have expired anyway, and every request that carries a session is looked up.

With a records store the revocations live there (one table, only a hash of each id), so
every replica and worker process sharing the database refuses the copied cookie; this
process also keeps the ones it made in memory, so they hold while the store is down.
Without a store, memory is all there is (a single-process console).
"""

from __future__ import annotations

import hashlib
import threading
import time
from datetime import datetime, timedelta, timezone

from aimsguard.collectors.records import RecordsStore

__all__ = ["SESSION_ID", "SessionRevocations"]

SESSION_ID = "sid"
_MEMORY_LIMIT = 100_000  # revocations kept in memory without a store (expired ones go first)


class SessionRevocations:
    """Revoked console sessions: in the records store when there is one, and in memory."""

    def __init__(self, store: RecordsStore | None, max_age_s: float) -> None:
        self._store = store
        self._max_age_s = max_age_s
        self._memory: dict[str, float] = {}  # id hash -> monotonic time the cookie expires
        self._lock = threading.Lock()

    def revoke(self, session_id: str) -> None:
        """Refused here at once, and (when there is a store) on every replica; called from a
        worker thread (the store is synchronous). Raises ``RecordsError`` when the store
        cannot take it: the revocation then holds in this process only."""
        now = time.monotonic()
        with self._lock:
            self._memory = {key: until for key, until in self._memory.items() if until > now}
            if len(self._memory) >= _MEMORY_LIMIT:
                del self._memory[next(iter(self._memory))]
            self._memory[_hash(session_id)] = now + self._max_age_s
        if self._store is not None:
            self._store.revoke_session(session_id, until=datetime.now(timezone.utc) + timedelta(seconds=self._max_age_s))

    def is_revoked(self, session_id: str) -> bool:
        """Raises ``RecordsError`` when the store cannot be read (and this process did not revoke it)."""
        with self._lock:
            if self._memory.get(_hash(session_id), 0.0) > time.monotonic():
                return True
        return self._store is not None and self._store.session_revoked(session_id)


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()
