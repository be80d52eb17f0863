"""Monthly report over a month of 1,000,000 events: time end to end and peak memory.

Generates the synthetic month (tests/collectors/synthetic_month.py: two systems, with
upstream errors, redactions, leaks, escalations and handoffs, incidents, bias
evaluations) once into a real event log (SegmentEventLog) cached under /tmp, then runs
`aimsguard report` in a child process and reports its wall time and peak RSS
(resource.getrusage of the child) against the targets: under 20 s and under 1 GiB.

    .venv/bin/python bench/bench_report.py [--format html|pdf|md|json] [--events 1000000]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aimsguard.collectors import SegmentEventLog  # noqa: E402
from tests.collectors.synthetic_month import loan_advisor, policy_document, support_bot, synthetic_month  # noqa: E402

MONTH = "2026-10"
TARGET_S, TARGET_BYTES = 20.0, 1 << 30


def ensure_log(events_wanted: int) -> tuple[Path, int]:
    directory = Path("/tmp/aimsguard-bench-report") / f"{MONTH}-{events_wanted}"
    done = directory / "COMPLETE"
    if done.exists():
        return directory, int(done.read_text())
    # About 2.2 events per exchange (verdict events, handoffs); two thirds of the traffic on the support bot.
    exchanges = int(events_wanted / 2.2)
    started = time.perf_counter()
    events = synthetic_month(MONTH, [support_bot(exchanges * 2 // 3), loan_advisor(exchanges // 3)], seed=1)
    log = SegmentEventLog(directory / "events", retention_days=3650)
    for start in range(0, len(events), 1000):
        log.export(events[start : start + 1000])
    log.shutdown()
    done.write_text(str(len(events)))
    print(f"generated {len(events):,} events in {time.perf_counter() - started:.1f} s into {directory}", file=sys.stderr)
    # Start afresh: a child forked from this process would count its memory as the report's peak RSS.
    os.execv(sys.executable, [sys.executable, *sys.argv])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--format", default="html", choices=["html", "pdf", "md", "json"])
    parser.add_argument("--events", type=int, default=1_000_000)
    args = parser.parse_args()
    directory, count = ensure_log(args.events)
    policy = directory / "policy.json"
    policy.write_text(json.dumps(policy_document(str(directory / "events"))))
    output = directory / f"report.{args.format}"
    command = [str(Path(sys.executable).parent / "aimsguard"), "report", "--month", MONTH, "-c", str(policy), "-f", args.format, "-o", str(output)]
    started = time.perf_counter()
    subprocess.run(command, check=True, stdin=subprocess.DEVNULL)
    elapsed = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # kilobytes on Linux
    print(f"{'':24}{'measured':>14}{'target':>14}")
    print(f"{'events in the month':24}{count:>14,}")
    print(f"{'report (' + args.format + ') wall time':24}{elapsed:>12.1f} s{'< 20 s':>14}  {'OK' if elapsed < TARGET_S else 'MISSED'}")
    print(f"{'peak RSS':24}{peak / 2**20:>11.0f} MiB{'< 1024 MiB':>14}  {'OK' if peak < TARGET_BYTES else 'MISSED'}")
    print(f"({count / elapsed:,.0f} events/s; report at {output})")


if __name__ == "__main__":
    main()
