"""Gateway overhead per wire API: Anthropic Messages beside OpenAI chat, in one run.

Debian's nginx answers both APIs at once with the same answer (see ``_servers.py``): a
chat completion at ``/v1/chat/completions`` and an Anthropic message at ``/v1/messages``,
whole or as a 200-token stream (each token its own event; Anthropic's stream has four
more events around them). wrk POSTs the same short question in each API's shape through
one gateway, the two routes interleaved in rounds, with no checks and with the example
policy, and the bench prints requests/s, p50 and p99 per route, the time the gateway adds
per request over nginx alone (at saturation: 1/throughput through the gateway minus
1/throughput of nginx alone), and Messages / chat (target: within 10%).

The machine is shared and has 2 cores, with wrk and nginx on them too: compare the figures
within one run (the medians of the rounds are printed).

    .venv/bin/python bench/bench_dialects.py [--seconds 5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _servers import MESSAGES_REQUEST, MESSAGES_STREAM_TOKENS, REQUEST, bench_policy, gateway, nginx_upstream, wrk  # noqa: E402

ROUTES = {
    "chat": ("/v1/chat/completions", REQUEST, {}),
    "messages": ("/v1/messages", MESSAGES_REQUEST, {"anthropic-version": "2023-06-01"}),
}
STREAM_HEADERS = {"Accept": "text/event-stream"}  # nginx answers these with the stream


def _run(base: str, route: str, *, stream: bool, connections: int, seconds: float) -> dict[str, float]:
    path, body, headers = ROUTES[route]
    if stream:
        body, headers = {**body, "stream": True}, {**headers, **STREAM_HEADERS}
    upstream_path = path.removeprefix("/v1") if base.endswith("/v1") else path
    return wrk(base + upstream_path, connections=connections, seconds=seconds, body=body, headers=headers)


def _median(results: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(r[key] for r in results) for key in results[0]}


def main(seconds: float, rounds: int) -> None:
    kinds = {"whole": (False, 32), f"{MESSAGES_STREAM_TOKENS}-token stream": (True, 8)}
    rows: dict[tuple[str, str, str], dict[str, float]] = {}
    with nginx_upstream(chat_stream_tokens=MESSAGES_STREAM_TOKENS) as upstream, tempfile.TemporaryDirectory(prefix="aimsguard-dialects-") as tmp:
        for kind, (stream, connections) in kinds.items():
            for route in ROUTES:
                rows[("nginx alone", kind, route)] = _run(upstream, route, stream=stream, connections=connections, seconds=seconds)
        for setting, checks in (("no checks", False), ("example policy", True)):
            with gateway(bench_policy(Path(tmp), checks=checks), upstream) as (port, _):
                base = f"http://127.0.0.1:{port}"
                for route in ROUTES:  # warm up both routes
                    _run(base, route, stream=False, connections=8, seconds=1)
                for kind, (stream, connections) in kinds.items():
                    runs: dict[str, list[dict[str, float]]] = {route: [] for route in ROUTES}
                    for i in range(rounds):
                        order = list(ROUTES) if i % 2 == 0 else list(reversed(ROUTES))  # neither route always goes first
                        for route in order:
                            runs[route].append(_run(base, route, stream=stream, connections=connections, seconds=seconds))
                    for route in ROUTES:
                        rows[(setting, kind, route)] = _median(runs[route])

    print(f"{'wrk through one gateway, medians of ' + str(rounds) + ' rounds':<52} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'added ms':>9} {'errors':>7}")
    for (setting, kind, route), result in rows.items():
        nginx = rows[("nginx alone", kind, route)]
        added = 1000 / result["rps"] - 1000 / nginx["rps"] if setting != "nginx alone" else 0.0
        name = f"{setting}, {kind}, {route}"
        print(f"{name:<52} {result['rps']:>8.0f} {result['p50_ms']:>8.1f} {result['p99_ms']:>8.1f} {added:>9.2f} {result['errors']:>7.0f}")
    print()
    for setting in ("no checks", "example policy"):
        for kind in kinds:
            chat, messages = rows[(setting, kind, "chat")], rows[(setting, kind, "messages")]
            print(f"Messages / chat throughput, {setting}, {kind}: {messages['rps'] / chat['rps']:.2f}  (target 0.90-1.10)")
    print("(2 shared cores, wrk and nginx on them too: figures move with the machine's load; compare within the run)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    main(args.seconds, args.rounds)
