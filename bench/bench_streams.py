"""What output checks cost a streamed answer, by its length: the example policy vs no checks.

One process; the middleware is called as an ASGI app in front of an app that streams N
tokens at once (no network, no model time), so what is measured is aimsguard's own work
per stream. For 100, 400, 800, 1,600, 3,200 and 6,400 tokens it prints the median time to read the
whole stream through the middleware with the example policy (configs/aimsguard.yaml,
every check, event log on) and with the same policy without checks, their ratio, and how
each grows per doubling of the tokens (2.0 is linear). It also counts how many upstream
events went by before the client got its first text (1 means nothing was held back).

    .venv/bin/python bench/bench_streams.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TOKENS = (100, 400, 800, 1600, 3200, 6400)
# Words of an answer in the example knowledge base's domain, cycled: about 5 characters a token.
WORDS = (
    "The Pro plan costs 20 EUR per user per month, billed monthly. It includes unlimited projects, 100 GB of "
    "storage and email support with an answer within one business day. You can change plans at any time from "
    "the billing page, and the new price applies from the next billing period. "
).split(" ")


def _tokens(count: int) -> list[str]:
    return [WORDS[i % len(WORDS)] + " " for i in range(count)]


def _upstream(tokens: list[str]) -> Any:
    """An ASGI app that streams ``tokens`` as OpenAI chat chunks, as fast as it is read."""
    events = [
        b"data: "
        + json.dumps(
            {"id": "b", "object": "chat.completion.chunk", "created": 1, "model": "bench",
             "choices": [{"index": 0, "delta": {"content": token}, "finish_reason": None}]}
        ).encode()
        + b"\n\n"
        for token in tokens
    ]
    events.append(b'data: {"id": "b", "object": "chat.completion.chunk", "created": 1, "model": "bench", '
                  b'"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}\n\n')
    events.append(b"data: [DONE]\n\n")

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        for event in events:
            await send({"type": "http.response.body", "body": event, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    return app


BODY = json.dumps({"model": "bench", "stream": True, "messages": [
    {"role": "system", "content": "You are Acme's support assistant."},
    {"role": "user", "content": "How much is the Pro plan, and what does it include?"}]}).encode()
SCOPE = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "raw_path": b"/v1/chat/completions",
         "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())],
         "query_string": b"", "http_version": "1.1", "scheme": "http", "server": ("bench", 80), "client": ("bench", 1)}


async def _one(app: Any) -> tuple[float, int, str]:
    """(seconds to read the whole stream, upstream events before the first text, the text)."""
    sent = False
    first_text_after: int | None = None
    upstream_events = 0
    parts: list[str] = []

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": BODY, "more_body": False}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    # The client keeps each body with the upstream events gone by so far, and reads them
    # after the clock stops: parsing them is the client's work, not aimsguard's.
    bodies: list[tuple[int, bytes]] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body" and message.get("body"):
            bodies.append((upstream_events, message["body"]))

    async def counting_app(scope: Any, receive_: Any, send_: Any) -> None:
        async def counted(message: dict[str, Any]) -> None:
            nonlocal upstream_events
            if message["type"] == "http.response.body" and message.get("body"):
                upstream_events += 1
            await send_(message)

        await upstream(scope, receive_, counted)

    upstream = app.app
    app.app = counting_app
    started = time.perf_counter()
    await app(dict(SCOPE), receive, send)
    elapsed = time.perf_counter() - started
    app.app = upstream
    for events_before, body in bodies:
        for line in body.split(b"\n"):
            if line.startswith(b"data: {"):
                choices = json.loads(line[6:]).get("choices") or [{}]
                text = (choices[0].get("delta") or {}).get("content")
                if text:
                    parts.append(text)
                    if first_text_after is None:
                        first_text_after = events_before
    return elapsed, first_text_after or 0, "".join(parts)


def _middleware(tokens: list[str], checks: bool) -> Any:
    import structlog
    import logging

    from aimsguard.agent import AimsguardMiddleware, Guard, load_policy

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    os.environ["AIMSGUARD_EVENT_DIR"] = tempfile.mkdtemp(prefix="aimsguard-bench-")
    policy = load_policy(ROOT / "configs" / "aimsguard.yaml")
    if not checks:
        systems = {
            sid: system.model_copy(update={"checks": system.checks.model_copy(update={"input": [], "output": []})})
            for sid, system in policy.systems.items()
        }
        policy = policy.model_copy(update={"systems": systems})
    policy = policy.model_copy(update={"console": policy.console.model_copy(update={"enabled": False})})
    return AimsguardMiddleware(_upstream(tokens), guard=Guard(policy))


async def main(rounds: int) -> None:
    print(f"aimsguard stream-cost bench: {os.cpu_count()} cores, one process, middleware called as ASGI; "
          f"median of {rounds} interleaved rounds")
    header = (f"{'tokens':>7} {'chars':>7} | {'no checks':>10} {'x/doubling':>10} | {'example policy':>14} {'x/doubling':>10} | "
              f"{'ratio':>6} | {'first text after (events) none/example':>38}")
    print(header)
    print("-" * len(header))
    previous: tuple[float, float] | None = None
    for count in TOKENS:
        tokens = _tokens(count)
        apps = {"none": _middleware(tokens, False), "example": _middleware(tokens, True)}
        for app in apps.values():
            await _one(app)  # warm: first requests load caches
        times: dict[str, list[float]] = {"none": [], "example": []}
        firsts: dict[str, int] = {}
        for _ in range(rounds):
            for name, app in apps.items():
                elapsed, first, text = await _one(app)
                times[name].append(elapsed)
                firsts[name] = first
                assert len(text) >= len("".join(tokens)) * 0.9, f"{name}: the stream lost text"
        none, example = statistics.median(times["none"]), statistics.median(times["example"])
        grow = (f"{none / previous[0]:>10.2f}", f"{example / previous[1]:>10.2f}") if previous else (f"{'':>10}", f"{'':>10}")
        print(f"{count:>7} {len(''.join(tokens)):>7} | {none * 1000:>8.1f}ms {grow[0]} | {example * 1000:>12.1f}ms {grow[1]} | "
              f"{example / none:>5.2f}x | {firsts['none']:>19} / {firsts['example']}")
        previous = (none, example)
    print("\nx/doubling: the cost of this row over the row above (tokens doubled; 4x from 100 to 400). "
          "ratio: example policy over no checks (target at most 2x at 1,600 tokens).")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    asyncio.run(main(parser.parse_args().rounds))
