"""Who is using the console: users with argon2 password hashes, bearer tokens, throttling.

Users and tokens come from the policy (``console.users``, ``console.tokens``), so access
is reviewed where the rest of the policy is. A browser logs in once and carries a signed
session cookie (Starlette's SessionMiddleware); a script sends ``Authorization: Bearer``.
The session holds only the user name: the role is looked up in the policy on every
request, so removing a user from the policy ends their sessions at the next reload.

Repeated wrong passwords are throttled through the state (``state``: this process's, or
Redis shared by a fleet, so a guesser gains nothing by spreading over replicas). Per client
address: past the limit in a window, sign-ins from it are refused until the window has
passed. When the shared state cannot be reached, ``state.fail_modes.sign_in`` decides:
``closed`` refuses sign-ins (503), ``local`` throttles in this process only. The
address is the connection's peer; ``X-Forwarded-For`` is believed only from the proxies
in ``console.trusted_proxies`` (from anyone else it could name any address). Per user
name the throttle backs off rather than locks: after a few failures each further attempt
waits a growing delay (capped at a minute) after the last one, and attempts refused while
waiting are not counted, so someone guessing at the admin's name slows the guessing down
without locking the real admin out for longer than the cap.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import anyio
import argon2
from starlette.requests import HTTPConnection

from aimsguard.collectors import MemoryState, State, StateError

from .._policy import ConsoleConfig, ConsoleRole, SignInFailMode
from .._state import StateMonitor

__all__ = ["Authenticator", "LoginResult", "StaffUser", "hash_password"]

SESSION_USER = "user"

_HASHER = argon2.PasswordHasher()
# Unknown names still cost one argon2 verification (default parameters), so the time a
# failed sign-in takes does not tell which names exist.
_VERIFY_SLOTS = 2  # argon2 verifications at once (~150 ms of CPU and 64 MiB each): more would only queue for the cores
_DUMMY_HASH = "$argon2id$v=19$m=65536,t=3,p=4$WdTjNDWuj0kQVf8F8zCoCQ$qiPvlnK381Rj3P4j7GRUytCkFzGyi7a+0n32Y29SxEg"


def _verify(password_hash: str, password: str) -> bool:
    try:
        return bool(_HASHER.verify(password_hash, password))
    except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
        return False


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
    outcome: str  # ok | wrong_credentials | throttled | unavailable (the shared state failed, sign_in: closed)
    retry_after_s: int = 0


class Authenticator:
    def __init__(
        self,
        config: ConsoleConfig,
        *,
        state: State | None = None,
        monitor: StateMonitor | None = None,
        fail_mode: SignInFailMode = SignInFailMode.CLOSED,
        clock: Callable[[], float] = time.time,
        free_failures_per_user: int = 5,
        user_backoff_s: float = 1.0,
        user_backoff_cap_s: float = 60.0,
        max_failures_per_address: int = 20,
        window_s: float = 15 * 60,
    ) -> None:
        self._users = {user.name: user for user in config.users}
        self._tokens = [(token.token.get_secret_value().encode(), token) for token in config.tokens]
        self._trusted_proxies = list(config.trusted_proxies)
        self._state = state if state is not None else MemoryState()
        self._local = MemoryState() if fail_mode is SignInFailMode.LOCAL and self._state.kind != "memory" else None
        self._monitor = monitor
        self._fail_mode = fail_mode
        self._clock = clock  # wall time: replicas compare it
        self.free, self.base_s, self.cap_s = free_failures_per_user, user_backoff_s, user_backoff_cap_s
        self.max_per_address, self.window_s = max_failures_per_address, window_s
        self._verify_slots: anyio.CapacityLimiter | None = None

    async def login(self, name: str, password: str, address: str) -> LoginResult:
        """Throttled sign-in; the argon2 check runs off the event loop (~150 ms of CPU), at
        most two at a time, so a burst of sign-ins neither stalls the gateway nor fills the
        thread pool."""
        try:
            return await self._login(self._state, name, password, address)
        except StateError as exc:
            if self._monitor is not None:
                self._monitor.failed("sign_in", self._fail_mode.value, exc)
            if self._local is None:
                return LoginResult(None, "unavailable")
            return await self._login(self._local, name, password, address)

    async def _login(self, state: State, name: str, password: str, address: str) -> LoginResult:
        name = name.strip()
        user_key, address_key = f"signin:user:{hashlib.sha256(name.lower().encode()).hexdigest()[:32]}", f"signin:addr:{address}"
        wait = max(await self._user_wait(state, user_key), await self._address_wait(state, address_key))
        if self._monitor is not None and state is self._state:
            self._monitor.ok("sign_in")
        if wait:
            return LoginResult(None, "throttled", wait)
        if self._verify_slots is None:
            self._verify_slots = anyio.CapacityLimiter(_VERIFY_SLOTS)
        configured = self._users.get(name)
        ok = await anyio.to_thread.run_sync(_verify, configured.password_hash if configured else _DUMMY_HASH, password, limiter=self._verify_slots)
        if not ok or configured is None:
            await state.map_count(user_key, {"n": 1}, self.window_s)  # forgotten window_s after the last failure
            await state.put(user_key + ":last", repr(self._clock()).encode(), self.window_s)
            await state.count(address_key, self.window_s)
            return LoginResult(None, "wrong_credentials")
        await state.delete(user_key)
        return LoginResult(StaffUser(configured.name, configured.role, "session"), "ok")

    async def _user_wait(self, state: State, key: str) -> int:
        """Past ``free`` failures of a name, the next attempt waits ``base_s`` doubled per
        further failure, at most ``cap_s``, after the last one; refused attempts are not counted."""
        (failures,) = await state.map_get(key, ["n"], self.window_s)
        if failures is None or int(failures) < self.free:
            return 0
        last = await state.get(key + ":last")
        if last is None:
            return 0
        wait = float(last) + min(self.cap_s, self.base_s * 2 ** (int(failures) - self.free)) - self._clock()
        return math.ceil(wait) if wait > 0 else 0

    async def _address_wait(self, state: State, key: str) -> int:
        used = await state.count(key, self.window_s, amount=0)
        return max(1, math.ceil(used.expires_in_s)) if used.value >= self.max_per_address else 0

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
