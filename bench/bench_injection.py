"""The injection check: quality on the labelled set, and speed per 1,000 characters.

    .venv/bin/python bench/bench_injection.py
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

from aimsguard.guardrails.injection import injection_score

EVAL = Path(__file__).resolve().parent.parent / "tests" / "data" / "injection_eval.jsonl"


def main() -> None:
    rows = [json.loads(line) for line in EVAL.read_text().splitlines()]
    tp = fp = fn = tn = 0
    for row in rows:
        predicted = injection_score(row["text"])[0] >= 0.8
        tp += predicted and row["injection"]
        fp += predicted and not row["injection"]
        fn += (not predicted) and row["injection"]
        tn += (not predicted) and not row["injection"]
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    print(f"labelled set: {tp + fn} attacks, {fp + tn} benign (with hard negatives), threshold 0.8")
    print(f"precision {precision:.3f}  recall {recall:.3f}  F1 {2 * precision * recall / (precision + recall):.3f}  "
          f"accuracy {(tp + tn) / len(rows):.3f}  false-positive rate {fp / (fp + tn):.3%}")
    benign = [r["text"] for r in rows if not r["injection"]]
    attacks = [r["text"] for r in rows if r["injection"]]
    for label, pool in (("benign", benign), ("attack", attacks)):
        texts = []
        for i in range(50):
            text = ""
            while len(text) < 1000:
                text += pool[(i * 7 + len(text)) % len(pool)] + " "
            texts.append(text[:1000])
        times = []
        for _ in range(5):
            for text in texts:
                started = time.perf_counter()
                injection_score(text)
                times.append(time.perf_counter() - started)
        print(f"speed, 1,000-character {label} prompts: median {statistics.median(times) * 1000:.3f} ms, "
              f"p99 {sorted(times)[int(len(times) * 0.99)] * 1000:.3f} ms")


if __name__ == "__main__":
    main()
