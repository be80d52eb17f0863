"""What the middleware adds: the same app served with and without it, measured in one run.

Two uvicorn processes serve the same OpenAI-compatible Starlette app (a fixed answer,
whole or streamed in 24 chunks); one has AimsguardMiddleware in front with the example
policy's rules checks on both stages and the event log writing to a temporary folder.
The client sends the same requests to both, interleaved in rounds, at concurrency 1
and 32, and prints latency p50/p99, time to first token and throughput side by side:
first against an app that answers at once (the strictest measure of aimsguard's own
cost), then against one that takes as long as a (fast) model would.

    .venv/bin/python bench/bench_middleware.py [--requests 2000]
    AIMSGUARD_BENCH_CHECKS=all .venv/bin/python bench/bench_middleware.py   # with the example's pii checks too
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
ANSWER = (
    "The Pro plan costs 20 EUR per user per month, billed monthly. It includes unlimited projects, "
    "100 GB of storage and email support with an answer within one business day."
)
CHUNKS = [ANSWER[i : i + 8] for i in range(0, len(ANSWER), 8)][:24]


def build_app(guarded: bool, latency_s: float = 0.0):  # type: ignore[no-untyped-def]
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, StreamingResponse
    from starlette.routing import Route

    async def chat(request: Request):  # type: ignore[no-untyped-def]
        payload = await request.json()
        if latency_s:
            await asyncio.sleep(latency_s)  # the model thinking before its first token
        if payload.get("stream"):

            async def events():  # type: ignore[no-untyped-def]
                for piece in CHUNKS:
                    if latency_s:
                        await asyncio.sleep(latency_s / 10)
                    chunk = {"id": "b", "object": "chat.completion.chunk", "created": 1, "model": "bench",
                             "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
                    yield f"data: {json.dumps(chunk)}\n\n"
                yield 'data: {"id": "b", "object": "chat.completion.chunk", "created": 1, "model": "bench", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}\n\n'
                yield "data: [DONE]\n\n"

            return StreamingResponse(events(), media_type="text/event-stream")
        return JSONResponse({"id": "b", "object": "chat.completion", "created": 1, "model": "bench",
                             "choices": [{"index": 0, "message": {"role": "assistant", "content": ANSWER}, "finish_reason": "stop"}],
                             "usage": {"prompt_tokens": 9, "completion_tokens": 30, "total_tokens": 39}})

    app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])
    if guarded:
        from aimsguard.agent import AimsguardMiddleware, Guard, load_policy

        os.environ["AIMSGUARD_EVENT_DIR"] = tempfile.mkdtemp(prefix="aimsguard-bench-")
        policy = load_policy(ROOT / "configs" / "aimsguard.yaml")
        if os.environ.get("AIMSGUARD_BENCH_CHECKS", "rules") == "rules":  # the example's rules checks only
            systems = {
                sid: system.model_copy(update={"checks": system.checks.model_copy(update={
                    stage: [c for c in getattr(system.checks, stage) if c.guardrail == "rules"] for stage in ("input", "output")
                })})
                for sid, system in policy.systems.items()
            }
            policy = policy.model_copy(update={"systems": systems})
        if os.environ.get("AIMSGUARD_BENCH_SINKS") == "none":  # to see what the event log and metrics cost
            policy = policy.model_copy(update={"telemetry": policy.telemetry.model_copy(update={"metrics": False})})
            app.add_middleware(AimsguardMiddleware, guard=Guard(policy, event_log=False))
        else:
            app.add_middleware(AimsguardMiddleware, guard=Guard(policy))
    return app


def serve(guarded: bool, port: int, latency_s: float) -> None:
    import logging

    import structlog
    import uvicorn

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    uvicorn.run(build_app(guarded, latency_s), host="127.0.0.1", port=port, log_level="warning", access_log=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(guarded: bool, latency_s: float) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    mode = "guarded" if guarded else "bare"
    process = subprocess.Popen([sys.executable, __file__, "--serve", mode, "--port", str(port), "--latency-ms", str(latency_s * 1000)])
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return process, url
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("bench server did not start")


BODY = {"model": "bench", "messages": [{"role": "system", "content": "You are Acme's support assistant."},
                                       {"role": "user", "content": "How much is the Pro plan, and what does it include?"}]}
BODY_BYTES = json.dumps(BODY).encode()
STREAM_BODY_BYTES = json.dumps({**BODY, "stream": True}).encode()
HEADERS = {"content-type": "application/json"}


async def _one(client: aiohttp.ClientSession, url: str, stream: bool) -> tuple[float, float]:
    """(total seconds, seconds to the first content chunk)."""
    started = time.perf_counter()
    first = 0.0
    if not stream:
        async with client.post(url + "/v1/chat/completions", data=BODY_BYTES, headers=HEADERS) as response:
            text = await response.text()
        assert response.status == 200 and ANSWER in text
        total = time.perf_counter() - started
        return total, total
    async with client.post(url + "/v1/chat/completions", data=STREAM_BODY_BYTES, headers=HEADERS) as response:
        async for line in response.content:
            if not first and line.startswith(b"data: {") and b'"content"' in line:
                first = time.perf_counter() - started
    return time.perf_counter() - started, first


async def _round(url: str, stream: bool, concurrency: int, count: int) -> tuple[list[float], list[float], float]:
    # aiohttp's client: its C HTTP parser keeps the load generator from being the bottleneck.
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as client:
        await asyncio.gather(*(_one(client, url, stream) for _ in range(concurrency)))  # warm connections
        queue = iter(range(count))
        totals: list[float] = []
        firsts: list[float] = []

        async def worker() -> None:
            for _ in queue:
                total, first = await _one(client, url, stream)
                totals.append(total)
                firsts.append(first)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return totals, firsts, count / (time.perf_counter() - started)


def _pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] * 1000 if len(values) > 1 else values[0] * 1000


async def table(requests: int, rounds: int, latency_s: float) -> None:
    bare, bare_url = _start(False, latency_s)
    guarded, guarded_url = _start(True, latency_s)
    try:
        print(f"\nupstream app: {'answers at once' if not latency_s else f'{latency_s * 1000:g} ms before the answer (streams: before the first chunk, then {latency_s * 100:g} ms per chunk)'}; "
              f"{requests} requests per cell in {rounds} interleaved rounds")
        header = f"{'mode':<10}{'conc':>5} | {'bare p50':>9}{'p99':>8}{'req/s':>8} | {'guarded p50':>12}{'p99':>8}{'req/s':>8} | {'added p50':>10}{'added p99':>10}{'throughput':>11}"
        print(header)
        print("-" * len(header))
        for stream in (False, True):
            for concurrency in (1, 32):
                results: dict[str, tuple[list[float], list[float], list[float]]] = {"bare": ([], [], []), "guarded": ([], [], [])}
                for _ in range(rounds):
                    for name, url in (("bare", bare_url), ("guarded", guarded_url)):
                        totals, firsts, rate = await _round(url, stream, concurrency, requests // rounds)
                        results[name][0].extend(totals)
                        results[name][1].extend(firsts)
                        results[name][2].append(rate)
                cells = {}
                for name, (totals, firsts, rates) in results.items():
                    metric = firsts if stream else totals
                    cells[name] = (_pct(metric, 50), _pct(metric, 99), statistics.mean(rates))
                b, g = cells["bare"], cells["guarded"]
                mode = "stream*" if stream else "whole"
                print(f"{mode:<10}{concurrency:>5} | {b[0]:>8.2f}ms{b[1]:>6.2f}ms{b[2]:>8.0f} | {g[0]:>10.2f}ms{g[1]:>6.2f}ms{g[2]:>8.0f} | "
                      f"{g[0] - b[0]:>+8.2f}ms{g[1] - b[1]:>+8.2f}ms{g[2] / b[2]:>10.0%}")
    finally:
        for process in (bare, guarded):
            process.terminate()
            process.wait(10)


async def main(requests: int, rounds: int, latency_ms: float) -> None:
    print(f"aimsguard middleware bench: {os.cpu_count()} cores; client and both servers on this machine; "
          f"checks: {'the example policy, rules only' if os.environ.get('AIMSGUARD_BENCH_CHECKS', 'rules') == 'rules' else 'the whole example policy (pii and rules)'}")
    await table(requests, rounds, 0.0)
    if latency_ms:
        await table(max(rounds, requests // 4), rounds, latency_ms / 1000)
    print("\n* stream rows: latency is time to the first content chunk; the guarded path holds back the policy's "
          "window (streaming.holdback_chars) and never cuts a word, so several 8-character chunks wait.")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--serve", choices=["bare", "guarded"])
    parser.add_argument("--port", type=int)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--latency-ms", type=float, default=20.0, help="model latency for the second table (0: skip it)")
    args = parser.parse_args()
    if args.serve:
        serve(args.serve == "guarded", args.port, args.latency_ms / 1000)
    else:
        asyncio.run(main(args.requests, args.rounds, args.latency_ms))
