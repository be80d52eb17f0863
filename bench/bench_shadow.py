"""Shadow policies: what a candidate run on live traffic costs the live path, in one run.

Three gateways in front of the same nginx upstream (see ``_servers.py``), the example
policy's checks in all; the second also runs a shadow candidate (the same checks, a stricter
injection threshold) after every answer, the third on a tenth of them (``sample_rate: 0.1``). wrk POSTs the same short chat request through
each, rounds interleaved, at a fixed number of connections, and the bench prints requests/s,
p50 and p99 per gateway, the ratio, and the shadow runs done and dropped
(``aimsguard_shadow_runs_total``): past ``max_in_flight`` waiting runs the candidate is
dropped, never waited for, so under saturation it sees less traffic rather than slowing
the answers — the drop count says how much.

The machine is shared and has 2 cores, with wrk and nginx on them too: compare within one run.

    .venv/bin/python bench/bench_shadow.py [--seconds 5] [--rounds 3] [--connections 16]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import urllib.request
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _servers import bench_policy, gateway, nginx_upstream, wrk  # noqa: E402


def _with_shadow(policy: Path, rate: float) -> Path:
    data = yaml.safe_load(policy.read_text())
    for system in data["systems"].values():
        checks = system.get("checks") or {}
        candidate = {stage: [dict(c) for c in checks.get(stage, [])] for stage in ("input", "output")}
        for check in candidate["input"]:
            if check.get("guardrail") == "injection":
                check["settings"] = {**check.get("settings", {}), "block_threshold": 0.7}
        system["shadow"] = {"candidate": "stricter", "checks": candidate, "sample_rate": rate}
    path = policy.with_name(f"policy-shadow-{rate:g}.yaml")
    path.write_text(yaml.safe_dump(data))
    return path


def _shadow_runs(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    runs: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("aimsguard_shadow_runs_total{"):
            outcome = line.split('outcome="', 1)[1].split('"', 1)[0]
            runs[outcome] = runs.get(outcome, 0.0) + float(line.rsplit(" ", 1)[1])
    return runs


SHADOW_ALL, SHADOW_TENTH = "example policy + shadow candidate", "example policy + shadow, sample_rate 0.1"


def main(seconds: float, rounds: int, connections: int) -> None:
    with nginx_upstream() as upstream, tempfile.TemporaryDirectory(prefix="aimsguard-shadow-") as tmp:
        live = bench_policy(Path(tmp), checks=True)
        policies = {"example policy": live, SHADOW_ALL: _with_shadow(live, 1.0), SHADOW_TENTH: _with_shadow(live, 0.1)}
        results: dict[str, list[dict[str, float]]] = {name: [] for name in policies}
        with contextlib.ExitStack() as stack:
            ports = {name: stack.enter_context(gateway(policy, upstream))[0] for name, policy in policies.items()}
            for port in ports.values():  # warm up (models loaded, pools forked)
                wrk(f"http://127.0.0.1:{port}/v1/chat/completions", connections=4, seconds=1)
            for _ in range(rounds):
                for name, port in ports.items():
                    results[name].append(wrk(f"http://127.0.0.1:{port}/v1/chat/completions", connections=connections, seconds=seconds))
            runs = {name: _shadow_runs(ports[name]) for name in (SHADOW_ALL, SHADOW_TENTH)}
    print(f"wrk, {connections} connections, medians of {rounds} rounds of {seconds:g} s      req/s   p50 ms   p99 ms   vs none")
    medians = {name: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for name, rs in results.items()}
    base = medians["example policy"]
    for name, m in medians.items():
        print(f"{name:<56} {m['rps']:>7.0f} {m['p50_ms']:>8.1f} {m['p99_ms']:>8.1f} {m['rps'] / base['rps']:>8.2f}")
    for name, counts in runs.items():
        total = sum(counts.values()) or 1.0
        print(f"shadow runs, {name}: " + ", ".join(f"{k} {v:.0f} ({v / total:.0%})" for k, v in sorted(counts.items())))
    print("(2 shared cores, wrk and nginx on them too: figures move with the machine's load; compare within the run)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    main(args.seconds, args.rounds, args.connections)
