"""The bias monitor's cost per event as traffic grows: it should stay flat.

Synthetic exchange events (two sensitive features, a decision outcome, some blocked by a
guardrail) and ground-truth feedback for one exchange in ten are handed to a BiasMonitor
in the bus's batch size, as the worker thread would. The window is fixed (the policy's
``window_events``), so what an event costs (O(1) bookkeeping, plus a fairlearn evaluation
every ``evaluate_every`` exchanges whose cost does not depend on the window's size) must not
grow with the number of events seen. CPU time per event, with and without the evaluations:

    .venv/bin/python bench/bench_bias.py [--sizes 10000 100000 1000000] [--evaluate-every 5000] [--plot bias_cost.png]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from typing import Any

from aimsguard.collectors import BiasMonitor, FairnessConfig

BATCH = 512  # the event bus's batch size
POOL = 40_000  # distinct request ids, cycled (more than a window, so ids never collide within one)
GENDERS = ["female", "male", "nonbinary", "undisclosed"]
AGES = ["under-25", "25-44", "45-64", "65-plus"]


def _pool(seed: int = 1) -> list[list[dict[str, Any]]]:
    """Batches of events: every exchange, and feedback for one in ten a little later."""
    rng = random.Random(seed)
    events: list[dict[str, Any]] = []
    for i in range(POOL):
        gender = rng.choices(GENDERS, weights=[45, 45, 7, 3])[0]
        approve = 0.45 if gender == "female" else 0.6
        events.append({
            "event": "exchange",
            "system": "loan-assistant",
            "request_id": f"req-{i}",
            "status": "blocked" if rng.random() < 0.03 else "ok",
            "groups": {"gender": gender, "age_band": rng.choice(AGES)},
            "outcome": "approved" if rng.random() < approve else "declined",
        })
        if i % 10 == 5:
            label = "approved" if rng.random() < 0.55 else "declined"
            events.append({"event": "feedback", "system": "loan-assistant", "request_id": f"req-{i - 3}", "label": label})
    return [events[i : i + BATCH] for i in range(0, len(events), BATCH)]


def measure(total: int, evaluate_every: int, window: int, batches: list[list[dict[str, Any]]]) -> tuple[float, int]:
    """CPU microseconds per exchange event over ``total`` exchanges, and evaluations run."""
    config = FairnessConfig(
        features={"gender": GENDERS, "age_band": AGES},
        outcomes=["approved", "declined"],
        positive_outcomes=["approved"],
        window_events=window,
        window_s=None,
        min_group_size=30,
        evaluate_every=evaluate_every,
        evaluate_interval_s=1e9,
    )
    sent: list[str] = []
    monitor = BiasMonitor({"loan-assistant": config}, emit=lambda kind, **_: sent.append(kind))
    exchanges = 0
    started = time.process_time()
    index = 0
    while exchanges < total:
        batch = batches[index % len(batches)]
        index += 1
        monitor.export(batch)
        exchanges += sum(1 for e in batch if e["event"] == "exchange")
    elapsed = time.process_time() - started
    return elapsed / exchanges * 1e6, sent.count("bias.evaluated") // len(config.features)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--evaluate-every", type=int, default=5_000)
    parser.add_argument("--window", type=int, default=10_000)
    parser.add_argument("--plot", help="write the figure to this PNG file")
    args = parser.parse_args()

    batches = _pool()
    measure(20_000, args.evaluate_every, args.window, batches)  # warm up: imports, fairlearn's first call
    print(f"bias monitor: window {args.window} exchanges, 2 features, evaluated every {args.evaluate_every}")
    print("CPU per exchange event (the median of repeated runs for the small sizes)")
    print(f"{'events':>10} {'evaluations':>12} {'with evaluations':>18} {'bookkeeping only':>18}")
    rows = []
    for size in args.sizes:
        # Small runs are repeated (the median is shown): a shared machine's noise swamps one short run.
        repeats = min(5, max(1, 300_000 // size))
        runs = [measure(size, args.evaluate_every, args.window, batches) for _ in range(repeats)]
        total_us, evaluations = statistics.median(r[0] for r in runs), runs[0][1]
        ingest_us = statistics.median(measure(size, 10**12, args.window, batches)[0] for _ in range(repeats))
        rows.append((size, evaluations, total_us, ingest_us))
        print(f"{size:>10,} {evaluations:>12,} {total_us:>15.1f} µs {ingest_us:>15.1f} µs")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot([r[0] for r in rows], [r[2] for r in rows], marker="o", label=f"with evaluations (every {args.evaluate_every})")
        ax.plot([r[0] for r in rows], [r[3] for r in rows], marker="s", label="bookkeeping only")
        ax.set_xscale("log")
        ax.set_ylim(bottom=0)
        ax.set_xlabel("exchange events seen")
        ax.set_ylabel("CPU µs per event")
        ax.set_title("aimsguard bias monitor: cost per event")
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)
        print(f"figure: {args.plot}")


if __name__ == "__main__":
    main()
