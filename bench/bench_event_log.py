"""Event log: appending with the hash chain vs plain JSON lines, and verifying/reading it back.

Prints events/s side by side, with and without fsync (durable: one fsync per batch of
512, the event bus's batch size), for realistic ~1 KB exchange events, and what closing a
segment costs (its digest kept while writing vs the file read back, as before), and
exchanges/s through the bus with ``event_log.durability`` batch (answer at once) vs request
(answer once its event is fsynced; concurrent requests share an fsync). The plain
JSON-lines writer is the old log's way (render, append per batch), kept here only as the
baseline. Targets: at least 20,000 events/s appended durably and 200,000 events/s verified.

    .venv/bin/python bench/bench_event_log.py [--events 200000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

from aimsguard.collectors import EventBus, SegmentEventLog, read_events, verify_event_log
from aimsguard.collectors.eventlog._format import segment_summary

BATCH = 512


def exchange_event(n: int) -> dict[str, Any]:
    """An exchange event as the guard writes it (about 1 KB)."""
    request = uuid.UUID(int=n).hex
    return {
        "event": "exchange",
        "ts": f"2026-11-26T10:{n // 60000 % 60:02d}:{n // 1000 % 60:02d}.{n % 1000:03d}000Z",
        "schema": "aimsguard.event/1",
        "policy_version": "7f3c2a91d4e5",
        "system": "support-bot",
        "request_id": request,
        "conversation_id": f"conv-{n // 7}",
        "trace_id": request,
        "span_id": request[:16],
        "parent_span_id": None,
        "front_door": "gateway",
        "provider": "openai",
        "operation": "chat",
        "model": "acme-support-demo",
        "response_model": "acme-support-demo-2026-10",
        "stream": n % 3 == 0,
        "status": "ok",
        "action": "redact" if n % 5 == 0 else "allow",
        "http_status": 200,
        "error_code": None,
        "finish_reasons": ["stop"],
        "verdicts": [
            {"guardrail": g, "stage": s, "action": "allow", "outcome": "ok", "score": 0.0125, "duration_ms": 1.234, "offset_ms": 0.5}
            for g, s in (("pii-in", "input"), ("injection", "input"), ("input-rules", "input"), ("pii-out", "output"), ("grounding", "output"))
        ],
        "usage": {"input_tokens": 412, "output_tokens": 96},
        "started_at": "2026-11-26T10:00:00.000000Z",
        "duration_ms": 812.345,
        "time_to_first_token_ms": 201.5,
        "upstream_ms": 640.25,
        "upstream_offset_ms": 12.5,
        "input_checks_ms": 9.75,
        "output_checks_ms": 14.5,
    }


class PlainJsonLines:
    """The old way, as the baseline: render each event, append the batch to a file per day."""

    def __init__(self, directory: Path, *, fsync: bool) -> None:
        self.directory, self.fsync = directory, fsync

    def export(self, batch: Sequence[dict[str, Any]]) -> None:
        data = b"".join(orjson.dumps(event, default=str) + b"\n" for event in batch)
        with open(self.directory / f"events-{batch[0]['ts'][:10]}.jsonl", "ab") as handle:
            handle.write(data)
            handle.flush()
            if self.fsync:
                os.fsync(handle.fileno())

    def shutdown(self) -> None:
        pass


def append_rate(make: Callable[[Path], Any], events: list[dict[str, Any]]) -> float:
    directory = Path(tempfile.mkdtemp(prefix="aimsguard-bench-"))
    try:
        log = make(directory)
        started = time.perf_counter()
        for i in range(0, len(events), BATCH):
            log.export(events[i : i + BATCH])
        log.shutdown()
        return len(events) / (time.perf_counter() - started)
    finally:
        shutil.rmtree(directory)


def main(count: int) -> None:
    events = [exchange_event(n) for n in range(count)]
    size = sum(len(orjson.dumps(e)) for e in events[:1000]) / 1000
    print(f"{count:,} exchange events of ~{size:.0f} bytes, batches of {BATCH}\n")
    print(f"{'append':<34}{'no fsync':>14}{'fsync per batch':>18}")
    for name, make in (
        ("plain JSON lines (baseline)", lambda fsync: lambda d: PlainJsonLines(d, fsync=fsync)),
        ("hash-chained segments", lambda fsync: lambda d: SegmentEventLog(d, fsync=fsync)),
    ):
        rates = [append_rate(make(fsync), events) for fsync in (False, True)]
        print(f"{name:<34}{rates[0]:>10,.0f} ev/s{rates[1]:>14,.0f} ev/s")

    directory = Path(tempfile.mkdtemp(prefix="aimsguard-bench-"))
    try:
        log = SegmentEventLog(directory, max_segment_bytes=1 << 40)  # one segment, closed below
        for i in range(0, len(events), BATCH):
            log.export(events[i : i + BATCH])
        segment = log.current_segment
        assert segment is not None
        mib = segment.stat().st_size / 2**20
        fd = os.open(segment, os.O_RDONLY)
        os.fsync(fd)  # so both columns time the digest, not the writeback
        os.close(fd)
        started = time.perf_counter()
        segment_summary(segment)  # what closing cost before: read and parse the whole file again
        reread = time.perf_counter() - started
        started = time.perf_counter()
        log.shutdown()  # now: the digest was kept while writing
        print(f"\n{'close a segment of ' + f'{mib:.0f} MiB':<34}{'re-read (before)':>16}{'kept (now)':>16}")
        print(f"{'sha256 + record and ts range':<34}{reread * 1000:>13,.0f} ms{(time.perf_counter() - started) * 1000:>13,.0f} ms")
        # CPU time too: on a shared machine the wall clock also counts other people's work.
        print(f"\n{'read back':<34}{'wall clock':>14}{'per CPU second':>18}")
        for name, run in (
            ("verify (rehash records, digests)", lambda: verify_event_log(directory).records),
            ("read_events (parsed dicts)", lambda: sum(1 for _ in read_events(directory))),
        ):
            started, cpu = time.perf_counter(), time.process_time()
            assert run() == count
            wall, cpu = time.perf_counter() - started, time.process_time() - cpu
            print(f"{name:<34}{count / wall:>10,.0f} ev/s{count / cpu:>14,.0f} ev/s")
    finally:
        shutil.rmtree(directory)


def durability_rates(count: int) -> None:
    """Exchanges/s through the event bus and the log, answers released at once (batch) or
    only once their event is fsynced (request: concurrent requests share an fsync)."""
    concurrencies = (1, 16, 64)
    print(f"\n{'durability (exchanges/s)':<34}" + "".join(f"{f'{c} at once':>14}" for c in concurrencies) + f"{'wait p50/p99 @64':>20}")
    for mode in ("batch", "request"):
        rates, waits = [], []
        for concurrency in concurrencies:
            rate, wait = asyncio.run(_durability_run(mode, concurrency, count))
            rates.append(rate)
            waits = wait
        waited = f"{waits[len(waits) // 2] * 1000:.1f}/{waits[int(len(waits) * 0.99)] * 1000:.1f} ms" if waits else "-"
        print(f"{mode:<34}" + "".join(f"{rate:>14,.0f}" for rate in rates) + f"{waited:>20}")


async def _durability_run(mode: str, concurrency: int, count: int) -> tuple[float, list[float]]:
    directory = Path(tempfile.mkdtemp(prefix="aimsguard-bench-"))
    log = SegmentEventLog(directory, fsync=mode == "request")
    bus = EventBus([log], durable=log if mode == "request" else None)
    waits: list[float] = []
    per_task = count // concurrency

    async def requests(worker: int) -> None:
        for n in range(per_task):
            bus.emit(exchange_event(worker * per_task + n))
            if mode == "request":
                started = time.perf_counter()
                assert await bus.written(10.0)
                waits.append(time.perf_counter() - started)
            else:
                await asyncio.sleep(0)  # the answer goes out; the event follows

    try:
        started = time.perf_counter()
        await asyncio.gather(*(requests(w) for w in range(concurrency)))
        bus.shutdown()  # batch mode: its events are on disk only now
        return per_task * concurrency / (time.perf_counter() - started), sorted(waits)
    finally:
        shutil.rmtree(directory)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--exchanges", type=int, default=3_000, help="for the durability comparison")
    arguments = parser.parse_args()
    main(arguments.events)
    durability_rates(arguments.exchanges)
