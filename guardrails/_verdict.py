"""What a check is given and what it answers: CheckRequest in, Verdict out."""

from __future__ import annotations

import dataclasses
import enum
import operator
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Action",
    "CheckRequest",
    "Finding",
    "Outcome",
    "Stage",
    "Verdict",
    "apply_redactions",
    "log_masks",
    "most_severe",
]


class Stage(str, enum.Enum):
    INPUT = "input"
    OUTPUT = "output"


class Action(str, enum.Enum):
    """What a check asks for. Declared in rising severity: the most severe action wins.

    ``escalate`` ranks above ``block`` because it blocks too and also hands the
    exchange to a human.
    """

    ALLOW = "allow"
    FLAG = "flag"
    REDACT = "redact"
    BLOCK = "block"
    ESCALATE = "escalate"

    @property
    def severity(self) -> int:
        return _SEVERITY[self]

    @property
    def stops_exchange(self) -> bool:
        return self in _STOPPING


# Looked up once: attribute access on an Enum class is slow on the per-chunk path.
_SEVERITY = {action: rank for rank, action in enumerate(Action)}
_STOPPING = frozenset((Action.BLOCK, Action.ESCALATE))


def most_severe(actions: Iterable[Action]) -> Action:
    return max(actions, key=_SEVERITY.__getitem__, default=Action.ALLOW)


class Outcome(str, enum.Enum):
    """How a check ran. ``error`` and ``timeout`` are resolved by the check's fail mode,
    ``over_limit`` (input longer than the check's ``max_chars``, not checked) by its ``over_limit``."""

    OK = "ok"
    ERROR = "error"
    TIMEOUT = "timeout"
    OVER_LIMIT = "over_limit"


@dataclass(frozen=True, slots=True)
class CheckRequest:
    """The texts one check looks at, with what it may need to know about the exchange.

    ``texts`` are the segments of the stage: each message's text on input, the answer
    (one segment per choice) on output. Findings point into them by index.
    """

    stage: Stage
    texts: Sequence[str]
    system_id: str
    conversation_id: str
    question: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    # Who wrote each text, where known: a message's role ("user", "system", "tool", ...), or
    # "document" for a document a caller screens. Checks of third-party text read tool results
    # and documents apart (injection's document model).
    roles: Sequence[str] | None = None
    # False: the last text is a streamed answer so far, which may still grow. A check may leave
    # its open end (a sentence not yet finished) to a later look, when judging it now could
    # not change what is released (grounding that only flags).
    complete: bool = True


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing a check found: where, what kind, and why.

    ``replacement`` is set when the finding is to be redacted. ``explanation`` says which
    rule or pattern matched; it never holds the matched text itself.
    """

    kind: str
    segment: int
    start: int
    end: int
    score: float = 1.0
    explanation: str = ""
    replacement: str | None = None
    # True when the replacement puts the user's own personal data back (a placeholder
    # restored): such text reaches the user but never the logs.
    restores: bool = False
    # Whether the matched text itself may be sensitive (personal data, a secret term): a
    # log of content masks it. A finding that only points at a sentence (an unsupported
    # claim, an injection attempt) is not.
    sensitive: bool = True

    def to_record(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "kind": self.kind,
            "segment": self.segment,
            "start": self.start,
            "end": self.end,
            "score": round(self.score, 4),
        }
        if self.explanation:
            record["explanation"] = self.explanation
        return record


@dataclass(slots=True)
class Verdict:
    """A check's answer, and how the check ran.

    ``fail_mode`` is set only when the outcome was not ``ok`` and the policy's fail mode
    decided the action. The pipeline stamps ``guardrail`` (the check's id in the policy)
    and ``duration_s`` on the verdict a check returns; nothing else changes it.
    """

    guardrail: str
    stage: Stage
    action: Action = Action.ALLOW
    score: float = 0.0
    reasons: tuple[str, ...] = ()
    findings: tuple[Finding, ...] = ()
    outcome: Outcome = Outcome.OK
    fail_mode: str | None = None
    duration_s: float = 0.0
    started: float = 0.0  # perf_counter() when the check started, stamped by the pipeline

    @property
    def redactions(self) -> list[Finding]:
        return [f for f in self.findings if f.replacement is not None]

    def summary(self) -> dict[str, Any]:
        """The verdict in brief, as the exchange event lists it."""
        return {
            "guardrail": self.guardrail,
            "stage": self.stage.value,
            "action": self.action.value,
            "outcome": self.outcome.value,
            "fail_mode": self.fail_mode,
            "score": round(self.score, 4),
            "findings": len(self.findings),
            "duration_ms": round(self.duration_s * 1000, 3),
        }

    def to_record(self) -> dict[str, Any]:
        return {
            "guardrail": self.guardrail,
            "stage": self.stage.value,
            "action": self.action.value,
            "score": round(self.score, 4),
            "outcome": self.outcome.value,
            "fail_mode": self.fail_mode,
            "reasons": list(self.reasons),
            "findings": [f.to_record() for f in self.findings],
            "duration_ms": round(self.duration_s * 1000, 3),
        }


def _pickled_by_fields(cls: type) -> None:
    """Pickle ``cls`` (a slots dataclass) as the class and its fields in order. Requests and
    verdicts cross to the check pool's workers at every batch, and the dataclass's own
    state (Python-level ``__getstate__``/``__setstate__``) pickles and loads them at about
    half that speed: ~8 -> ~4 µs for a batch of three requests, ~11 -> ~6.5 to load their verdicts."""
    fields = operator.attrgetter(*cls.__slots__)  # a slots dataclass's slots are its fields, in order

    def reduce(self: Any) -> tuple[type, tuple[Any, ...]]:
        return cls, fields(self)

    cls.__reduce__ = reduce  # type: ignore[method-assign,assignment]


for _cls in (CheckRequest, Finding, Verdict):
    _pickled_by_fields(_cls)


def log_masks(verdicts: Iterable[Verdict], segment: int | None = None) -> list[Finding]:
    """The findings that mask text in a log of content: every redaction, and every other
    sensitive finding (one only flagged or blocked) as ``<KIND>``. Restored personal data
    is not among them: the log keeps the placeholder the upstream saw."""
    return [
        f if f.replacement is not None else dataclasses.replace(f, replacement=f"<{f.kind}>")
        for v in verdicts
        for f in v.findings
        if not f.restores and (f.replacement is not None or f.sensitive) and (segment is None or f.segment == segment)
    ]


def apply_redactions(text: str, findings: Iterable[Finding], segment: int = 0) -> str:
    """Replace the redacted spans of one segment; overlapping spans merge into one.

    Where spans overlap, the merged span takes the replacement of the span that starts
    first, so a longer hit is never left half-masked.
    """
    spans = sorted(
        (f for f in findings if f.segment == segment and f.replacement is not None),
        key=lambda f: (f.start, -f.end),
    )
    if not spans:
        return text
    out: list[str] = []
    cursor = 0
    current: Finding | None = None
    current_end = 0
    for finding in spans:
        if current is not None and finding.start < current_end:
            current_end = max(current_end, finding.end)
            continue
        if current is not None:
            out.append(current.replacement or "")
            cursor = current_end
        out.append(text[cursor : finding.start])
        current, current_end = finding, finding.end
    assert current is not None
    out.append(current.replacement or "")
    out.append(text[current_end:])
    return "".join(out)
