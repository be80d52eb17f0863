"""Tell someone a handoff ticket is waiting: a webhook called in the background.

``notify`` only puts the ticket on a bounded queue (a full queue drops the oldest
notice, counted); one worker thread POSTs each with httpx, retrying with exponential
backoff. The body names the ticket, never the conversation (the receiver fetches that
through the console, behind its login). With a secret, the body is signed:
``x-aimsguard-signature: sha256=<hex HMAC-SHA256 of the body>``.
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import json
import threading
from collections.abc import Callable
from typing import Any

import httpx
import structlog

from ._policy import HandoffWebhookConfig

__all__ = ["WebhookNotifier", "signature"]

log = structlog.get_logger("aimsguard.agent")

Outcome = Callable[[str, str], None]  # (system, outcome: delivered | failed | dropped)


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookNotifier:
    def __init__(
        self,
        configs: dict[str, HandoffWebhookConfig],
        *,
        on_outcome: Outcome | None = None,
        emit: Callable[..., None] | None = None,
        max_queue: int = 1000,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.configs = configs
        self._on_outcome = on_outcome
        self._emit = emit
        self._max_queue = max_queue
        self._backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s
        self._queue: collections.deque[tuple[str, dict[str, Any]]] = collections.deque()
        self._ready = threading.Condition()
        self._stopping = threading.Event()
        self._client = httpx.Client(transport=transport, follow_redirects=False)
        self._worker: threading.Thread | None = None

    def notify(self, system: str, payload: dict[str, Any]) -> None:
        """Queue one notice; returns at once."""
        if system not in self.configs or self._stopping.is_set():
            return
        with self._ready:
            if len(self._queue) >= self._max_queue:
                dropped_system, _ = self._queue.popleft()
                self._count(dropped_system, "dropped")
            self._queue.append((system, payload))
            if self._worker is None:
                self._worker = threading.Thread(target=self._run, name="aimsguard-webhooks", daemon=True)
                self._worker.start()
            self._ready.notify()

    def close(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        with self._ready:
            self._ready.notify_all()
        if self._worker is not None:
            self._worker.join(timeout)
        with self._ready:
            while self._queue:
                self._count(self._queue.popleft()[0], "dropped")
        self._client.close()

    def _run(self) -> None:
        while not self._stopping.is_set():
            with self._ready:
                while not self._queue and not self._stopping.is_set():
                    self._ready.wait()
                if self._stopping.is_set():
                    return
                system, payload = self._queue.popleft()
            self._deliver(system, payload)

    def _deliver(self, system: str, payload: dict[str, Any]) -> None:
        config = self.configs[system]
        body = json.dumps(payload, separators=(",", ":")).encode()
        headers = {"content-type": "application/json", "user-agent": "aimsguard-webhook"}
        if config.secret is not None:
            headers["x-aimsguard-signature"] = signature(config.secret.get_secret_value(), body)
        delay = self._backoff_s
        for attempt in range(config.retries + 1):
            try:
                response = self._client.post(str(config.url), content=body, headers=headers, timeout=config.timeout_s)
                if response.status_code < 300:
                    self._count(system, "delivered")
                    return
                problem = f"HTTP {response.status_code}"
                if 400 <= response.status_code < 500 and response.status_code not in (408, 429):
                    break  # the receiver refuses this notice: retrying will not change its mind
            except httpx.HTTPError as exc:
                problem = type(exc).__name__
            if attempt < config.retries and self._stopping.wait(delay):
                break  # shutting down: give up now rather than hold up the exit
            delay = min(delay * 2, self._max_backoff_s)
        log.warning("handoff_webhook_failed", system=system, problem=problem, attempts=attempt + 1)
        self._count(system, "failed")
        if self._emit is not None:  # the ticket's id, never its content: someone must look at the queue
            self._emit("handoff.webhook_failed", system=system, handoff_id=payload.get("handoff_id"), problem=problem, attempts=attempt + 1)

    def _count(self, system: str, outcome: str) -> None:
        if self._on_outcome is not None:
            self._on_outcome(system, outcome)
