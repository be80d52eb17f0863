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

__all__ = ["BatchLane", "LaneAnswer", "LaneBatch"]

log = structlog.get_logger("aimsguard.agent")

# (request, the pool keys of the checks to analyse it with), for each request of a batch
LaneBatch = list[tuple[CheckRequest, list[str]]]
# for each request, for each check: (True, what analyse returned) or (False, the exception's type name)
LaneAnswer = list[list[tuple[bool, Any]]]

_LATE_ANSWER_S = 5.0  # a worker this late with an answer is taken as stuck, and replaced
_READ_SIZE = 1 << 16  # bytes read from the worker per readiness (answers are a few KB)


class BatchLane:
    """The serving process's end of one batch worker (see the module's docstring).

    Driven by loop callbacks alone (a reader on the socket, a timer per batch), not by tasks:
    a batch costs the loop one turn from the worker's answer to its requests' verdicts."""

    DEPTH = 3  # batches at the worker at once: it works on one while the next ones wait in its socket

    def __init__(self, sock: socket.socket, pid: int, replace: Callable[[], None]) -> None:
        sock.setblocking(False)
        self._sock = sock
        self.pid = pid  # the worker's
        self._replace = replace  # asks the pool for a new lane (in the background)
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop whose callbacks drive the socket
        self._waiting: collections.deque[_Sent] = collections.deque()  # at the worker, in the order sent
        self._inbox = bytearray()  # read from the worker, not yet a whole answer
        self._outbox = bytearray()  # not yet taken by the socket (its buffer was full)
        self._silent: asyncio.TimerHandle | None = None  # fires when the worker owes an answer for too long
        self._closed = False

    @property
    def idle(self) -> bool:
        """Whether it takes another batch now (else the caller runs it in place)."""
        return not self._closed and len(self._waiting) < self.DEPTH

    def submit(self, batch: LaneBatch, budget_s: float, on_answer: Callable[[LaneAnswer | None], None]) -> bool:
        """Send ``batch`` to the worker; False when the lane cannot take it now (the caller runs
        it in place). ``on_answer`` is then called once, from the loop: with every check's
        analysis of every request, or with None when the worker did not answer within
        ``budget_s`` or is gone (the caller runs the batch in place; a late answer is dropped)."""
        loop = asyncio.get_running_loop()
        if not self.idle or not self._bind(loop):
            return False
        message = _message(batch)  # before anything changes: a batch that does not pickle leaves no trace
        sent = _Sent(on_answer, loop)
        sent.deadline = loop.call_later(budget_s, self._expire, sent)
        self._waiting.append(sent)
        if self._silent is None:
            self._silent = loop.call_later(_LATE_ANSWER_S, self._stuck)
        self._send(message)
        return True

    def _bind(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Drive the socket from ``loop``: moved there from a loop that has stopped, when no
        batch waits on it. A loop closed with batches waiting (their answers would go nowhere)
        costs the lane its worker: it is replaced."""
        old = self._loop
        if old is loop:
            return True
        if old is not None:
            if old.is_closed() and (self._waiting or self._outbox):
                self._retire()
                return False
            if old.is_running() or self._waiting or self._outbox:  # running in another thread, or owed answers: stays
                return False
            if not old.is_closed():
                old.remove_reader(self._sock.fileno())
        self._loop = loop
        loop.add_reader(self._sock.fileno(), self._on_readable)
        return True

    def _send(self, message: bytes) -> None:
        if not self._outbox:  # else earlier bytes wait: these go after them
            try:
                message = message[self._sock.send(message):]
            except BlockingIOError:
                pass
            except OSError:
                self._retire()
                return
            if not message:
                return
            assert self._loop is not None
            self._loop.add_writer(self._sock.fileno(), self._on_writable)
        self._outbox += message

    def _on_writable(self) -> None:
        try:
            del self._outbox[: self._sock.send(self._outbox)]
        except BlockingIOError:
            return
        except OSError:
            self._retire()
            return
        if not self._outbox and self._loop is not None:
            self._loop.remove_writer(self._sock.fileno())

    def _on_readable(self) -> None:
        try:
            data = self._sock.recv(_READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # the worker is gone
            self._retire()
            return
        self._inbox += data
        while (answer := self._next_answer()) is not None:
            if not self._waiting:  # an answer nothing was sent for: the stream is garbled
                self._retire()
                return
            self._answered(self._waiting.popleft(), answer)

    def _next_answer(self) -> bytes | None:
        """The next whole message in the inbox, as ``multiprocessing.connection`` frames it."""
        inbox = self._inbox
        if len(inbox) < 4:
            return None
        (size,) = struct.unpack_from("!i", inbox)
        header = 4
        if size == -1:  # the framing of a message of 2 GiB or more
            if len(inbox) < 12:
                return None
            (size,) = struct.unpack_from("!Q", inbox, 4)
            header = 12
        if len(inbox) < header + size:
            return None
        data = bytes(inbox[header : header + size])
        del inbox[: header + size]
        return data

    def _answered(self, sent: _Sent, data: bytes) -> None:
        assert self._loop is not None
        if self._silent is not None:  # the worker spoke: it owes the next answer from now
            self._silent.cancel()
            self._silent = self._loop.call_later(_LATE_ANSWER_S, self._stuck) if self._waiting else None
        if sent.on_answer is None:  # given up at its deadline: dropped
            return
        try:
            answer = pickle.loads(data)
        except Exception:
            self._retire()
            sent.give(None)
            return
        sent.give(answer)

    def _expire(self, sent: _Sent) -> None:
        sent.give(None)  # stays in the queue until its answer comes, to keep answers in step

    def _stuck(self) -> None:
        self._silent = None
        log.warning("batch_worker_stuck", after_s=_LATE_ANSWER_S)
        self._retire()

    def _retire(self) -> None:
        if self._closed:
            return
        self.close()
        self._replace()

    def close(self) -> None:
        """Stop the worker; the batches still waiting are answered None (run in place). Idempotent;
        from another thread, the socket is let go of in the loop's own (its selector is that thread's)."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        loop = self._loop
        if loop is not None and loop.is_running() and _running_loop() is not loop:
            with contextlib.suppress(RuntimeError):  # closed meanwhile: nothing left to unhook
                loop.call_soon_threadsafe(self._let_go)
                return
        self._let_go()

    def _let_go(self) -> None:
        """Unhook the socket from the loop, close it, and answer every waiting batch None. Once."""
        if self._sock.fileno() == -1:
            return
        if self._silent is not None:
            self._silent.cancel()
            self._silent = None
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.remove_reader(self._sock.fileno())
            loop.remove_writer(self._sock.fileno())
        with contextlib.suppress(OSError):
            self._sock.close()
        while self._waiting:
            self._waiting.popleft().give(None)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class _Sent:
    """A batch at the worker: whom to answer (once), and the timer that gives up on it."""

    __slots__ = ("deadline", "loop", "on_answer")

    def __init__(self, on_answer: Callable[[LaneAnswer | None], None], loop: asyncio.AbstractEventLoop) -> None:
        self.on_answer: Callable[[LaneAnswer | None], None] | None = on_answer
        self.loop = loop
        self.deadline: asyncio.TimerHandle | None = None

    def give(self, answer: LaneAnswer | None) -> None:
        on_answer, self.on_answer = self.on_answer, None
        if on_answer is None:
            return
        if self.deadline is not None:
            self.deadline.cancel()
        try:
            on_answer(answer)
        except Exception as exc:  # the caller's bug: reported like any failing loop callback, the lane goes on
            self.loop.call_exception_handler({"message": "batch lane answer handler failed", "exception": exc})


def _message(batch: LaneBatch) -> bytes:
    """``batch`` framed as ``multiprocessing.connection.Connection.recv`` reads it."""
    data = pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL)
    return struct.pack("!i", len(data)) + data if len(data) < 0x7FFFFFFF else struct.pack("!iQ", -1, len(data)) + data

