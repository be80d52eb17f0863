"""Train the learned injection scorers and write ``guardrails/injection/injection_model.npz``.

    .venv/bin/python bench/train_injection.py             # both models
    .venv/bin/python bench/train_injection.py documents   # the document model only (the prompt model's weights kept)

Reads the public corpus from the fetched mirrors (``bench/injection_corpus.py``; it names what
to fetch when something is missing). Fits a logistic regression (scikit-learn, here only: the
run-time scorer needs numpy alone) on the train split with the run-time featuriser, and picks
on the validation split, never looking at the test split:

- two decision thresholds, one for texts under ``SHORT`` characters and one for the rest: the
  pair giving the best F1 of the check as shipped (the patterns' own hits counted) whose
  false-positive rate on validation benign texts stays under ``TARGET_FPR_SHORT`` for short
  texts (most of what users type) and ``TARGET_FPR`` for the rest;
- the regularisation: of the strengths in ``C_GRID``, the strongest whose validation F1 is
  within ``NEAR_BEST`` of the best.

The document model (``DocumentScorer``: the whole document and each line) is fitted on the
split's train documents, the short train attacks, and ``document_sets``' extra BIPIA
training contexts, clean and poisoned; each clean line is a negative of its own, and the
line an attack was slipped in as is a positive (weighted ``LINE_WEIGHT``: a document has
one whole and many lines). Its threshold and regularisation are picked the same way on the
split's validation documents and ``document_sets``' validation (attacks of held-out kinds),
at most ``TARGET_FPR_DOCUMENTS`` of their clean documents blocked.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from scipy.sparse import csr_matrix
from sklearn.linear_model import LogisticRegression

sys.path.insert(0, str(Path(__file__).resolve().parent))

from injection_corpus import Example, MissingData, Poisoned, document_sets, load  # noqa: E402

from aimsguard.guardrails.injection import injection_score, normalize  # noqa: E402
from aimsguard.guardrails.injection._learned import (  # noqa: E402
    DOCUMENT_FEATURES, FEATURES, MIN_LINE, SHORT, DocumentScorer, LearnedScorer, document_pieces, features,
)
from aimsguard.guardrails.injection._normalize import normalize_lines  # noqa: E402

OUT = Path(__file__).resolve().parent.parent / "guardrails" / "injection" / "injection_model.npz"
BITS = 19
TARGET_FPR = 0.03  # on validation benign texts of SHORT characters or more (documents, long requests)
TARGET_FPR_SHORT = 0.0025  # on shorter ones: most of what users type, where one word can tip the model (1% blocked 7 of the own set's 113 hard negatives)
C_GRID = (4.0, 16.0, 64.0, 256.0)
NEAR_BEST = 0.01  # the most regularised model within this much validation F1 of the best wins
DOCUMENT_BITS = 18
DOCUMENT_C_GRID = (64.0, 256.0, 1024.0)
TARGET_FPR_DOCUMENTS = 0.03
LINE_WEIGHT = 3.0
SHORT_ATTACK = 400  # train attacks shorter than this also teach the document model what an instruction looks like


def matrix(examples: list[Example]) -> csr_matrix:
    rows, cols, vals = [], [], []
    for number, example in enumerate(examples):
        buckets, factor = features(normalize(example.text), BITS)
        rows.append(np.full(len(buckets), number))
        cols.append(buckets)
        vals.append(np.full(len(buckets), factor))
    return csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(len(examples), 2**BITS))


def _counts(margins: np.ndarray, labels: np.ndarray, hits: np.ndarray, target: float) -> tuple[np.ndarray, ...]:
    """For every candidate threshold of one class of texts: (threshold, tp, fp, fn), within ``target``."""
    thresholds = np.append(np.unique(margins), np.inf)
    predicted = (margins[None, :] >= thresholds[:, None]) | hits[None, :]
    tp = (predicted & (labels == 1)).sum(axis=1)
    fp = (predicted & (labels == 0)).sum(axis=1)
    fn = (labels == 1).sum() - tp
    keep = (fp <= target * max(1, int((labels == 0).sum()))) | np.isinf(thresholds)  # the model silent: patterns alone
    return thresholds[keep], tp[keep], fp[keep], fn[keep]


def operating_point(margins: np.ndarray, labels: np.ndarray, pattern_hits: np.ndarray, short: np.ndarray) -> tuple[float, float, float, float]:
    """(threshold, threshold for short texts, F1, false-positive rate) of the check on validation.

    The two classes of texts are disjoint, so the F1 of every pair of thresholds comes from
    one sum of their counts.
    """
    long_, short_ = (
        _counts(margins[mask], labels[mask], pattern_hits[mask], target)
        for mask, target in ((~short, TARGET_FPR), (short, TARGET_FPR_SHORT))
    )
    tp = long_[1][:, None] + short_[1][None, :]
    fp = long_[2][:, None] + short_[2][None, :]
    fn = long_[3][:, None] + short_[3][None, :]
    f1 = 2 * tp / np.maximum(1, 2 * tp + fp + fn)
    i, j = np.unravel_index(int(np.argmax(f1)), f1.shape)
    return float(long_[0][i]), float(short_[0][j]), float(f1[i, j]), float(fp[i, j] / max(1, int((labels == 0).sum())))


def train_prompts(splits: dict[str, list[Example]]) -> dict[str, np.ndarray]:
    train, validation = splits["train"], splits["validation"]
    x_train, y_train = matrix(train), np.array([e.label for e in train])
    y_val = np.array([e.label for e in validation])
    pattern_hits = np.array([injection_score(e.text, learned=False)[0] >= 0.8 for e in validation])
    normals = [normalize(e.text) for e in validation]
    short = np.array([len(n) < SHORT for n in normals])
    fitted = []
    for c in C_GRID:
        model = LogisticRegression(C=c, class_weight="balanced", max_iter=3000, solver="liblinear")
        model.fit(x_train, y_train)
        # Score validation texts as the run time does (windows for long texts), with these weights.
        scorer = LearnedScorer(model.coef_[0].astype(np.float16).astype(np.float32), float(model.intercept_[0]), 0.0, 0.0, BITS, "")
        margins = np.array([scorer.margin(n) for n in normals])
        threshold, threshold_short, f1, fpr = operating_point(margins, y_val, pattern_hits, short)
        print(f"C={c:g}: validation F1 {f1:.3f}, false-positive rate {fpr:.2%} (margins {threshold:.3f}, short texts {threshold_short:.3f})")
        fitted.append((model, threshold, threshold_short, f1, c))
    best = max(entry[3] for entry in fitted)
    # Fewer words learnt by heart: prefer the simplest model that is nearly as good.
    model, threshold, threshold_short, f1, c = next(entry for entry in fitted if entry[3] >= best - NEAR_BEST)
    weights = model.coef_[0].astype(np.float16)
    about = (
        f"logistic regression C={c:g}, {len(train)} train texts ({int(y_train.sum())} attacks), "
        f"thresholds from {len(validation)} validation texts (F1 {f1:.3f} with the patterns)"
    )
    print(f"prompt model: {about}")
    return {
        "weights": weights, "bias": np.float64(model.intercept_[0]), "threshold": np.float64(threshold),
        "threshold_short": np.float64(threshold_short), "features": np.str_(FEATURES), "bits": np.int64(BITS),
        "about": np.str_(about),
    }


def document_matrix(documents: list[Poisoned]) -> tuple[csr_matrix, np.ndarray, np.ndarray]:
    """The rows the document model is fitted on: each whole document, and its lines (see the module's docstring)."""
    rows, cols, vals, labels, weights = [], [], [], [], []

    def add(buckets: np.ndarray, factor: float, label: int, weight: float) -> None:
        rows.append(np.full(len(buckets), len(labels)))
        cols.append(buckets)
        vals.append(np.full(len(buckets), factor))
        labels.append(label)
        weights.append(weight)

    for document in documents:
        normal = normalize_lines(document.text)
        pieces = document_pieces(normal, DOCUMENT_BITS)
        add(*pieces[0], document.label, 1.0)
        lines = [line for line in normal.split("\n") if len(line) >= MIN_LINE]
        attack = normalize(document.attack) if document.attack else None
        for line, piece in zip(lines, pieces[1:]):
            if document.label == 0:
                add(*piece, 0, LINE_WEIGHT)
            elif line == attack:
                add(*piece, 1, LINE_WEIGHT)
                attack = None  # the first such line only
    shape = (len(labels), 2**DOCUMENT_BITS)
    matrix = csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=shape)
    return matrix, np.array(labels), np.array(weights)


def train_documents(splits: dict[str, list[Example]]) -> dict[str, np.ndarray]:
    extra_train, extra_validation = document_sets(splits)
    as_document = lambda e: Poisoned(e.text, e.label, e.source)  # noqa: E731
    train = [as_document(e) for e in splits["train"] if e.kind == "document"]
    train += [as_document(e) for e in splits["train"] if e.kind == "prompt" and e.label and len(e.text) < SHORT_ATTACK]
    train += extra_train
    validation = [as_document(e) for e in splits["validation"] if e.kind == "document"] + extra_validation
    x_train, y_train, w_train = document_matrix(train)
    y_val = np.array([d.label for d in validation])
    pattern_hits = np.array([injection_score(d.text, learned=False)[0] >= 0.8 for d in validation])
    normals = [normalize_lines(d.text) for d in validation]
    fitted = []
    for c in DOCUMENT_C_GRID:
        model = LogisticRegression(C=c, class_weight="balanced", max_iter=3000, solver="liblinear", random_state=0)
        model.fit(x_train, y_train, sample_weight=w_train)
        weights = model.coef_[0].astype(np.float16).astype(np.float32)  # as shipped
        scorer = DocumentScorer(weights, float(model.intercept_[0]), 0.0, DOCUMENT_BITS)
        margins = np.array([scorer.margin(n) for n in normals])
        thresholds, tp, fp, fn = _counts(margins, y_val, pattern_hits, TARGET_FPR_DOCUMENTS)
        f1 = 2 * tp / np.maximum(1, 2 * tp + fp + fn)
        best = int(np.argmax(f1))
        fpr = fp[best] / max(1, int((y_val == 0).sum()))
        print(f"documents C={c:g}: validation F1 {f1[best]:.3f}, false-positive rate {fpr:.2%} (margin {thresholds[best]:.3f})")
        fitted.append((model, float(thresholds[best]), float(f1[best]), c))
    top = max(entry[2] for entry in fitted)
    model, threshold, f1, c = next(entry for entry in fitted if entry[2] >= top - NEAR_BEST)
    about = (
        f"logistic regression C={c:g}, {len(train)} train documents ({int(sum(d.label for d in train))} poisoned or attacks), "
        f"threshold from {len(validation)} validation documents (F1 {f1:.3f} with the patterns)"
    )
    print(f"document model: {about}")
    return {
        "document_weights": model.coef_[0].astype(np.float16), "document_bias": np.float64(model.intercept_[0]),
        "document_threshold": np.float64(threshold), "document_bits": np.int64(DOCUMENT_BITS),
        "document_features": np.str_(DOCUMENT_FEATURES), "document_about": np.str_(about),
    }


def main() -> None:
    part = sys.argv[1] if len(sys.argv) > 1 else "all"
    if part not in ("all", "prompts", "documents"):
        sys.exit("usage: train_injection.py [all|prompts|documents]")
    try:
        splits = load()
    except MissingData as exc:
        sys.exit(f"cannot train: {exc}")
    arrays: dict[str, np.ndarray] = {}
    if part != "all":  # keep the other model's arrays as shipped
        with np.load(OUT) as shipped:
            arrays = {name: shipped[name] for name in shipped.files}
    if part in ("all", "prompts"):
        arrays |= train_prompts(splits)
    if part in ("all", "documents"):
        arrays |= train_documents(splits)
    np.savez_compressed(OUT, **arrays)
    print(f"wrote {OUT} ({OUT.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
