"""Shared state: what keeping it in Redis adds per request, next to the in-process default,
measured in one run (rounds interleaved, medians and p99 of each).

1. The personal-data vault: one exchange's pii checks as the gateway runs them — the input
   check on a message with an e-mail address (a new placeholder, then the same again), the
   output check on an answer holding the placeholder (restored) — through the example
   policy's ``support-bot`` pipeline, with the vault in this process and in Redis
   (encrypted, the policy's ``state`` section). The difference is the added latency.
2. The limiter: one ``state.count`` per request (a fixed-window counter, INCRBY + EXPIRE +
   PTTL in one transaction), what the callers' requests-per-minute limit does per request
   (agent/_callers.py counts through ``State.count``), in this process and in Redis.

    .venv/bin/python bench/bench_state.py [--requests 2000] [--redis redis://127.0.0.1:6379/0]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import logging
import os
import secrets
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aimsguard.agent import Guard  # noqa: E402
from aimsguard.agent._policy import parse_policy  # noqa: E402
from aimsguard.guardrails import CheckRequest, Stage  # noqa: E402


def _policy(tmp: Path, redis_url: str | None) -> Any:
    data = yaml.safe_load((ROOT / "configs" / "aimsguard.yaml").read_text())
    data["event_log"]["directory"] = str(tmp / "events")
    data.pop("records", None)
    data.pop("incidents", None)
    data["systems"]["support-bot"]["knowledge_base"] = str(ROOT / "configs" / "knowledge")
    for system in data["systems"].values():
        system.pop("review", None)  # needs a records store; not what is measured
    if redis_url:
        data["state"] = {"url": redis_url, "prefix": "bench" + secrets.token_hex(4)}
    return parse_policy(data, base_dir=ROOT / "configs")


def _checks_only(guard: Guard) -> Any:
    """The support-bot pipeline with only its pii checks (the vault's path, nothing else)."""
    pipeline = guard.pipelines["support-bot"]
    for stage in Stage:
        pipeline.checks[stage] = [c for c in pipeline.checks[stage] if c.guardrail.name == "pii"]
        pipeline.all_inline[stage] = all(c.guardrail.inline for c in pipeline.checks[stage])
    return pipeline


async def _exchange(pipeline: Any, conversation: str) -> float:
    started = time.perf_counter()
    metadata = {"principal": "bench"}
    first = await pipeline.run(CheckRequest(Stage.INPUT, ["Please write to ada.lovelace@example.com today."], "support-bot", conversation, metadata=metadata))
    placeholder = first.texts[0].split("write to ")[1].split(" ")[0]
    await pipeline.run(CheckRequest(Stage.INPUT, [f"Again: ada.lovelace@example.com, {placeholder}"], "support-bot", conversation, metadata=metadata))
    restored = await pipeline.run(CheckRequest(Stage.OUTPUT, [f"I will write to {placeholder} now."], "support-bot", conversation, metadata=metadata))
    assert any(v.findings for v in restored.verdicts), "the placeholder was not restored"
    return time.perf_counter() - started


async def _count(state: Any, key: str) -> float:
    started = time.perf_counter()
    await state.count(key, 60)
    return time.perf_counter() - started


def _row(name: str, samples: list[float]) -> tuple[str, float, float]:
    ordered = sorted(samples)
    return name, statistics.median(ordered) * 1000, ordered[int(len(ordered) * 0.99) - 1] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    os.environ.setdefault("AIMSGUARD_STATE_KEY", base64.urlsafe_b64encode(secrets.token_bytes(32)).decode())
    import tempfile

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        local = Guard(_policy(tmp / "a", None), event_log=False)
        shared = Guard(_policy(tmp / "b", args.redis), event_log=False)
        pipelines = {"in-process": _checks_only(local), "redis": _checks_only(shared)}
        states = {"in-process": local.state, "redis": shared.state}
        vault: dict[str, list[float]] = {name: [] for name in pipelines}
        limiter: dict[str, list[float]] = {name: [] for name in states}

        async def run() -> None:
            for name in pipelines:  # warm-up: analyzers, connections
                await _exchange(pipelines[name], "warm")
                await _count(states[name], "warm")
            for i in range(args.requests):
                for name in pipelines:  # interleaved, so both see the same machine
                    vault[name].append(await _exchange(pipelines[name], f"c{i % 500}"))
                    limiter[name].append(await _count(states[name], f"rpm:key{i % 50}"))

        asyncio.run(run())
        local.close()
        shared.close()

    print(f"shared state, {args.requests} requests each, interleaved (ms per request)")
    print(f"  {'':40} {'in-process':>22} {'redis':>22} {'added':>8}")
    print(f"  {'':40} {'median':>10} {'p99':>11} {'median':>10} {'p99':>11} {'median':>8}")
    for label, samples in (("vault: 2 input + 1 output pii checks", vault), ("limiter hook: one state.count", limiter)):
        (_, m_local, p_local), (_, m_redis, p_redis) = _row("", samples["in-process"]), _row("", samples["redis"])
        print(f"  {label:40} {m_local:10.3f} {p_local:11.3f} {m_redis:10.3f} {p_redis:11.3f} {m_redis - m_local:8.3f}")


if __name__ == "__main__":
    main()
