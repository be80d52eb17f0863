"""Batches of short checks go to the check pool's batch worker in one message: the verdicts are
those the checks would give in place, decisions (the vault) stay in this process, and a worker
that is slow, dies or raises costs a batch its hop, never its verdicts."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import socket
import subprocess
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path

import pytest

from aimsguard.agent import Pipeline, parse_policy
from aimsguard.agent._checkpool import CheckPool
from aimsguard.agent._lane import BatchLane
from aimsguard.guardrails import Action, CheckRequest, GuardrailRegistry, GuardrailSettings, InlineGuardrail, Outcome, Stage, Verdict
from aimsguard.guardrails.pii import PiiGuardrail

from ..support import policy_dict

SERVING_PID = os.getpid()


class WhereSettings(GuardrailSettings):
    worker_delay_s: float = 0.0  # how long it takes in a worker process (none here)


class WhereGuardrail(InlineGuardrail):
    """Says which process ran it; blocks "bad"; raises on "explode"; slow in workers when told."""

    name = "where"
    Settings = WhereSettings

    def check_inline(self, request: CheckRequest) -> Verdict:
        text = request.texts[0]
        if text == "explode":
            raise RuntimeError(f"cannot handle {text}")
        if os.getpid() != SERVING_PID:
            time.sleep(self.settings.worker_delay_s)  # type: ignore[attr-defined]
        action = Action.BLOCK if text == "bad" else Action.ALLOW
        return Verdict(guardrail=self.name, stage=request.stage, action=action, reasons=(f"pid {os.getpid()}",))


REGISTRY = GuardrailRegistry(WhereGuardrail, PiiGuardrail)


def _pipeline(tmp_path: Path, input_checks: list[dict], output_checks: list[dict] | None = None) -> Pipeline:
    data = policy_dict(tmp_path)
    data["systems"] = {"support-bot": {**data["systems"]["support-bot"], "checks": {"input": input_checks, "output": output_checks or []}}}
    data["gateway"].pop("default_system", None)
    pool = CheckPool({}, size=1)
    pipeline = Pipeline("support-bot", parse_policy(data, registry=REGISTRY).systems["support-bot"], REGISTRY, pool)
    pool.start()  # as the gateway does before it serves: the lane's worker first
    return pipeline


@pytest.fixture
def make_pipeline(tmp_path):
    made: list[Pipeline] = []

    def make(input_checks: list[dict], output_checks: list[dict] | None = None) -> Pipeline:
        made.append(_pipeline(tmp_path, input_checks, output_checks))
        return made[-1]

    yield make
    for pipeline in made:
        pipeline.pool.close()


def _request(text: str, stage: Stage = Stage.INPUT) -> CheckRequest:
    return CheckRequest(stage=stage, texts=[text], system_id="support-bot", conversation_id="c1")


@contextlib.asynccontextmanager
async def _other_work():
    """A loop with other work always ready, as a serving loop under load has (batches go to
    the lane only then: on an idle loop they run in place)."""

    async def spin() -> None:
        while True:
            await asyncio.sleep(0)

    spinner = asyncio.ensure_future(spin())
    try:
        yield
    finally:
        spinner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await spinner


async def _together(pipeline: Pipeline, *texts: str, stage: Stage = Stage.INPUT) -> list:
    """Requests that reach the stage in the same turn of a busy loop: one batch."""
    async with _other_work():
        return list(await asyncio.gather(*(pipeline.run(_request(text, stage)) for text in texts)))


def _ran_at(result) -> set[str]:
    return {v.reasons[0] for v in result.verdicts}


@pytest.mark.anyio
async def test_a_batch_is_checked_in_the_lane_worker_with_the_verdicts_it_would_get_here(make_pipeline) -> None:
    pipeline = make_pipeline([{"guardrail": "where", "id": "first"}, {"guardrail": "where", "id": "second"}])
    results = await _together(pipeline, "a", "bad", "c")
    assert [r.action for r in results] == [Action.ALLOW, Action.BLOCK, Action.ALLOW]
    assert all([v.guardrail for v in r.verdicts] == ["first", "second"] for r in results)  # stamped here, in order
    assert all(v.outcome is Outcome.OK and v.duration_s > 0 for r in results for v in r.verdicts)
    assert {pid for r in results for pid in _ran_at(r)} != {f"pid {SERVING_PID}"}  # another process ran them
    assert pipeline.pool.counts.batches_offloaded == 1
    # A request alone goes too: the worker runs checks faster than a busy serving process.
    (alone,) = await _together(pipeline, "d")
    assert _ran_at(alone) != {f"pid {SERVING_PID}"}
    assert pipeline.pool.counts.batches_offloaded == 2


@pytest.mark.anyio
async def test_a_batch_runs_here_when_the_loop_has_nothing_else_to_do(make_pipeline) -> None:
    pipeline = make_pipeline([{"guardrail": "where"}])
    results = list(await asyncio.gather(*(pipeline.run(_request(text)) for text in ("a", "bad"))))  # no other work
    assert [r.action for r in results] == [Action.ALLOW, Action.BLOCK]
    assert all(_ran_at(r) == {f"pid {SERVING_PID}"} for r in results)  # the hop would only have added latency
    assert pipeline.pool.counts.batches_in_place == 1 and pipeline.pool.counts.batches_offloaded == 0


@pytest.mark.anyio
async def test_personal_data_found_in_the_lane_is_numbered_in_this_process_vault(make_pipeline) -> None:
    pii = {"guardrail": "pii", "settings": {"default_action": "redact"}}
    pipeline = make_pipeline([{**pii, "id": "pii-in"}], [{**pii, "id": "pii-out"}])
    inbound = await _together(pipeline, "Write to jane.doe@example.com please", "My mail is max@example.org")
    assert pipeline.pool.counts.batches_offloaded == 1
    assert [r.texts[0] for r in inbound] == ["Write to <EMAIL_ADDRESS_1> please", "My mail is <EMAIL_ADDRESS_2>"]
    outbound = await _together(pipeline, "I wrote to <EMAIL_ADDRESS_1>.", "And to <EMAIL_ADDRESS_2>.", stage=Stage.OUTPUT)
    assert pipeline.pool.counts.batches_offloaded == 2
    assert [r.texts[0] for r in outbound] == ["I wrote to jane.doe@example.com.", "And to max@example.org."]


@pytest.mark.anyio
async def test_a_check_that_raises_in_the_lane_is_an_error_verdict_without_the_text(make_pipeline) -> None:
    pipeline = make_pipeline([{"guardrail": "where", "fail_mode": "closed"}])
    exploded, calm = await _together(pipeline, "explode", "calm")
    assert pipeline.pool.counts.batches_offloaded == 1
    (verdict,) = exploded.verdicts
    assert verdict.outcome is Outcome.ERROR and exploded.action is Action.BLOCK
    assert "RuntimeError" in verdict.reasons[0] and "explode" not in verdict.reasons[0]
    assert calm.action is Action.ALLOW


@pytest.mark.anyio
async def test_a_batch_the_worker_is_late_with_is_run_here_and_the_worker_kept(make_pipeline) -> None:
    pipeline = make_pipeline([{"guardrail": "where", "timeout_ms": 200, "settings": {"worker_delay_s": 1.0}}])
    lane = pipeline.pool.lane
    started = time.perf_counter()
    results = await _together(pipeline, "a", "bad")
    assert time.perf_counter() - started < 0.9  # taken back at the budget, not waited for
    assert [r.action for r in results] == [Action.ALLOW, Action.BLOCK]
    assert all(_ran_at(r) == {f"pid {SERVING_PID}"} for r in results)
    assert pipeline.pool.counts.batches_reclaimed == 1
    # The late answer is read and dropped; the same worker takes the next batch.
    await asyncio.sleep(1.5)
    assert pipeline.pool.lane is lane and lane.idle
    assert pipeline.pool.counts.forked == 2  # the lane's worker and one pool worker: nothing replaced


@pytest.mark.anyio
async def test_a_dead_lane_worker_costs_its_batch_the_hop_and_is_replaced(make_pipeline) -> None:
    pipeline = make_pipeline([{"guardrail": "where"}])
    lane = pipeline.pool.lane
    assert lane is not None
    os.kill(lane.pid, 9)
    results = await _together(pipeline, "a", "bad")
    assert [r.action for r in results] == [Action.ALLOW, Action.BLOCK]
    assert pipeline.pool.counts.batches_reclaimed == 1
    deadline = time.monotonic() + 30
    while (pipeline.pool.lane is None or pipeline.pool.lane is lane) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert pipeline.pool.lane is not lane and pipeline.pool.lane is not None
    await _together(pipeline, "a", "b")
    assert pipeline.pool.counts.batches_offloaded == 1


@pytest.mark.anyio
async def test_batches_past_the_lane_depth_run_here(make_pipeline) -> None:
    pipeline = make_pipeline([{"guardrail": "where", "timeout_ms": 5000, "settings": {"worker_delay_s": 0.2}}])
    lane = pipeline.pool.lane
    assert lane is not None
    # Each gather is one batch (sent before the next is made); DEPTH of them keep the worker
    # busy, the next one runs here.
    batches = []
    for n in range(lane.DEPTH):
        batches.append(asyncio.ensure_future(_together(pipeline, f"x{n}", f"y{n}")))
        for _ in range(4):
            await asyncio.sleep(0)
    assert not lane.idle
    extra = await _together(pipeline, "here", "too")
    assert all(_ran_at(r) == {f"pid {SERVING_PID}"} for r in extra)
    done = await asyncio.gather(*batches)
    assert all(_ran_at(r) != {f"pid {SERVING_PID}"} for results in done for r in results)
    assert pipeline.pool.counts.batches_offloaded == lane.DEPTH and pipeline.pool.counts.batches_in_place == 1


class _FakeWorker:
    """The far end of a lane, in a thread: answers each batch with the length of each text
    (after ``delay_s``); a dummy process stands in for the worker's pid (the lane kills it)."""

    def __init__(self, delay_s: float = 0.0) -> None:
        ours, theirs = socket.socketpair()
        self.process = subprocess.Popen(["sleep", "60"])
        self.lane = BatchLane(ours, self.process.pid, replace=lambda: None)
        self._conn = Connection(theirs.detach())
        self._delay_s = delay_s
        self.received: list[int] = []  # the size of each text received
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        with contextlib.suppress(EOFError, OSError):
            while True:
                batch = self._conn.recv()
                time.sleep(self._delay_s)
                self.received += [len(request.texts[0]) for request, _ in batch]
                self._conn.send([[(True, len(request.texts[0])) for _ in keys] for request, keys in batch])

    def close(self) -> None:
        self.lane.close()
        self.process.wait(5)


@pytest.fixture
def fake_worker():
    made: list[_FakeWorker] = []

    def make(delay_s: float = 0.0) -> _FakeWorker:
        made.append(_FakeWorker(delay_s))
        return made[-1]

    yield make
    for worker in made:
        worker.close()


def _answer_of(lane: BatchLane, *texts: str, budget_s: float = 5.0) -> asyncio.Future:
    answer: asyncio.Future = asyncio.get_running_loop().create_future()
    assert lane.submit([(_request(text), ["k"]) for text in texts], budget_s, answer.set_result)
    return answer


@pytest.mark.anyio
async def test_a_batch_larger_than_the_socket_buffer_reaches_the_worker_whole(fake_worker) -> None:
    worker = fake_worker()
    big = "é" * 3_000_000  # far past a socketpair's buffer: the rest waits for the socket to drain
    answers = [_answer_of(worker.lane, big), _answer_of(worker.lane, "after it")]
    assert await asyncio.wait_for(asyncio.gather(*answers), 30) == [[[(True, 3_000_000)]], [[(True, 8)]]]
    assert worker.received == [3_000_000, 8]  # in the order sent, neither garbled


def test_a_lane_moves_to_the_next_event_loop_once_nothing_waits_on_the_last(fake_worker) -> None:
    worker = fake_worker()

    async def one(text: str) -> object:
        return await asyncio.wait_for(_answer_of(worker.lane, text), 10)

    assert asyncio.run(one("first")) == [[(True, 5)]]
    assert asyncio.run(one("second")) == [[(True, 6)]]  # a new loop: the socket is read from there


@pytest.mark.anyio
async def test_closing_a_lane_from_another_thread_answers_its_batches_none_in_the_loop(fake_worker) -> None:
    worker = fake_worker(delay_s=2.0)
    answered: list[tuple[object, int]] = []  # (answer, the thread that was told)
    assert worker.lane.submit([(_request("slow"), ["k"])], 5.0, lambda answer: answered.append((answer, threading.get_ident())))
    await asyncio.to_thread(worker.lane.close)
    deadline = time.monotonic() + 5
    while not answered and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert answered == [(None, threading.get_ident())]  # told once, in the loop's thread
    assert worker.process.wait(5) == -9  # the worker is killed


@pytest.mark.anyio
async def test_a_batch_that_does_not_pickle_leaves_the_lane_as_it_was(fake_worker) -> None:
    worker = fake_worker()
    unpicklable = CheckRequest(stage=Stage.INPUT, texts=["x"], system_id="s", conversation_id="c", metadata={"f": lambda: None})
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        worker.lane.submit([(unpicklable, ["k"])], 5.0, lambda answer: None)
    assert await asyncio.wait_for(_answer_of(worker.lane, "next"), 10) == [[(True, 4)]]  # its own answer, not another's


@pytest.mark.anyio
async def test_a_batch_after_one_given_up_gets_its_own_answer(fake_worker) -> None:
    worker = fake_worker(delay_s=0.3)
    late = _answer_of(worker.lane, "late", budget_s=0.05)
    assert await asyncio.wait_for(late, 5) is None  # given up at its budget
    assert await asyncio.wait_for(_answer_of(worker.lane, "second"), 10) == [[(True, 6)]]  # the late answer was dropped


def test_a_loop_closed_with_a_batch_waiting_costs_the_lane_its_worker(fake_worker) -> None:
    worker = fake_worker(delay_s=1.0)
    replaced: list[bool] = []
    worker.lane._replace = lambda: replaced.append(True)

    async def leave_one_waiting() -> None:
        _answer_of(worker.lane, "left", budget_s=0.01)
        await asyncio.sleep(0.05)  # given up; its answer still owed

    asyncio.run(leave_one_waiting())

    async def next_batch() -> bool:
        return worker.lane.submit([(_request("next"), ["k"])], 5.0, lambda answer: None)

    assert asyncio.run(next_batch()) is False and replaced == [True]  # run in place; a new lane is asked for


@pytest.mark.anyio
async def test_input_over_a_checks_max_chars_is_over_limit_through_the_lane_too(make_pipeline) -> None:
    pipeline = make_pipeline([{"guardrail": "where", "max_chars": 5}])
    long, short = await _together(pipeline, "far too long for this check", "ok")
    assert pipeline.pool.counts.batches_offloaded == 1
    assert long.verdicts[0].outcome is Outcome.OVER_LIMIT and long.action is Action.BLOCK  # over_limit: closed by default
    assert short.verdicts[0].outcome is Outcome.OK


@pytest.mark.anyio
async def test_a_request_whose_metadata_does_not_pickle_is_checked_in_place(make_pipeline) -> None:
    pipeline = make_pipeline([{"guardrail": "where"}])
    request = CheckRequest(stage=Stage.INPUT, texts=["bad"], system_id="support-bot", conversation_id="c1", metadata={"hook": lambda: None})
    async with _other_work():  # else it would run here for that reason alone
        result = await pipeline.run(request)
    assert result.action is Action.BLOCK and _ran_at(result) == {f"pid {SERVING_PID}"}
    assert pipeline.pool.counts.batches_in_place == 1 and pipeline.pool.lane.idle  # the lane is untouched
