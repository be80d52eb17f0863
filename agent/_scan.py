"""``aimsguard scan``: run a system's checks over JSON lines, for policy owners.

Each input line is ``{"id": ..., "text": ...}`` with an optional ``"question"`` (context for
output checks) and ``"stage"`` (``input``/``output``, else the command's). Each output line
is ``{"id", "action", "text", "verdicts": [...]}`` with the text as the checks left it. A
line that cannot be read gets ``{"id", "line", "error"}`` and the scan goes on. Lines are
read, checked and written one at a time, so any number of them fits in memory; nothing is
written to the event log (a scan is an evaluation, not traffic).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any, TextIO

from aimsguard.guardrails import CheckRequest, Stage

from ._pipeline import Pipeline

__all__ = ["scan_lines"]


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
            out.write(json.dumps({"id": item_id, "line": line_number, "error": error}) + "\n")
            counts[("*", "error")] += 1
        else:
            request = CheckRequest(
                stage=request.stage, texts=request.texts, system_id=pipeline.system_id,
                conversation_id=request.conversation_id, question=request.question,
            )
            result = await pipeline.run(request)
            verdicts = [
                {key: value for key, value in v.to_record().items() if key in ("guardrail", "action", "score", "outcome", "reasons", "findings")}
                for v in result.verdicts
            ]
            out.write(json.dumps({"id": item_id, "action": result.action.value, "text": result.texts[0], "verdicts": verdicts}, ensure_ascii=False) + "\n")
            counts[("*", result.action.value)] += 1
            for verdict in result.verdicts:
                counts[(verdict.guardrail, verdict.action.value if verdict.outcome.value == "ok" else verdict.outcome.value)] += 1
        if on_line is not None:
            on_line()
    return counts
