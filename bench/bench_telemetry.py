"""What metrics and tracing cost, measured side by side in one run.

The same guarded requests (the example policy's rules checks, whole and streamed answers)
go through AimsguardMiddleware in process, under four settings: event log only; plus
Prometheus metrics; plus tracing (OpenTelemetry SDK, in-memory exporter); and tracing to
an OTLP collector that is down. Metrics and spans are built from events on the bus's
worker thread, so two costs are reported: time on the request path (what the caller
waits) and total CPU per request including the worker, measured after a flush.

    .venv/bin/python bench/bench_telemetry.py [--requests 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import structlog
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_middleware import BODY, build_app  # noqa: E402

from aimsguard.agent import AimsguardMiddleware, Guard, load_policy  # noqa: E402
from aimsguard.collectors import InMemoryExporter, PrometheusMetrics, SegmentEventLog, TraceExporter  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def _guard(metrics: bool, traces: str) -> Guard:
    os.environ["AIMSGUARD_EVENT_DIR"] = tempfile.mkdtemp(prefix="aimsguard-bench-")
    policy = load_policy(ROOT / "configs" / "aimsguard.yaml")
    telemetry = policy.telemetry.model_copy(update={"metrics": metrics})
    policy = policy.model_copy(update={"telemetry": telemetry})
    if traces == "collector down":
        os.environ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = "http://127.0.0.1:9/v1/traces"
        os.environ["OTEL_EXPORTER_OTLP_TRACES_TIMEOUT"] = "1"
        guard = Guard(policy)
        del os.environ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
        return guard
    return Guard(policy, span_exporter=InMemorySpanExporter() if traces == "in memory" else None)


async def _call(app, body: bytes) -> None:  # type: ignore[no-untyped-def]
    sent = False

    async def receive():  # type: ignore[no-untyped-def]
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)

    async def send(_):  # type: ignore[no-untyped-def]
        pass

    scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": "/v1/chat/completions", "raw_path": b"/v1/chat/completions", "query_string": b"",
             "root_path": "", "headers": [(b"content-type", b"application/json")], "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 2)}
    await app(scope, receive, send)


async def measure(app, guard: Guard, body: bytes, requests: int) -> tuple[list[float], float]:  # type: ignore[no-untyped-def]
    """Request-path times, and the CPU seconds spent (event worker included, up to a flush)."""
    guard.flush(60)
    wall: list[float] = []
    cpu_start = time.process_time()
    for _ in range(requests):
        started = time.perf_counter()
        await _call(app, body)
        wall.append(time.perf_counter() - started)
    guard.flush(60)
    return wall, time.process_time() - cpu_start


async def main(requests: int, rounds: int) -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    settings = [("event log only", False, "off"), ("+ metrics", True, "off"), ("+ metrics + traces", True, "in memory"),
                ("+ metrics + traces, collector down", True, "collector down")]
    guards = {name: _guard(metrics, traces) for name, metrics, traces in settings}
    apps = {name: AimsguardMiddleware(build_app(False), guard=guard) for name, guard in guards.items()}
    print(f"aimsguard telemetry bench: {requests} requests per cell in {rounds} interleaved rounds, in process (no sockets), "
          f"{os.cpu_count()} cores\n")
    print(f"{'setting':<38}{'mode':<8}{'request path p50':>20}{'CPU per request':>20}")
    print("-" * 86)
    try:
        for stream in (False, True):
            body = json.dumps({**BODY, "stream": stream}).encode()
            for name in guards:  # warm-up, not measured
                await measure(apps[name], guards[name], body, 200)
            walls: dict[str, list[float]] = {name: [] for name in guards}
            cpu: dict[str, float] = {name: 0.0 for name in guards}
            for _ in range(rounds):
                for name in guards:
                    wall, spent = await measure(apps[name], guards[name], body, requests // rounds)
                    walls[name].extend(wall)
                    cpu[name] += spent
            base_p50 = statistics.median(walls[settings[0][0]]) * 1e6
            base_cpu = cpu[settings[0][0]] / requests * 1e6
            for name in guards:
                p50 = statistics.median(walls[name]) * 1e6
                per_request = cpu[name] / requests * 1e6
                print(f"{name:<38}{'stream' if stream else 'whole':<8}{p50:>11.1f} µs {p50 - base_p50:>+6.1f}"
                      f"{per_request:>11.1f} µs {per_request - base_cpu:>+6.1f}")
    finally:
        for guard in guards.values():
            guard.close()
    print("\nrequest path: what the caller waits; CPU: the process's CPU per request, the event worker included.")
    await worker_costs()


async def worker_costs(count: int = 2000) -> None:
    """Each exporter alone, on the same recorded events: the worker thread's cost per exchange."""
    recorder = InMemoryExporter()
    guard = _guard(False, "off")
    guard.bus.exporters.append(recorder)
    app = AimsguardMiddleware(build_app(False), guard=guard)
    body = json.dumps(BODY).encode()
    for _ in range(count):
        await _call(app, body)
    guard.flush(60)
    guard.close()
    events = recorder.events()
    exchanges = len([e for e in events if e.get("event") == "exchange"])
    directory = tempfile.mkdtemp(prefix="aimsguard-bench-")
    exporters = {
        "event log (hash-chained segments)": SegmentEventLog(directory),
        "Prometheus metrics": PrometheusMetrics(),
        "OpenTelemetry spans (request, upstream, each check)": TraceExporter(InMemorySpanExporter()),
    }
    print(f"\nworker-thread cost per exchange ({exchanges} exchanges, {len(events)} events, exported in batches of 512):")
    for name, exporter in exporters.items():
        started = time.process_time()
        for i in range(0, len(events), 512):
            exporter.export(events[i : i + 512])
        exporter.force_flush()
        print(f"  {name:<40}{(time.process_time() - started) / exchanges * 1e6:>8.1f} µs")
        exporter.shutdown()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    asyncio.run(main(args.requests, args.rounds))
