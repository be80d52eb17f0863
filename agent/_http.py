"""How the gateway's HTTP server is set up: uvicorn with httptools, asyncio's loop, and a
bound on the size of a request's head.

httptools parses HTTP at a fraction of h11's cost (``bench_load.py``: the no-check gateway
served about a third more requests a second). But h11 closes a connection whose request line
and headers pass 16 KiB, and httptools has no such bound: a client could make a connection
hold as much header data as it cares to send (a megabyte trickled in 4 KB pieces was
accepted). ``BoundedHeadProtocol`` answers 400 and closes once a request's head passes
``MAX_HEAD_BYTES``, whatever the pieces it comes in. uvloop is not used even when installed:
its p99 at 64 connections was 88-146 ms against ~50 with asyncio in a ``bench_load.py`` run.
"""

from __future__ import annotations

from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["MAX_HEAD_BYTES", "BoundedHeadProtocol", "gateway_config"]

MAX_HEAD_BYTES = 65_536  # request line and headers; browsers and SDKs send a few KB


class BoundedHeadProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, refusing a request whose head passes ``MAX_HEAD_BYTES``.

    Counted from what the socket delivers while a head is being read. A read in which a new
    request begins is not counted (what in it belongs to the new head is not known), so a head
    is refused at most one read (256 KiB) past the bound, and a request's body is never counted."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._reading_head = False
        self._head_bytes = 0
        self._began = False

    def data_received(self, data: bytes) -> None:
        self._began = False
        super().data_received(data)
        if self._reading_head and not self._began and not self.transport.is_closing():
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                self.send_400_response("Request line and headers too large.")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._reading_head, self._head_bytes, self._began = True, 0, True

    def on_headers_complete(self) -> None:
        self._reading_head = False
        super().on_headers_complete()


def gateway_config(app: Any, **settings: Any) -> uvicorn.Config:
    """uvicorn's settings for a gateway process: this module's protocol and loop, and the
    client's X-Forwarded-For left alone (the console decides whose to believe:
    ``console.trusted_proxies``). ``settings`` go to ``uvicorn.Config`` as they are."""
    return uvicorn.Config(app, http=BoundedHeadProtocol, loop="asyncio", proxy_headers=False, **settings)
