"""Callers: what a virtual API key and its limits add per request, side by side in one run.

``Callers.admit`` as the middleware calls it before reading a request's body, in four
setups, rounds interleaved (medians and p99):

- no key presented (a system that does not require one): the floor;
- a key without limits: parse, cached lookup, SHA-256 of the secret;
- a key with requests-per-minute and tokens-per-day limits, counters in this process;
- the same with the counters in Redis (the policy's ``state.url``): two ``state.count``
  calls issued together, so one round trip's wait.

The key's first read from the records store (SQLite here) is outside the timed loop: it
happens once per key and replica per minute, or after a revocation.

    .venv/bin/python bench/bench_callers.py [--requests 5000] [--redis redis://127.0.0.1:6379/0]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aimsguard.agent import Guard  # noqa: E402
from aimsguard.agent._policy import parse_policy  # noqa: E402


def _guard(tmp: Path, redis_url: str | None) -> Guard:
    data: dict[str, Any] = {
        "event_log": {"directory": str(tmp / "events")},
        "records": {"url": f"sqlite:///{tmp / 'records.db'}"},
        "systems": {"bot": {"name": "bot", "owner": "o", "callers": {"require_key": False}}},
    }
    if redis_url:
        data["state"] = {"url": redis_url, "prefix": "bench" + secrets.token_hex(4), "key": base64.urlsafe_b64encode(b"b" * 32).decode()}
    return Guard(parse_policy(data))


async def _admit(guard: Guard, headers: list[tuple[bytes, bytes]]) -> float:
    started = time.perf_counter()
    await guard.callers.admit("bot", headers)
    return time.perf_counter() - started


async def main(requests: int, redis_url: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        local = _guard(Path(tmp) / "local", None)
        shared = _guard(Path(tmp) / "redis", redis_url)
        _, plain_key = local.records.create_key(system="bot", by="bench")
        _, local_key = local.records.create_key(system="bot", by="bench", rpm=10**9, tokens_per_day=10**12)
        _, redis_key = shared.records.create_key(system="bot", by="bench", rpm=10**9, tokens_per_day=10**12)
        setups = {
            "no key": (local, []),
            "key, no limits": (local, [(b"authorization", f"Bearer {plain_key}".encode())]),
            "key + rpm + tokens/day, in process": (local, [(b"authorization", f"Bearer {local_key}".encode())]),
            "key + rpm + tokens/day, Redis": (shared, [(b"authorization", f"Bearer {redis_key}".encode())]),
        }
        samples: dict[str, list[float]] = {name: [] for name in setups}
        for guard, headers in setups.values():
            for _ in range(50):  # warm: the key read and cached, the Redis pool open
                await _admit(guard, headers)
        for _ in range(requests):
            for name, (guard, headers) in setups.items():
                samples[name].append(await _admit(guard, headers))
        print(f"Callers.admit per request ({requests} each, interleaved; Redis {redis_url}):")
        floor = statistics.median(samples["no key"])
        for name, values in samples.items():
            values.sort()
            median, p99 = statistics.median(values), values[int(len(values) * 0.99)]
            print(f"  {name:<38} median {median * 1e6:8.1f} µs   p99 {p99 * 1e6:8.1f} µs   added {(median - floor) * 1e6:8.1f} µs")
        local.close()
        shared.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    arguments = parser.parse_args()
    asyncio.run(main(arguments.requests, arguments.redis))
