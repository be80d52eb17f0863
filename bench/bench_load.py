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

    .venv/bin/python bench/bench_load.py [--seconds 10] [--no-litellm]
"""

from __future__ import annotations

import argparse
import contextlib
import os
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


def main(seconds: float, with_litellm: bool) -> None:
    path = "/v1/chat/completions"
    results: dict[str, dict[str, float]] = {}
    print(f"{'wrk, POST a short chat request, ' + format(seconds, 'g') + ' s each':<44} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    with nginx_upstream() as upstream, tempfile.TemporaryDirectory(prefix="aimsguard-load-") as tmp:
        directory = Path(tmp)
        results["nginx"] = wrk(upstream + "/chat/completions", connections=64, seconds=seconds)
        _row("nginx alone, 64 connections", results["nginx"])
        with gateway(bench_policy(directory, checks=False), upstream) as (port, _):
            url = f"http://127.0.0.1:{port}{path}"
            wrk(url, connections=16, seconds=2)  # warm up
            for connections in (16, 64, 128):
                results[f"none-{connections}"] = wrk(url, connections=connections, seconds=seconds)
                _row(f"gateway, no checks, {connections} connections", results[f"none-{connections}"])
        with gateway(bench_policy(directory, checks=True), upstream) as (port, _):
            url = f"http://127.0.0.1:{port}{path}"
            wrk(url, connections=16, seconds=2)
            for connections in (16, 64):
                results[f"checks-{connections}"] = wrk(url, connections=connections, seconds=seconds)
                _row(f"gateway, example policy, {connections} connections", results[f"checks-{connections}"])
        with gateway(bench_policy(directory, checks=False), upstream, workers=2) as (port, process):
            url = f"http://127.0.0.1:{port}{path}"
            wrk(url, connections=16, seconds=2)
            spread: dict[int, int] = {}
            sampler = threading.Thread(target=lambda: (time.sleep(seconds / 2), spread.update(connections_per_process(port, process.pid))))
            sampler.start()
            results["workers-64"] = wrk(url, connections=64, seconds=seconds)
            sampler.join()
            _row("gateway, no checks, --workers 2, 64 conns", results["workers-64"], f"connections per worker pid: {spread}")
        if with_litellm:
            with _litellm(upstream, directory) as port:
                url = f"http://127.0.0.1:{port}{path}"
                wrk(url, connections=16, seconds=2)
                results["litellm-64"] = wrk(url, connections=64, seconds=seconds)
                _row("LiteLLM proxy, 64 connections", results["litellm-64"])

    none16, none64, none128 = (results[f"none-{c}"]["rps"] for c in (16, 64, 128))
    print()
    print(f"example policy / no checks at 16 connections: {results['checks-16']['rps'] / none16:.2f}  (target ≥ 0.7)")
    print(f"example policy / no checks at 64 connections: {results['checks-64']['rps'] / none64:.2f}  (target ≥ 0.7)")
    print(f"no checks, 64 / 16 and 128 / 16 connections: {none64 / none16:.2f}, {none128 / none16:.2f}  (target: flat, ~1.0)")
    print(f"no checks, p99 at 64 connections: {results['none-64']['p99_ms']:.1f} ms  (target < 100 ms)")
    print(f"--workers 2 / 1 worker at 64 connections: {results['workers-64']['rps'] / none64:.2f}")
    if "litellm-64" in results:
        print(f"no-check gateway / LiteLLM proxy at 64 connections: {none64 / results['litellm-64']['rps']:.1f}x  (target ≥ 5x)")
    print("(2 shared cores, wrk and the upstream on them too: figures move with the machine's load)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--no-litellm", action="store_true", help="skip LiteLLM's proxy (no venv made)")
    args = parser.parse_args()
    main(args.seconds, not args.no_litellm)
