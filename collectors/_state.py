"""Short-lived state that replicas share: in this process (one replica) or in Redis (a fleet).

One small interface, ``State``, with two implementations and one way to do each thing:

- ``get`` / ``put`` (with a time to live) / ``add`` (only if absent) / ``exists`` / ``delete``:
  flags and markers (a revoked session, the time of a last failure);
- ``count(key, window_s, amount)``: an atomic counter that expires ``window_s`` after its
  first increment, answering the new value and how long the window has left;
- ``map_get`` / ``map_add`` / ``map_count`` (several counters in one call): fields under one key sharing one time to live
  (refreshed by each use), for state that must expire as a whole (a conversation's vault);
- ``publish`` / ``subscribe``: a nudge to every replica (the stop switch's fast path);
  nothing is kept, a replica that misses one falls back to what it polls anyway.

Every method is a coroutine; an operation that cannot be done (Redis away, slower than
``timeout_s``) raises ``StateError``, translated at this boundary from redis-py's and the
socket's errors, never a redis type. Which use then fails open or closed is the caller's
choice (the policy's ``state.fail_modes``); recovery needs nothing: the next call tries again
(redis-py's pool reconnects).

How a rate limiter uses it (fixed windows; what ``count`` is for)::

    used = await state.count(f"rpm:{key_id}:{int(now // 60)}", window_s=60)
    if used.value > limit:
        retry_after_s = used.expires_in_s        # -> 429 with retry-after
    tokens = await state.count(f"tpd:{key_id}:{day}", window_s=86_400, amount=spent)

``count`` is INCRBY, EXPIRE NX and PTTL in one MULTI transaction (one round trip, atomic:
every replica sees one counter). Put the window's number in the key, as above, for fixed
windows aligned on the clock; for a sliding estimate, weigh the previous window's count
(``amount=0`` reads a counter without adding) by the share of it still inside the last
minute. Keys are namespaced by the store (``state.prefix``); callers pick short, stable
keys and never put secrets or personal data in them (hash them).
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Count", "MemoryState", "RedisState", "State", "StateError", "open_state"]


class StateError(Exception):
    """The shared state could not be read or written (unreachable, too slow, refused)."""


@dataclass(frozen=True, slots=True)
class Count:
    value: int  # the counter after this increment
    expires_in_s: float  # until the window ends and the counter starts again from zero


class State:
    """The interface (see the module's docstring). ``kind`` is ``memory`` or ``redis``."""

    kind: str = ""

    async def get(self, key: str) -> bytes | None:
        raise NotImplementedError

    async def put(self, key: str, value: bytes, ttl_s: float) -> None:
        raise NotImplementedError

    async def add(self, key: str, value: bytes, ttl_s: float) -> bool:
        """Set ``key`` only if it is absent; whether it was set."""
        raise NotImplementedError

    async def exists(self, key: str) -> bool:
        raise NotImplementedError

    async def delete(self, key: str) -> None:
        raise NotImplementedError

    async def count(self, key: str, window_s: float, amount: int = 1) -> Count:
        raise NotImplementedError

    async def map_get(self, key: str, fields: Sequence[str], ttl_s: float) -> list[bytes | None]:
        """The fields' values (None: absent); refreshes the map's time to live when it exists."""
        raise NotImplementedError

    async def map_add(self, key: str, entries: dict[str, bytes], ttl_s: float) -> list[bool]:
        """Set each field only if it is absent (in order); which were set."""
        raise NotImplementedError

    async def map_count(self, key: str, amounts: Mapping[str, int], ttl_s: float) -> dict[str, int]:
        """Add each amount to its counter field, all at once; the new values."""
        raise NotImplementedError

    async def publish(self, channel: str, message: bytes) -> None:
        raise NotImplementedError

    async def subscribe(self, channel: str, on_message: Callable[[bytes], None], *, ready: Callable[[], None] | None = None) -> None:
        """Call ``on_message`` for each message on ``channel`` until cancelled; ``ready`` once
        listening. Raises ``StateError`` when the connection is lost (the caller retries)."""
        raise NotImplementedError

    async def ping(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Let go of connections (idempotent)."""


def open_state(url: str | None, *, prefix: str = "aimsguard", timeout_s: float = 0.25, max_connections: int = 64) -> State:
    """The store a policy's ``state.url`` names: ``redis://`` / ``rediss://`` / ``unix://``, or
    None for this process only."""
    if not url:
        return MemoryState()
    return RedisState(url, prefix=prefix, timeout_s=timeout_s, max_connections=max_connections)


# -- in this process ---------------------------------------------------------------------------


class MemoryState(State):
    """Dicts with expiry times, for one replica; bounded (the entry touched longest ago goes
    first), safe across threads and event loops. ``clock`` is for tests."""

    kind = "memory"

    def __init__(self, *, max_keys: int = 100_000, clock: Callable[[], float] = time.monotonic) -> None:
        self._entries: dict[str, tuple[Any, float]] = {}  # key -> (value, expires at)
        self._max_keys = max_keys
        self._clock = clock
        self._lock = threading.Lock()
        self._channels: dict[str, list[Callable[[bytes], None]]] = {}

    def _live(self, key: str, now: float) -> Any:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[1] <= now:
            del self._entries[key]
            return None
        return entry[0]

    def _store(self, key: str, value: Any, expires: float) -> None:
        self._entries.pop(key, None)
        while len(self._entries) >= self._max_keys:
            del self._entries[next(iter(self._entries))]
        self._entries[key] = (value, expires)

    async def get(self, key: str) -> bytes | None:
        with self._lock:
            value = self._live(key, self._clock())
            return str(value).encode() if isinstance(value, int) else value

    async def put(self, key: str, value: bytes, ttl_s: float) -> None:
        with self._lock:
            now = self._clock()
            self._store(key, value, now + ttl_s)

    async def add(self, key: str, value: bytes, ttl_s: float) -> bool:
        with self._lock:
            now = self._clock()
            if self._live(key, now) is not None:
                return False
            self._store(key, value, now + ttl_s)
            return True

    async def exists(self, key: str) -> bool:
        with self._lock:
            return self._live(key, self._clock()) is not None

    async def delete(self, key: str) -> None:
        with self._lock:
            self._entries.pop(key, None)

    async def count(self, key: str, window_s: float, amount: int = 1) -> Count:
        with self._lock:
            now = self._clock()
            value = self._live(key, now)
            expires = self._entries[key][1] if value is not None else now + window_s
            total = (value or 0) + amount
            self._store(key, total, expires)
            return Count(total, expires - now)

    def _map(self, key: str, ttl_s: float, *, create: bool) -> dict[str, Any] | None:
        now = self._clock()
        fields = self._live(key, now)
        if fields is None and not create:
            return None
        fields = {} if fields is None else fields
        self._store(key, fields, now + ttl_s)  # each use refreshes the time to live
        return fields

    async def map_get(self, key: str, fields: Sequence[str], ttl_s: float) -> list[bytes | None]:
        with self._lock:
            found = self._map(key, ttl_s, create=False) or {}
            return [found.get(field) for field in fields]

    async def map_add(self, key: str, entries: dict[str, bytes], ttl_s: float) -> list[bool]:
        with self._lock:
            found = self._map(key, ttl_s, create=True)
            assert found is not None
            added = []
            for field, value in entries.items():
                added.append(field not in found)
                found.setdefault(field, value)
            return added

    async def map_count(self, key: str, amounts: Mapping[str, int], ttl_s: float) -> dict[str, int]:
        with self._lock:
            found = self._map(key, ttl_s, create=True)
            assert found is not None
            for field, amount in amounts.items():
                found[field] = int(found.get(field, 0)) + amount
            return {field: int(found[field]) for field in amounts}

    async def publish(self, channel: str, message: bytes) -> None:
        for callback in list(self._channels.get(channel, ())):
            callback(message)

    async def subscribe(self, channel: str, on_message: Callable[[bytes], None], *, ready: Callable[[], None] | None = None) -> None:
        self._channels.setdefault(channel, []).append(on_message)
        try:
            if ready is not None:
                ready()
            await asyncio.Event().wait()
        finally:
            self._channels[channel].remove(on_message)

    async def ping(self) -> None:
        return None


# -- Redis ---------------------------------------------------------------------------------------


class RedisState(State):
    """Redis through redis-py's asyncio client: one connection pool per event loop (a pool
    belongs to the loop that made it), short socket timeouts, every operation also bounded
    by ``timeout_s`` as a whole; errors become ``StateError``."""

    kind = "redis"

    def __init__(self, url: str, *, prefix: str = "aimsguard", timeout_s: float = 0.25, max_connections: int = 64) -> None:
        import redis.asyncio  # only a fleet pays for importing it

        self._redis = redis.asyncio
        self.url = url
        self.prefix = f"{prefix}:" if prefix else ""
        self.timeout_s = timeout_s
        self._max_connections = max_connections
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<RedisState {self.prefix!r}>"  # never the URL: it may hold a password

    def _client(self) -> Any:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            with self._lock:
                client = self._clients.get(loop)
                if client is None:
                    from redis.asyncio.retry import Retry
                    from redis.backoff import NoBackoff

                    client = self._clients[loop] = self._redis.Redis.from_url(
                        self.url,
                        # No retries with backoff (redis-py's default): a failure must reach
                        # the use's fail mode within its budget; the next call tries again.
                        retry=Retry(NoBackoff(), 0),
                        socket_timeout=self.timeout_s,
                        socket_connect_timeout=self.timeout_s,
                        max_connections=self._max_connections,
                        retry_on_timeout=False,
                        health_check_interval=30,
                    )
        return client

    async def _run(self, call: Callable[[Any], Awaitable[Any]]) -> Any:
        try:
            async with asyncio.timeout(self.timeout_s * 2):  # connect, then answer
                return await call(self._client())
        except asyncio.CancelledError:
            raise
        except (TimeoutError, OSError, self._redis.RedisError) as exc:
            raise StateError(f"{type(exc).__name__}: {exc}") from exc

    def _key(self, key: str) -> str:
        return self.prefix + key

    async def get(self, key: str) -> bytes | None:
        value: bytes | None = await self._run(lambda r: r.get(self._key(key)))
        return value

    async def put(self, key: str, value: bytes, ttl_s: float) -> None:
        await self._run(lambda r: r.set(self._key(key), value, px=_ms(ttl_s)))

    async def add(self, key: str, value: bytes, ttl_s: float) -> bool:
        return bool(await self._run(lambda r: r.set(self._key(key), value, px=_ms(ttl_s), nx=True)))

    async def exists(self, key: str) -> bool:
        return bool(await self._run(lambda r: r.exists(self._key(key))))

    async def delete(self, key: str) -> None:
        await self._run(lambda r: r.delete(self._key(key)))

    async def count(self, key: str, window_s: float, amount: int = 1) -> Count:
        name = self._key(key)

        async def call(r: Any) -> list[Any]:
            async with r.pipeline(transaction=True) as pipe:
                pipe.incrby(name, amount).pexpire(name, _ms(window_s), nx=True).pttl(name)
                return list(await pipe.execute())

        value, _, pttl = await self._run(call)
        return Count(int(value), max(pttl, 0) / 1000)

    async def map_get(self, key: str, fields: Sequence[str], ttl_s: float) -> list[bytes | None]:
        name = self._key(key)

        async def call(r: Any) -> list[Any]:
            async with r.pipeline(transaction=False) as pipe:
                pipe.hmget(name, list(fields)).pexpire(name, _ms(ttl_s))
                return list(await pipe.execute())

        values, _ = await self._run(call)
        return list(values)

    async def map_add(self, key: str, entries: dict[str, bytes], ttl_s: float) -> list[bool]:
        name = self._key(key)

        async def call(r: Any) -> list[Any]:
            async with r.pipeline(transaction=True) as pipe:
                for field, value in entries.items():
                    pipe.hsetnx(name, field, value)
                pipe.pexpire(name, _ms(ttl_s))
                return list(await pipe.execute())

        return [bool(added) for added in (await self._run(call))[:-1]]

    async def map_count(self, key: str, amounts: Mapping[str, int], ttl_s: float) -> dict[str, int]:
        name = self._key(key)

        async def call(r: Any) -> list[Any]:
            async with r.pipeline(transaction=True) as pipe:
                for field, amount in amounts.items():
                    pipe.hincrby(name, field, amount)
                pipe.pexpire(name, _ms(ttl_s))
                return list(await pipe.execute())

        return {field: int(value) for field, value in zip(amounts, await self._run(call))}

    async def publish(self, channel: str, message: bytes) -> None:
        await self._run(lambda r: r.publish(self._key(channel), message))

    async def subscribe(self, channel: str, on_message: Callable[[bytes], None], *, ready: Callable[[], None] | None = None) -> None:
        pubsub = self._client().pubsub(ignore_subscribe_messages=True)
        try:
            try:
                async with asyncio.timeout(self.timeout_s * 2):
                    await pubsub.subscribe(self._key(channel))
                if ready is not None:
                    ready()
                while True:
                    # A server that goes away closes the socket (an error here); one that
                    # falls silent is caught by the client's health check.
                    message = await pubsub.get_message(timeout=1.0)
                    if message is not None and message.get("type") == "message":
                        on_message(message["data"])
            except (TimeoutError, OSError, self._redis.RedisError) as exc:
                raise StateError(f"{type(exc).__name__}: {exc}") from exc
        finally:
            try:
                await pubsub.aclose()
            except Exception:  # a broken connection: nothing left to close cleanly
                pass

    async def ping(self) -> None:
        await self._run(lambda r: r.ping())

    def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.items()), weakref.WeakKeyDictionary()
        for loop, client in clients:
            if loop.is_closed():
                continue
            try:
                if loop.is_running():
                    asyncio.run_coroutine_threadsafe(client.aclose(), loop)
            except RuntimeError:
                pass


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))
