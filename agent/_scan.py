"""``aimsguard scan``: run a system's checks over JSON lines, for policy owners.

Each input line is ``{"id": ..., "text": ...}`` with an optional ``"question"`` (context for
output checks) and ``"stage"`` (``input``/``output``, else the command's). Each output line
is ``{"id", "action", "text", "verdicts": [...]}`` with the text masked as the event log
masks content (redactions applied, personal data only blocked or flagged as ``<KIND>``). A
line that cannot be read gets ``{"id", "line", "error"}``, and one that a check raised on
or overran gets that with the verdicts but without the text; the scan goes on. Lines are
read, checked and written one at a time, so any number of them fits in memory; nothing is
written to the event log (a scan is an evaluation, not traffic).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any, TextIO

from aimsguard.guardrails import CheckRequest, Outcome, Stage, apply_redactions, log_masks

from ._pipeline import Pipeline

__all__ = ["scan_lines"]


def _json(record: dict[str, Any]) -> str:
    """One output line; text that cannot be written as UTF-8 (a lone surrogate) is escaped."""
    line = json.dumps(record, ensure_ascii=False)
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:
        line = json.dumps(record, ensure_ascii=True)
    return line + "\n"


def _record(line_number: int, raw: str, default_stage: Stage) -> tuple[Any, CheckRequest | None, str | None]:
    """(id, the request to check, or an error message)."""
    try:
        item = json.loads(raw)
    except json.JSONDecodeError as exc:
        return None, None, f"not valid JSON: {exc.msg} (column {exc.colno})"
    if not isinstance(item, dict):
        return None, None, "each line must be a JSON object"
    item_id = item.get("id", line_number)
    text = item.get("text")
    if not isinstance(text, str):
        return item_id, None, "'text' must be a string"
    try:
        stage = Stage(item.get("stage", default_stage.value))
    except ValueError:
        return item_id, None, "'stage' must be 'input' or 'output'"
    question = item.get("question")
    return item_id, CheckRequest(
        stage=stage,
        texts=[text],
        system_id="",
        conversation_id=f"scan-{line_number}",
        question=question if isinstance(question, str) else None,
    ), None


async def scan_lines(
    pipeline: Pipeline,
    lines: Iterable[str],
    out: TextIO,
    *,
    stage: Stage = Stage.INPUT,
    on_line: Callable[[], None] | None = None,
) -> Counter[tuple[str, str]]:
    """Check every line; return counts by (guardrail, action), with ("*", action) for the whole."""
    counts: Counter[tuple[str, str]] = Counter()
    for line_number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        item_id, request, error = _record(line_number, raw, stage)
        if request is None:
            out.write(_json({"id": item_id, "line": line_number, "error": error}))
            counts[("*", "error")] += 1
        else:
            request = CheckRequest(
                stage=request.stage, texts=request.texts, system_id=pipeline.system_id,
                conversation_id=request.conversation_id, question=request.question,
            )
            try:
                result = await pipeline.run(request)
            except Exception as exc:  # noqa: BLE001 - one unreadable text must not end the scan of the rest
                out.write(_json({"id": item_id, "line": line_number, "error": f"the checks failed on this line: {type(exc).__name__}"}))
                counts[("*", "error")] += 1
            else:
                verdicts = [
                    {key: value for key, value in v.to_record().items() if key in ("guardrail", "action", "score", "outcome", "reasons", "findings")}
                    for v in result.verdicts
                ]
                failed = [f"{v.guardrail} ({'; '.join(v.reasons) or v.outcome.value})" for v in result.verdicts if v.outcome is not Outcome.OK]
                if failed:
                    # A check that raised or overran decided nothing about this text, and what it
                    # would have masked is unknown: an error record, without the text.
                    error = "a check did not run on this line: " + ", ".join(failed)
                    out.write(_json({"id": item_id, "line": line_number, "error": error, "verdicts": verdicts}))
                    counts[("*", "error")] += 1
                else:
                    # Masked as the event log masks content: a blocked or flagged card number is
                    # not left in the output file any more than a redacted one.
                    text = apply_redactions(request.texts[0], log_masks(result.verdicts))
                    out.write(_json({"id": item_id, "action": result.action.value, "text": text, "verdicts": verdicts}))
                    counts[("*", result.action.value)] += 1
                for verdict in result.verdicts:
                    counts[(verdict.guardrail, verdict.action.value if verdict.outcome.value == "ok" else verdict.outcome.value)] += 1
        if on_line is not None:
            on_line()
    return counts
