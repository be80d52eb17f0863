"""The injection check: quality on the project's own set and on the public test split, and speed.

    .venv/bin/python bench/bench_injection.py

The own set (``tests/data/injection_eval.jsonl``) was written here: regression figures only.
The public test split is rebuilt from fetched mirrors (``bench/injection_corpus.py``, sources
in ``tests/data/SOURCES.md``); without them that part is skipped with what to fetch. Figures
are for patterns alone, the learned scorer alone, and both (the check as shipped), at the
default block threshold 0.8. Speed is per 1,000 characters, median and p99 of the wall clock
(and the median of this thread's CPU time, which a loaded machine inflates less), side by side:
the patterns run the old way (every kind's whole expression on every form of the text), the
patterns as shipped (each pattern only when the words its gate names are present), and the
whole check as shipped (patterns + learned scorer). The gated and ungated patterns must
find the same kinds on every text: the bench counts any text where they differ.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from injection_corpus import Example, MissingData, load  # noqa: E402

from aimsguard.guardrails.injection import injection_score, normalize, views  # noqa: E402
from aimsguard.guardrails.injection._learned import document_scorer, learned_scorer  # noqa: E402
from aimsguard.guardrails.injection._normalize import normalize_lines  # noqa: E402
from aimsguard.guardrails.injection._patterns import CATEGORIES  # noqa: E402

EVAL = Path(__file__).resolve().parent.parent / "tests" / "data" / "injection_eval.jsonl"
THRESHOLD = 0.8

# Each scorer takes (text, whether it is a document): documents are scored as ``check_documents``
# and tool results are, by the document model.
SCORERS: dict[str, Callable[[str, bool], float]] = {
    "patterns": lambda text, document: injection_score(text, learned=False)[0],
    "learned": lambda text, document: (
        document_scorer().score(normalize_lines(text)) if document else learned_scorer().score(normalize(text))
    ),
    "both (shipped)": lambda text, document: injection_score(text, document=document)[0],
}


def ungated_patterns(text: str) -> list[str]:
    """The kinds found the old way: every kind's whole expression on every form, no gate."""
    found: list[str] = []
    for view in views(text):
        found.extend(c.name for c in CATEGORIES if c.name not in found and c.pattern.search(view))
    return found


def gated_patterns(text: str) -> list[str]:
    return [kind for kind, _ in injection_score(text, learned=False)[1]]


def quality(label: str, rows: Sequence[tuple[str, bool, bool]], scorer: Callable[[str, bool], float]) -> list[bool]:
    """Prints precision, recall, F1 and FPR over (text, is an attack, is a document) rows."""
    predicted = [scorer(text, document) >= THRESHOLD for text, _, document in rows]
    tp = sum(p and t for p, (_, t, _) in zip(predicted, rows))
    fp = sum(p and not t for p, (_, t, _) in zip(predicted, rows))
    fn = sum(t and not p for p, (_, t, _) in zip(predicted, rows))
    benign = sum(not t for _, t, _ in rows)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
    print(f"  {label:16} precision {precision:.3f}  recall {recall:.3f}  F1 {f1:.3f}  false-positive rate {fp / max(1, benign):.2%}")
    return predicted


def by_source(examples: list[Example], predicted: list[bool]) -> None:
    tally: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for example, hit in zip(examples, predicted):
        tally[example.source][0] += hit
        tally[example.source][1] += 1
    for source, (hits, total) in sorted(tally.items()):
        kind = "recall" if any(e.label for e in examples if e.source == source) else "flagged"
        print(f"    {source:36} {kind:8} {hits:4}/{total:<4} ({hits / total:.0%})")


def speed(label: str, pool: Sequence[str], document: bool = False) -> None:
    """Median and p99 per 1,000 characters: patterns the old way, patterns as shipped, the whole check; measured in turns."""
    texts = []
    for i in range(60):
        text = ""
        while len(text) < 1000:
            text += pool[(i * 7 + len(text)) % len(pool)] + " "
        texts.append(text[:1000])
    runs: dict[str, Callable[[str], object]] = {
        "patterns, ungated": ungated_patterns,
        "patterns": lambda text: injection_score(text, learned=False),
        "shipped": lambda text: injection_score(text, document=document),
    }
    times: dict[str, list[float]] = {name: [] for name in runs}
    cpu: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(5):
        for text in texts:
            for name, run in runs.items():
                started, started_cpu = time.perf_counter(), time.thread_time()
                run(text)
                times[name].append(time.perf_counter() - started)
                cpu[name].append(time.thread_time() - started_cpu)
    figures = []
    for name, measured in times.items():
        ordered = sorted(measured)
        figures.append(
            f"{name} {statistics.median(ordered) * 1000:.3f} / {ordered[int(len(ordered) * 0.99)] * 1000:.3f}"
            f" (CPU {statistics.median(cpu[name]) * 1000:.3f})"
        )
    print(f"  {label:28} " + "   ".join(figures))


def main() -> None:
    learned_scorer()
    own = [(row["text"], row["injection"], False) for row in map(json.loads, EVAL.read_text().splitlines())]
    attacks = sum(t for _, t, _ in own)
    print(f"own set (regression; written here): {attacks} attacks, {len(own) - attacks} benign, threshold {THRESHOLD}")
    for name, scorer in SCORERS.items():
        quality(name, own, scorer)
    try:
        splits = load()
    except MissingData as exc:
        print(f"public test split: skipped: {exc}")
        splits = None
    if splits is not None:
        test = splits["test"]
        rows = [(e.text, bool(e.label), e.kind == "document") for e in test]
        print(f"\npublic test split: {sum(t for _, t, _ in rows)} attacks, {sum(not t for _, t, _ in rows)} benign; "
              "documents scored by the document model")
        print(f"  prompt model: {learned_scorer().about}")
        print(f"  document model: {document_scorer().about}")
        predicted = {name: quality(name, rows, scorer) for name, scorer in SCORERS.items()}
        for kind in ("prompt", "document"):
            part = [i for i, e in enumerate(test) if e.kind == kind]
            print(f"  {kind}s only:")
            quality("both (shipped)", [rows[i] for i in part], SCORERS["both (shipped)"])
        print("  by source, both (shipped):")
        by_source(test, predicted["both (shipped)"])
        differ = sum(gated_patterns(e.text) != ungated_patterns(e.text) for e in test)
        print(f"  gated and ungated patterns differ on {differ} of {len(test)} texts")
    print(f"\nspeed per 1,000 characters, ms wall-clock median / p99 (this thread's CPU time, median), load average {os.getloadavg()[0]:.1f}:")
    print("  patterns alone ungated and gated, and the whole check as shipped")
    speed("own set, benign", [t for t, injection, _ in own if not injection])
    speed("own set, attack", [t for t, injection, _ in own if injection])
    if splits is not None:
        speed("public test, benign prompts", [e.text for e in splits["test"] if not e.label and e.kind == "prompt"])
        speed("public test, attack prompts", [e.text for e in splits["test"] if e.label and e.kind == "prompt"])
        speed("public test, documents", [e.text for e in splits["test"] if e.kind == "document"], document=True)


if __name__ == "__main__":
    main()
