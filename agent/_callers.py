"""Callers and limits: virtual API keys per AI system, requests per minute, tokens per day.

A caller presents ``Authorization: Bearer ag-<id>-<secret>`` (or ``x-api-key:`` for
Anthropic-style clients). ``Callers.admit`` runs before the request body is read:

    no well-formed key, the system requires one   → 401 invalid_api_key (reason missing)
    unknown id, wrong secret, another system's key → 401 invalid_api_key (reason unknown)
    revoked                                        → 401 invalid_api_key (reason revoked)
    over its requests per minute                   → 429 rate_limit_exceeded, retry-after
    its tokens for the (UTC) day spent             → 429 token_limit_exceeded, retry-after
    store or shared state down, fail mode closed   → 503 (see below)

Keys are read from the records store once and cached (``CACHE_TTL_S``); a revocation
reaches every replica within about a second: whoever revokes bumps a generation counter
in the shared state, which each replica reads every ``POLL_S`` and drops its cache when it
moved. With the in-process state (one replica) or while the shared state is down, the
replica polls a cheap revocation stamp in the records store instead.

Limits are counters in the shared state (``State.count``: atomic, with an expiry
window; Redis for a fleet, this process's memory for one replica), so every replica
counts against the same figures: a fixed window per
minute for requests (a caller may get up to twice its rate across a minute's edge), and a
count per UTC day for tokens, checked before a request and added after it from the
upstream's ``usage`` (estimated, see ``count_tokens``, when a stream carries none). A
request that starts under the budget finishes even if it crosses it.

When the shared state fails, ``callers.limits_fail_mode`` decides: ``open`` (default)
lets the request through unlimited, ``closed`` refuses it with a 503
``limits_unavailable``. Either way it is counted
(``aimsguard_state_errors_total{use="limits"}``) and written as ``state.failed`` (then
``state.recovered``), like every use of the shared state. A records store that cannot be
read for a key counts as ``aimsguard_records_errors_total{operation="keys"}``. Open by default: limits guard cost and fairness, not safety —
the checks still run and the key is still authenticated, and a cache outage should not
take every caller down.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING

import structlog
from prometheus_client import CollectorRegistry, Counter

from aimsguard.collectors import Count, State, StateError
from aimsguard.collectors.records import KEY_PREFIX, ApiKey, RecordsError, RecordsStore, parse_key, secret_matches

from ._errors import AimsguardError
from ._exchange import Exchange
from ._policy import FailMode, Policy

from ._state import StateMonitor, state_for

if TYPE_CHECKING:
    from ._oversight import BoundedWrites

__all__ = [
    "CACHE_TTL_S",
    "Caller",
    "CallerMetrics",
    "CallerRefused",
    "Callers",
    "broadcast_revocation",
    "count_tokens",
    "presented_key",
]

log = structlog.get_logger("aimsguard.agent")

CACHE_TTL_S = 60.0  # a key read from the store is trusted this long (revocations end it sooner)
UNKNOWN_TTL_S = 5.0  # an unknown id is remembered this long, so guessing does not reach the store per request
POLL_S = 0.5  # how often a replica looks for revocations
GENERATION_KEY = "keys:generation"  # the state's prefix goes in front
_GENERATION_WINDOW_S = 400 * 86400.0
_MAX_CACHED = 100_000
_DAY_WINDOW_S = 2 * 86400.0  # a day's count outlives its day: a replica whose clock lags still finds it
_CHARS_PER_TOKEN = 4  # OpenAI's rule of thumb for English text


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated caller: the key's public id and limits."""

    key_id: str
    system: str
    rpm: int | None
    tokens_per_day: int | None


class CallerRefused(AimsguardError):
    """A request refused for its caller: a missing or bad key (401), a limit (429), or
    a store it cannot be checked against (503). ``headers`` go on the response."""

    def __init__(
        self, message: str, *, status_code: int, code: str, error_type: str, reason: str,
        headers: dict[str, str] | None = None, key_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.key_id = key_id  # the key the request authenticated with, when a limit refused it
        self.status_code = status_code
        self.code = code
        self.error_type = error_type
        self.reason = reason  # for the metrics: missing, unknown, revoked, rpm, tokens_per_day, unavailable
        self.headers = headers or {}


def _invalid(reason: str, message: str) -> CallerRefused:
    return CallerRefused(
        message, status_code=401, code="invalid_api_key", error_type="invalid_request_error", reason=reason,
        headers={"www-authenticate": 'Bearer realm="aimsguard"'},
    )


def _limited(kind: str, key_id: str, limit: int, retry_after_s: float) -> CallerRefused:
    wait = max(1, math.ceil(retry_after_s))
    if kind == "rpm":
        message, code, error_type = f"Rate limit reached: {limit} requests per minute. Try again in {wait} s.", "rate_limit_exceeded", "requests"
    else:
        message, code, error_type = f"Token limit reached: {limit} tokens per day (UTC). Try again in {wait} s.", "token_limit_exceeded", "tokens"
    return CallerRefused(message, status_code=429, code=code, error_type=error_type, reason=kind, headers={"retry-after": str(wait)}, key_id=key_id)


def presented_key(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The virtual key a request carries (``Authorization: Bearer ag-...`` or ``x-api-key``),
    or None when it carries none (another kind of credential is not a virtual key)."""
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").strip().partition(" ")
            token = token.strip()
            if scheme.lower() == "bearer" and token.startswith(KEY_PREFIX):
                return token
        elif name == b"x-api-key":
            token = value.decode("latin-1").strip()
            if token.startswith(KEY_PREFIX):
                return token
    return None


def count_tokens(exchange: Exchange) -> tuple[int, bool]:
    """The tokens an exchange spent, and whether they are estimated.

    The upstream's ``usage`` when it gave one. A stream without usage (OpenAI sends it only
    with ``stream_options.include_usage``) is estimated at one token per four characters
    of the input as checked and of the output as released to the client. An exchange that
    never reached the upstream (refused, blocked at input, stopped) spent nothing.
    """
    if exchange.upstream_started is None:
        return 0, False
    if exchange.input_tokens is not None or exchange.output_tokens is not None:
        return (exchange.input_tokens or 0) + (exchange.output_tokens or 0), False
    chars_in = sum(len(text) for text in exchange.input_texts)
    chars_out = sum(len(text) for text in exchange.output_texts)
    return math.ceil(chars_in / _CHARS_PER_TOKEN) + math.ceil(chars_out / _CHARS_PER_TOKEN), True


class CallerMetrics:
    def __init__(self, registry: CollectorRegistry | None) -> None:
        r = registry if registry is not None else CollectorRegistry()
        self.refused = Counter(
            "aimsguard_caller_refusals_total",
            "Requests refused for their caller: missing, unknown or revoked key, rpm or tokens_per_day limit, or unavailable.",
            ["system", "reason"], registry=r,
        )


@dataclass(slots=True)
class _Cached:
    key: ApiKey | None  # None: no such key
    until: float


class Callers:
    """Authenticates callers and enforces their limits; one per Guard."""

    def __init__(
        self,
        policy: Policy,
        store: RecordsStore | None,
        state: State,
        *,
        monitor: StateMonitor,
        reads: BoundedWrites,
        registry: CollectorRegistry | None,
        store_failed: Callable[[str, Exception], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``store_failed(operation, error)`` counts and records a records-store failure
        (``OversightRuntime.failed``); ``monitor`` does the same for the shared state."""
        self.policy = policy
        self.store = store
        self.state = state
        self.monitor = monitor
        self.metrics = CallerMetrics(registry)
        self._store_failed = store_failed
        self._reads = reads
        self._clock = clock
        self._cache: dict[str, _Cached] = {}
        self._loading: dict[str, asyncio.Future[ApiKey | None]] = {}
        self._stamp: object = None
        self._poller: asyncio.Task[None] | None = None
        self._background: set[asyncio.Future[None]] = set()

    # -- a request --------------------------------------------------------------------------

    async def admit(self, system_id: str, headers: Iterable[tuple[bytes, bytes]]) -> Caller | None:
        """The caller of a request to ``system_id`` (None: no key, and none required), within
        its limits; raises ``CallerRefused``."""
        config = self.policy.systems[system_id].callers
        presented = presented_key(headers)
        if presented is None or self.store is None:
            if config.require_key:
                raise self._refuse(system_id, _invalid("missing", "This AI system needs an API key: send Authorization: Bearer ag-..."))
            return None
        parsed = parse_key(presented)
        if parsed is None:
            raise self._refuse(system_id, _invalid("unknown", "Incorrect API key provided."))
        key = await self._key(parsed[0], system_id)
        if key is None or key.system != system_id or not secret_matches(key, parsed[1]):
            raise self._refuse(system_id, _invalid("unknown", "Incorrect API key provided."))
        if key.revoked:
            raise self._refuse(system_id, _invalid("revoked", "This API key has been revoked."))
        caller = Caller(key.id, key.system, key.rpm, key.tokens_per_day)
        await self._within_limits(caller, config.limits_fail_mode)
        return caller

    async def _within_limits(self, caller: Caller, fail_mode: FailMode) -> None:
        if caller.rpm is None and caller.tokens_per_day is None:
            return
        now = time.time()
        minute, day = _windows(now)
        calls: list[Awaitable[Count]] = []
        if caller.rpm is not None:
            calls.append(self.state.count(f"rpm:{caller.key_id}:{minute}", 60.0))
        if caller.tokens_per_day is not None:
            calls.append(self.state.count(f"tpd:{caller.key_id}:{day}", _DAY_WINDOW_S, 0))
        try:
            counts = [count.value for count in await asyncio.gather(*calls)]  # concurrent: one round trip's wait
        except StateError as exc:
            self.monitor.failed("limits", fail_mode.value, exc)
            if fail_mode is FailMode.CLOSED:
                raise self._refuse(
                    caller.system,
                    CallerRefused(
                        "The request limits cannot be checked right now; try again shortly.",
                        status_code=503, code="limits_unavailable", error_type="server_error", reason="unavailable",
                        headers={"retry-after": "1"}, key_id=caller.key_id,
                    ),
                ) from None
            return
        self.monitor.ok("limits")
        if caller.rpm is not None:
            requests = counts.pop(0)
            if requests > caller.rpm:
                raise self._refuse(caller.system, _limited("rpm", caller.key_id, caller.rpm, 60 - now % 60))
        if caller.tokens_per_day is not None and counts[0] >= caller.tokens_per_day:
            raise self._refuse(caller.system, _limited("tokens_per_day", caller.key_id, caller.tokens_per_day, 86400 - now % 86400))

    def spend_soon(self, caller: Caller, tokens: int) -> None:
        """``spend`` in the background: the answer does not wait for the count."""
        if caller.tokens_per_day is None or tokens <= 0:
            return
        task = asyncio.ensure_future(self.spend(caller, tokens))
        self._background.add(task)  # a reference until done, or the task may be collected midway
        task.add_done_callback(self._background.discard)

    async def spend(self, caller: Caller, tokens: int) -> None:
        """Add an exchange's tokens to its caller's day. Never raises (counted and logged)."""
        if caller.tokens_per_day is None or tokens <= 0:
            return
        _, day = _windows(time.time())
        try:
            await self.state.count(f"tpd:{caller.key_id}:{day}", _DAY_WINDOW_S, tokens)
        except StateError as exc:
            self.monitor.failed("limits", "uncounted", exc)  # these tokens are lost to the day's count

    def _refuse(self, system_id: str, error: CallerRefused) -> CallerRefused:
        self.metrics.refused.labels(system_id, error.reason).inc()
        return error

    # -- keys: a cache in front of the store, emptied on revocation -----------------------------

    async def _key(self, key_id: str, system_id: str) -> ApiKey | None:
        self._ensure_poller()
        now = self._clock()
        cached = self._cache.get(key_id)
        if cached is not None and cached.until > now:
            return cached.key
        loading = self._loading.get(key_id)
        if loading is None:  # one read per key however many requests wait for it
            loading = self._loading[key_id] = asyncio.ensure_future(self._load(key_id, cached, system_id))
            loading.add_done_callback(lambda _: self._loading.pop(key_id, None))
        return await asyncio.shield(loading)

    async def _load(self, key_id: str, cached: _Cached | None, system_id: str) -> ApiKey | None:
        assert self.store is not None
        store = self.store
        try:
            key = await self._reads.run(lambda: store.get_key(key_id), self.policy.records.handoff_timeout_s if self.policy.records else 2.0)
        except (RecordsError, TimeoutError) as exc:
            self._store_failed("keys", exc)
            if cached is not None and cached.key is not None:
                return cached.key  # a key known before the outage keeps working; revocations still arrive
            raise self._refuse(
                system_id,
                CallerRefused(
                    "API keys cannot be checked right now; try again shortly.",
                    status_code=503, code="keys_unavailable", error_type="server_error", reason="unavailable",
                    headers={"retry-after": "1"},
                ),
            ) from None
        if len(self._cache) >= _MAX_CACHED:
            self._cache.clear()
        self._cache[key_id] = _Cached(key, self._clock() + (CACHE_TTL_S if key is not None else UNKNOWN_TTL_S))
        return key

    def _ensure_poller(self) -> None:
        if self._poller is None or self._poller.done():
            self._poller = asyncio.ensure_future(self._poll_forever())

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(POLL_S)
            await self.poll()

    async def poll(self) -> None:
        """Drop the cached keys when a key was revoked anywhere since the last poll."""
        stamp = await self._revocation_stamp()
        if stamp is None:
            return
        if stamp != self._stamp:  # also the first: keys cached before it may predate a revocation
            self._cache.clear()
        self._stamp = stamp

    async def _revocation_stamp(self) -> object:
        if self.state.kind != "memory":
            try:
                stamp = ("state", (await self.state.count(GENERATION_KEY, _GENERATION_WINDOW_S, 0)).value)
            except StateError as exc:
                self.monitor.failed("key_revocations", "store", exc)  # then the records store tells
            else:
                self.monitor.ok("key_revocations")
                return stamp
        assert self.store is not None
        store = self.store
        try:
            return ("store", await self._reads.run(store.keys_revoked_stamp, 2.0))
        except (RecordsError, TimeoutError) as exc:
            self._store_failed("key_revocations", exc)
            return None

    async def announce_revocation(self) -> None:
        """After a revocation here: every replica drops its cached keys at its next poll,
        this one at once."""
        self._cache.clear()
        try:
            await self.state.count(GENERATION_KEY, _GENERATION_WINDOW_S, 1)
        except StateError as exc:
            self.monitor.failed("key_revocations", "store", exc)  # the others see the store's stamp



async def broadcast_revocation(policy: Policy) -> None:
    """Tell every replica of this policy to drop its cached keys (after a revocation made
    outside them, e.g. by the CLI). Without a shared state they see the store instead.
    Raises ``StateError``."""
    if not policy.state.shared:
        return
    state = state_for(policy)
    try:
        await state.count(GENERATION_KEY, _GENERATION_WINDOW_S, 1)
    finally:
        state.close()


def _windows(now: float) -> tuple[int, str]:
    """The minute (epoch minutes) and the UTC day a moment falls in: the same on every replica."""
    return int(now // 60), datetime.fromtimestamp(now, timezone.utc).strftime("%Y%m%d")
