"""Output checks on a streamed answer: a hold-back window over the text so far.

The last ``holdback`` characters are never released before the checks have seen what
follows them, so a match split across chunks is still caught, and text inside a span
that is to be redacted is never released early. The checks look at the whole answer
so far each time text is to be released, and once more at the end.
"""

from __future__ import annotations

import dataclasses

from collections.abc import Awaitable, Callable

from aimsguard.guardrails import Action, CheckRequest, Finding, Stage, apply_redactions, log_masks

from ._pipeline import StageResult

__all__ = ["StreamingOutputGuard"]


def _clipped(findings: list[Finding], start: int, upto: int) -> list[Finding]:
    """Findings cut to the released window [start, upto), in the window's coordinates.

    A span that began in text already released (a window too small for the pattern)
    still has the rest of it masked.
    """
    return [
        dataclasses.replace(
            f,
            start=max(f.start, start) - start,
            end=min(f.end, upto) - start,
            replacement=f.replacement if f.start >= start else "",
        )
        for f in findings
        if f.end > start and f.start < upto
    ]


def _touches_end(result: StageResult, end: int) -> bool:
    """Whether some check that stopped the stream matched at the very end of the text.

    A check that failed (error, timeout) has no findings: its stop is final at once.
    """
    return any(
        finding.end == end
        for verdict in result.verdicts
        if verdict.action.stops_exchange
        for finding in verdict.findings
    )

RunChecks = Callable[[CheckRequest], Awaitable[StageResult]]


class StreamingOutputGuard:
    """One choice of one streamed answer. Not shared between requests."""

    def __init__(self, run_checks: RunChecks, request_template: CheckRequest, holdback: int) -> None:
        self._run_checks = run_checks
        self._template = request_template
        self._holdback = holdback
        self.text = ""  # the answer so far, as the upstream sent it
        self.released = 0  # characters of ``text`` already handed on
        self.released_text = ""  # what was handed on (after redaction): what the user saw
        self.logged_text = ""  # the same without restored personal data: what may be logged
        self.result: StageResult | None = None  # the last checks' result
        self.finished = False
        self._provisional_stop = False

    @property
    def stopped(self) -> bool:
        return self.result is not None and self.result.action.stops_exchange and not self._provisional_stop

    async def feed(self, delta: str) -> str:
        """Add a chunk of the answer; return the text that may be released now."""
        if self.stopped:
            return ""
        self.text += delta
        if len(self.text) - self.released <= self._holdback:
            return ""
        result = await self._check()
        if result.action.stops_exchange:
            # A stop on a match that touches the end may vanish as the text grows
            # ("refund" → "refunds"): hold everything and decide when more text comes.
            self._provisional_stop = _touches_end(result, len(self.text))
            return ""
        self._provisional_stop = False
        safe = len(self.text) - self._holdback
        for finding in self._redactions(result):
            # A span crossing the boundary, or touching the end (it may still grow), is held back whole.
            if finding.start < safe and (finding.end > safe or finding.end == len(self.text)):
                safe = finding.start
        safe = self._word_boundary(safe)
        return self._release(max(safe, self.released), result)

    def _word_boundary(self, safe: int) -> int:
        """Never release part of a word: the start of an e-mail address, a number or a
        placeholder could otherwise go out before the checks can know what it is. A run
        without whitespace longer than four windows is cut all the same (e.g. text in a
        script written without spaces)."""
        cut = max((self.text.rfind(c, self.released, safe) for c in " \n\t"), default=-1)
        if cut >= self.released:
            return cut + 1
        return safe if safe - self.released > 4 * max(self._holdback, 16) else self.released

    async def finish(self) -> str:
        """The answer is complete: check it once more and release the rest. Idempotent."""
        if self.stopped or self.finished:
            return ""
        self.finished = True
        self._provisional_stop = False  # the text is complete: every decision is final now
        result = await self._check()
        if result.action.stops_exchange:
            return ""
        return self._release(len(self.text), result)

    async def _check(self) -> StageResult:
        request = CheckRequest(
            stage=Stage.OUTPUT,
            texts=[self.text],
            system_id=self._template.system_id,
            conversation_id=self._template.conversation_id,
            question=self._template.question,
            metadata=self._template.metadata,
        )
        self.result = await self._run_checks(request)
        return self.result

    @staticmethod
    def _redactions(result: StageResult) -> list[Finding]:
        return [f for v in result.verdicts for f in v.redactions if f.segment == 0]

    def _release(self, upto: int, result: StageResult) -> str:
        start = self.released
        if upto <= start:
            return ""
        self.released = upto
        piece = self.text[start:upto]
        released = apply_redactions(piece, _clipped(self._redactions(result), start, upto))
        self.released_text += released
        self.logged_text += apply_redactions(piece, _clipped(log_masks(result.verdicts, segment=0), start, upto))
        return released

    @property
    def action(self) -> Action:
        return self.result.action if self.result is not None else Action.ALLOW
