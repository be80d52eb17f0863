"""The shipped artefacts: public API, Dockerfile, console command, the README's demo command."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

import aimsguard.agent
import aimsguard.collectors
import aimsguard.guardrails

from .support import free_port

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("package", [aimsguard.agent, aimsguard.guardrails, aimsguard.collectors])
def test_public_api_is_declared_and_importable(package) -> None:
    assert package.__all__ == sorted(package.__all__)
    for name in package.__all__:
        assert getattr(package, name) is not None
    public = {n for n in vars(package) if not n.startswith("_") and not isinstance(getattr(package, n), type(os))}
    assert public - set(package.__all__) == set(), "a public name is missing from __all__"


def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    result = subprocess.run([hadolint, "--failure-threshold", "info", str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    text = (ROOT / "Dockerfile").read_text()
    assert "HEALTHCHECK" in text and "USER 10001" in text



def test_demo_command_serves_a_guarded_support_bot(tmp_path: Path) -> None:
    gateway_port, upstream_port = free_port(), free_port()
    env = {**os.environ, "AIMSGUARD_EVENT_DIR": str(tmp_path / "events")}
    command = [sys.executable, "-m", "aimsguard.agent.cli", "demo", "--port", str(gateway_port), "--upstream-port", str(upstream_port)]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{gateway_port}"
        deadline = time.monotonic() + 60  # loading the checks takes a while on a busy machine
        while True:
            try:
                if httpx.get(url + "/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, process.communicate()[1]
            assert time.monotonic() < deadline, "the demo did not become ready"
            time.sleep(0.2)
        body = {"model": "acme-support-demo", "messages": [{"role": "user", "content": "How do I reset my password?"}]}
        answer = httpx.post(url + "/v1/chat/completions", json=body, timeout=10).json()
        assert "Forgot password" in answer["choices"][0]["message"]["content"]
    finally:
        process.send_signal(signal.SIGTERM)  # as docker stop does: a clean stop, the log closed
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert all(segment.digest_path.exists() for segment in aimsguard.collectors.eventlog.list_segments(tmp_path / "events"))
    assert f"curl -s {url}/v1/chat/completions" in stderr  # it told the user how to call it
    assert "from openai import OpenAI" in stderr
    assert any(event["event"] == "exchange" for event in aimsguard.collectors.read_events(tmp_path / "events"))
