"""The learned injection scorer: a linear model over hashed character and word n-grams.

Patterns catch the shapes we could name; the model catches the ones we could not (long
role-play jailbreaks, payloads split over sentences, instructions hidden in documents). It
is a logistic regression trained offline on public corpora (``bench/train_injection.py``,
sources in ``tests/data/SOURCES.md``) and shipped as ``injection_model.npz``: one weight per
hashed feature. Scoring needs numpy only, no scikit-learn, so it loads in milliseconds.

Features, on the normalised text (the same ``normalize`` the patterns use):
character 3-, 4- and 5-grams, and word 1- and 2-grams (words are runs of letters and
digits). Each n-gram is hashed with a polynomial hash over its code points, computed for
all positions at once (a rolling hash for characters, prefix sums for words), so no Python
loop runs per n-gram. The vector holds 1 for each bucket present, L2-normalised; the score is ``sigmoid(w·x + b)`` shifted so
that the operating point chosen on validation data lands on ``BLOCK_AT`` (see ``score``).
"""

from __future__ import annotations

import math
import re
import threading
from dataclasses import dataclass
from functools import cache
from importlib import resources

import numpy as np
import numpy.typing as npt

__all__ = ["BLOCK_AT", "LearnedScorer", "features", "learned_scorer"]

# The score at which the model alone says "block": the threshold chosen on validation maps here,
# so the policy's default block_threshold (0.8) means the validated operating point.
BLOCK_AT = 0.8
CHAR_SIZES = (3, 4, 5)
WINDOW = 400  # characters; longer texts are also scored window by window (see LearnedScorer.margin)
_P = np.uint64(1_000_003)  # odd, so it has an inverse modulo 2**64
_P_INV = np.uint64(pow(1_000_003, -1, 2**64))
_MIX = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing spreads the polynomial hash over the buckets
_WORD_SALT = np.uint64(0x51ED270B27F0F3A5)
_NON_WORD = re.compile(r"[\W_]+")
_U64 = npt.NDArray[np.uint64]


@cache
def _powers(length: int) -> tuple[_U64, _U64]:
    """(P^(i+1), P^-(i+1)) for i < length, modulo 2**64; lengths are rounded up so few tables exist."""
    with np.errstate(over="ignore"):
        return (np.cumprod(np.full(length, _P, dtype=np.uint64)), np.cumprod(np.full(length, _P_INV, dtype=np.uint64)))


def _word_hashes(codes: _U64, starts: _U64, ends: _U64) -> _U64:
    """Polynomial hash of codes[start:end] for many spans at once, from one prefix sum."""
    powers, inverse_powers = _powers(1 << max(10, (len(codes) - 1).bit_length()))
    prefix = np.zeros(len(codes) + 1, dtype=np.uint64)
    np.cumsum(codes * inverse_powers[: len(codes)], out=prefix[1:])  # sum c[k] P^-(k+1)
    return (prefix[ends] - prefix[starts]) * powers[ends - 1]


def _codes(text: str) -> _U64:
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)


def features(normal: str, bits: int) -> tuple[npt.NDArray[np.int64], float]:
    """(the distinct buckets of the text's n-grams, 1/sqrt(their number)) for an already normalised text.

    The feature vector is 1 per bucket present, L2-normalised: ``w·x`` is the sum of the
    present buckets' weights times that factor.
    """
    buckets, places = _located(normal, bits)
    first = _first_occurrences(buckets, bits)
    return buckets[first], 1 / math.sqrt(int(first.sum())) if len(buckets) else 0.0


_scratch = threading.local()


def _first_occurrences(buckets: npt.NDArray[np.int64], bits: int) -> npt.NDArray[np.bool_]:
    """A mask keeping one occurrence of each bucket, without a sort: every position writes its
    number into a per-thread table at its bucket, and the one whose number stayed is kept."""
    table = getattr(_scratch, "table", None)
    if table is None or len(table) != 1 << bits:
        table = _scratch.table = np.empty(1 << bits, dtype=np.int32)
    order = np.arange(len(buckets), dtype=np.int32)
    table[buckets] = order
    return table[buckets] == order


def _located(normal: str, bits: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """(bucket, roughly where in the text it starts) for every n-gram."""
    shift = np.uint64(64 - bits)
    parts = []
    places = []
    with np.errstate(over="ignore"):
        codes = _codes(f" {normal} ")
        rolling = codes
        for size in range(2, max(CHAR_SIZES) + 1):  # rolling hash of every n-gram, one size longer per pass
            rolling = rolling[:-1] * _P + codes[size - 1 :]
            if size in CHAR_SIZES:
                parts.append(rolling + np.uint64(size))
                places.append(np.arange(len(rolling)))
        words = _NON_WORD.sub(" ", normal).strip()
        if words:
            word_codes = _codes(f"{words} ")
            ends = np.flatnonzero(word_codes == 32).astype(np.uint64)
            starts = np.concatenate((np.zeros(1, dtype=np.uint64), ends[:-1] + np.uint64(1)))
            parts.append(_word_hashes(word_codes, starts, ends) ^ _WORD_SALT)
            # Punctuation runs became one space, so word offsets run a little ahead: scale them.
            where = (starts.astype(np.int64) * len(codes)) // len(word_codes)
            places.append(where)
            if len(ends) > 1:
                parts.append(_word_hashes(word_codes, starts[:-1], ends[1:]) ^ (_WORD_SALT + np.uint64(1)))
                places.append(where[:-1])
        buckets = ((np.concatenate(parts) * _MIX) >> shift).astype(np.int64)
    return buckets, np.concatenate(places).astype(np.int64)


@dataclass(frozen=True)
class LearnedScorer:
    weights: npt.NDArray[np.float32]
    bias: float
    threshold: float  # the raw margin chosen on validation data, mapped to BLOCK_AT
    bits: int
    about: str

    def margin(self, normal: str) -> float:
        """w·x + b over the whole text, or over its likeliest window when the text is long.

        A short instruction buried in a long document is diluted in the whole; windows of
        ``WINDOW`` characters (every ``WINDOW // 2``) find it. Each distinct n-gram counts
        once, where it first occurs; sums per window come from one cumulative sum, so a long
        text costs little more than the whole-text score.
        """
        buckets, places = _located(normal, self.bits)
        if not len(buckets):
            return self.bias
        first = _first_occurrences(buckets, self.bits)
        contributions = self.weights[buckets[first]].astype(np.float64)
        whole = contributions.sum() / math.sqrt(len(contributions)) + self.bias
        if len(normal) <= WINDOW * 3 // 2:
            return float(whole)
        length = len(normal) + 3
        where = places[first]
        summed = np.concatenate(([0.0], np.cumsum(np.bincount(where, contributions, minlength=length))))
        counted = np.concatenate(([0], np.cumsum(np.bincount(where, minlength=length))))
        starts = np.arange(0, length - WINDOW // 2, WINDOW // 2)
        ends = np.minimum(starts + WINDOW, length)
        counts = np.maximum(counted[ends] - counted[starts], 1)
        windows = (summed[ends] - summed[starts]) / np.sqrt(counts) + self.bias
        return float(max(whole, windows.max()))

    def score(self, normal: str) -> float:
        """0..1; ``BLOCK_AT`` exactly at the validated threshold."""
        shifted = self.margin(normal) - self.threshold + math.log(BLOCK_AT / (1 - BLOCK_AT))
        return 1 / (1 + math.exp(-max(-50.0, min(50.0, shifted))))


@cache
def learned_scorer() -> LearnedScorer:
    """The scorer shipped with the package (loaded once)."""
    with resources.files(__package__).joinpath("injection_model.npz").open("rb") as file, np.load(file) as data:
        return LearnedScorer(
            weights=data["weights"].astype(np.float32),
            bias=float(data["bias"]),
            threshold=float(data["threshold"]),
            bits=int(data["bits"]),
            about=str(data["about"]),
        )
