"""A bounded queue between the request path and the collectors.

``emit`` only appends to a deque: it never waits on I/O. When the queue is full the
oldest event is dropped and counted. One worker thread hands batches to every exporter
and logs (never raises) what an exporter throws.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Sequence

import structlog

from ._exporter import Event, EventExporter, ExportResult

__all__ = ["EventBus"]

log = structlog.get_logger("aimsguard.collectors")

DropHook = Callable[[str], None]
ExportedHook = Callable[[str, int], None]


class EventBus:
    def __init__(
        self,
        exporters: Sequence[EventExporter],
        *,
        max_queue: int = 20_000,
        batch_size: int = 512,
        flush_interval_s: float = 0.2,
        on_drop: DropHook | None = None,
        on_export_failure: DropHook | None = None,
        on_exported: ExportedHook | None = None,
    ) -> None:
        self.exporters = list(exporters)
        self._queue: collections.deque[Event] = collections.deque()
        self._max_queue = max_queue
        self._batch_size = batch_size
        self._flush_interval_s = flush_interval_s
        self._on_drop = on_drop
        self._on_export_failure = on_export_failure
        self._on_exported = on_exported
        self._lock = threading.Condition()
        self._wake = threading.Event()
        self._emitted = 0
        self._handled = 0
        self.dropped = 0
        self.export_failures: collections.Counter[str] = collections.Counter()
        self._closed = False
        self._worker = threading.Thread(target=self._run, name="aimsguard-events", daemon=True)
        self._worker.start()

    def emit(self, event: Event) -> None:
        """Queue one event; drop the oldest (and count it) when the queue is full."""
        if self._closed:
            self._count_drop("shutdown")
            return
        with self._lock:
            if len(self._queue) >= self._max_queue:
                self._queue.popleft()
                self._handled += 1
                self._count_drop("queue_full")
            self._queue.append(event)
            self._emitted += 1
            wake = len(self._queue) >= self._batch_size
        if wake:
            self._wake.set()

    def force_flush(self, timeout: float = 10.0) -> bool:
        """Wait until every event emitted so far has been handed to the exporters."""
        deadline = time.monotonic() + timeout
        with self._lock:
            target = self._emitted
        self._wake.set()
        with self._lock:
            while self._handled < target:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._worker.is_alive():
                    return False
                self._lock.wait(min(remaining, 0.05))
                self._wake.set()
        return all(exporter.force_flush(max(0.0, deadline - time.monotonic())) for exporter in self.exporters)

    def shutdown(self, timeout: float = 10.0) -> None:
        """Flush, stop the worker and shut every exporter down. Safe to call twice."""
        if self._closed:
            return
        self.force_flush(timeout)
        self._closed = True
        self._wake.set()
        self._worker.join(timeout)
        for exporter in self.exporters:
            try:
                exporter.shutdown()
            except Exception as exc:
                log.error("exporter_shutdown_failed", exporter=exporter.name, error_type=type(exc).__name__)

    def _count_drop(self, reason: str) -> None:
        self.dropped += 1
        if self._on_drop is not None:
            self._on_drop(reason)

    def _run(self) -> None:
        while True:
            self._wake.wait(self._flush_interval_s)
            self._wake.clear()
            while True:
                with self._lock:
                    batch = [self._queue.popleft() for _ in range(min(self._batch_size, len(self._queue)))]
                if not batch:
                    break
                self._export(batch)
                with self._lock:
                    self._handled += len(batch)
                    self._lock.notify_all()
            if self._closed:
                return

    def _export(self, batch: list[Event]) -> None:
        for exporter in self.exporters:
            try:
                result = exporter.export(batch)
            except Exception as exc:
                # Type only: a traceback's locals would hold the events themselves.
                log.error("exporter_failed", exporter=exporter.name, events=len(batch), error_type=type(exc).__name__)
                result = ExportResult.FAILURE
            if result is ExportResult.FAILURE:
                self.export_failures[exporter.name] += 1
                if self._on_export_failure is not None:
                    self._on_export_failure(exporter.name)
            elif self._on_exported is not None:
                self._on_exported(exporter.name, len(batch))
