"""A worker process that analyses whole batches of short checks, reached from the event loop.

Under load the serving process's CPU is what limits throughput, and the checks of short
texts cost about a third of it (bench_load: 0.3 ms of 0.8 ms per request). Sending each such
check to a worker costs the serving process about as much as running it (a round trip per
check, a thread woken per reply), so short checks used to run in place. A *batch* of them,
the requests that reached a stage in the same turn of the loop (``CheckBatcher``), goes to
the lane's worker in one message and comes back in one, so the hop is paid once per batch;
the worker, which does nothing else, finds the checks' code and tables in its caches. The
socket is read by the event loop itself (no thread to wake, no lock to hand over).

A few batches are at the worker at once (``DEPTH``: it never waits for the loop to send the
next); past that the next batch runs in place, so the serving process and the worker share
the work, and a slow worker (a core taken by something else) only means more is done here.
A batch not answered by its checks' smallest budget is taken back and run in place (the
inputs are short: bounded work); the late answer is read and dropped, and a worker that
never answers is replaced.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import pickle
import signal
import socket
import struct
from collections.abc import Callable
from typing import Any

import structlog

from aimsguard.guardrails import CheckRequest

__all__ = ["BatchLane", "LaneBatch"]

log = structlog.get_logger("aimsguard.agent")

# (request, the pool keys of the checks to analyse it with), for each request of a batch
LaneBatch = list[tuple[CheckRequest, list[str]]]
# for each request, for each check: (True, what analyse returned) or (False, the exception's type name)
LaneAnswer = list[list[tuple[bool, Any]]]

_LATE_ANSWER_S = 5.0  # a worker this late with an answer is taken as stuck, and replaced


class BatchLane:
    """The serving process's end of one batch worker (see the module's docstring)."""

    DEPTH = 3  # batches at the worker at once: it works on one while the next ones wait in its socket

    def __init__(self, sock: socket.socket, pid: int, replace: Callable[[], None]) -> None:
        sock.setblocking(False)
        self._sock = sock
        self.pid = pid  # the worker's
        self._replace = replace  # asks the pool for a new lane (in the background)
        self._waiting: collections.deque[asyncio.Future[LaneAnswer]] = collections.deque()  # in the order sent
        self._sending = asyncio.Lock()  # one message on the socket at a time
        self._reader: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def idle(self) -> bool:
        """Whether it takes another batch now (else the caller runs it in place)."""
        return not self._closed and len(self._waiting) < self.DEPTH

    async def analyse(self, batch: LaneBatch, budget_s: float) -> LaneAnswer | None:
        """Every check's analysis of every request of ``batch``, or None when the worker did
        not answer within ``budget_s`` or is gone (the caller runs the batch in place; a late
        answer is read and dropped)."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[LaneAnswer] = loop.create_future()
        message = _message(batch)
        deadline = loop.time() + budget_s
        try:
            # Not cut at the deadline: a message half sent would garble the ones after it (a
            # worker that stops reading is found stuck by the reader, which closes the socket).
            async with self._sending:
                if self._closed:
                    return None
                self._waiting.append(answer)
                if self._reader is None:
                    self._reader = loop.create_task(self._read_answers(loop))
                await loop.sock_sendall(self._sock, message)
            async with asyncio.timeout_at(deadline):
                return await asyncio.shield(answer)
        except TimeoutError:
            return None
        except (EOFError, OSError):
            self._retire()
            return None

    async def _read_answers(self, loop: asyncio.AbstractEventLoop) -> None:
        """Hands each answer to the batch it belongs to, while any batch waits for one."""
        try:
            while self._waiting:
                async with asyncio.timeout(_LATE_ANSWER_S):
                    data = await self._receive(loop)
                answer = self._waiting.popleft()
                if not answer.done():
                    answer.set_result(pickle.loads(data))
        except TimeoutError:
            log.warning("batch_worker_stuck", after_s=_LATE_ANSWER_S)
            self._retire()
        except (EOFError, OSError, pickle.UnpicklingError):
            self._retire()
        finally:
            self._reader = None

    async def _receive(self, loop: asyncio.AbstractEventLoop) -> bytearray:
        """One message, as ``multiprocessing.connection.Connection.send`` frames it."""
        (size,) = struct.unpack("!i", await self._read(loop, 4))
        if size == -1:  # the framing of a message of 2 GiB or more
            (size,) = struct.unpack("!Q", await self._read(loop, 8))
        return await self._read(loop, size)

    async def _read(self, loop: asyncio.AbstractEventLoop, size: int) -> bytearray:
        buffer = bytearray(size)
        view = memoryview(buffer)
        done = 0
        while done < size:
            got = await loop.sock_recv_into(self._sock, view[done:])
            if not got:
                raise EOFError("the batch worker closed its socket")
            done += got
        return buffer

    def _retire(self) -> None:
        if self._closed:
            return
        self.close()
        self._replace()

    def close(self) -> None:
        """Stop the worker; the batches still waiting are answered None (run in place). Idempotent."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            self._sock.close()
        while self._waiting:
            answer = self._waiting.popleft()
            if not answer.done():
                answer.set_exception(EOFError("the batch worker is gone"))


def _message(batch: LaneBatch) -> bytes:
    """``batch`` framed as ``multiprocessing.connection.Connection.recv`` reads it."""
    data = pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL)
    return struct.pack("!i", len(data)) + data if len(data) < 0x7FFFFFFF else struct.pack("!iQ", -1, len(data)) + data

