"""What the load benches start: a fast upstream that is not Python (Debian's nginx answering
a fixed chat completion with ``return 200``), the gateway as users start it (``aimsguard
gateway``), and wrk to drive them.

nginx and wrk are installed with apt-get when absent (``apt-get install -y nginx-light wrk``;
needs root, as on the project's machines).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_POLICY = ROOT / "configs" / "aimsguard.yaml"
ANSWER = "The Pro plan costs 20 EUR per user per month, billed monthly."
COMPLETION = {
    "id": "chatcmpl-bench",
    "object": "chat.completion",
    "created": 1_700_000_000,
    "model": "bench",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": ANSWER}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 12, "completion_tokens": 14, "total_tokens": 26},
}
REQUEST = {"model": "bench", "messages": [{"role": "user", "content": "How much is the Pro plan?"}]}
MESSAGE = {  # the same answer as an Anthropic Messages answer
    "id": "msg_bench",
    "type": "message",
    "role": "assistant",
    "model": "bench",
    "content": [{"type": "text", "text": ANSWER}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {"input_tokens": 12, "output_tokens": 14},
}
MESSAGES_REQUEST = {"model": "bench", "max_tokens": 256, "messages": [{"role": "user", "content": "How much is the Pro plan?"}]}
STREAM_TOKENS = 1_600
MESSAGES_STREAM_TOKENS = 200


def _sse_body(tokens: int) -> str:
    """A streamed answer of ``tokens`` word-sized chunks, as OpenAI sends it."""
    words = (ANSWER + " ") * (tokens // len(ANSWER.split()) + 1)
    events = []
    for word in words.split()[:tokens]:
        chunk = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1_700_000_000, "model": "bench",
                 "choices": [{"index": 0, "delta": {"content": word + " "}, "finish_reason": None}]}
        events.append("data: " + json.dumps(chunk) + "\n\n")
    done = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1_700_000_000, "model": "bench",
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    events.append("data: " + json.dumps(done) + "\n\ndata: [DONE]\n\n")
    return "".join(events)


def _messages_sse_body(tokens: int) -> str:
    """The same words streamed as Anthropic's typed events."""
    words = ((ANSWER + " ") * (tokens // len(ANSWER.split()) + 1)).split()[:tokens]

    def event(kind: str, **fields: object) -> str:
        return f"event: {kind}\ndata: {json.dumps({'type': kind, **fields})}\n\n"

    start = {**MESSAGE, "content": [], "stop_reason": None, "usage": {"input_tokens": 12, "output_tokens": 1}}
    events = [event("message_start", message=start), event("content_block_start", index=0, content_block={"type": "text", "text": ""})]
    events += [event("content_block_delta", index=0, delta={"type": "text_delta", "text": word + " "}) for word in words]
    events += [event("content_block_stop", index=0),
               event("message_delta", delta={"stop_reason": "end_turn", "stop_sequence": None}, usage={"output_tokens": tokens}),
               event("message_stop")]
    return "".join(events)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes] | None = None, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server on port {port} exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port} after {timeout_s:.0f} s")


def _apt_install(package: str) -> None:
    print(f"{package} is not installed: apt-get install -y {package}", file=sys.stderr)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", package], check=True, env=env)


def ensure_nginx() -> str:
    """The nginx binary, installed from Debian's packages when absent."""
    found = shutil.which("nginx") or (os.path.exists("/usr/sbin/nginx") and "/usr/sbin/nginx")
    if not found:
        _apt_install("nginx-light")
    return shutil.which("nginx") or "/usr/sbin/nginx"


def ensure_wrk() -> str:
    """The wrk binary, installed from Debian's packages when absent (not every machine has it)."""
    if not shutil.which("wrk"):
        _apt_install("wrk")
    return shutil.which("wrk") or "/usr/bin/wrk"


@contextlib.contextmanager
def nginx_upstream(workers: int = 1, chat_stream_tokens: int = STREAM_TOKENS) -> Iterator[str]:
    """An OpenAI- and Anthropic-style upstream on a loopback port; yields its base URL (``.../v1``).
    ``/v1/messages`` answers ``MESSAGE`` (or, to an event-stream request, a
    ``MESSAGES_STREAM_TOKENS``-token stream); every other path the chat completion (or its stream)."""
    binary = ensure_nginx()
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="aimsguard-nginx-") as prefix:
        body = json.dumps(COMPLETION).replace("'", "\\'")
        message = json.dumps(MESSAGE).replace("'", "\\'")
        models = json.dumps({"object": "list", "data": [{"id": "bench", "object": "model"}]})
        os.chmod(prefix, 0o755)  # nginx's workers (user nobody) read the streamed answer from it
        (Path(prefix) / "stream.sse").write_text(_sse_body(chat_stream_tokens))
        (Path(prefix) / "messages.sse").write_text(_messages_sse_body(MESSAGES_STREAM_TOKENS))
        conf = Path(prefix) / "nginx.conf"
        conf.write_text(
            f"""
daemon off;
worker_processes {workers};
pid {prefix}/nginx.pid;
error_log stderr error;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port};
        location = /v1/models {{ default_type application/json; return 200 '{models}'; }}
        location = /messages-stream {{
            internal; default_type text/event-stream; alias {prefix}/messages.sse; error_page 405 =200 $uri;
        }}
        location = /v1/messages {{
            if ($http_accept = "text/event-stream") {{ rewrite ^ /messages-stream last; }}
            default_type application/json;
            return 200 '{message}';
        }}
        location = /stream {{
            # A static file (too long for return); nginx serves those to GET only, hence the 405 detour.
            internal; default_type text/event-stream; alias {prefix}/stream.sse; error_page 405 =200 $uri;
        }}
        location / {{
            # A request that accepts only an event stream gets a 1,600-token streamed answer.
            if ($http_accept = "text/event-stream") {{ rewrite ^ /stream last; }}
            default_type application/json;
            return 200 '{body}';
        }}
    }}
}}
"""
        )
        process = subprocess.Popen([binary, "-p", prefix, "-c", str(conf)])
        try:
            wait_for_port(port, process)
            yield f"http://127.0.0.1:{port}/v1"
        finally:
            process.terminate()
            process.wait(10)


def bench_policy(directory: Path, *, checks: bool) -> Path:
    """The example policy for a bench: its checks, or none; records and console off (they are
    not on the path measured), the event log in ``directory``."""
    data = yaml.safe_load(EXAMPLE_POLICY.read_text())
    data.pop("records", None)
    data.pop("incidents", None)
    data["console"] = {"enabled": False}
    data["event_log"]["directory"] = str(directory / "events")
    for system in data["systems"].values():
        system.pop("review", None)  # review sampling needs the records store, which benches leave out
        if system.get("knowledge_base"):
            system["knowledge_base"] = str((EXAMPLE_POLICY.parent / system["knowledge_base"]).resolve())
        if not checks:
            system["checks"] = {}
    path = directory / ("policy-checks.yaml" if checks else "policy-no-checks.yaml")
    path.write_text(yaml.safe_dump(data))
    return path


@contextlib.contextmanager
def gateway(policy: Path, upstream: str, *, workers: int = 1) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """``aimsguard gateway`` on a free port; yields (port, process)."""
    port = free_port()
    env = {**os.environ, "AIMSGUARD_DEMO_UPSTREAM": upstream, "AIMSGUARD_UPSTREAM_API_KEY": "bench"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    command = [str(Path(sys.executable).parent / "aimsguard"), "gateway", "--config", str(policy), "--port", str(port)]
    if workers > 1:
        command += ["--workers", str(workers)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for_port(port, process)
        yield port, process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, 15)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait(10)


_POST_LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
{headers}wrk.body = [[{body}]]
"""


def wrk(
    url: str, *, connections: int, seconds: float = 10, body: dict | None = None, threads: int = 2, headers: dict[str, str] | None = None
) -> dict[str, float]:
    """Requests/s, p50 and p99 (ms) and errors of a wrk run POSTing ``body`` (REQUEST by default)."""
    extra = "".join(f'wrk.headers["{name}"] = "{value}"\n' for name, value in (headers or {}).items())
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(_POST_LUA.format(body=json.dumps(body or REQUEST), headers=extra))
    try:
        out = subprocess.run(
            [ensure_wrk(), f"-t{min(threads, connections)}", f"-c{connections}", f"-d{seconds:g}s", "--latency", "-s", script.name, url],
            capture_output=True, text=True, check=True,
        ).stdout
    finally:
        os.unlink(script.name)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    errors = sum(int(n) for n in re.findall(r"(?:Non-2xx or 3xx responses|connect|read|write|timeout)\s*:?\s+(\d+)", out))
    return {"rps": rps, "p50_ms": _latency(out, "50%"), "p99_ms": _latency(out, "99%"), "errors": errors}


def _latency(out: str, quantile: str) -> float:
    match = re.search(rf"^\s+{re.escape(quantile)}\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
    if match is None:
        return float("nan")
    value, unit = float(match.group(1)), match.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def connections_per_process(port: int, root_pid: int) -> dict[int, int]:
    """Established connections to ``port`` held by each process under ``root_pid`` (read
    from /proc: which worker's socket each accepted connection is)."""
    pids = _descendants(root_pid) | {root_pid}
    owner: dict[str, int] = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    target = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if target.startswith("socket:["):
                        owner[target[8:-1]] = pid
    counts: dict[int, int] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as lines:
            next(lines)
            for line in lines:
                fields = line.split()
                local_port = int(fields[1].rsplit(":", 1)[1], 16)
                if local_port == port and fields[3] == "01" and fields[9] in owner:  # 01: ESTABLISHED
                    pid = owner[fields[9]]
                    counts[pid] = counts.get(pid, 0) + 1
    return counts


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError), open(f"/proc/{entry}/stat") as stat:
                parent = int(stat.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(parent, []).append(int(entry))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found
