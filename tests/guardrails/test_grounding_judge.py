"""The optional llm_judge mode, against a fake OpenAI-compatible endpoint."""

import json
import socket

import httpx
import pytest

from aimsguard.agent import Pipeline, parse_policy
from aimsguard.guardrails import Action, CheckRequest, Outcome, Stage
from aimsguard.guardrails.grounding import GroundingGuardrail, GroundingSettings
from aimsguard.guardrails.grounding_judge import ClaimJudge, JudgeError, JudgeSettings

from ..support import KNOWLEDGE, policy_dict, test_registry

JUDGE = {"base_url": "http://judge.test/v1", "model": "judge-1", "api_key_env": "AIMSGUARD_TEST_JUDGE_KEY", "timeout_s": 2}


def _fake_judge(seen: list[dict]) -> httpx.MockTransport:
    """Says a claim is supported when the evidence it was sent mentions every number of the claim."""

    def handle(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/chat/completions"
        assert request.headers["authorization"] == "Bearer sk-test"
        body = json.loads(request.content)
        seen.append(body)
        user = body["messages"][-1]["content"]
        evidence, claims = user.split("Claims:\n")
        verdicts = [all(token in evidence for token in line.split() if token.isdigit()) for line in claims.splitlines()]
        return httpx.Response(200, json={"choices": [{"message": {"role": "assistant", "content": json.dumps({"supported": verdicts})}}]})

    return httpx.MockTransport(handle)


@pytest.fixture
def judged(monkeypatch: pytest.MonkeyPatch) -> tuple[GroundingGuardrail, list[dict]]:
    monkeypatch.setenv("AIMSGUARD_TEST_JUDGE_KEY", "sk-test")
    settings = GroundingSettings(knowledge_base=KNOWLEDGE, mode="llm_judge", judge=JUDGE)
    guardrail = GroundingGuardrail(settings, instance_id="grounding")
    guardrail.load()
    seen: list[dict] = []
    guardrail.judge = ClaimJudge(settings.judge, transport=_fake_judge(seen))
    return guardrail, seen


def _request(answer: str) -> CheckRequest:
    return CheckRequest(stage=Stage.OUTPUT, texts=[answer], system_id="s", conversation_id="c", question="How much is Pro?")


@pytest.mark.anyio
async def test_the_judge_decides_each_claim_with_the_retrieved_evidence(judged) -> None:
    guardrail, seen = judged
    assert not guardrail.inline  # it waits on the network: run as a task with a budget
    allowed = await guardrail.check(_request("The Pro plan costs 20 EUR per user per month."))
    assert allowed.action is Action.ALLOW
    flagged = await guardrail.check(_request("The Pro plan costs 20 EUR per user per month. Annual plans are refunded within 45 days."))
    assert flagged.action is Action.FLAG
    (finding,) = flagged.findings
    assert finding.start > 0  # the second claim
    assert "20 EUR" in seen[-1]["messages"][-1]["content"]  # the evidence travelled with the claims
    assert seen[-1]["model"] == "judge-1"


@pytest.mark.anyio
async def test_a_personal_claim_is_not_sent_to_the_judge(judged) -> None:
    guardrail, seen = judged
    verdict = await guardrail.check(_request("I love the Pro plan! The Pro plan costs 20 EUR per user per month."))
    (finding,) = verdict.findings
    assert finding.start == 0 and "personal experience" in finding.explanation
    claims = seen[-1]["messages"][-1]["content"].split("Claims:\n")[1]
    assert "love" not in claims and "20 EUR" in claims
    only_personal = await guardrail.check(_request("I love the Pro plan!"))
    assert only_personal.action is Action.FLAG and len(seen) == 1  # nothing to ask: no round trip


def test_a_judge_answer_that_is_not_one_verdict_per_claim_is_an_error() -> None:
    transport = httpx.MockTransport(lambda r: httpx.Response(200, json={"choices": [{"message": {"content": "Looks fine to me."}}]}))
    judge = ClaimJudge(JudgeSettings(base_url="http://judge.test/v1", model="m"), transport=transport)
    with pytest.raises(JudgeError, match="one true/false"):
        judge.judge("q", ["a claim", "another claim"], ["evidence"])


def test_llm_judge_mode_needs_a_judge_and_its_key() -> None:
    with pytest.raises(ValueError, match="needs a judge"):
        GroundingSettings(mode="llm_judge")
    with pytest.raises(ValueError, match="AIMSGUARD_TEST_JUDGE_KEY"):
        ClaimJudge(JudgeSettings(**JUDGE))


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.anyio
@pytest.mark.parametrize(("fail_mode", "action"), [("open", Action.ALLOW), ("closed", Action.BLOCK)])
async def test_a_judge_that_is_down_follows_the_checks_fail_mode(tmp_path, monkeypatch, fail_mode: str, action: Action) -> None:
    monkeypatch.setenv("AIMSGUARD_TEST_JUDGE_KEY", "sk-test")
    data = policy_dict(tmp_path)
    judge = {**JUDGE, "base_url": f"http://127.0.0.1:{_closed_port()}/v1"}
    data["systems"]["support-bot"]["checks"] = {"output": [
        {"guardrail": "grounding", "fail_mode": fail_mode, "timeout_ms": 3000, "settings": {"mode": "llm_judge", "judge": judge}}]}
    policy = parse_policy(data, registry=test_registry())
    pipeline = Pipeline("support-bot", policy.systems["support-bot"], test_registry())
    result = await pipeline.run(_request("The Pro plan costs 20 EUR per user per month."))
    (verdict,) = result.verdicts
    assert verdict.outcome is Outcome.ERROR
    assert verdict.action is action
    assert "JudgeError" in verdict.reasons[0]
