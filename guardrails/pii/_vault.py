"""Placeholders per conversation: the same value always gets the same ``<TYPE_n>``.

A vault holds, for each conversation, which personal data stood behind which placeholder,
so that placeholders in the model's answer can be put back for the user. It is bounded
(conversations expire after ``ttl_s`` of disuse; at most ``max_conversations`` are kept,
least recently used first out; at most ``max_values`` per conversation) and safe to share
between concurrent requests. Its values are never logged: nothing here has a repr that
shows them.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["PLACEHOLDER", "SHARED_VAULT", "PlaceholderVault", "SharedVault", "SharedVaultConfig", "VaultFull", "VaultView"]

PLACEHOLDER = re.compile(r"<([A-Z][A-Z0-9_]*?)_(\d+)>")


class VaultFull(RuntimeError):
    """A conversation holds as many values as the vault allows."""


@dataclass(eq=False)
class _Conversation:
    by_value: dict[tuple[str, str], str] = field(default_factory=dict)
    by_placeholder: dict[str, str] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    last_used: float = field(default_factory=time.monotonic)

    def __repr__(self) -> str:
        return f"<conversation with {len(self.by_placeholder)} placeholders>"


class PlaceholderVault:
    def __init__(self, *, ttl_s: float = 3600.0, max_conversations: int = 10_000, max_values: int = 1_000) -> None:
        self._ttl_s = ttl_s
        self._max_conversations = max_conversations
        self._max_values = max_values
        self._conversations: OrderedDict[str, _Conversation] = OrderedDict()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<PlaceholderVault: {len(self._conversations)} conversations>"

    def placeholder_for(self, conversation_id: str, entity_type: str, value: str) -> str:
        with self._lock:
            conversation = self._conversation(conversation_id, create=True)
            assert conversation is not None
            key = (entity_type, value)
            existing = conversation.by_value.get(key)
            if existing is not None:
                return existing
            if len(conversation.by_placeholder) >= self._max_values:
                raise VaultFull(f"conversation holds {self._max_values} values")
            number = conversation.counters.get(entity_type, 0) + 1
            conversation.counters[entity_type] = number
            placeholder = f"<{entity_type}_{number}>"
            conversation.by_value[key] = placeholder
            conversation.by_placeholder[placeholder] = value
            return placeholder

    def value_of(self, conversation_id: str, placeholder: str) -> str | None:
        with self._lock:
            conversation = self._conversation(conversation_id, create=False)
            return None if conversation is None else conversation.by_placeholder.get(placeholder)

    def knows(self, conversation_id: str, value: str) -> bool:
        """Whether the user gave this value in this conversation."""
        with self._lock:
            conversation = self._conversation(conversation_id, create=False)
            return conversation is not None and value in conversation.by_placeholder.values()

    def __len__(self) -> int:
        with self._lock:
            self._expire(time.monotonic())
            return len(self._conversations)

    def _conversation(self, conversation_id: str, *, create: bool) -> _Conversation | None:
        now = time.monotonic()
        self._expire(now)
        conversation = self._conversations.get(conversation_id)
        if conversation is None:
            if not create:
                return None
            conversation = self._conversations[conversation_id] = _Conversation()
            while len(self._conversations) > self._max_conversations:
                self._conversations.popitem(last=False)
        self._conversations.move_to_end(conversation_id)
        conversation.last_used = now
        return conversation

    def _expire(self, now: float) -> None:
        while self._conversations:
            oldest_id, oldest = next(iter(self._conversations.items()))
            if now - oldest.last_used <= self._ttl_s:
                return
            del self._conversations[oldest_id]


@dataclass(frozen=True)
class SharedVaultConfig:
    """What a system's checks need to keep their vault in the shared state (given by the
    runtime through the checks' ``shared`` mapping, under ``SHARED_VAULT``)."""

    state: Any  # aimsguard.collectors.State
    key: bytes  # 32 bytes: values are encrypted (AES-GCM) and indexed by HMAC under keys derived from it
    namespace: str  # the system's id
    fail_closed: bool  # the state failed: the check fails (True) or redacts unnumbered and restores nothing
    on_failure: Callable[[BaseException], None] = lambda exc: None
    on_success: Callable[[], None] = lambda: None


SHARED_VAULT = "pii.vault.shared"


class SharedVault:
    """The vault in the shared state, so a conversation's placeholders restore on every
    replica and its data keeps its numbers.

    One map per conversation (its key an HMAC of the conversation, so Redis never sees the
    id), expiring ``ttl_s`` after its last use as today: ``v:<hmac(type, value)>`` → the
    placeholder, ``p:<placeholder>`` → the value encrypted with AES-GCM (bound to the map and
    the placeholder), ``k:<hmac(value)>`` marks a value the user gave, ``n:<type>`` and ``n``
    count. A new value takes its number from an atomic counter and is added only if absent,
    so two replicas racing on the same value agree on one placeholder (the loser's number is
    skipped). ``max_conversations`` does not apply: Redis's own memory policy bounds it.
    """

    def __init__(self, config: SharedVaultConfig, *, ttl_s: float, max_values: int) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self.config = config
        self._state = config.state
        self._ttl_s = ttl_s
        self._max_values = max_values
        self._cipher = AESGCM(hmac.new(config.key, b"aimsguard vault encryption", hashlib.sha256).digest())
        self._index_key = hmac.new(config.key, b"aimsguard vault index", hashlib.sha256).digest()

    def __repr__(self) -> str:
        return "<SharedVault>"

    def _index(self, *parts: str) -> str:
        return hmac.new(self._index_key, "\x00".join(parts).encode(), hashlib.sha256).hexdigest()[:32]

    def _map(self, conversation_id: str) -> str:
        return f"vault:{self.config.namespace}:{self._index('conversation', conversation_id)}"

    async def placeholders(self, conversation_id: str, items: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """A placeholder for each (entity type, value), the same ones as before for values seen before."""
        wanted = list(dict.fromkeys(items))
        if not wanted:
            return {}
        name = self._map(conversation_id)
        fields = [f"v:{self._index('value', kind, value)}" for kind, value in wanted]
        found = await self._state.map_get(name, fields, self._ttl_s)
        result = {item: got.decode() for item, got in zip(wanted, found) if got is not None}
        new = [(item, index_field) for item, index_field in zip(wanted, fields) if item not in result]
        if not new:
            return result
        # Numbers for every new value in one round trip: each type's counter moves by its
        # count of new values, and the numbers below the new top are this request's.
        per_kind = Counter(kind for (kind, _), _ in new)
        counts = await self._state.map_count(name, {"n": len(new), **{f"n:{kind}": n for kind, n in per_kind.items()}}, self._ttl_s)
        if counts["n"] > self._max_values:
            raise VaultFull(f"conversation holds {self._max_values} values")
        next_number = {kind: counts[f"n:{kind}"] - n + 1 for kind, n in per_kind.items()}
        entries: dict[str, bytes] = {}
        for (kind, value), index_field in new:
            placeholder = f"<{kind}_{next_number[kind]}>"
            next_number[kind] += 1
            nonce = os.urandom(12)
            sealed = nonce + self._cipher.encrypt(nonce, value.encode(), f"{name}|{placeholder}".encode())
            entries.update({f"p:{placeholder}": sealed, f"k:{self._index('known', value)}": b"1", index_field: placeholder.encode()})
            result[(kind, value)] = placeholder
        added = dict(zip(entries, await self._state.map_add(name, entries, self._ttl_s)))
        lost = [(item, index_field) for item, index_field in new if not added[index_field]]
        if lost:  # another replica numbered these values first: theirs stand
            taken = await self._state.map_get(name, [index_field for _, index_field in lost], self._ttl_s)
            result.update({item: placeholder.decode() for (item, _), placeholder in zip(lost, taken)})
        return result

    async def lookup(self, conversation_id: str, placeholders: list[str], values: list[str]) -> tuple[dict[str, str], set[str]]:
        """The values behind ``placeholders`` (those this conversation has) and which of ``values`` the user gave."""
        placeholders, values = list(dict.fromkeys(placeholders)), list(dict.fromkeys(values))
        if not placeholders and not values:
            return {}, set()
        name = self._map(conversation_id)
        fields = [f"p:{p}" for p in placeholders] + [f"k:{self._index('known', v)}" for v in values]
        found = await self._state.map_get(name, fields, self._ttl_s)
        restored = {}
        for placeholder, sealed in zip(placeholders, found):
            if sealed is not None:
                restored[placeholder] = self._cipher.decrypt(sealed[:12], sealed[12:], f"{name}|{placeholder}".encode()).decode()
        known = {value for value, mark in zip(values, found[len(placeholders):]) if mark is not None}
        return restored, known


class VaultView:
    """What one decision needs from a vault, fetched before it (``SharedVault``), with the
    same three questions ``PlaceholderVault`` answers in place."""

    def __init__(self, placeholders: dict[tuple[str, str], str], restored: dict[str, str], known: set[str]) -> None:
        self._placeholders, self._restored, self._known = placeholders, restored, known

    def __repr__(self) -> str:
        return f"<VaultView: {len(self._restored)} restorable>"

    def placeholder_for(self, conversation_id: str, entity_type: str, value: str) -> str:
        # Absent only when the shared state failed and the vault degrades: redacted, unnumbered.
        return self._placeholders.get((entity_type, value), f"<{entity_type}>")

    def value_of(self, conversation_id: str, placeholder: str) -> str | None:
        return self._restored.get(placeholder)

    def knows(self, conversation_id: str, value: str) -> bool:
        return value in self._known
