"""Head-of-line blocking: other clients' latency while hostile prompts and long streams run.

The gateway (``aimsguard gateway``, the example policy with all its checks) sits in front of
Debian's nginx answering at once (see ``_servers.py``). Eight "other" clients send a short
question in a loop through every check, and their latency is measured in phases of the
same length, interleaved in rounds:

- quiet: nothing else runs;
- 100 KB hostile: two clients send 100 KB prompts full of e-mail addresses back to back
  (past the PII check's ``max_chars``: refused without analysis);
- 8 KB hostile: the same with 8 KB prompts (under ``max_chars``: analysed in the check
  pool's worker processes and stopped at the check's 200 ms budget);
- long streams: two clients read 1,600-token streamed answers back to back.

It prints the others' p50/p99/max per phase and how much each phase moved their p99
(target: at most 50 ms). A noisy machine moves these figures: compare within one run.

    .venv/bin/python bench/bench_head_of_line.py [--seconds 10] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _servers import REQUEST, bench_policy, gateway, nginx_upstream  # noqa: E402

OTHERS = 8
HOSTILE = 2


def _emails(size: int) -> str:
    return " ".join(f"person{i}@example{i % 13}.com" for i in range(size // 20))[:size]


def _hostile(size: int) -> dict:
    return {"model": "bench", "messages": [{"role": "user", "content": "Please write to all of these: " + _emails(size)}]}


STREAM = {**REQUEST, "stream": True}


async def _others(session: aiohttp.ClientSession, url: str, until: float, latencies: list[float], statuses: Counter) -> None:
    while time.perf_counter() < until:
        started = time.perf_counter()
        async with session.post(url, json=REQUEST) as response:
            await response.read()
            statuses[response.status] += 1
        latencies.append((time.perf_counter() - started) * 1000)


async def _load(session: aiohttp.ClientSession, url: str, until: float, body: dict, statuses: Counter) -> None:
    headers = {"accept": "text/event-stream"} if body.get("stream") else {}
    while time.perf_counter() < until:
        async with session.post(url, json=body, headers=headers) as response:
            await response.read()
            statuses[response.status] += 1


async def _phase(url: str, seconds: float, load: dict | None) -> tuple[list[float], Counter, Counter]:
    latencies: list[float] = []
    others: Counter = Counter()
    loaded: Counter = Counter()
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as session:
        until = time.perf_counter() + seconds
        tasks = [_others(session, url, until, latencies, others) for _ in range(OTHERS)]
        if load is not None:
            tasks += [_load(session, url, until, load, loaded) for _ in range(HOSTILE)]
        await asyncio.gather(*tasks)
    return latencies, others, loaded


def _q(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else float("nan")


async def main(seconds: float, rounds: int) -> None:
    phases = {"quiet": None, "100 KB hostile": _hostile(100_000), "8 KB hostile": _hostile(8_000), "long streams": STREAM}
    results: dict[str, tuple[list[float], Counter, Counter]] = {name: ([], Counter(), Counter()) for name in phases}
    with nginx_upstream() as upstream, tempfile.TemporaryDirectory(prefix="aimsguard-hol-") as tmp:
        with gateway(bench_policy(Path(tmp), checks=True), upstream) as (port, _):
            url = f"http://127.0.0.1:{port}/v1/chat/completions"
            await _phase(url, 2, None)  # warm up
            for _ in range(rounds):
                for name, load in phases.items():
                    latencies, others, loaded = await _phase(url, seconds, load)
                    results[name][0].extend(latencies)
                    results[name][1].update(others)
                    results[name][2].update(loaded)
    quiet_p99 = _q(results["quiet"][0], 99)
    print(f"other clients' latency (ms), {OTHERS} clients on a short question, {HOSTILE} loading clients; "
          f"{rounds} rounds of {seconds:g} s per phase")
    print(f"{'phase':<16} {'p50':>8} {'p99':>8} {'max':>8} {'Δp99':>8} {'others':>8} {'loading requests (status: count)'}")
    for name, (latencies, others, loaded) in results.items():
        p99 = _q(latencies, 99)
        print(
            f"{name:<16} {_q(latencies, 50):>8.1f} {p99:>8.1f} {max(latencies, default=float('nan')):>8.1f} "
            f"{p99 - quiet_p99:>+8.1f} {sum(others.values()):>8} {dict(loaded) or '-'}"
        )
    print("target: Δp99 ≤ 50 ms for every phase")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    asyncio.run(main(args.seconds, args.rounds))
