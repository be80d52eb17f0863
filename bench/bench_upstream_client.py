"""The gateway's upstream client alone: httpx vs aiohttp against the same fast upstream.

One Python process sends POSTs through one pooled client, N at a time, to Debian's nginx
answering a fixed chat completion (see ``_servers.py``); it prints requests per second at
16, 64 and 128 concurrent requests for each client, interleaved in rounds. This is how the
gateway's client was chosen (aiohttp: httpx's pool collapses as concurrency grows).

    .venv/bin/python bench/bench_upstream_client.py [--seconds 3] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

import aiohttp
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _servers import REQUEST, nginx_upstream  # noqa: E402

BODY = json.dumps(REQUEST).encode()
HEADERS = {"content-type": "application/json"}


async def _drive(send, concurrency: int, seconds: float) -> float:  # type: ignore[no-untyped-def]
    done = 0
    end = time.perf_counter() + seconds

    async def loop() -> None:
        nonlocal done
        while time.perf_counter() < end:
            await send()
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(concurrency)))
    return done / (time.perf_counter() - started)


async def with_httpx(url: str, concurrency: int, seconds: float) -> float:
    limits = httpx.Limits(max_connections=512, max_keepalive_connections=128)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:

        async def send() -> None:
            response = await client.post(url, content=BODY, headers=HEADERS)
            await response.aread()

        return await _drive(send, concurrency, seconds)


async def with_aiohttp(url: str, concurrency: int, seconds: float) -> float:
    connector = aiohttp.TCPConnector(limit=512, limit_per_host=512)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:

        async def send() -> None:
            async with session.post(url, data=BODY, headers=HEADERS) as response:
                await response.read()

        return await _drive(send, concurrency, seconds)


async def main(seconds: float, rounds: int) -> None:
    clients = {"httpx": with_httpx, "aiohttp": with_aiohttp}
    levels = (16, 64, 128)
    with nginx_upstream() as upstream:
        url = upstream + "/chat/completions"
        results: dict[tuple[str, int], list[float]] = {}
        for _ in range(rounds):
            for level in levels:
                for name, run in clients.items():
                    results.setdefault((name, level), []).append(await run(url, level, seconds))
    print(f"upstream client alone, requests/s (median of {rounds} interleaved rounds of {seconds:g} s)")
    print(f"{'concurrency':>12} " + " ".join(f"{name:>10}" for name in clients))
    for level in levels:
        print(f"{level:>12} " + " ".join(f"{statistics.median(results[(name, level)]):>10.0f}" for name in clients))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    asyncio.run(main(args.seconds, args.rounds))
