"""Output checks on a streamed answer: a hold-back window, and each piece judged once.

The last ``holdback`` characters are never released before the checks have seen what
follows them, so a match split across chunks is still caught, and text inside a span
that is to be redacted is never released early.

The cost stays linear in the answer's length: a check does not read the whole answer
again at each release, only the text new to it plus the left context it declares
(``Guardrail.stream_start``: the window for pattern checks, back to the sentence's start
for grounding; a check that declares nothing reads the whole answer, always correct).
What a check found earlier is kept in the answer's coordinates until it is released (it
decides how that text goes out) and then for the record; what a later look re-judged is
replaced. Checks do not run token by token: the step between them grows from one window
to ``check_every`` characters; a check that can only flag (``decides_release`` False) looks
every ``_FLAG_ONLY_STRIDE`` steps, and at the end. With no output checks, or only such
checks, nothing is held back.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable, Sequence

import structlog

from aimsguard.guardrails import Action, CheckRequest, Finding, Outcome, Stage, Verdict, apply_redactions, log_masks, most_severe

from ._errors import error_site
from ._pipeline import BoundCheck, Pipeline, StageResult

__all__ = ["StreamingOutputGuard"]

log = structlog.get_logger("aimsguard.agent")


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


OnChecked = Callable[[StageResult], Awaitable[None]]
# A check that can only flag looks once per this many full steps: it holds nothing back, so
# its verdict is not needed before a release, and each look has a fixed cost (grounding:
# the open sentence read again, retrieval, ~0.1 ms) that fewer looks pay fewer times.
_FLAG_ONLY_STRIDE = 4


class _CheckMemory:
    """What one check has said about one streamed answer, in the answer's coordinates."""

    __slots__ = ("latest", "active", "done", "failed", "duration_s", "started", "reasons", "open_from", "judged")

    def __init__(self) -> None:
        self.judged = 0  # characters of the answer this check has looked at
        self.latest: Verdict | None = None
        self.active: list[tuple[Finding, Action]] = []  # findings that reach text not yet released
        self.done: list[tuple[Finding, Action]] = []  # findings wholly released: kept for the record
        self.failed: Verdict | None = None  # the last look that did not run to the end
        self.duration_s = 0.0
        self.started = 0.0
        self.reasons: dict[str, None] = {}
        self.open_from: int | None = None  # a match touching the end may still grow: judged again from its start

    def merge(self, verdict: Verdict, window_start: int, end: int) -> None:
        """A new look at the text from ``window_start`` to ``end``: it re-judges what lies there."""
        shifted = [(dataclasses.replace(f, start=f.start + window_start, end=f.end + window_start), verdict.action) for f in verdict.findings]
        self.active = [(f, a) for f, a in self.active if f.start < window_start] + shifted
        self.open_from = min((f.start for f, _ in shifted if f.end >= end), default=None)
        self.judged = end
        self.started = self.started or verdict.started
        self.duration_s += verdict.duration_s
        self.reasons.update(dict.fromkeys(verdict.reasons))
        if verdict.outcome is not Outcome.OK:
            self.failed = verdict
        self.latest = verdict

    def retire(self, released: int) -> None:
        """Findings that lie wholly in released text no longer decide anything."""
        if any(f.end <= released for f, _ in self.active):
            self.done.extend((f, a) for f, a in self.active if f.end <= released)
            self.active = [(f, a) for f, a in self.active if f.end > released]

    def deciding(self) -> Verdict:
        """The verdict that decides what happens to unreleased text."""
        assert self.latest is not None
        if not self.active and not self.latest.findings:
            return self.latest  # nothing found, now or before (most looks): the look's own verdict says it all
        action = most_severe([self.latest.action, *(a for _, a in self.active)])
        return dataclasses.replace(self.latest, action=action, findings=tuple(f for f, _ in self.active))

    def recorded(self) -> Verdict:
        """All this check said about the answer, as one verdict for the record."""
        assert self.latest is not None
        pairs = self.done + self.active
        action = most_severe([self.latest.action, *(a for _, a in pairs)])
        failed = self.failed
        return dataclasses.replace(
            self.latest,
            action=action,
            findings=tuple(dict.fromkeys(f for f, _ in pairs)),
            reasons=tuple(self.reasons),
            outcome=failed.outcome if failed is not None else self.latest.outcome,
            fail_mode=failed.fail_mode if failed is not None else self.latest.fail_mode,
            duration_s=self.duration_s,
            started=self.started,
        )


class StreamingOutputGuard:
    """One choice (or one tool call's arguments) of one streamed answer. Not shared between requests."""

    def __init__(
        self,
        pipeline: Pipeline,
        request_template: CheckRequest,
        holdback: int,
        *,
        check_every: int = 1,
        on_checked: OnChecked | None = None,
    ) -> None:
        self._pipeline = pipeline
        self._checks: Sequence[BoundCheck] = pipeline.checks[Stage.OUTPUT]
        self._template = request_template
        # Released text waits for the checks unless none of them can change it or masks what
        # is logged (no checks, or only flags such as grounding with action flag): then it goes
        # out as it comes, and the checks look at it as it passes.
        self._holds = any(c.guardrail.decides_release or c.guardrail.masks_content for c in self._checks)
        self._holdback = holdback if self._holds else 0
        self._every = max(1, check_every)
        self._flag_every = _FLAG_ONLY_STRIDE * self._every  # the step of checks that can only flag
        self._on_checked = on_checked
        self._memory = {check.guardrail.instance_id: _CheckMemory() for check in self._checks}
        # The answer so far, as the upstream sent it: ``text`` (joined when read, so a chunk costs
        # its own length, not the answer's: adding to one string copies it all each time).
        self._joined = ""
        self._unjoined: list[str] = []
        self.length = 0
        self.released = 0  # characters of ``text`` already handed on
        self.checked = 0  # characters of ``text`` the last look reached (a flag-only check may lag: its memory's ``judged``)
        self._released: list[str] = []  # what was handed on (after redaction): what the user saw
        self._logged: list[str] = []  # the same without restored personal data: what may be logged
        self.result: StageResult | None = None  # what decides the unreleased text now
        self.checks_s = 0.0
        self.finished = False
        self._provisional_stop = False
        # Whether the checks stopped the answer: asked several times a chunk, so kept up to
        # date where it changes (_note_stop), not worked out at each asking (~0.5 us a chunk).
        self.stopped = False
        self._due = self._step()  # the length of text at which a check is next due (read for every chunk)

    def _note_stop(self, provisional: bool) -> None:
        self._provisional_stop = provisional
        self.stopped = self.result is not None and self.result.action.stops_exchange and not provisional

    async def feed(self, delta: str) -> str:
        """Add a chunk of the answer; return the text that may be released now."""
        if self.stopped:
            return ""
        self._unjoined.append(delta)
        self.length += len(delta)
        if not self._holds:
            if self._checks and self.length >= self._due:
                await self._check()
            return self._release(self.length, None, delta)  # all before it went out as it came
        if self.length - self.released <= self._holdback or self.length < self._due:
            return ""
        result = await self._check()
        if result.action.stops_exchange:
            # A stop on a match that touches the end may vanish as the text grows
            # ("refund" → "refunds"): hold everything and decide when more text comes.
            self._note_stop(_touches_end(result, self.length))
            return ""
        self._note_stop(False)
        safe = self.length - self._holdback
        for finding in self._redactions(result):
            # A span crossing the boundary, or touching the end (it may still grow), is held back whole.
            if finding.start < safe and (finding.end > safe or finding.end == self.length):
                safe = finding.start
        safe = self._word_boundary(safe)
        return self._release(max(safe, self.released), result)

    @property
    def text(self) -> str:
        """The answer so far."""
        if self._unjoined:
            self._joined = "".join([self._joined, *self._unjoined])
            self._unjoined.clear()
        return self._joined

    def _step(self) -> int:
        """New text to wait for before checking again: half a window at first (the first
        words go out soon), then half of what was checked so far, up to ``check_every``: a
        few more checks at the start, and a fixed number per character after. Checks that
        only look as text passes (nothing held) look once per flag-only stride."""
        if not self._holds:
            return self._flag_every
        return min(self._every, max(self._holdback // 2, self.checked // 2, 1))

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
        """The answer is complete: check what is new and release the rest. Idempotent."""
        if self.stopped or self.finished:
            return ""
        self.finished = True
        self._note_stop(False)  # the text is complete: every decision is final now
        if not self._checks:
            return self._release(self.length, None)
        behind = self.result is None or any(memory.judged < self.length for memory in self._memory.values())
        result = await self._check() if behind else self.result
        if result.action.stops_exchange:
            return ""
        return self._release(self.length, result)

    async def _check(self) -> StageResult:
        """Each check looks at the text new to it, with the left context it declares."""
        started = time.perf_counter()
        groups: dict[int, list[BoundCheck]] = {}
        end = self.length
        for check in self._checks:
            memory = self._memory[check.guardrail.instance_id]
            if memory.judged >= end or (not self.finished and not check.guardrail.decides_release
                                        and end - memory.judged < self._flag_every):
                continue  # nothing new to it, or a flag that can wait for more text
            unjudged = memory.judged if memory.open_from is None else min(memory.open_from, memory.judged)
            try:
                start = check.guardrail.stream_start(self.text, unjudged, self._holdback)
            except Exception as exc:  # its declaration failing must not fail the stream: it reads it all
                log.warning("stream_start_failed", guardrail=check.guardrail.instance_id, **error_site(exc))
                start = 0
            groups.setdefault(max(0, min(start, unjudged)), []).append(check)
        for window_start, checks in groups.items():
            request = dataclasses.replace(self._template, texts=[self.text[window_start:]], complete=self.finished)
            result = await self._pipeline.run_checks(checks, request)
            for check, verdict in zip(checks, result.verdicts, strict=True):
                self._memory[check.guardrail.instance_id].merge(verdict, window_start, end)
        # Checks are CPU work, and a stream whose chunks are all buffered already (a fast
        # upstream) would run from its first window to its last without letting the loop go:
        # other clients are served after each look (bench_head_of_line, long streams: others'
        # p99 rose by 207 ms without it). Once a look, not once per window it reads: a look
        # costs a fraction of a millisecond, and a turn of the loop is not free.
        await asyncio.sleep(0)
        self.checked = self.length
        self._due = self.checked + self._step()
        verdicts = [memory.deciding() for memory in self._memory.values() if memory.latest is not None]
        duration = time.perf_counter() - started
        self.checks_s += duration
        self.result = StageResult(most_severe(v.action for v in verdicts), verdicts, [], duration)
        self._note_stop(self._provisional_stop)
        if self._on_checked is not None:
            await self._on_checked(self.result)
        return self.result

    def recorded(self) -> StageResult | None:
        """Everything the checks said about this answer, one verdict per check: for the record."""
        if self.result is None:
            return None
        verdicts = [memory.recorded() for memory in self._memory.values() if memory.latest is not None]
        return StageResult(most_severe(v.action for v in verdicts), verdicts, [], self.checks_s)

    @staticmethod
    def _redactions(result: StageResult) -> list[Finding]:
        return [f for v in result.verdicts for f in v.redactions if f.segment == 0]

    def _release(self, upto: int, result: StageResult | None, piece: str | None = None) -> str:
        """Hand on the text up to ``upto``, redacted as ``result`` says (``piece``: that text, when the caller has it)."""
        start = self.released
        if upto <= start:
            return ""
        self.released = upto
        if piece is None:
            piece = self.text[start:upto]
        if result is None:
            released = logged = piece
        else:
            released = apply_redactions(piece, _clipped(self._redactions(result), start, upto))
            logged = apply_redactions(piece, _clipped(log_masks(result.verdicts, segment=0), start, upto))
            for memory in self._memory.values():
                memory.retire(upto)
        self._released.append(released)
        self._logged.append(logged)
        return released

    @property
    def released_text(self) -> str:
        return "".join(self._released)

    @property
    def logged_text(self) -> str:
        return "".join(self._logged)

    @property
    def action(self) -> Action:
        return self.result.action if self.result is not None else Action.ALLOW
