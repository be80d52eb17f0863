"""Server-sent events: split a byte stream into events and write events back.

An incremental splitter is all the middleware needs (it re-frames events it changes and
passes the others through byte for byte); the SSE grammar for that is a blank line
between events and ``data:`` lines inside them.
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["DONE", "SseSplitter", "data_of", "encode_data"]

DONE = "[DONE]"
_BOUNDARY = re.compile(rb"\r\n\r\n|\n\n|\r\r")
_LINE = re.compile(r"\r\n|\r|\n")  # SSE's own line ends only: str.splitlines() also splits on U+2028


class SseSplitter:
    """Feed bytes as they arrive; get back each complete event's raw bytes (no separator)."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        self._buffer += chunk
        events = []
        while True:
            match = _BOUNDARY.search(self._buffer)
            if match is None:
                return events
            events.append(self._buffer[: match.start()])
            self._buffer = self._buffer[match.end() :]

    def rest(self) -> bytes:
        """Whatever arrived after the last complete event (a stream cut short)."""
        rest, self._buffer = self._buffer, b""
        return rest


def data_of(raw_event: bytes) -> str | None:
    """The joined ``data:`` lines of one event, or None when it has none (a comment, a ping)."""
    lines = []
    for line in _LINE.split(raw_event.decode("utf-8", errors="replace")):
        if line.startswith("data:"):
            value = line[5:]
            lines.append(value[1:] if value.startswith(" ") else value)
    return "\n".join(lines) if lines else None


def encode_data(payload: dict[str, Any] | str) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return f"data: {data}\n\n".encode()
