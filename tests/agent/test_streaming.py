import asyncio
from pathlib import Path

import pytest

from aimsguard.agent import StreamingOutputGuard, parse_policy, Pipeline
from aimsguard.guardrails import Action, CheckRequest, RulesGuardrail, Stage, Verdict
from aimsguard.guardrails.grounding import GroundingGuardrail

from ..support import policy_dict, test_registry

OUTPUT_RULES = {
    "guardrail": "rules",
    "settings": {
        "rules": [
            {"id": "code", "patterns": [r"\bINT-\d{4}\b"], "action": "redact", "replacement": "[CODE]"},
            {"id": "digits", "patterns": [r"\d{6,}"], "action": "redact", "replacement": "[NUM]"},
            {"id": "promise", "terms": ["guaranteed refund"], "action": "block"},
        ]
    },
}


def _guard(tmp_path, holdback: int) -> StreamingOutputGuard:
    data = policy_dict(tmp_path)
    data["systems"]["support-bot"]["checks"] = {"output": [OUTPUT_RULES]}
    policy = parse_policy(data, registry=test_registry())
    pipeline = Pipeline("support-bot", policy.systems["support-bot"], test_registry())
    template = CheckRequest(stage=Stage.OUTPUT, texts=[], system_id="support-bot", conversation_id="c")
    return StreamingOutputGuard(pipeline, template, holdback)


async def _run(guard: StreamingOutputGuard, chunks: list[str]) -> list[str]:
    released = [await guard.feed(chunk) for chunk in chunks]
    released.append(await guard.finish())
    return released


def _split(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


@pytest.mark.anyio
@pytest.mark.parametrize("size", [1, 2, 3, 5, 8, 13])
@pytest.mark.parametrize("holdback", [8, 16, 32])
async def test_a_match_split_across_chunks_is_redacted_at_any_chunking(tmp_path, size: int, holdback: int) -> None:
    text = "Your ticket INT-4821 was closed; reference 12345678 applies."
    guard = _guard(tmp_path, holdback)
    released = await _run(guard, _split(text, size))
    joined = "".join(released)
    assert joined == "Your ticket [CODE] was closed; reference [NUM] applies."
    # Nothing of the code or the number was ever released, even in part.
    for piece in released:
        assert "4821" not in piece and "1234" not in piece


@pytest.mark.anyio
async def test_a_growing_match_at_the_end_of_the_window_is_held_back(tmp_path) -> None:
    guard = _guard(tmp_path, holdback=4)
    first = await guard.feed("number 123456")  # a match that may still grow
    assert "123456" not in first and "12" not in first
    rest = await _run(guard, ["7890 end"])
    assert first + "".join(rest) == "number [NUM] end"


@pytest.mark.anyio
async def test_text_is_released_only_beyond_the_window_and_flushed_at_the_end(tmp_path) -> None:
    guard = _guard(tmp_path, holdback=10)
    assert await guard.feed("Hello") == ""
    # 19 characters, 10 held back, and never part of a word: "the" of "there" waits.
    assert await guard.feed(" there, friend") == "Hello "
    assert await guard.finish() == "there, friend"
    assert await guard.finish() == ""  # idempotent


@pytest.mark.anyio
async def test_a_blocked_phrase_split_across_chunks_stops_the_stream_before_it_is_released(tmp_path) -> None:
    guard = _guard(tmp_path, holdback=32)
    released = await _run(guard, _split("Sure! You get a guaranteed refund, always.", 4))
    assert guard.stopped
    assert "guaranteed" not in "".join(released)


@pytest.mark.anyio
async def test_a_block_on_a_match_at_the_very_end_waits_for_the_next_chunk(tmp_path) -> None:
    # "guaranteed refund" at the end of a chunk may become "guaranteed refunds": not the term.
    guard = _guard(tmp_path, holdback=8)
    released = await _run(guard, ["Sorry, but we never ever give guaranteed refund", "s on annual plans."])
    assert not guard.stopped
    assert "".join(released) == "Sorry, but we never ever give guaranteed refunds on annual plans."
    blocked = _guard(tmp_path, holdback=8)
    await _run(blocked, ["Sorry, but you get a guaranteed refund", " on annual plans."])
    assert blocked.stopped


@pytest.mark.anyio
async def test_a_long_word_is_held_whole_until_it_ends(tmp_path) -> None:
    guard = _guard(tmp_path, holdback=8)
    released = [await guard.feed(piece) for piece in ["Write to ", "someone.with.a.very", ".long.name", "@example.com today"]]
    # The address went out in one piece, after its last character had arrived.
    assert [piece for piece in released if "someone" in piece] in ([], ["someone.with.a.very.long.name@example.com "])
    assert "".join(released) + await guard.finish() == "Write to someone.with.a.very.long.name@example.com today"


class _CountingRules(RulesGuardrail):
    """The rules check, counting the characters it is given."""

    name = "counting_rules"
    read = 0

    def check_inline(self, request: CheckRequest) -> Verdict:
        type(self).read += sum(len(text) for text in request.texts)
        return super().check_inline(request)


def _counting_guard(tmp_path, holdback: int, check_every: int) -> StreamingOutputGuard:
    registry = test_registry()
    registry.register(_CountingRules)
    data = policy_dict(tmp_path)
    data["systems"]["support-bot"]["checks"] = {"output": [{**OUTPUT_RULES, "guardrail": "counting_rules"}]}
    policy = parse_policy(data, registry=registry)
    pipeline = Pipeline("support-bot", policy.systems["support-bot"], registry)
    template = CheckRequest(stage=Stage.OUTPUT, texts=[], system_id="support-bot", conversation_id="c")
    return StreamingOutputGuard(pipeline, template, holdback, check_every=check_every)


@pytest.mark.anyio
@pytest.mark.parametrize("tokens", [400, 1600])
async def test_a_pattern_check_reads_each_piece_of_a_long_stream_a_bounded_number_of_times(tmp_path, tokens: int) -> None:
    # Once every release re-read the whole answer: the cost grew with the square of its length.
    _CountingRules.read = 0
    guard = _counting_guard(tmp_path, holdback=48, check_every=48)
    text = "".join(f"word{i} " for i in range(tokens)) + "ticket INT-4821 closed, guaranteed refund not offered."
    released = await _run(guard, _split(text, 5))
    assert guard.stopped  # the block at the very end is still caught
    assert "INT-4821" not in "".join(released) and "guaranteed" not in "".join(released)
    assert _CountingRules.read <= 4 * len(text)  # one window of context per check: linear


@pytest.mark.anyio
async def test_what_a_check_found_early_in_a_long_stream_is_redacted_and_recorded(tmp_path) -> None:
    guard = _counting_guard(tmp_path, holdback=16, check_every=16)
    text = "Your code is INT-4821. " + "".join(f"then more text {i}. " for i in range(200))
    released = await _run(guard, _split(text, 7))
    assert "".join(released) == text.replace("INT-4821", "[CODE]")
    (verdict,) = guard.recorded().verdicts
    assert verdict.action.value == "redact"
    assert [(f.start, f.end) for f in verdict.findings] == [(13, 21)]  # in the answer's coordinates, once


@pytest.mark.anyio
async def test_with_no_output_checks_nothing_is_held_back(tmp_path) -> None:
    data = policy_dict(tmp_path)
    data["systems"]["support-bot"]["checks"] = {"output": []}
    policy = parse_policy(data, registry=test_registry())
    pipeline = Pipeline("support-bot", policy.systems["support-bot"], test_registry())
    template = CheckRequest(stage=Stage.OUTPUT, texts=[], system_id="support-bot", conversation_id="c")
    guard = StreamingOutputGuard(pipeline, template, holdback=48, check_every=48)
    assert await guard.feed("Hel") == "Hel"  # the first token goes out as it came
    assert await guard.feed("lo") == "lo"
    assert await guard.finish() == ""
    assert guard.released_text == "Hello"


class _CountingGrounding(GroundingGuardrail):
    """The grounding check, counting the characters it is given and the queries it sends to the index."""

    name = "counting_grounding"
    read = 0
    queries = 0
    calls = 0

    def check_inline(self, request: CheckRequest) -> Verdict:
        type(self).read += sum(len(text) for text in request.texts)
        type(self).calls += 1
        return super().check_inline(request)

    def load(self) -> None:
        super().load()
        assert self.kb is not None
        search_many = self.kb.search_many

        def counted(queries: list[str], k: int = 3):  # type: ignore[no-untyped-def]
            type(self).queries += len(queries)
            return search_many(queries, k)

        self.kb.search_many = counted  # type: ignore[method-assign]


def _counting_grounding_guard(tmp_path: Path, action: str) -> StreamingOutputGuard:
    """A stream window (hold-back 48, a check every 96 characters) whose one check is grounding
    with ``action``, counting what it reads; the counts start at zero."""
    registry = test_registry()
    registry.register(_CountingGrounding)
    data = policy_dict(tmp_path)
    data["systems"]["support-bot"]["checks"] = {"output": [{"guardrail": "counting_grounding", "settings": {"action": action}}]}
    policy = parse_policy(data, registry=registry)
    pipeline = Pipeline("support-bot", policy.systems["support-bot"], registry)
    template = CheckRequest(stage=Stage.OUTPUT, texts=[], system_id="support-bot", conversation_id="c", question="What do the plans cost?")
    _CountingGrounding.read = _CountingGrounding.queries = _CountingGrounding.calls = 0
    return StreamingOutputGuard(pipeline, template, 48, check_every=96)


@pytest.mark.anyio
async def test_grounding_reads_a_long_stream_once_and_retrieves_each_claim_a_bounded_number_of_times(tmp_path) -> None:
    guard = _counting_grounding_guard(tmp_path, "flag")
    supported = ["The Pro plan costs 20 EUR per user per month.", "The Starter plan includes one project.",
                 "Annual subscriptions can be refunded in full within 30 days of purchase."]
    sentences = [supported[i % 3] for i in range(60)] + ["The Enterprise plan costs 15 EUR per user per month."]
    text = " ".join(sentences)
    released = await _run(guard, _split(text, 9))
    assert "".join(released) == text  # flagged, not stopped
    recorded = guard.recorded()
    assert recorded is not None and recorded.action is Action.FLAG
    (finding,) = [f for v in recorded.verdicts for f in v.findings]
    assert text[finding.start:finding.end].startswith("The Enterprise plan costs 15 EUR")  # only the wrong price
    # Each release reads the text new to it and the sentence still open: linear, not the square of the length.
    assert _CountingGrounding.read <= 2 * len(text)
    # A check that can only flag looks once per four steps of 96 characters, and at the end.
    assert 5 <= _CountingGrounding.calls <= len(text) // (4 * 96) + 2
    # A whole sentence is retrieved once (then remembered), the one still open once per check.
    assert _CountingGrounding.queries <= len(set(sentences)) + _CountingGrounding.calls


@pytest.mark.anyio
async def test_grounding_that_can_stop_a_stream_looks_at_every_step(tmp_path) -> None:
    guard = _counting_grounding_guard(tmp_path, "block")
    text = " ".join(["The Pro plan costs 20 EUR per user per month."] * 60 + ["The Enterprise plan costs 15 EUR per user per month."])
    released = await _run(guard, _split(text, 9))
    assert guard.stopped and not "".join(released).endswith("15 EUR per user per month.")  # stopped before it went out
    assert _CountingGrounding.calls >= len(text) // 96 - 2  # its verdict is needed before each release


@pytest.mark.anyio
async def test_a_long_stream_lets_other_clients_run_between_its_looks(tmp_path) -> None:
    """A stream fed without pause (its chunks all buffered already) must give the event loop
    back after each look at a window, or every other client waits for its whole answer."""
    guard = _guard(tmp_path, holdback=16)
    turns = 0
    done = False

    async def other_client() -> None:
        nonlocal turns
        while not done:
            turns += 1
            await asyncio.sleep(0)

    ticker = asyncio.create_task(other_client())
    await asyncio.sleep(0)
    before = turns
    looks = 0
    for chunk in _split("word " * 2000, 5):  # 10,000 characters, never waiting on I/O
        checked = guard.checked
        await guard.feed(chunk)
        looks += guard.checked != checked
    await guard.finish()
    done = True
    await ticker
    assert looks > 20
    assert turns - before >= looks  # the other client ran at least once per look


@pytest.mark.anyio
async def test_a_stream_whose_checks_can_only_flag_is_released_as_it_comes(tmp_path) -> None:
    guard = _counting_grounding_guard(tmp_path, "flag")
    text = " ".join(["The Pro plan costs 20 EUR per user per month."] * 40 + ["The Enterprise plan costs 15 EUR per user per month."])
    chunks = _split(text, 9)
    released = await _run(guard, chunks)
    assert released[:-1] == chunks  # nothing held back: each chunk goes out as it comes
    recorded = guard.recorded()
    assert recorded is not None and recorded.action is Action.FLAG  # the last sentence, judged at the end
    (finding,) = [f for v in recorded.verdicts for f in v.findings]
    assert text[finding.start:finding.end].startswith("The Enterprise plan costs 15 EUR")
    assert 2 <= _CountingGrounding.calls <= len(text) // (4 * 96) + 2


@pytest.mark.anyio
async def test_a_flag_only_check_beside_one_that_redacts_still_holds_back(tmp_path) -> None:
    registry = test_registry()
    registry.register(_CountingGrounding)
    data = policy_dict(tmp_path)
    data["systems"]["support-bot"]["checks"] = {"output": [
        {"guardrail": "counting_grounding", "settings": {"action": "flag"}},
        {"guardrail": "rules", "id": "codes", "settings": {"rules": [{"id": "code", "patterns": [r"\bINT-\d{4}\b"], "action": "redact", "replacement": "[CODE]"}]}},
    ]}
    policy = parse_policy(data, registry=registry)
    pipeline = Pipeline("support-bot", policy.systems["support-bot"], registry)
    template = CheckRequest(stage=Stage.OUTPUT, texts=[], system_id="support-bot", conversation_id="c", question="q")
    guard = StreamingOutputGuard(pipeline, template, 16, check_every=96)
    released = await _run(guard, _split("The Pro plan costs 20 EUR. Your ticket INT-4821 was closed.", 3))
    assert released[0] == ""  # held until the checks have seen what follows
    assert "".join(released) == "The Pro plan costs 20 EUR. Your ticket [CODE] was closed."
