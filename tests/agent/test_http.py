"""The gateway's HTTP server: httptools with a bound on a request's head (h11 had one)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn

from aimsguard.agent._http import MAX_HEAD_BYTES, gateway_config

from ..support import free_port


async def _app(scope, receive, send) -> None:
    if scope["type"] != "http":
        return
    size = 0
    while True:
        message = await receive()
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    body = str(size).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture
def server() -> Iterator[int]:
    port = free_port()
    running = uvicorn.Server(gateway_config(_app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not running.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    yield port
    running.should_exit = True
    thread.join(10)


def _answer(sock: socket.socket) -> bytes:
    """What the server sent until it went quiet or closed (a whole small answer)."""
    sock.settimeout(5)
    data = b""
    while b"\r\n\r\n" not in data or not data.split(b"\r\n\r\n", 1)[1]:
        piece = sock.recv(65536)
        if not piece:
            break
        data += piece
    return data


def test_a_head_trickled_in_past_the_bound_is_refused_and_the_connection_closed(server: int) -> None:
    with socket.create_connection(("127.0.0.1", server)) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: gateway\r\n")
        refused = b""
        for number in range(2 * MAX_HEAD_BYTES // 4096):
            try:
                sock.sendall(b"X-Pad-%d: %s\r\n" % (number, b"a" * 4000))
            except (BrokenPipeError, ConnectionResetError):
                break
            time.sleep(0.002)  # separate reads: no single one is large
        refused = _answer(sock)
    assert refused.startswith(b"HTTP/1.1 400"), refused[:80]
    assert b"too large" in refused


def test_heads_under_the_bound_and_large_bodies_are_served_on_one_connection(server: int) -> None:
    with socket.create_connection(("127.0.0.1", server)) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: gateway\r\nX-Pad: " + b"a" * 20_000 + b"\r\n\r\n")
        assert _answer(sock).startswith(b"HTTP/1.1 200")
        body = b"x" * 1_000_000  # a body many times the bound, in reads of every size
        sock.sendall(b"POST / HTTP/1.1\r\nHost: gateway\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        answer = _answer(sock)
        assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"1000000")
        # A body and the next request's head in one write (pipelined): the body is not counted.
        sock.sendall(b"POST / HTTP/1.1\r\nHost: gateway\r\nContent-Length: 300000\r\n\r\n" + b"y" * 300_000
                     + b"GET / HTTP/1.1\r\nHost: gateway\r\n\r\n")
        both = _answer(sock)
        while both.count(b"HTTP/1.1 200") < 2:
            more = sock.recv(65536)
            assert more, both
            both += more
        assert both.count(b"HTTP/1.1 200") == 2
