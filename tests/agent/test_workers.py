"""``aimsguard gateway --workers N``: every worker process receives connections."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time
from pathlib import Path

import httpx
import pytest

from aimsguard.agent._workers import reuse_port_socket

from ..support import free_port, policy_dict, start_gateway_workers, write_policy

pytestmark = pytest.mark.slow



def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError), open(f"/proc/{entry}/stat") as stat:
                if int(stat.read().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry))
    return found


def _owner_of_connections(port: int, pids: list[int]) -> dict[int, int]:
    """Established connections on ``port`` per process, from /proc (socket inode → pid)."""
    owner = {}
    for pid in pids:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    owner[target[8:-1]] = pid
    counts: dict[int, int] = {}
    with open("/proc/net/tcp") as table:
        next(table)
        for line in table:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01" and fields[9] in owner:
                counts[owner[fields[9]]] = counts.get(owner[fields[9]], 0) + 1
    return counts


def test_keep_alive_connections_are_spread_over_every_worker(tmp_path: Path, upstream) -> None:
    data = policy_dict(tmp_path, upstream.url + "/v1")
    data["systems"] = {"support-bot": {**data["systems"]["support-bot"], "checks": {}}}  # starts fast
    data["gateway"]["default_system"] = "support-bot"
    policy = write_policy(tmp_path, data)
    process, port = start_gateway_workers(tmp_path, policy)
    clients = [httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) for _ in range(16)]
    try:
        deadline = time.monotonic() + 90
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200 and len(_children(process.pid)) >= 2:
                    break
            assert time.monotonic() < deadline and process.poll() is None, "the workers did not start"
            time.sleep(0.3)
        time.sleep(2)  # the slower worker is listening too
        body = {"model": "demo", "messages": [{"role": "user", "content": "How much is the Pro plan?"}]}
        for client in clients:  # one keep-alive connection each, held open
            assert client.post("/v1/chat/completions", json=body).status_code == 200
        workers = [pid for pid in _children(process.pid) if os.path.exists(f"/proc/{pid}/fd")]
        spread = _owner_of_connections(port, workers)
        assert sum(spread.values()) == 16
        # The kernel hashes connections over the workers' sockets: 16 on one of 2 has odds of 1 in 32,768.
        assert len(spread) == 2, spread
    finally:
        for client in clients:
            client.close()
        process.send_signal(signal.SIGINT)
        process.wait(30)


def test_a_reuse_port_socket_shares_its_port() -> None:
    first = reuse_port_socket("127.0.0.1", 0)
    port = first.getsockname()[1]
    second = reuse_port_socket("127.0.0.1", port)
    assert second.getsockname()[1] == port
    first.close()
    second.close()


def test_connections_a_worker_accepts_do_not_wait_for_delayed_acks() -> None:
    """asyncio turns Nagle's algorithm off only on a socket that says it is TCP: on one that
    does not, every answer written in two parts waited ~40 ms for the client's delayed ACK."""
    async def nodelay_of_an_accepted_connection() -> int:
        listener = reuse_port_socket("127.0.0.1", 0)
        accepted: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            accepted.set_result(writer.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(connected, sock=listener)
        async with server:
            _, writer = await asyncio.open_connection(*listener.getsockname())
            try:
                return await asyncio.wait_for(accepted, 5)
            finally:
                writer.close()

    assert asyncio.run(nodelay_of_an_accepted_connection()) != 0
