"""Worker processes that run CPU-bound checks off the event loop, within their budgets.

Why processes, not threads (measured with ``bench/bench_head_of_line.py``): Python's ``re``
and Presidio hold the GIL, so two 100 KB analyses in threads raised the event loop's lag
p99 from 7 ms to 80 ms, and in processes to 14 ms. A process can also be stopped: a check
past its budget has its worker killed and replaced, so stuck work never holds a slot and
nothing waits for it.

The workers hold the checks as loaded (copy-on-write, no second load of Presidio or the
knowledge base) because they descend from this process: when first needed, it forks once a
*zygote*, a copy of itself that does nothing but fork workers on request and hand their
pipes back (SCM_RIGHTS). Forking a process of a few hundred MiB holds the GIL for 50-100 ms
here, so the serving process forks only that once; each replacement is the zygote's cost.
A worker only analyses: state that must outlive a request (the personal-data vault) stays
here, where a guardrail's ``decide`` runs on what its ``analyse`` returned in the worker.

The zygote closes every file descriptor it inherited but its control socket (a client's
socket held open in a copy would never see its connection close) and takes the default
signal handlers back; it and its workers exit when this process's end of their socket closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import queue
import signal
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter

from aimsguard.guardrails import CheckRequest, Guardrail

from ._lane import BatchLane

__all__ = ["CheckPool", "CheckPoolError", "default_pool_size", "pool_counter"]

log = structlog.get_logger("aimsguard.agent")

_NICENESS = 5


class CheckPoolError(RuntimeError):
    """The worker could not run the check: it raised (``error_type`` names the exception;
    its message may quote the text, so it stays in the worker) or died."""

    def __init__(self, error_type: str) -> None:
        super().__init__(error_type)
        self.error_type = error_type


def default_pool_size() -> int:
    """Two workers per core (at most eight): a stage runs several checks at once, and a job
    should not wait behind one that is about to be killed at its deadline."""
    return max(2, min(8, 2 * (os.cpu_count() or 1)))


def _analysed(check: Guardrail, request: CheckRequest) -> tuple[bool, Any]:
    """(True, the check's analysis of ``request``) or (False, the exception's type name: its
    message may quote the text, so it stays in the worker)."""
    try:
        return True, check.analyse(request)
    except Exception as exc:
        return False, type(exc).__name__


def _serve(conn: Connection, checks: dict[str, Guardrail]) -> None:
    """A worker's loop: analyse each request it is sent, until its pipe closes."""
    while True:
        try:
            key, request = conn.recv()
            conn.send(_analysed(checks[key], request))
        except (EOFError, OSError):
            return


def _serve_batches(conn: Connection, checks: dict[str, Guardrail]) -> None:
    """The batch lane's worker (``_lane``): each message is a batch of (request, check keys);
    the answer holds every check's analysis of every request, in order."""
    while True:
        try:
            batch = conn.recv()
            conn.send([[_analysed(checks[key], request) for key in keys] for request, keys in batch])
        except (EOFError, OSError):
            return


_WORKER, _BATCH_WORKER = b"F", b"B"  # what the zygote is asked to fork


def _zygote(control: socket.socket, checks: dict[str, Guardrail]) -> None:
    """Fork a worker for each byte received on ``control`` (``_WORKER`` or ``_BATCH_WORKER``);
    send back its pipe and pid."""
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # workers are reaped by the kernel
    while True:
        try:
            kind = control.recv(1)
        except OSError:
            return
        if not kind:
            return
        mine, theirs = socket.socketpair()
        pid = os.fork()
        if pid == 0:
            try:
                control.close()
                mine.close()
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                (_serve_batches if kind == _BATCH_WORKER else _serve)(Connection(theirs.detach()), checks)
            finally:
                os._exit(0)
        theirs.close()
        socket.send_fds(control, [pid.to_bytes(4, "little")], [mine.fileno()])
        mine.close()


def _start_zygote(checks: dict[str, Guardrail]) -> tuple[socket.socket, int]:
    ours, its = socket.socketpair()
    pid = os.fork()
    if pid == 0:
        try:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the parent decides
            # The zygote and its workers yield the CPU to the serving process when cores are
            # short: long inputs then wait, not every other client (CFS weight 335 vs 1024).
            os.nice(_NICENESS)
            keep = its.fileno()
            os.closerange(3, keep)
            os.closerange(keep + 1, 65536)
            _zygote(its, checks)
        finally:
            os._exit(0)
    its.close()
    return ours, pid


def pool_counter(registry: CollectorRegistry) -> Callable[[str], None]:
    """Counts the pool's work in ``registry`` (for ``CheckPool.on_count``)."""
    jobs = Counter(
        "aimsguard_check_pool_jobs",
        "Checks run in worker processes: done, cancelled at their deadline while running (worker killed and replaced), "
        "dropped at their deadline before a worker was free.",
        ["outcome"], registry=registry,
    )
    forked = Counter("aimsguard_check_pool_workers_forked", "Check worker processes forked (first use, and each replacement).", registry=registry)
    batches = Counter(
        "aimsguard_check_batches",
        "Batches of short checks (the requests that reached a stage in one turn of the event loop) by where they ran: "
        "worker (the batch worker), in_place (the serving process: the worker had batches enough), "
        "reclaimed (the worker missed the checks' budget or died: run in place).",
        ["where"], registry=registry,
    )

    # Children looked up once: labels() costs microseconds, and batches are counted per request.
    children = {what: batches.labels(place) for what, place in _BATCH_PLACES.items()}

    def count(what: str) -> None:
        if what == "forked":
            forked.inc()
            return
        child = children.get(what)
        if child is None:
            child = children[what] = jobs.labels(what)
        child.inc()

    return count


class _Worker:
    def __init__(self, conn: Connection, pid: int) -> None:
        self.conn = conn
        self.pid = pid

    def kill(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@dataclasses.dataclass(slots=True)
class _Job:
    key: str
    request: CheckRequest
    deadline: float  # time.monotonic()
    cancelled: bool = False
    worker: _Worker | None = None


@dataclasses.dataclass(slots=True)
class PoolCounts:
    """What the pool did, for metrics: jobs answered, cancelled at their deadline while
    running (the worker killed), dropped before they started, workers forked; batches of
    short checks run by the batch worker, in place, or taken back from it."""

    done: int = 0
    cancelled: int = 0
    dropped: int = 0
    forked: int = 0
    batches_offloaded: int = 0
    batches_in_place: int = 0
    batches_reclaimed: int = 0


_BATCH_PLACES = {"batches_offloaded": "worker", "batches_in_place": "in_place", "batches_reclaimed": "reclaimed"}


class CheckPool:
    """A few forked workers, shared by the pipelines of one Guard.

    ``checks`` maps a key to each loaded guardrail the workers may be asked to run; it is
    filled before the first job (the workers see it as it was when they were forked).
    """

    def __init__(self, checks: dict[str, Guardrail], size: int | None = None) -> None:
        self.checks = checks
        self.size = size or default_pool_size()
        self.counts = PoolCounts()
        self.on_count: Callable[[str], None] | None = None  # told "done", "cancelled", "dropped", "forked"
        self._control: socket.socket | None = None  # to the zygote
        self._zygote_pid = 0
        self._zygote_lock = threading.Lock()
        self._forking = 0
        self._starting = False
        self._idle: queue.SimpleQueue[_Worker] = queue.SimpleQueue()
        self._workers: set[_Worker] = set()
        self._lock = threading.Lock()
        self._closed = False
        # The batch lane: one more worker, for whole batches of short checks (see _lane).
        self.lane: BatchLane | None = None
        # Threads that wait on the workers' pipes (blocked in recv, so without the GIL). A
        # job waiting for a free worker waits here, never on the event loop.
        self._waiters = ThreadPoolExecutor(max_workers=self.size * 8, thread_name_prefix="aimsguard-check-pool")

    def start(self) -> None:
        """Fork the zygote and every worker now, rather than at the first long input (a
        server calls it before it takes traffic, so no request pays for the forks)."""
        if not self.checks:
            return
        with self._lock:
            self._starting = True
        self._start_lane()
        while (worker := self._fork()) is not None:
            self._idle.put(worker)

    def _start_lane(self) -> None:
        with self._lock:
            if self._closed or self.lane is not None:
                return
        fd, pid = self._spawn(_BATCH_WORKER)
        lane = BatchLane(socket.socket(fileno=fd), pid, self._replace_lane)
        with self._lock:
            if self._closed:
                lane.close()
                return
            self.lane = lane
        self.record("forked")

    def _replace_lane(self) -> None:
        """The lane's worker died or got stuck (it is killed): a new one, in the background;
        until it is up, batches run in place."""
        with self._lock:
            self.lane = None
            if self._closed:
                return
        self._waiters.submit(self._start_lane)

    def warm(self) -> bool:
        """Whether workers are up. The first call starts them in the background: until they
        are, checks run in place, so a cold pool never costs a request its budget."""
        if self._workers:
            return True
        with self._lock:
            if self._starting or self._closed:
                return False
            self._starting = True
        self._waiters.submit(self.start)
        return False

    async def run(self, key: str, request: CheckRequest, budget_s: float) -> Any:
        """``analyse`` of the check ``key`` in a worker; TimeoutError at the budget, with the
        work cancelled (its worker killed and replaced) rather than waited for."""
        if self._closed:
            raise CheckPoolError("PoolClosed")
        request = dataclasses.replace(request, metadata=dict(request.metadata))  # a plain dict pickles
        job = _Job(key, request, time.monotonic() + budget_s)
        future = asyncio.get_running_loop().run_in_executor(self._waiters, self._round_trip, job)
        try:
            async with asyncio.timeout(budget_s):
                return await future
        except TimeoutError:
            self._cancel(job)
            raise

    def _cancel(self, job: _Job) -> None:
        with self._lock:
            job.cancelled = True
            worker = job.worker
            if worker is not None:
                worker.kill()  # replaced by the thread waiting on it
        self.record("cancelled" if worker is not None else "dropped")

    def _round_trip(self, job: _Job) -> Any:
        worker = self._worker(job)
        if worker is None:
            raise TimeoutError  # no worker was free before the deadline
        try:
            worker.conn.send((job.key, job.request))
            ok, value = worker.conn.recv()
        except (EOFError, OSError):
            self._retire(worker)
            if job.cancelled:
                raise TimeoutError from None  # killed at the deadline
            raise CheckPoolError("WorkerDied") from None
        with self._lock:
            killed = job.cancelled
        if killed:  # answered as it was being killed: the process is gone either way
            self._retire(worker)
            raise TimeoutError
        self._idle.put(worker)
        self.record("done")
        if not ok:
            raise CheckPoolError(value)
        return value

    def _worker(self, job: _Job) -> _Worker | None:
        """A free worker for ``job`` (forked while the pool is not full), or None when the
        job is cancelled or its deadline passes first."""
        try:
            worker = self._idle.get_nowait()
        except queue.Empty:
            worker = self._fork() or self._wait_idle(job)
        if worker is None:
            return None
        with self._lock:
            if not job.cancelled:
                job.worker = worker
                return worker
        self._idle.put(worker)
        return None

    def _wait_idle(self, job: _Job) -> _Worker | None:
        try:
            return self._idle.get(timeout=max(0.0, job.deadline - time.monotonic()))
        except queue.Empty:
            return None

    def _fork(self) -> _Worker | None:
        """A new worker from the zygote (started on first use), while the pool is not full."""
        with self._lock:
            if self._closed or self._forking + len(self._workers) >= self.size:
                return None
            self._forking += 1
        try:
            fd, pid = self._spawn(_WORKER)
            worker = _Worker(Connection(fd), pid)
        finally:
            with self._lock:
                self._forking -= 1
        with self._lock:
            self._workers.add(worker)
        self.record("forked")
        return worker

    def _spawn(self, kind: bytes) -> tuple[int, int]:
        """A new worker of ``kind`` from the zygote (started on first use): its socket's file
        descriptor and its pid."""
        with self._zygote_lock:
            if self._control is None:
                self._control, self._zygote_pid = _start_zygote(self.checks)
            self._control.sendall(kind)
            data, fds, _, _ = socket.recv_fds(self._control, 4, 1)
        return fds[0], int.from_bytes(data, "little")

    def _retire(self, worker: _Worker) -> None:
        """Drop a killed (or crashed) worker and fork its replacement."""
        worker.kill()
        worker.conn.close()
        with self._lock:
            self._workers.discard(worker)
        log.info("check_worker_replaced", pid=worker.pid)
        try:
            replacement = self._fork()
        except OSError:
            return  # the zygote is gone (closing): the next job tries again
        if replacement is not None:
            self._idle.put(replacement)

    def record(self, what: str) -> None:
        """Counts ``what`` the pool (or a batch of checks) did, in ``counts`` and with ``on_count``."""
        with self._lock:
            setattr(self.counts, what, getattr(self.counts, what) + 1)
        if self.on_count is not None:
            self.on_count(what)

    @property
    def workers(self) -> int:
        return len(self._workers)

    def close(self) -> None:
        """Stop the zygote and every worker; idempotent."""
        with self._lock:
            self._closed = True
            workers, self._workers = list(self._workers), set()
            lane, self.lane = self.lane, None
        if lane is not None:
            lane.close()
        for worker in workers:
            worker.kill()
            worker.conn.close()
        with self._zygote_lock:
            if self._control is not None:
                self._control.close()
                with contextlib.suppress(ChildProcessError, ProcessLookupError):
                    os.kill(self._zygote_pid, signal.SIGKILL)
                    os.waitpid(self._zygote_pid, 0)
                self._control = None
        self._waiters.shutdown(wait=False, cancel_futures=True)
