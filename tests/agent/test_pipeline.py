import asyncio
import time

import pytest

from aimsguard.agent import Pipeline, parse_policy
from aimsguard.agent._pipeline import BoundCheck
from aimsguard.agent._policy import CheckConfig
from aimsguard.guardrails import Action, CheckRequest, Guardrail, GuardrailSettings, Outcome, Stage, Verdict

from ..support import policy_dict, test_registry


def _pipeline(tmp_path, input_checks: list[dict]) -> Pipeline:
    data = policy_dict(tmp_path)
    data["systems"]["support-bot"]["checks"] = {"input": input_checks}
    policy = parse_policy(data, registry=test_registry())
    return Pipeline("support-bot", policy.systems["support-bot"], test_registry())


def _request(*texts: str) -> CheckRequest:
    return CheckRequest(stage=Stage.INPUT, texts=list(texts), system_id="support-bot", conversation_id="c1")


RULES = {
    "guardrail": "rules",
    "settings": {"rules": [{"id": "code", "patterns": [r"INT-\d+"], "action": "redact", "replacement": "[C]"}]},
}


@pytest.mark.anyio
@pytest.mark.parametrize(("fail_mode", "action"), [("open", Action.ALLOW), ("closed", Action.BLOCK)])
async def test_a_check_that_raises_is_resolved_by_its_fail_mode(tmp_path, fail_mode: str, action: Action) -> None:
    pipeline = _pipeline(tmp_path, [{"guardrail": "exploding", "fail_mode": fail_mode}])
    result = await pipeline.run(_request("please explode"))
    (verdict,) = result.verdicts
    assert verdict.outcome is Outcome.ERROR
    assert verdict.action is action
    assert verdict.fail_mode == fail_mode
    assert result.action is action
    # The exception's message quoted the text; the verdict must not.
    assert "please explode" not in " ".join(verdict.reasons)
    assert "RuntimeError" in verdict.reasons[0]


@pytest.mark.anyio
@pytest.mark.parametrize(("fail_mode", "action"), [("open", Action.ALLOW), ("closed", Action.BLOCK)])
async def test_a_check_that_overruns_its_budget_times_out(tmp_path, fail_mode: str, action: Action) -> None:
    pipeline = _pipeline(tmp_path, [{"guardrail": "sleepy", "fail_mode": fail_mode, "timeout_ms": 50, "settings": {"seconds": 5}}])
    started = time.perf_counter()
    result = await pipeline.run(_request("sleep now"))
    assert time.perf_counter() - started < 1.0
    assert result.verdicts[0].outcome is Outcome.TIMEOUT
    assert result.action is action
    assert result.failed_closed == (["sleepy"] if fail_mode == "closed" else [])


@pytest.mark.anyio
async def test_checks_run_concurrently_each_within_its_own_budget(tmp_path) -> None:
    checks = [
        {"guardrail": "sleepy", "id": f"sleepy-{i}", "timeout_ms": 1000, "settings": {"seconds": 0.3}} for i in range(4)
    ]
    pipeline = _pipeline(tmp_path, checks)
    started = time.perf_counter()
    result = await pipeline.run(_request("sleep a bit"))
    elapsed = time.perf_counter() - started
    assert all(v.outcome is Outcome.OK for v in result.verdicts)
    assert elapsed < 0.3 * 4 * 0.75  # four 0.3 s checks overlap instead of queueing


@pytest.mark.anyio
async def test_most_severe_wins_and_redactions_still_apply(tmp_path) -> None:
    pipeline = _pipeline(tmp_path, [RULES, {"guardrail": "escalating"}])
    flagged = await pipeline.run(_request("hmm, ticket INT-42", "other"))
    assert flagged.action is Action.REDACT
    assert flagged.texts == ["hmm, ticket [C]", "other"]
    escalated = await pipeline.run(_request("human please about INT-7"))
    assert escalated.action is Action.ESCALATE
    assert escalated.failed_closed == []  # a working check decided: not a failure


@pytest.mark.anyio
async def test_a_working_check_that_blocks_is_not_reported_as_a_failure(tmp_path) -> None:
    blocking = {"guardrail": "rules", "id": "blocker", "settings": {"rules": [{"id": "b", "terms": ["explode"], "action": "block"}]}}
    pipeline = _pipeline(tmp_path, [blocking, {"guardrail": "exploding", "fail_mode": "closed"}])
    result = await pipeline.run(_request("explode"))
    assert result.action is Action.BLOCK
    assert result.failed_closed == []


@pytest.mark.anyio
async def test_checks_in_place_and_awaited_ones_keep_the_policys_order(tmp_path) -> None:
    """In-place checks run first and the others are awaited (together when several): the
    verdicts still come in the policy's order, and the awaited ones still overlap."""
    checks = [
        {"guardrail": "sleepy", "id": "sleepy-1", "timeout_ms": 1000, "settings": {"seconds": 0.3}},
        {**RULES, "id": "rules-in-place"},
        {"guardrail": "sleepy", "id": "sleepy-2", "timeout_ms": 1000, "settings": {"seconds": 0.3}},
        {"guardrail": "escalating", "id": "escalating"},
    ]
    pipeline = _pipeline(tmp_path, checks)
    started = time.perf_counter()
    result = await pipeline.run(_request("sleep a bit, ticket INT-9"))
    elapsed = time.perf_counter() - started
    assert [v.guardrail for v in result.verdicts] == ["sleepy-1", "rules-in-place", "sleepy-2", "escalating"]
    assert result.texts == ["sleep a bit, ticket [C]"]
    assert elapsed < 0.3 * 2 * 0.75
    one_awaited = _pipeline(tmp_path, [{**RULES, "id": "rules-in-place"}, {"guardrail": "escalating", "id": "escalating"}])
    mixed = await one_awaited.run(_request("INT-1 human please"))
    assert [v.guardrail for v in mixed.verdicts] == ["rules-in-place", "escalating"]
    assert mixed.action is Action.ESCALATE and mixed.texts == ["[C] human please"]


class _DecidedFromAQuickLook(Guardrail):
    """Its quick look always knows the answer (nothing found); its decision may wait for I/O."""

    name = "quick-look"
    offload_above_chars = 0  # every input would go to a worker, unless the quick look decides
    decisions = 0

    async def check(self, request: CheckRequest) -> Verdict:
        raise AssertionError("decided from the quick look, never checked whole")

    def quick_analysis(self, request: CheckRequest) -> list[str]:
        return []

    def decide(self, request: CheckRequest, analysis: list[str]) -> Verdict:
        type(self).decisions += 1
        return Verdict(guardrail=self.instance_id, stage=request.stage)


class _DecidedOverTheNetwork(_DecidedFromAQuickLook):
    async def decide_async(self, request: CheckRequest, analysis: list[str]) -> Verdict:
        await asyncio.sleep(5)  # a shared vault that does not answer
        return self.decide(request, analysis)


class _WarmPool:
    def warm(self) -> bool:
        return True


@pytest.mark.anyio
async def test_a_decision_that_waits_for_io_is_cut_at_the_checks_deadline_and_one_that_cannot_wait_is_made_in_place() -> None:
    config = CheckConfig(guardrail="quick-look", timeout_ms=50, fail_mode="closed")
    slow = BoundCheck(config, _DecidedOverTheNetwork(GuardrailSettings()), _WarmPool(), "k")  # type: ignore[arg-type]
    assert slow.guardrail.decides_with_io
    started = time.perf_counter()
    verdict = await slow.run(_request("hello"))
    assert time.perf_counter() - started < 1
    assert (verdict.outcome, verdict.action) == (Outcome.TIMEOUT, Action.BLOCK)

    in_place = BoundCheck(config, _DecidedFromAQuickLook(GuardrailSettings()), _WarmPool(), "k")  # type: ignore[arg-type]
    assert not in_place.guardrail.decides_with_io
    before = _DecidedFromAQuickLook.decisions
    verdict = await in_place.run(_request("hello"))
    assert (verdict.outcome, verdict.action, _DecidedFromAQuickLook.decisions) == (Outcome.OK, Action.ALLOW, before + 1)
