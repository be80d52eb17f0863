"""Before/after tables for a candidate policy: which decisions would change, by check and
action, and (where reviewers labelled the decision) the change in precision and recall.

Shadow runs (``shadow.verdict`` events beside the live ``exchange`` ones) and replays
(``aimsguard replay``) both reduce to pairs of decisions on the same text, and are
compared here in one way.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._effectiveness import final_label, weighted_share

__all__ = ["Comparison", "Decision", "compare", "shadow_decisions"]

NONE = "-"  # the check does not exist on that side (added or removed by the candidate)


@dataclass(frozen=True)
class Decision:
    """One check's decision on one exchange (or line), before and after."""

    key: str  # request id, or the line's id
    check: str
    stage: str
    before: str | None
    after: str | None


@dataclass
class Comparison:
    decisions: int = 0
    changed: int = 0
    transitions: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # (check, before, after) → count
    before_actions: Counter[tuple[str, str]] = field(default_factory=Counter)  # (check, action)
    after_actions: Counter[tuple[str, str]] = field(default_factory=Counter)
    labelled: dict[str, int] = field(default_factory=dict)  # check → labelled decisions compared
    precision: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)  # check → (before, after)
    recall: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)
    skipped: Counter[str] = field(default_factory=Counter)  # reason → exchanges not compared

    def by_change(self) -> dict[str, int]:
        """``"check: before → after"`` → count, for the decisions that change."""
        return {f"{c}: {b} → {a}": n for (c, b, a), n in sorted(self.transitions.items()) if b != a}

    def precision_change(self) -> dict[str, float | None]:
        return {c: (a - b if a is not None and b is not None else None) for c, (b, a) in self.precision.items()}

    def recall_change(self) -> dict[str, float | None]:
        return {c: (a - b if a is not None and b is not None else None) for c, (b, a) in self.recall.items()}

    def table(self) -> list[list[str]]:
        """Rows: check, action, before, after, change; then the changed decisions; then the label figures."""
        rows = [["check", "action", "before", "after", "change"]]
        checks = sorted({c for c, _ in self.before_actions} | {c for c, _ in self.after_actions})
        for check in checks:
            actions = sorted({a for c, a in self.before_actions if c == check} | {a for c, a in self.after_actions if c == check})
            for action in actions:
                before, after = self.before_actions[(check, action)], self.after_actions[(check, action)]
                rows.append([check, action, str(before), str(after), f"{after - before:+d}"])
        return rows

    def render(self) -> str:
        lines = [f"{self.decisions} decisions compared, {self.changed} would change"]
        if self.skipped:
            lines.append("not compared: " + ", ".join(f"{n} {reason}" for reason, n in sorted(self.skipped.items())))
        widths = [max(len(r[i]) for r in self.table()) for i in range(5)]
        for row in self.table():
            lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths)))
        if self.by_change():
            lines.append("decisions that would change:")
            lines.extend(f"  {change}: {n}" for change, n in self.by_change().items())
        for check in sorted(self.labelled):
            pb, pa = self.precision.get(check, (None, None))
            rb, ra = self.recall.get(check, (None, None))
            lines.append(
                f"labelled {check} ({self.labelled[check]} decisions): precision {_f(pb)} → {_f(pa)}, recall {_f(rb)} → {_f(ra)}"
            )
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {
            "decisions": self.decisions,
            "changed": self.changed,
            "by_change": self.by_change(),
            "before": {f"{c}: {a}": n for (c, a), n in sorted(self.before_actions.items())},
            "after": {f"{c}: {a}": n for (c, a), n in sorted(self.after_actions.items())},
            "precision": {c: list(v) for c, v in self.precision.items()},
            "recall": {c: list(v) for c, v in self.recall.items()},
            "precision_change": self.precision_change(),
            "recall_change": self.recall_change(),
            "skipped": dict(self.skipped),
        }


def _f(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def compare(
    decisions: Iterable[Decision], samples: Sequence[Any] = (), truth: Mapping[tuple[str, str], bool] | None = None
) -> Comparison:
    """The before/after table of ``decisions``; ``samples`` (review samples with labels, keyed
    by request id and check) give precision and recall before and after, each labelled
    decision weighted by the inverse of its chance of being sampled.

    A label says whether the *before* decision was right, so it tells the truth of the
    case: a positive (should act) is an action judged right or an allow judged wrong.
    The candidate's decision on the same case is then scored against that truth. ``truth``
    gives it directly instead ((key, check) → should act; weight 1), e.g. from a JSONL file."""
    result = Comparison()
    known_truth: dict[tuple[str, str], tuple[bool, float]] = {key: (positive, 1.0) for key, positive in (truth or {}).items()}
    for sample in samples:
        label = final_label(sample)
        if label in ("right", "wrong"):
            acted = sample.action != "allow"
            known_truth[(sample.request_id, sample.guardrail)] = (acted == (label == "right"), 1.0 / sample.inclusion_p)
    scored: dict[str, list[tuple[float, bool, bool, bool]]] = defaultdict(list)  # check → (w, positive, acted before, acted after)
    for d in decisions:
        before, after = d.before or NONE, d.after or NONE
        result.decisions += 1
        result.changed += before != after
        result.transitions[(d.check, before, after)] += 1
        if d.before is not None:
            result.before_actions[(d.check, before)] += 1
        if d.after is not None:
            result.after_actions[(d.check, after)] += 1
        known = known_truth.get((d.key, d.check))
        if known is not None and d.before is not None and d.after is not None:
            positive, weight = known
            scored[d.check].append((weight, positive, d.before != "allow", d.after != "allow"))
    for check, rows in scored.items():
        result.labelled[check] = len(rows)
        result.precision[check] = (
            weighted_share([(w, pos) for w, pos, acted, _ in rows if acted])[0],
            weighted_share([(w, pos) for w, pos, _, acted in rows if acted])[0],
        )
        result.recall[check] = (
            weighted_share([(w, acted) for w, pos, acted, _ in rows if pos])[0],
            weighted_share([(w, acted) for w, pos, _, acted in rows if pos])[0],
        )
    return result


def shadow_decisions(events: Iterable[Mapping[str, Any]], system: str | None = None) -> dict[str, list[Decision]]:
    """Per candidate: the decisions its shadow checks took, paired with the live ones
    (from the ``shadow.verdict`` events; ``live_action`` is the live check of the same id)."""
    found: dict[str, list[Decision]] = defaultdict(list)
    for event in events:
        if event.get("event") != "shadow.verdict" or (system is not None and event.get("system") != system):
            continue
        if event.get("outcome") != "ok":
            continue
        found[str(event.get("candidate") or "")].append(
            Decision(str(event.get("request_id")), str(event.get("guardrail")), str(event.get("stage")), event.get("live_action"), event.get("action"))
        )
    return dict(found)
