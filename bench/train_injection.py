"""Train the learned injection scorer and write ``guardrails/injection/injection_model.npz``.

    .venv/bin/python bench/train_injection.py

Reads the public corpus from the fetched mirrors (``bench/injection_corpus.py``; it names what
to fetch when something is missing). Fits a logistic regression (scikit-learn, here only: the
run-time scorer needs numpy alone) on the train split with the run-time featuriser, picks the
regularisation and the decision threshold on the validation split — the threshold is the
lowest margin whose false-positive rate on validation benign texts, with the patterns' own
hits counted, stays under ``TARGET_FPR``; of the regularisation strengths, the strongest whose
validation F1 is within ``NEAR_BEST`` of the best — and never looks at the test split.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from scipy.sparse import csr_matrix
from sklearn.linear_model import LogisticRegression

sys.path.insert(0, str(Path(__file__).resolve().parent))

from injection_corpus import Example, MissingData, load  # noqa: E402

from aimsguard.guardrails.injection import injection_score, normalize  # noqa: E402
from aimsguard.guardrails.injection._guardrail import SHORT_TEXT  # noqa: E402
from aimsguard.guardrails.injection._learned import LearnedScorer, features  # noqa: E402

OUT = Path(__file__).resolve().parent.parent / "guardrails" / "injection" / "injection_model.npz"
BITS = 19
TARGET_FPR = 0.03  # on validation texts the model reads (long ones); over all texts it comes out lower
C_GRID = (4.0, 16.0, 64.0, 256.0)
NEAR_BEST = 0.01  # the most regularised model within this much validation F1 of the best wins


def matrix(examples: list[Example]) -> csr_matrix:
    rows, cols, vals = [], [], []
    for number, example in enumerate(examples):
        buckets, factor = features(normalize(example.text), BITS)
        rows.append(np.full(len(buckets), number))
        cols.append(buckets)
        vals.append(np.full(len(buckets), factor))
    return csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(len(examples), 2**BITS))


def operating_point(margins: np.ndarray, labels: np.ndarray, pattern_hits: np.ndarray) -> tuple[float, float, float]:
    """(threshold, F1, FPR) of the combined check on validation, for the best threshold within TARGET_FPR.

    The false-positive rate is judged on the benign texts the model reads (those long enough):
    counting the short ones, which it never sees, would hide its mistakes on long texts.
    """
    read = np.isfinite(margins)
    best = (float(margins[read].max()) + 1, 0.0, 1.0)
    benign_read = max(1, int(((labels == 0) & read).sum()))
    for threshold in np.unique(margins[read]):
        predicted = (margins >= threshold) | pattern_hits
        fpr = int((predicted & (labels == 0) & read).sum()) / benign_read
        if fpr > TARGET_FPR:
            continue
        tp = int((predicted & (labels == 1)).sum())
        fp = int((predicted & (labels == 0)).sum())
        fn = int((~predicted & (labels == 1)).sum())
        f1 = 2 * tp / max(1, 2 * tp + fp + fn)
        if f1 > best[1]:
            best = (float(threshold), f1, fpr)
    return best


def main() -> None:
    try:
        splits = load()
    except MissingData as exc:
        sys.exit(f"cannot train: {exc}")
    train, validation = splits["train"], splits["validation"]
    x_train, y_train = matrix(train), np.array([e.label for e in train])
    x_val, y_val = matrix(validation), np.array([e.label for e in validation])
    pattern_hits = np.array([injection_score(e.text, learned=False)[0] >= 0.8 for e in validation])
    fitted = []
    for c in C_GRID:
        model = LogisticRegression(C=c, class_weight="balanced", max_iter=3000, solver="liblinear")
        model.fit(x_train, y_train)
        # Score validation texts as the run time does (windows for long texts), with these weights.
        scorer = LearnedScorer(model.coef_[0].astype(np.float16).astype(np.float32), float(model.intercept_[0]), 0.0, BITS, "")
        # Short texts are the patterns' alone at run time (SHORT_TEXT): they never pass the threshold.
        margins = np.array([scorer.margin(n) if len(n) >= SHORT_TEXT else -np.inf for n in map(normalize, (e.text for e in validation))])
        threshold, f1, fpr = operating_point(margins, y_val, pattern_hits)
        print(f"C={c:g}: validation F1 {f1:.3f}, false-positive rate {fpr:.2%} on the texts the model reads (margin {threshold:.3f})")
        fitted.append((model, threshold, f1, c))
    best = max(f1 for _, _, f1, _ in fitted)
    # Fewer words learnt by heart: prefer the simplest model that is nearly as good.
    chosen = next(entry for entry in fitted if entry[2] >= best - NEAR_BEST)
    model, threshold, f1, c = chosen
    weights = model.coef_[0].astype(np.float16)
    about = (
        f"logistic regression C={c:g}, {len(train)} train texts ({int(y_train.sum())} attacks), "
        f"threshold from {len(validation)} validation texts (F1 {f1:.3f} with the patterns)"
    )
    np.savez_compressed(
        OUT, weights=weights, bias=np.float64(model.intercept_[0]), threshold=np.float64(threshold), bits=np.int64(BITS), about=np.str_(about)
    )
    print(f"wrote {OUT} ({OUT.stat().st_size / 1e6:.1f} MB): {about}")


if __name__ == "__main__":
    main()
