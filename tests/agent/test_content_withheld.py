"""With ``event_log.content: redacted``, content a personal-data check did not run on is withheld.

A check that timed out or raised left no findings, so "masking" it would keep the text raw:
the exchange event stores null for that stage and says which check did not run.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from aimsguard.collectors import read_events
from aimsguard.guardrails import CheckRequest, Verdict
from aimsguard.guardrails.pii import PiiGuardrail

EMAIL = "jane.doe@example.com"


def _logging_content(fail_mode: str, *, timeout_ms: float | None = None, stage: str = "input") -> Any:
    def mutate(data: dict[str, Any]) -> None:
        data["event_log"]["content"] = "redacted"
        [pii] = [c for c in data["systems"]["support-bot"]["checks"][stage] if c["id"] == {"input": "pii-in", "output": "pii-out"}[stage]]
        pii["fail_mode"] = fail_mode
        if timeout_ms is not None:
            pii["timeout_ms"] = timeout_ms

    return mutate


def _chat(url: str, text: str) -> httpx.Response:
    return httpx.post(url + "/v1/chat/completions", json={"model": "demo", "messages": [{"role": "user", "content": text}]}, timeout=10)


def _exchange_on_disk(guard: Any) -> dict[str, Any]:
    deadline = time.monotonic() + 5  # the gateway records the exchange just after answering
    while True:
        guard.flush()
        found = [e for e in read_events(guard.policy.event_log.directory) if e["event"] == "exchange"]
        if found or time.monotonic() > deadline:
            [exchange] = found
            return exchange
        time.sleep(0.02)


def test_a_timed_out_input_check_withholds_the_input_from_the_log(gateway: Any) -> None:
    url, guard = gateway(_logging_content("closed", timeout_ms=0.0001))  # always overruns
    response = _chat(url, f"please write to me at {EMAIL}")
    assert response.status_code == 503  # failed closed
    exchange = _exchange_on_disk(guard)
    assert EMAIL not in json.dumps(exchange)
    assert exchange["input"] is None
    assert exchange["content_withheld"] == {"input": "pii-in: timeout"}


def test_a_raising_input_check_that_fails_open_withholds_the_input_but_logs_the_output(gateway: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    original = PiiGuardrail.analyse

    def explode_on_input(self: PiiGuardrail, request: CheckRequest) -> list[list[Any]]:
        if request.stage.value == "input":
            raise RuntimeError("analyzer down")
        return original(self, request)

    # analyse: the part that runs in the check pool's workers too (forked after this patch)
    monkeypatch.setattr(PiiGuardrail, "analyse", explode_on_input)
    url, guard = gateway(_logging_content("open"))
    response = _chat(url, f"How much is the Pro plan? I am {EMAIL}")
    assert response.status_code == 200
    exchange = _exchange_on_disk(guard)
    assert EMAIL not in json.dumps(exchange)
    assert exchange["input"] is None and exchange["content_withheld"] == {"input": "pii-in: error"}
    assert exchange["output"] and exchange["output"][0] == response.json()["choices"][0]["message"]["content"]


def test_a_timed_out_output_check_withholds_the_output(gateway: Any) -> None:
    url, guard = gateway(_logging_content("open", timeout_ms=0.0001, stage="output"))
    response = _chat(url, "How much is the Pro plan?")
    assert response.status_code == 200
    exchange = _exchange_on_disk(guard)
    assert exchange["output"] is None and exchange["content_withheld"] == {"output": "pii-out: timeout"}
    assert exchange["input"] == ["How much is the Pro plan?"]


def test_content_is_logged_masked_when_the_checks_ran(gateway: Any) -> None:
    url, guard = gateway(_logging_content("closed"))
    _chat(url, f"How much is the Pro plan? I am {EMAIL}")
    exchange = _exchange_on_disk(guard)
    assert "content_withheld" not in exchange
    assert EMAIL not in exchange["input"][0] and "<EMAIL_ADDRESS_1>" in exchange["input"][0]


def test_a_timed_out_check_on_a_streamed_answer_withholds_the_output(gateway: Any) -> None:
    url, guard = gateway(_logging_content("open", timeout_ms=0.0001, stage="output"))
    body = {"model": "demo", "stream": True, "messages": [{"role": "user", "content": "How much is the Pro plan?"}]}
    with httpx.stream("POST", url + "/v1/chat/completions", json=body, timeout=10) as response:
        assert response.status_code == 200
        response.read()
    exchange = _exchange_on_disk(guard)
    assert exchange["stream"] is True
    assert exchange["output"] is None and exchange["content_withheld"] == {"output": "pii-out: timeout"}
