"""Redis for the state tests: the machine's server with a fresh key prefix, or a private
``redis-server`` on a free port that a test may stop and start again (an outage).

Tests are skipped only when Redis is unreachable and CI is not "true" (on CI a missing
Redis is a failure, not a skip).
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

REDIS_URL = os.environ.get("AIMSGUARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1) as connection:
            connection.sendall(b"PING\r\n")
            return connection.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def shared_redis() -> tuple[str, str]:
    """The machine's Redis URL and a key prefix no other test uses."""
    if not _reachable("127.0.0.1", 6379):
        if os.environ.get("CI") == "true":
            pytest.fail(f"Redis is not reachable at {REDIS_URL} (required on CI)")
        pytest.skip(f"Redis is not reachable at {REDIS_URL}")
    return REDIS_URL, "t" + secrets.token_hex(6)


class PrivateRedis:
    """A ``redis-server`` of the test's own, on a free port, keeping nothing on disk."""

    def __init__(self, directory: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            if os.environ.get("CI") == "true":
                pytest.fail("redis-server is not installed (required on CI)")
            pytest.skip("redis-server is not installed")
        self.binary = binary
        self.directory = directory
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(self.directory)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not _reachable("127.0.0.1", self.port):
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None

    def __enter__(self) -> PrivateRedis:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()
