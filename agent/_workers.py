"""``aimsguard gateway --workers N``: N processes, each with its own listening socket on the
same port (SO_REUSEPORT), so the kernel spreads connections across them.

Why not uvicorn's own workers: they share one listening socket and whichever process wakes
first accepts, so keep-alive connections (which stay where they landed) piled onto one
worker in 4 of 6 trials (issue 11). With one SO_REUSEPORT socket per worker, the kernel
hashes each new connection to one of them. ``bench/bench_load.py`` prints the connections
each worker holds.

The supervisor (this process) starts the workers, restarts one that dies, and on SIGTERM
or SIGINT passes the signal on and waits for them to finish (uvicorn's graceful shutdown).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import time
from pathlib import Path
from types import FrameType

import structlog

__all__ = ["reuse_port_socket", "serve_workers"]

log = structlog.get_logger("aimsguard.agent")

_RESTART_PAUSE_S = 1.0  # a worker that dies at once is not restarted in a tight loop


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A listening socket that other processes may bind to the same port as well."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named, not left 0: asyncio sets TCP_NODELAY only on connections whose
    # socket says TCP, and without it an answer written in two parts (headers, body) waits
    # for the client's delayed ACK: 40 ms a request (bench_load --workers 2 at 64
    # connections: 1,379 requests/s, against 2,700 from one worker)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _worker(host: str, port: int, drain_timeout_s: float | None, access_log: bool = False) -> None:
    import uvicorn

    from ._http import gateway_config
    from ._serve import settle_heap

    # The gateway for AIMSGUARD_CONFIG (set by the supervisor), loaded in this process
    # before it listens: the kernel hands a listening socket connections at once, and they
    # would wait in its backlog while the policy loads.
    config = gateway_config(
        "aimsguard.agent._gateway:app_from_environment", factory=True, log_level="info", access_log=access_log,
        timeout_graceful_shutdown=drain_timeout_s,
    )
    config.load()
    settle_heap()
    uvicorn.Server(config).run(sockets=[reuse_port_socket(host, port)])


def serve_workers(
    config: Path, host: str, port: int, workers: int, *, drain_timeout_s: float | None = None, access_log: bool = False
) -> None:
    """Run ``workers`` gateway processes on ``host:port`` until SIGTERM or SIGINT; each
    drains its requests (at most ``drain_timeout_s``) and closes its guard before it ends
    (uvicorn's access log, which names each client's address, only with ``access_log``)."""
    os.environ["AIMSGUARD_CONFIG"] = str(config.resolve())
    context = multiprocessing.get_context("spawn")  # a fresh interpreter each: nothing shared by accident
    reuse_port_socket(host, port).close()  # fail here, once, when the address is taken or invalid
    stopping: list[int] = []

    def start(index: int) -> multiprocessing.process.BaseProcess:
        process = context.Process(target=_worker, args=(host, port, drain_timeout_s, access_log), name=f"aimsguard-worker-{index}")
        process.start()
        return process

    def stop(signum: int, _: FrameType | None) -> None:
        stopping.append(signum)
        for process in processes:
            if process.pid is not None and process.is_alive():
                os.kill(process.pid, signum)

    processes = [start(i) for i in range(workers)]
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    log.info("gateway_workers_started", workers=workers, pids=[p.pid for p in processes], host=host, port=port)
    try:
        while not stopping:
            time.sleep(0.2)
            for index, process in enumerate(processes):
                if not process.is_alive() and not stopping:
                    log.warning("gateway_worker_died", pid=process.pid, exitcode=process.exitcode)
                    time.sleep(_RESTART_PAUSE_S)
                    processes[index] = start(index)
        for process in processes:
            process.join()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
