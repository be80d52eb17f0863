"""Who is using the console: users with argon2 password hashes, bearer tokens, throttling.

Users and tokens come from the policy (``console.users``, ``console.tokens``), so access
is reviewed where the rest of the policy is. A browser logs in once and carries a signed
session cookie (Starlette's SessionMiddleware); a script sends ``Authorization: Bearer``.
The session holds only the user name: the role is looked up in the policy on every
request, so removing a user from the policy ends their sessions at the next reload.

Repeated wrong passwords are throttled in memory (per process). Per client address: past
the limit in a window, sign-ins from it are refused until the window has passed. The
address is the connection's peer; ``X-Forwarded-For`` is believed only from the proxies
in ``console.trusted_proxies`` (from anyone else it could name any address). Per user
name the throttle backs off rather than locks: after a few failures each further attempt
waits a growing delay (capped at a minute) after the last one, and attempts refused while
waiting are not counted, so someone guessing at the admin's name slows the guessing down
without locking the real admin out for longer than the cap.
"""

from __future__ import annotations

import hmac
import ipaddress
import math
import threading
import time
from collections import deque
from dataclasses import dataclass

import anyio
import argon2
from starlette.requests import HTTPConnection

from .._policy import ConsoleConfig, ConsoleRole

__all__ = ["Authenticator", "LoginResult", "StaffUser", "hash_password"]

SESSION_USER = "user"

_HASHER = argon2.PasswordHasher()
# Unknown names still cost one argon2 verification (default parameters), so the time a
# failed sign-in takes does not tell which names exist.
_VERIFY_SLOTS = 2  # argon2 verifications at once (~150 ms of CPU and 64 MiB each): more would only queue for the cores
_DUMMY_HASH = "$argon2id$v=19$m=65536,t=3,p=4$WdTjNDWuj0kQVf8F8zCoCQ$qiPvlnK381Rj3P4j7GRUytCkFzGyi7a+0n32Y29SxEg"


def hash_password(password: str) -> str:
    """An argon2id hash of ``password`` for ``console.users[].password_hash``."""
    return _HASHER.hash(password)


@dataclass(frozen=True)
class StaffUser:
    """A member of staff using the console (their name is staff data, not customer data)."""

    name: str
    role: ConsoleRole
    via: str  # "session" or "token"

    def may(self, *roles: ConsoleRole) -> bool:
        return self.role is ConsoleRole.ADMIN or self.role in roles


@dataclass(frozen=True)
class LoginResult:
    user: StaffUser | None
    outcome: str  # ok | wrong_credentials | throttled
    retry_after_s: int = 0


class _Throttle:
    """Failed attempts per key in a sliding window; bounded in memory."""

    def __init__(self, limit: int, window_s: float, max_keys: int = 10_000) -> None:
        self.limit = limit
        self.window_s = window_s
        self.max_keys = max_keys
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, key: str, now: float) -> deque[float]:
        failures = self._failures.get(key)
        if failures is None:
            return deque()
        while failures and failures[0] <= now - self.window_s:
            failures.popleft()
        if not failures:
            del self._failures[key]
        return failures

    def retry_after(self, key: str, now: float) -> int:
        failures = self._recent(key, now)
        if len(failures) < self.limit:
            return 0
        return max(1, int(failures[0] + self.window_s - now) + 1)

    def fail(self, key: str, now: float) -> None:
        if key not in self._failures and len(self._failures) >= self.max_keys:
            # Forget the key that was touched longest ago rather than grow without bound.
            del self._failures[next(iter(self._failures))]
        self._failures.setdefault(key, deque()).append(now)

    def forget(self, key: str) -> None:
        self._failures.pop(key, None)


class _Backoff:
    """Failures per key; past ``free`` of them, the next attempt waits ``base_s`` doubled per
    further failure, at most ``cap_s``, after the last one. Forgotten after ``window_s``
    without a failure; bounded in memory."""

    def __init__(self, free: int, base_s: float, cap_s: float, window_s: float, max_keys: int = 10_000) -> None:
        self.free, self.base_s, self.cap_s, self.window_s, self.max_keys = free, base_s, cap_s, window_s, max_keys
        self._state: dict[str, tuple[int, float]] = {}  # key -> (failures, time of the last)

    def retry_after(self, key: str, now: float) -> int:
        failures, last = self._state.get(key, (0, 0.0))
        if failures < self.free or now - last > self.window_s:
            return 0
        wait = last + min(self.cap_s, self.base_s * 2 ** (failures - self.free)) - now
        return math.ceil(wait) if wait > 0 else 0

    def fail(self, key: str, now: float) -> None:
        failures, last = self._state.pop(key, (0, now))
        if now - last > self.window_s:
            failures = 0
        if len(self._state) >= self.max_keys:
            del self._state[next(iter(self._state))]  # the key touched longest ago
        self._state[key] = (failures + 1, now)

    def forget(self, key: str) -> None:
        self._state.pop(key, None)


class Authenticator:
    def __init__(
        self,
        config: ConsoleConfig,
        *,
        free_failures_per_user: int = 5,
        user_backoff_s: float = 1.0,
        user_backoff_cap_s: float = 60.0,
        max_failures_per_address: int = 20,
        window_s: float = 15 * 60,
    ) -> None:
        self._users = {user.name: user for user in config.users}
        self._tokens = [(token.token.get_secret_value().encode(), token) for token in config.tokens]
        self._trusted_proxies = list(config.trusted_proxies)
        self._by_user = _Backoff(free_failures_per_user, user_backoff_s, user_backoff_cap_s, window_s)
        self._by_address = _Throttle(max_failures_per_address, window_s)
        self._throttle_lock = threading.Lock()  # logins verify on worker threads
        self._verify_slots: anyio.CapacityLimiter | None = None

    async def login_in_thread(self, name: str, password: str, address: str) -> LoginResult:
        """``login`` off the event loop (argon2 takes ~150 ms of CPU), at most two at a time,
        so a burst of sign-ins neither stalls the gateway nor fills the thread pool."""
        if self._verify_slots is None:
            self._verify_slots = anyio.CapacityLimiter(_VERIFY_SLOTS)
        return await anyio.to_thread.run_sync(self.login, name, password, address, limiter=self._verify_slots)

    def login(self, name: str, password: str, address: str, now: float | None = None) -> LoginResult:
        now = time.monotonic() if now is None else now
        name = name.strip()
        user_key, address_key = f"user:{name.lower()}", f"addr:{address}"
        with self._throttle_lock:
            wait = max(self._by_user.retry_after(user_key, now), self._by_address.retry_after(address_key, now))
        if wait:
            return LoginResult(None, "throttled", wait)
        configured = self._users.get(name)
        try:
            _HASHER.verify(configured.password_hash if configured else _DUMMY_HASH, password)
            ok = configured is not None
        except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
            ok = False
        if not ok or configured is None:
            with self._throttle_lock:
                self._by_user.fail(user_key, now)
                self._by_address.fail(address_key, now)
            return LoginResult(None, "wrong_credentials")
        with self._throttle_lock:
            self._by_user.forget(user_key)
        return LoginResult(StaffUser(configured.name, configured.role, "session"), "ok")

    def client_address(self, connection: HTTPConnection) -> str:
        """Who is signing in, for the per-address limit: the peer, or, when the peer is a
        trusted proxy, the nearest address in ``X-Forwarded-For`` that is not one."""
        peer = connection.client.host if connection.client else "unknown"
        if not self._trusted(peer):
            return peer
        hops = [hop.strip() for value in connection.headers.getlist("x-forwarded-for") for hop in value.split(",") if hop.strip()]
        for hop in reversed(hops):  # each proxy appends the address it saw: read from the right
            if not self._trusted(hop):
                return hop[:64]
        return hops[0][:64] if hops else peer

    def _trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self._trusted_proxies)

    def is_user(self, name: str) -> bool:
        return name in self._users

    def identify(self, connection: HTTPConnection) -> StaffUser | None:
        """The staff member behind a request: a bearer token, else the session's user."""
        authorization = connection.headers.get("authorization", "")
        scheme, _, credential = authorization.partition(" ")
        if scheme.lower() == "bearer" and credential:
            presented = credential.strip().encode()
            # Compare against every token (constant time each) so timing reveals nothing.
            match = None
            for secret, token in self._tokens:
                if hmac.compare_digest(secret, presented):
                    match = token
            return StaffUser(match.name, match.role, "token") if match else None
        name = connection.session.get(SESSION_USER)
        user = self._users.get(name) if isinstance(name, str) else None
        return StaffUser(user.name, user.role, "session") if user else None
