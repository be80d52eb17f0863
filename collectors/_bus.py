"""A bounded queue between the request path and the collectors.

``emit`` only appends to a deque: it never waits on I/O. When the queue is full the
oldest event is dropped and counted. One worker thread hands batches to every exporter
and logs (never raises) what an exporter throws.

With a ``durable`` exporter (the event log, under ``event_log.durability: request``), a
request can wait for what it emitted: ``written()`` resolves once that exporter has written
(and synced) every event emitted so far. Waiting wakes the worker at once, and every event
queued while a batch is being written goes into the next one, so concurrent requests share
one write and one fsync (group commit).
"""

from __future__ import annotations

import asyncio
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
        durable: EventExporter | None = None,
    ) -> None:
        self.exporters = list(exporters)
        # The durable exporter goes first, so a waiting request is released before the others run.
        if durable is not None:
            self.exporters = [durable, *(e for e in self.exporters if e is not durable)]
        self._durable = durable
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
        self._written = 0  # events (in emit order) the durable exporter has written, or dropped
        self._waiters: list[tuple[int, asyncio.AbstractEventLoop, asyncio.Future[bool]]] = []
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
                if self._waiters:
                    self._release(self._handled, ok=False)  # a request waiting for it is told
            self._queue.append(event)
            self._emitted += 1
            wake = len(self._queue) >= self._batch_size
        if wake:
            self._wake.set()

    async def written(self, timeout: float) -> bool:
        """Wait until the durable exporter has written every event emitted so far.

        True once they are written; False when the write failed (the exporter keeps them and
        retries), one of them was dropped, or ``timeout`` passed.
        """
        if self._durable is None:
            return True
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        with self._lock:
            target = self._emitted
            if self._written >= target:
                return True
            self._waiters.append((target, loop, future))
        self._wake.set()
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            return False

    def _release(self, upto: int, ok: bool) -> None:
        """Resolve the waiters for events up to ``upto`` (called with the lock held)."""
        if ok:
            self._written = max(self._written, upto)
        keep = []
        for target, loop, future in self._waiters:
            if target <= upto:
                loop.call_soon_threadsafe(_resolve, future, ok)
            else:
                keep.append((target, loop, future))
        self._waiters = keep

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
                    upto = self._handled + len(batch)  # the emit order of the batch's last event
                if not batch:
                    break
                self._export(batch, upto)
                with self._lock:
                    self._handled += len(batch)
                    self._lock.notify_all()
            if self._closed:
                return

    def _export(self, batch: list[Event], upto: int) -> None:
        for exporter in self.exporters:
            try:
                result = exporter.export(batch)
            except Exception as exc:
                # Type only: a traceback's locals would hold the events themselves.
                log.error("exporter_failed", exporter=exporter.name, events=len(batch), error_type=type(exc).__name__)
                result = ExportResult.FAILURE
            if exporter is self._durable:
                with self._lock:
                    self._release(upto, result is ExportResult.SUCCESS)
            if result is ExportResult.FAILURE:
                self.export_failures[exporter.name] += 1
                if self._on_export_failure is not None:
                    self._on_export_failure(exporter.name)
            elif self._on_exported is not None:
                self._on_exported(exporter.name, len(batch))


def _resolve(future: asyncio.Future[bool], ok: bool) -> None:
    if not future.done():  # the waiter may have timed out meanwhile
        future.set_result(ok)
