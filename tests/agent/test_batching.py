"""Inline checks of requests ready in the same turn of the event loop run together, check by
check; each request still gets its own verdicts, in its checks' order."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from aimsguard.agent import Pipeline, parse_policy
from aimsguard.agent._batching import CheckBatcher
from aimsguard.agent._checkpool import CheckPool
from aimsguard.guardrails import Action, CheckRequest, GuardrailRegistry, GuardrailSettings, InlineGuardrail, Stage, Verdict

from ..support import policy_dict

RAN: list[tuple[str, str]] = []  # (check id, text) in the order the checks ran


class NoteSettings(GuardrailSettings):
    block_on: str = "never"


class NoteGuardrail(InlineGuardrail):
    """Notes each run; blocks a text equal to ``block_on``; raises on "explode"."""

    name = "note"
    Settings = NoteSettings

    def check_inline(self, request: CheckRequest) -> Verdict:
        text = request.texts[0]
        RAN.append((self.instance_id, text))
        if text == "explode":
            raise RuntimeError("boom")
        blocked = text == self.settings.block_on  # type: ignore[attr-defined]
        return Verdict(guardrail=self.instance_id, stage=request.stage, action=Action.BLOCK if blocked else Action.ALLOW)


REGISTRY = GuardrailRegistry(NoteGuardrail)


def _pipeline(tmp_path: Path) -> Pipeline:
    data = policy_dict(tmp_path)
    data["systems"] = {"support-bot": data["systems"]["support-bot"]}
    data["systems"]["support-bot"]["checks"] = {"input": [
        {"guardrail": "note", "id": "first", "settings": {"block_on": "bad"}},
        {"guardrail": "note", "id": "second"},
    ]}
    data["gateway"].pop("default_system", None)
    policy = parse_policy(data, registry=REGISTRY)
    return Pipeline("support-bot", policy.systems["support-bot"], REGISTRY, CheckPool({}))


def _request(text: str) -> CheckRequest:
    return CheckRequest(stage=Stage.INPUT, texts=[text], system_id="support-bot", conversation_id="c1")


@pytest.fixture(autouse=True)
def _clear() -> None:
    RAN.clear()


@pytest.mark.anyio
async def test_requests_ready_together_are_checked_check_by_check(tmp_path) -> None:
    pipeline = _pipeline(tmp_path)
    results = await asyncio.gather(*(pipeline.run(_request(text)) for text in ("a", "bad", "c")))
    # Each check ran over the whole batch before the next check started (its code stays cached) ...
    assert RAN == [("first", "a"), ("first", "bad"), ("first", "c"), ("second", "a"), ("second", "bad"), ("second", "c")]
    # ... and each request has its own verdicts, in its checks' order.
    assert [r.action for r in results] == [Action.ALLOW, Action.BLOCK, Action.ALLOW]
    assert all([v.guardrail for v in r.verdicts] == ["first", "second"] for r in results)


@pytest.mark.anyio
async def test_a_request_alone_and_a_failing_check_are_answered(tmp_path) -> None:
    pipeline = _pipeline(tmp_path)
    alone = await pipeline.run(_request("bad"))
    assert alone.action is Action.BLOCK
    # A check that raises is an error verdict of its own request (its fail mode decides); the batch goes on.
    failing, fine = await asyncio.gather(pipeline.run(_request("explode")), pipeline.run(_request("ok")))
    assert {v.outcome.value for v in failing.verdicts} == {"error"}
    assert [v.outcome.value for v in fine.verdicts] == ["ok", "ok"]


@pytest.mark.anyio
async def test_a_full_batch_is_run_at_once_and_every_request_answered(tmp_path) -> None:
    pipeline = _pipeline(tmp_path)
    count = CheckBatcher.MAX_BATCH * 2 + 3
    results = await asyncio.gather(*(pipeline.run(_request(f"t{n}")) for n in range(count)))
    assert len(results) == count and all(r.action is Action.ALLOW for r in results)
    assert sorted(text for check, text in RAN if check == "first") == sorted(f"t{n}" for n in range(count))


@pytest.mark.anyio
async def test_a_request_cancelled_while_waiting_leaves_the_batch_intact(tmp_path) -> None:
    pipeline = _pipeline(tmp_path)
    leaving = asyncio.ensure_future(pipeline.run(_request("gone")))
    staying = asyncio.ensure_future(pipeline.run(_request("bad")))
    await asyncio.sleep(0)  # both are waiting for the end of the turn
    leaving.cancel()
    assert (await staying).action is Action.BLOCK
    with pytest.raises(asyncio.CancelledError):
        await leaving


def test_a_request_alone_on_an_idle_loop_is_checked_without_waiting_a_turn(tmp_path) -> None:
    """No other request can join its batch in this turn: it is checked at once (no future, no
    turn of the loop). With other work ready in the turn, it waits for the batch."""
    pipeline = _pipeline(tmp_path)

    async def first_step(other_work: bool) -> object:
        if other_work:
            asyncio.get_running_loop().call_soon(lambda: None)
        step = pipeline.run(_request("bad"))
        try:
            step.send(None)
        except StopIteration as done:
            return done.value  # finished without suspending
        step.close()
        return None

    loop = asyncio.new_event_loop()
    try:
        at_once = loop.run_until_complete(first_step(other_work=False))
        batched = loop.run_until_complete(first_step(other_work=True))
    finally:
        loop.close()
    assert at_once is not None and at_once.action is Action.BLOCK and [v.guardrail for v in at_once.verdicts] == ["first", "second"]
    assert batched is None  # it waited for the end of the turn
