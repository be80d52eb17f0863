import copy
import pickle

import pytest

from aimsguard.guardrails import Action, CheckRequest, Finding, Outcome, Stage, Verdict, apply_redactions, most_severe


@pytest.mark.parametrize(
    ("actions", "expected"),
    [
        ([], Action.ALLOW),
        ([Action.ALLOW, Action.FLAG], Action.FLAG),
        ([Action.REDACT, Action.FLAG, Action.ALLOW], Action.REDACT),
        ([Action.REDACT, Action.BLOCK], Action.BLOCK),
        ([Action.BLOCK, Action.ESCALATE, Action.REDACT], Action.ESCALATE),
    ],
)
def test_most_severe_action_wins(actions: list[Action], expected: Action) -> None:
    assert most_severe(actions) is expected


def _redact(start: int, end: int, replacement: str = "[X]", segment: int = 0) -> Finding:
    return Finding("t", segment, start, end, replacement=replacement)


@pytest.mark.parametrize(
    ("text", "findings", "expected"),
    [
        ("call 555-1234 now", [_redact(5, 13)], "call [X] now"),
        ("a b c", [_redact(0, 1, "1"), _redact(4, 5, "3")], "1 b 3"),
        # overlapping spans merge; the first-starting span's replacement covers the union
        ("john@example.com", [_redact(0, 16, "<EMAIL>"), _redact(0, 4, "<NAME>")], "<EMAIL>"),
        ("abcdef", [_redact(1, 4, "<A>"), _redact(3, 6, "<B>")], "a<A>"),
        # findings without a replacement, or of another segment, change nothing
        ("keep me", [Finding("flag", 0, 0, 4), _redact(0, 4, segment=1)], "keep me"),
    ],
)
def test_apply_redactions(text: str, findings: list[Finding], expected: str) -> None:
    assert apply_redactions(text, findings) == expected


def test_requests_findings_and_verdicts_pickle_whole_for_the_check_workers() -> None:
    # Pickled by their fields in order (they cross to worker processes at every batch):
    # every field, none at its default, must come back where it was.
    request = CheckRequest(stage=Stage.OUTPUT, texts=["a", "b"], system_id="s", conversation_id="c", question="q",
                           metadata={"k": 1}, roles=["user", "tool"], complete=False)
    finding = Finding(kind="EMAIL_ADDRESS", segment=1, start=2, end=9, score=0.5, explanation="pattern", replacement="<E>",
                      restores=True, sensitive=False)
    verdict = Verdict(guardrail="g", stage=Stage.INPUT, action=Action.BLOCK, score=0.25, reasons=("why",), findings=(finding,),
                      outcome=Outcome.ERROR, fail_mode="closed", duration_s=0.125, started=2.5)
    for value in (request, finding, verdict):
        assert pickle.loads(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)) == value
        assert copy.deepcopy(value) == value
