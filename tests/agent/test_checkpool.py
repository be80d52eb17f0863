"""Checks of long inputs run in worker processes, within their budgets; inputs past a
check's max_chars are not checked at all, and over_limit decides."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from aimsguard.agent import Pipeline, parse_policy
from aimsguard.agent._checkpool import CheckPool
from aimsguard.agent._policy import CheckConfig
from aimsguard.guardrails import (
    Action,
    CheckRequest,
    GuardrailRegistry,
    GuardrailSettings,
    InlineGuardrail,
    Outcome,
    Stage,
    Verdict,
)
from aimsguard.guardrails.pii import PiiGuardrail

from ..support import policy_dict


class BusySettings(GuardrailSettings):
    seconds: float = 5.0


class BusyGuardrail(InlineGuardrail):
    """Spins the CPU (holding the GIL, as a regex would) on texts that say "spin"; raises on "explode"."""

    name = "busy"
    Settings = BusySettings
    offload_above_chars = 100

    def check_inline(self, request: CheckRequest) -> Verdict:
        text = " ".join(request.texts)
        if "explode" in text:
            raise RuntimeError(f"cannot handle {text[:20]}")
        if "spin" in text:
            end = time.perf_counter() + self.settings.seconds  # type: ignore[attr-defined]
            while time.perf_counter() < end:
                pass
        return Verdict(guardrail=self.name, stage=request.stage, action=Action.FLAG, reasons=("looked",))


REGISTRY = GuardrailRegistry(BusyGuardrail, PiiGuardrail)
LONG = " filler" * 40  # past BusyGuardrail's offload_above_chars


def _pipeline(tmp_path: Path, input_checks: list[dict], output_checks: list[dict] | None = None) -> tuple[Pipeline, CheckPool]:
    data = policy_dict(tmp_path)
    data["systems"] = {"support-bot": data["systems"]["support-bot"]}
    data["systems"]["support-bot"]["checks"] = {"input": input_checks, "output": output_checks or []}
    data["gateway"].pop("default_system", None)
    policy = parse_policy(data, registry=REGISTRY)
    pool = CheckPool({}, size=2)
    pipeline = Pipeline("support-bot", policy.systems["support-bot"], REGISTRY, pool)
    pool.start()  # as the gateway does before it serves (a cold pool runs checks in place)
    return pipeline, pool


def _request(text: str, stage: Stage = Stage.INPUT) -> CheckRequest:
    return CheckRequest(stage=stage, texts=[text], system_id="support-bot", conversation_id="c1")


@pytest.fixture
def make_pipeline(tmp_path):
    pools: list[CheckPool] = []

    def make(input_checks: list[dict], output_checks: list[dict] | None = None) -> Pipeline:
        pipeline, pool = _pipeline(tmp_path, input_checks, output_checks)
        pools.append(pool)
        return pipeline

    yield make
    for pool in pools:
        pool.close()


@pytest.mark.anyio
@pytest.mark.parametrize(("fail_mode", "action"), [("open", Action.ALLOW), ("closed", Action.BLOCK)])
async def test_a_long_check_is_stopped_at_its_deadline_and_its_worker_replaced(make_pipeline, fail_mode, action) -> None:
    pipeline = make_pipeline([{"guardrail": "busy", "fail_mode": fail_mode, "timeout_ms": 300, "settings": {"seconds": 30}}])
    started = time.perf_counter()
    result = await pipeline.run(_request("spin" + LONG))
    assert time.perf_counter() - started < 5  # answered at the deadline, not after the 30 s of work
    assert result.verdicts[0].outcome is Outcome.TIMEOUT and result.action is action
    assert pipeline.pool.counts.cancelled == 1
    # The killed worker was replaced: the next long input is checked normally.
    again = await pipeline.run(_request("calm" + LONG))
    assert again.verdicts[0].outcome is Outcome.OK and again.action is Action.FLAG


@pytest.mark.anyio
async def test_the_event_loop_keeps_serving_while_a_check_computes(make_pipeline) -> None:
    pipeline = make_pipeline([{"guardrail": "busy", "timeout_ms": 20_000, "settings": {"seconds": 3}}])
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    result = await pipeline.run(_request("spin" + LONG))
    task.cancel()
    assert result.verdicts[0].outcome is Outcome.OK
    # Inline, the 3 s of spinning would have let the ticker run once at most.
    assert ticks > 20


@pytest.mark.anyio
async def test_short_inputs_run_in_place(make_pipeline) -> None:
    pipeline = make_pipeline([{"guardrail": "busy"}])
    result = await pipeline.run(_request("short"))
    assert result.action is Action.FLAG
    assert pipeline.pool.counts.done == 0


@pytest.mark.anyio
async def test_a_cold_pool_runs_checks_in_place_while_it_starts(tmp_path) -> None:
    data = policy_dict(tmp_path)
    data["systems"] = {"support-bot": {**data["systems"]["support-bot"], "checks": {"input": [{"guardrail": "busy"}]}}}
    data["gateway"].pop("default_system", None)
    pool = CheckPool({}, size=1)
    pipeline = Pipeline("support-bot", parse_policy(data, registry=REGISTRY).systems["support-bot"], REGISTRY, pool)
    try:
        first = await pipeline.run(_request("calm" + LONG))
        assert first.verdicts[0].outcome is Outcome.OK and pool.counts.done == 0  # not waiting for the forks
        deadline = time.monotonic() + 30
        while not pool.workers and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await pipeline.run(_request("calm" + LONG))
        assert pool.counts.done == 1
    finally:
        pool.close()


@pytest.mark.anyio
async def test_a_check_that_raises_in_a_worker_is_an_error_without_the_text(make_pipeline) -> None:
    pipeline = make_pipeline([{"guardrail": "busy", "fail_mode": "closed", "timeout_ms": 5000}])
    result = await pipeline.run(_request("explode my secret" + LONG))
    (verdict,) = result.verdicts
    assert verdict.outcome is Outcome.ERROR and verdict.action is Action.BLOCK
    assert "RuntimeError" in verdict.reasons[0] and "secret" not in verdict.reasons[0]


@pytest.mark.anyio
@pytest.mark.parametrize(("over_limit", "action"), [("open", Action.ALLOW), ("closed", Action.BLOCK)])
async def test_input_past_max_chars_is_not_checked_and_over_limit_decides(make_pipeline, over_limit, action) -> None:
    pipeline = make_pipeline([{"guardrail": "busy", "max_chars": 50, "over_limit": over_limit, "fail_mode": "open"}])
    started = time.perf_counter()
    result = await pipeline.run(_request("spin" + LONG))  # would spin 5 s if it were checked
    assert time.perf_counter() - started < 1
    (verdict,) = result.verdicts
    assert verdict.outcome is Outcome.OVER_LIMIT and verdict.action is action and verdict.fail_mode == over_limit
    assert "max_chars (50)" in verdict.reasons[0] and "spin" not in verdict.reasons[0]
    assert result.failed_closed == (["busy"] if over_limit == "closed" else [])
    assert pipeline.pool.counts.done == 0
    within = await pipeline.run(_request("calm"))
    assert within.verdicts[0].outcome is Outcome.OK


def test_max_chars_must_be_positive_and_over_limit_a_fail_mode() -> None:
    assert CheckConfig(guardrail="pii", max_chars=10_000, over_limit="open").over_limit.value == "open"
    assert CheckConfig(guardrail="pii").max_chars is None
    with pytest.raises(ValidationError):
        CheckConfig(guardrail="pii", max_chars=0)
    with pytest.raises(ValidationError):
        CheckConfig(guardrail="pii", over_limit="maybe")


@pytest.mark.anyio
async def test_personal_data_found_in_a_worker_is_kept_in_this_process_vault(make_pipeline) -> None:
    pii = {"guardrail": "pii", "timeout_ms": 20_000, "settings": {"default_action": "redact"}}
    pipeline = make_pipeline([{**pii, "id": "pii-in"}], [{**pii, "id": "pii-out"}])
    text = "Write to jane.doe@example.com about my order. " + "The parcel was late again. " * 20  # past 256 characters
    inbound = await pipeline.run(_request(text))
    assert pipeline.pool.counts.done == 1  # analysed in a worker
    assert "jane.doe@example.com" not in inbound.texts[0] and "<EMAIL_ADDRESS_1>" in inbound.texts[0]
    # The placeholder was recorded in this process's vault, so the answer gets the user's own data back.
    answer = "I will write to <EMAIL_ADDRESS_1>. " + "We are sorry about the delay. " * 20
    outbound = await pipeline.run(_request(answer, Stage.OUTPUT))
    assert "jane.doe@example.com" in outbound.texts[0] and outbound.action is Action.ALLOW


@pytest.mark.anyio
async def test_a_long_text_the_quick_look_finds_nothing_in_is_decided_in_place(make_pipeline) -> None:
    pii = {"guardrail": "pii", "timeout_ms": 20_000, "settings": {"default_action": "redact"}}
    pipeline = make_pipeline([{**pii, "id": "pii-in"}], [{**pii, "id": "pii-out"}])
    await pipeline.run(_request("Write to jane.doe@example.com about my order. " + "The parcel was late again. " * 20))
    assert pipeline.pool.counts.done == 1
    plain = "We are sorry about the delay, the Pro plan costs 20 EUR a month. " * 6  # past 256 characters, nothing personal
    result = await pipeline.run(_request("I will write to <EMAIL_ADDRESS_1>. " + plain, Stage.OUTPUT))
    assert pipeline.pool.counts.done == 1  # no round trip to a worker
    assert result.texts[0] == "I will write to jane.doe@example.com. " + plain  # the placeholder restored all the same
    assert result.verdicts[0].outcome is Outcome.OK and result.action is Action.ALLOW
    # Past the quick look's 1,024 characters, or with something to find, the worker analyses it.
    await pipeline.run(_request(plain * 3, Stage.OUTPUT))
    leaked = await pipeline.run(_request("Mail bob.roe@example.org, he knows. " + plain, Stage.OUTPUT))
    assert pipeline.pool.counts.done == 3
    assert "bob.roe@example.org" not in leaked.texts[0]
