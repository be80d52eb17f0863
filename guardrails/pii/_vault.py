"""Placeholders per conversation: the same value always gets the same ``<TYPE_n>``.

A vault holds, for each conversation, which personal data stood behind which placeholder,
so that placeholders in the model's answer can be put back for the user. It is bounded
(conversations expire after ``ttl_s`` of disuse; at most ``max_conversations`` are kept,
least recently used first out; at most ``max_values`` per conversation) and safe to share
between concurrent requests. Its values are never logged: nothing here has a repr that
shows them.
"""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

__all__ = ["PLACEHOLDER", "PlaceholderVault", "VaultFull"]

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
