"""The gateway under load, against an upstream that is not Python-bound, beside LiteLLM's proxy.

Debian's nginx answers a fixed chat completion at once (``return 200``, see ``_servers.py``;
installed with ``apt-get install -y nginx-light`` when absent). wrk (Debian's) POSTs a short
chat request through, for ``--seconds`` per run, and the bench prints in one run:

- nginx alone (the ceiling of this machine with wrk on it);
- the gateway with no checks at 16, 64 and 128 connections (target: flat), p99 at 64
  (target: under 100 ms);
- the gateway with the example policy's checks at 16 and 64 connections (target: at least
  0.7x the no-check gateway);
- the no-check gateway with ``--workers 2``: throughput and the connections each worker
  process holds while wrk runs (SO_REUSEPORT spreads them);
- LiteLLM's proxy in front of the same nginx at 64 connections (target: the no-check gateway
  at least 5x it). LiteLLM lives in a venv of its own, ``bench/.venv-litellm`` (made with
  ``python3 -m venv`` and ``pip install 'litellm[proxy]'`` on first use; ``--no-litellm`` skips it).

The machine is shared and has 2 cores, with wrk on them too: compare figures within one run.

The no-check and example-policy gateways run side by side and are measured in turn for
``--rounds`` rounds; each ratio is the median of the rounds' ratios (the machine's speed
drifts within minutes, so two runs far apart would measure the drift).

    .venv/bin/python bench/bench_load.py [--seconds 10] [--rounds 3] [--no-litellm]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _servers import bench_policy, connections_per_process, free_port, gateway, nginx_upstream, wait_for_port, wrk  # noqa: E402

HERE = Path(__file__).resolve().parent
LITELLM_VENV = HERE / ".venv-litellm"


def _row(name: str, result: dict[str, float], extra: str = "") -> None:
    print(f"{name:<44} {result['rps']:>9.0f} {result['p50_ms']:>8.1f} {result['p99_ms']:>8.1f} {result['errors']:>7.0f}  {extra}")


def _ensure_litellm() -> Path:
    litellm = LITELLM_VENV / "bin" / "litellm"
    if not litellm.exists():
        print(f"installing litellm[proxy] into {LITELLM_VENV} (once)", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True)
        subprocess.run([str(LITELLM_VENV / "bin" / "pip"), "install", "-q", "litellm[proxy]"], check=True)
    return litellm


@contextlib.contextmanager
def _litellm(upstream: str, directory: Path) -> Iterator[int]:
    config = directory / "litellm.yaml"
    config.write_text(
        "model_list:\n"
        "  - model_name: bench\n"
        "    litellm_params: {model: openai/bench, api_base: '" + upstream + "', api_key: bench}\n"
    )
    port = free_port()
    env = {
        **os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR", "LITELLM_TELEMETRY": "False",
        # A loopback bench with no keys: LiteLLM refuses to start without a master key unless told this.
        "LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY": "true",
    }
    process = subprocess.Popen(
        [str(_ensure_litellm()), "--config", str(config), "--port", str(port), "--host", "127.0.0.1", "--num_workers", "1"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        wait_for_port(port, process, timeout_s=300)
        yield port
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, 15)
        process.wait(30)


def main(seconds: float, rounds: int, with_litellm: bool) -> None:
    path = "/v1/chat/completions"
    results: dict[str, list[dict[str, float]]] = collections.defaultdict(list)
    print(f"{'wrk, POST a short chat request, ' + format(seconds, 'g') + ' s each':<44} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    with nginx_upstream() as upstream, tempfile.TemporaryDirectory(prefix="aimsguard-load-") as tmp:
        directory = Path(tmp)
        results["nginx"].append(wrk(upstream + "/chat/completions", connections=64, seconds=seconds))
        _row("nginx alone, 64 connections", results["nginx"][0])
        # Both gateways are up at once and measured in turn, round after round: the machine's
        # speed drifts by a third within minutes, and a ratio of two runs far apart measures the drift.
        with gateway(bench_policy(directory, checks=False), upstream) as (plain, _), gateway(bench_policy(directory, checks=True), upstream) as (checked, _):
            urls = {"none": f"http://127.0.0.1:{plain}{path}", "checks": f"http://127.0.0.1:{checked}{path}"}
            for url in urls.values():
                wrk(url, connections=16, seconds=2)  # warm up
            for number in range(1, rounds + 1):
                for connections in (16, 64, 128):
                    for name in ("none", "checks") if connections < 128 else ("none",):
                        result = wrk(urls[name], connections=connections, seconds=seconds)
                        results[f"{name}-{connections}"].append(result)
                        label = "no checks" if name == "none" else "example policy"
                        _row(f"round {number}: gateway, {label}, {connections} conns", result)
        with gateway(bench_policy(directory, checks=False), upstream, workers=2) as (port, process):
            url = f"http://127.0.0.1:{port}{path}"
            wrk(url, connections=16, seconds=2)
            spread: dict[int, int] = {}
            sampler = threading.Thread(target=lambda: (time.sleep(seconds / 2), spread.update(connections_per_process(port, process.pid))))
            sampler.start()
            results["workers-64"].append(wrk(url, connections=64, seconds=seconds))
            sampler.join()
            _row("gateway, no checks, --workers 2, 64 conns", results["workers-64"][0], f"connections per worker pid: {spread}")
        if with_litellm:
            with _litellm(upstream, directory) as port:
                url = f"http://127.0.0.1:{port}{path}"
                wrk(url, connections=16, seconds=2)
                results["litellm-64"].append(wrk(url, connections=64, seconds=seconds))
                _row("LiteLLM proxy, 64 connections", results["litellm-64"][0])

    def rps(name: str) -> list[float]:
        return [result["rps"] for result in results[name]]

    def ratios(over: str, under: str) -> list[float]:
        return [a / b for a, b in zip(rps(over), rps(under), strict=True)]

    def shown(values: list[float]) -> str:
        return f"{statistics.median(values):.2f}  (rounds: {', '.join(f'{value:.2f}' for value in values)})"

    print()
    print(f"medians of {rounds} interleaved rounds (each round's ratio from runs side by side):")
    print(f"example policy / no checks at 16 connections: {shown(ratios('checks-16', 'none-16'))}  (target ≥ 0.7)")
    print(f"example policy / no checks at 64 connections: {shown(ratios('checks-64', 'none-64'))}  (target ≥ 0.7)")
    print(f"no checks, 64 / 16 connections: {shown(ratios('none-64', 'none-16'))}  (target: flat, ~1.0)")
    print(f"no checks, 128 / 16 connections: {shown(ratios('none-128', 'none-16'))}  (target: flat, ~1.0)")
    print(f"no checks, p99 at 64 connections: {statistics.median([result['p99_ms'] for result in results['none-64']]):.1f} ms  (target < 100 ms)")
    print(f"--workers 2 / 1 worker at 64 connections: {rps('workers-64')[0] / statistics.median(rps('none-64')):.2f}  (1 worker: median of the rounds)")
    if "litellm-64" in results:
        print(f"no-check gateway / LiteLLM proxy at 64 connections: {statistics.median(rps('none-64')) / rps('litellm-64')[0]:.1f}x  (target ≥ 5x)")
    print("(2 shared cores, wrk and the upstream on them too: compare within a round)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the one-worker gateways (ratios: their median)")
    parser.add_argument("--no-litellm", action="store_true", help="skip LiteLLM's proxy (no venv made)")
    args = parser.parse_args()
    main(args.seconds, args.rounds, not args.no_litellm)
