"""``aimsguard replay`` and ``aimsguard shadow``: what a candidate policy would have decided.

Replay runs a candidate policy's checks over recorded traffic, off line:

- from the event log, over the content the ``exchange`` events hold (``event_log.content:
  redacted``); the *before* is what the live checks decided then, as recorded. The logged
  text is masked (personal data as placeholders, rule matches as ``<rule:...>``), so the
  current and the candidate policy both check it and a decision changes only where they
  differ on it; a change that only concerns the masked spans cannot be seen this way.
  Exchanges without logged content are counted, not compared;
- from a JSON-lines file (``{"id", "text"}``, optional ``"stage"``, ``"question"`` and
  ``"should_act"``: true/false, or per check id), where the *before* is the current
  policy's checks run on the same lines.

``shadow`` reads the ``shadow.verdict`` events a shadow candidate left beside live traffic.
Both print one before/after table (``aimsguard.collectors._compare``): decisions that would
change, by check and action, and where reviewers labelled the live decision (or the file
says what should happen) the precision and recall before and after. ``--record`` keeps the
table in the records store as the evidence behind a policy change (ISO 42001 A.6.2.4/A.6.2.5);
the monthly report lists it under the version it tried out.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from aimsguard.collectors._compare import Comparison, Decision, compare
from aimsguard.guardrails import CheckRequest, Outcome, Stage

from ._pipeline import Pipeline, StageResult

__all__ = ["replay_events", "replay_lines"]


def _decided(result: StageResult) -> dict[str, str]:
    return {v.guardrail: v.action.value for v in result.verdicts if v.outcome is Outcome.OK}


async def replay_events(
    events: Iterable[Mapping[str, Any]], system_id: str, current: Pipeline, candidate: Pipeline, samples: Any = ()
) -> Comparison:
    """The candidate's decisions on each logged exchange of ``system_id``, against the live ones.

    The logged text is masked (what the live checks found is a placeholder now), so the
    candidate is never compared with the live decision directly: both the current and the
    candidate policy check the logged text, and a decision changes only where the two
    differ; elsewhere the live decision stands."""
    decisions: list[Decision] = []
    skipped: dict[str, int] = {}
    for event in events:
        if event.get("event") != "exchange" or event.get("system") != system_id or event.get("status") == "rejected":
            continue
        if "input" not in event:
            skipped["without logged content (event_log.content: none)"] = skipped.get("without logged content (event_log.content: none)", 0) + 1
            continue
        inputs = event.get("input")
        if not inputs:
            skipped["with their content withheld"] = skipped.get("with their content withheld", 0) + 1
            continue
        request_id = str(event.get("request_id"))
        before = {
            (str(v.get("stage")), str(v.get("guardrail"))): str(v.get("action"))
            for v in event.get("verdicts") or []
            if v.get("outcome") == "ok"
        }
        stages: list[tuple[Stage, list[str]]] = [(Stage.INPUT, list(inputs))]
        if event.get("output"):
            stages.append((Stage.OUTPUT, list(event["output"])))
        for stage, texts in stages:
            request = CheckRequest(
                stage=stage, texts=texts, system_id=system_id, conversation_id=f"replay-{request_id}",
                question=inputs[-1] if stage is Stage.OUTPUT else None,
            )
            now = _decided(await current.run(request))
            then = _decided(await candidate.run(request))
            live = {check: action for (s, check), action in before.items() if s == stage.value}
            for check in sorted(set(then) | set(live)):
                after = then.get(check) if check not in now or then.get(check) != now.get(check) else live.get(check, then.get(check))
                decisions.append(Decision(request_id, check, stage.value, live.get(check), after))
    result = compare(decisions, samples)
    for reason, count in skipped.items():
        result.skipped[reason] += count
    return result


async def replay_lines(lines: Iterable[str], system_id: str, current: Pipeline, candidate: Pipeline, default_stage: Stage = Stage.INPUT) -> Comparison:
    """Both policies' decisions on each JSON line; ``should_act`` gives precision and recall."""
    decisions: list[Decision] = []
    truth: dict[tuple[str, str], bool] = {}
    unreadable = 0
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            item = json.loads(raw)
            text = item["text"]
            stage = Stage(item.get("stage", default_stage.value))
            assert isinstance(text, str)
        except (ValueError, KeyError, TypeError, AssertionError):
            unreadable += 1
            continue
        key = str(item.get("id", number))
        question = item.get("question") if isinstance(item.get("question"), str) else None
        request = CheckRequest(stage=stage, texts=[text], system_id=system_id, conversation_id=f"replay-{key}", question=question)
        before = _decided(await current.run(request))
        after = _decided(await candidate.run(request))
        should = item.get("should_act")
        for check in sorted(set(before) | set(after)):
            decisions.append(Decision(key, check, stage.value, before.get(check), after.get(check)))
            if isinstance(should, bool):
                truth[(key, check)] = should
            elif isinstance(should, dict) and isinstance(should.get(check), bool):
                truth[(key, check)] = should[check]
    result = compare(decisions, truth=truth)
    if unreadable:
        result.skipped["unreadable lines"] += unreadable
    return result
