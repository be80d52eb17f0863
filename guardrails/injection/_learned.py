"""The learned injection scorer: a linear model over hashed character and word n-grams.

Patterns catch the shapes we could name; the model catches the ones we could not (long
role-play jailbreaks, payloads split over sentences, instructions hidden in documents). It
is a logistic regression trained offline on public corpora (``bench/train_injection.py``,
sources in ``tests/data/SOURCES.md``) and shipped as ``injection_model.npz``: one weight per
hashed feature. Scoring needs numpy only, no scikit-learn, so it loads in milliseconds.

Features, on the normalised text (the same ``normalize`` the patterns use):
character 3-, 4- and 5-grams, and word 1- and 2-grams (words are runs of letters and
digits). Each n-gram is hashed with a polynomial hash over its code points, computed for
all positions at once with numpy (a rolling hash for characters; for words, one prefix sum
over the code points and the word edges found from a table of word characters), so no
Python loop runs per n-gram and nothing depends on Python's salted ``hash``. A text of
``LONG_AT`` characters or more (a document, a long jailbreak) also gets every n-gram a second
time in a namespace of its own, so the model can learn what a phrase means in a long text
apart from what it means in a short request: "write a poem about the sea" is an everyday
request typed by a user, and an injection inside an e-mail the model is asked to summarise.
The vector holds 1 for each bucket present, L2-normalised; the score is ``sigmoid(w·x + b)``
shifted so that the operating point chosen on validation data lands on ``BLOCK_AT`` (see
``score``), with an operating point of its own for texts under ``SHORT`` characters, where
one word weighs more.

Third-party text (a document a caller screens, a tool's result) is read by a second model in
the same file, ``DocumentScorer``: same n-grams, its own weights, and each line scored alone
as well as the whole (see its docstring).
"""

from __future__ import annotations

import functools
import math
import re
import threading
from dataclasses import dataclass
from functools import cache
from importlib import resources

import numpy as np
import numpy.typing as npt

__all__ = [
    "BLOCK_AT", "SHORT", "DocumentScorer", "LearnedScorer", "document_pieces", "document_scorer", "features", "learned_scorer",
]

# The score at which the model alone says "block": the threshold chosen on validation maps here,
# so the policy's default block_threshold (0.8) means the validated operating point.
BLOCK_AT = 0.8
CHAR_SIZES = (3, 4, 5)
WORD_SIZES = (1, 2)
WINDOW = 400  # characters; longer texts are also scored window by window (see LearnedScorer.margin)
LONG_AT = WINDOW * 3 // 2  # from here on a text is read window by window, and its n-grams count twice (see above)
SHORT = 200  # under this many characters a text has its own threshold
# What the shipped weights were trained on: a change to the featuriser must come with new weights.
FEATURES = f"chars{CHAR_SIZES} words{WORD_SIZES} distinct, again in a namespace from {LONG_AT}"
_P = np.uint64(1_000_003)  # odd, so it has an inverse modulo 2**64
_P_INV = np.uint64(pow(1_000_003, -1, 2**64))
_MIX = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing spreads the polynomial hash over the buckets
_WORD_SALT = np.uint64(0x51ED270B27F0F3A5)
_LONG_SALT = np.uint64(0x2545F4914F6CDD1D)
_NON_WORD_CHAR = re.compile(r"[\W_]")
_U64 = npt.NDArray[np.uint64]


@cache
def _powers(length: int) -> tuple[_U64, _U64]:
    """(P^(i+1), P^-(i+1)) for i < length, modulo 2**64; lengths are rounded up so few tables exist."""
    with np.errstate(over="ignore"):
        return (np.cumprod(np.full(length, _P, dtype=np.uint64)), np.cumprod(np.full(length, _P_INV, dtype=np.uint64)))


def _codes(text: str) -> _U64:
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)


def features(normal: str, bits: int) -> tuple[npt.NDArray[np.int64], float]:
    """(the distinct buckets of the text's n-grams, 1/sqrt(their number)) for an already normalised text.

    The feature vector is 1 per bucket present, L2-normalised: ``w·x`` is the sum of the
    present buckets' weights times that factor.
    """
    buckets, _, long_buckets = _located(normal, bits)
    first = _first_occurrences(buckets, bits)
    present = buckets[first] if long_buckets is None else np.concatenate((buckets[first], long_buckets[first]))
    return present, 1 / math.sqrt(len(present)) if len(present) else 0.0


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


# Which ASCII code points are word characters (letters and digits; "_" is not, as in [^\W_]).
_ASCII_WORD = np.zeros(128, dtype=bool)
_ASCII_WORD[[ord(c) for c in "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"]] = True


def _word_mask(text: str, codes: _U64) -> npt.NDArray[np.bool_]:
    """True at every code point of ``text`` (whose code points are ``codes``) that belongs to a word."""
    if text.isascii():
        return _ASCII_WORD[codes]
    # One character for one: every non-word character becomes NUL, so positions stay put.
    return _codes(_NON_WORD_CHAR.sub("\0", text)) != 0


def _hashed(normal: str) -> tuple[_U64, list[int], npt.NDArray[np.int64]]:
    """(the hash of every n-gram, how many of each kind: + characters, - words, where each word starts)."""
    with np.errstate(over="ignore"):
        framed = f" {normal} "
        codes = _codes(framed)
        parts = []
        rolling = codes
        for size in range(2, max(CHAR_SIZES) + 1):  # rolling hash of every n-gram, one size longer per pass
            rolling = rolling[:-1] * _P + codes[size - 1 :]
            if size in CHAR_SIZES:
                parts.append(rolling + np.uint64(size))
        counts = [len(part) for part in parts]
        # Words: where a run of word characters starts and ends (the text is framed by spaces).
        edges = np.flatnonzero(np.diff(_word_mask(framed, codes).view(np.int8)))
        starts, ends = edges[0::2], edges[1::2]
        if len(starts):
            powers, inverse_powers = _powers(1 << max(10, (len(codes) - 1).bit_length()))
            prefix = np.zeros(len(codes) + 1, dtype=np.uint64)
            np.cumsum(codes * inverse_powers[: len(codes)], out=prefix[1:])  # sum c[k] P^-(k+1)
            # starts/ends are the positions just before a word begins and where it ends
            words = (prefix[ends + 1] - prefix[starts + 1]) * powers[ends] ^ _WORD_SALT
            joined = words
            for size in range(1, max(WORD_SIZES) + 1):  # word n-grams, whatever separates the words
                if size > 1:
                    joined = joined[:-1] * _MIX + words[size - 1 :]
                if size in WORD_SIZES:
                    parts.append(joined)
                    counts.append(-len(joined))
    return np.concatenate(parts), counts, starts


def _places(counts: list[int], starts: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Where each n-gram starts in the framed text (a word n-gram: just before its first word)."""
    return np.concatenate([np.arange(n) if n >= 0 else starts[:-n] for n in counts])


def _located(normal: str, bits: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64] | None]:
    """(bucket, and for a long text where it starts and its bucket in the long texts' namespace) for every n-gram."""
    shift = np.uint64(64 - bits)
    hashes, counts, starts = _hashed(normal)
    with np.errstate(over="ignore"):
        buckets = ((hashes * _MIX) >> shift).astype(np.int64)
        if len(normal) < LONG_AT:  # read whole: where each n-gram lies does not matter
            return buckets, np.empty(0, dtype=np.int64), None
        long_buckets = (((hashes ^ _LONG_SALT) * _MIX) >> shift).astype(np.int64)
    return buckets, _places(counts, starts), long_buckets


# Under this many characters (most chat turns) a text is hashed in plain Python
# (``_small_buckets``): numpy's fixed cost (some 50 calls per text) outweighs the work per
# character there, the more so in a busy server, where numpy's code has left the CPU's caches
# between requests (25 characters: 21 vs 28 us with warm caches, 43 vs 84 us with cold ones).
SMALL = 64
_M64 = (1 << 64) - 1
_P_INT, _MIX_INT, _WORD_SALT_INT = int(_P), int(_MIX), int(_WORD_SALT)
if CHAR_SIZES != (3, 4, 5) or WORD_SIZES != (1, 2):
    raise RuntimeError("_small_buckets is written out for character 3-5-grams and word 1-2-grams: update it")


def _small_buckets(normal: str, bits: int) -> set[int]:
    """The distinct buckets ``_located`` gives a text under ``LONG_AT`` characters, computed
    with Python's integers: the same hashes, n-gram by n-gram (reduced modulo 2**64 only
    before the bucket's high bits are taken, which gives the same bits)."""
    shift, mask, p, mix = 64 - bits, _M64, _P_INT, _MIX_INT
    framed = f" {normal} "
    codes = [ord(c) for c in framed]
    found: set[int] = set()
    add = found.add
    last = len(codes)
    for start in range(last - 2):
        value = (codes[start] * p + codes[start + 1]) * p + codes[start + 2]
        add((((value + 3) * mix) & mask) >> shift)
        if start + 3 < last:
            value = value * p + codes[start + 3]
            add((((value + 4) * mix) & mask) >> shift)
            if start + 4 < last:
                value = value * p + codes[start + 4]
                add((((value + 5) * mix) & mask) >> shift)
    # Words: runs of letters and digits (as _word_mask: "_" is not a word character).
    words = []
    value = -1
    for code, char in zip(codes, framed):
        if char.isalnum():
            value = code if value < 0 else value * p + code
        elif value >= 0:
            words.append((value & mask) ^ _WORD_SALT_INT)
            value = -1
    for index, word in enumerate(words):
        add(((word * mix) & mask) >> shift)
        if index:
            add((((words[index - 1] * mix + word) * mix) & mask) >> shift)
    return found


@dataclass(frozen=True)
class LearnedScorer:
    weights: npt.NDArray[np.float32]
    bias: float
    threshold: float  # the raw margin chosen on validation data, mapped to BLOCK_AT
    threshold_short: float  # the same, for texts under SHORT characters
    bits: int
    about: str

    def margin(self, normal: str) -> float:
        """w·x + b over the whole text, or over its likeliest window when the text is long.

        A short instruction buried in a long document is diluted in the whole; windows of
        ``WINDOW`` characters (every ``WINDOW // 2``) find it. Each distinct n-gram counts
        once, where it first occurs; a window's sum is two blocks' sums, so a long text costs
        little more than the whole-text score.
        """
        if len(normal) < SMALL:
            small = _small_buckets(normal, self.bits)
            if not small:
                return self.bias
            weights = self._weight_of
            return sum(weights[bucket] for bucket in small) / math.sqrt(len(small)) + self.bias
        buckets, places, long_buckets = _located(normal, self.bits)
        if not len(buckets):
            return self.bias
        first = _first_occurrences(buckets, self.bits)
        contributions = self.weights[buckets[first]].astype(np.float64)
        if long_buckets is None:
            return float(contributions.sum() / math.sqrt(len(contributions)) + self.bias)
        # Each distinct n-gram counts twice: as itself and in the long texts' namespace.
        contributions += self.weights[long_buckets[first]]
        whole = contributions.sum() / math.sqrt(2 * len(contributions)) + self.bias
        # Windows of WINDOW characters every WINDOW // 2: each is two neighbouring blocks of WINDOW // 2.
        block = places[first] // (WINDOW // 2)
        summed = np.bincount(block, contributions)
        counted = 2 * np.bincount(block)
        if len(summed) > 1:
            summed = summed[:-1] + summed[1:]
            counted = counted[:-1] + counted[1:]
        windows = summed / np.sqrt(np.maximum(counted, 1)) + self.bias
        return float(max(whole, windows.max()))

    @functools.cached_property
    def _weight_of(self) -> memoryview:
        """The weights read one by one from Python (a float per index, no numpy scalar)."""
        return memoryview(self.weights)

    def score(self, normal: str) -> float:
        """0..1; ``BLOCK_AT`` exactly at the validated threshold (of short texts, for a short one)."""
        threshold = self.threshold_short if len(normal) < SHORT else self.threshold
        shifted = self.margin(normal) - threshold + math.log(BLOCK_AT / (1 - BLOCK_AT))
        return 1 / (1 + math.exp(-max(-50.0, min(50.0, shifted))))


MIN_LINE = 12  # characters; a document's shorter lines (table cells, braces) are read only as part of the whole
DOCUMENT_FEATURES = f"chars{CHAR_SIZES} words{WORD_SIZES}: the whole distinct, each line of {MIN_LINE}+ characters as counts"


def document_pieces(normal: str, bits: int) -> list[tuple[npt.NDArray[np.int64], float]]:
    """The feature vectors ``DocumentScorer.margin`` reads, as (buckets, factor): the whole
    document (distinct n-grams), then each line of ``MIN_LINE`` characters or more (every
    n-gram starting in it, repeats counted). The trainer fits on exactly these."""
    buckets, line, usable = _document_located(normal, bits)
    first = _first_occurrences(buckets, bits)
    pieces = [(buckets[first], 1 / math.sqrt(int(first.sum())) if len(buckets) else 0.0)]
    for number in np.flatnonzero(usable):
        inside = buckets[line == number]
        pieces.append((inside, 1 / math.sqrt(len(inside))))
    return pieces


def _document_located(normal: str, bits: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """(bucket of every n-gram, the line it starts in, which lines are long enough to be read alone)."""
    hashes, counts, starts = _hashed(normal)
    with np.errstate(over="ignore"):
        buckets = ((hashes * _MIX) >> np.uint64(64 - bits)).astype(np.int64)
    newlines = np.flatnonzero(_codes(normal) == 10) + 1 if "\n" in normal else np.empty(0, dtype=np.int64)
    if not len(newlines):
        return buckets, np.zeros(len(buckets), dtype=np.int64), np.array([len(normal) >= MIN_LINE])
    # In the framed text " normal ", line k runs from newline k-1 (exclusive) to newline k.
    line = np.searchsorted(newlines, _places(counts, starts), side="right")
    bounds = np.concatenate(([0], newlines, [len(normal) + 1]))
    return buckets, line, np.diff(bounds) - 1 >= MIN_LINE


@dataclass(frozen=True)
class DocumentScorer:
    """The model for third-party text (retrieved documents, tool results), trained apart.

    In a document, an ordinary request ("summarise the 2020 climate report") is the attack:
    nobody writing an e-mail or a table addresses the model reading it. The prompt model cannot
    learn that, since users type such requests all day. This one reads the whole document and
    each of its lines alone (an instruction slipped into an e-mail, a table or code is mostly a
    line of its own, diluted in the whole): the margin is the largest of them.
    """

    weights: npt.NDArray[np.float32]
    bias: float
    threshold: float
    bits: int
    about: str = ""

    def margin(self, normal: str) -> float:
        """max(w·x + b) over the whole document and its lines (``document_pieces``), vectorised."""
        buckets, line, usable = _document_located(normal, self.bits)
        if not len(buckets):
            return self.bias
        contributions = self.weights[buckets].astype(np.float64)
        first = _first_occurrences(buckets, self.bits)
        whole = contributions[first].sum() / math.sqrt(int(first.sum())) + self.bias
        if not usable.any():
            return float(whole)
        sums = np.bincount(line, contributions, minlength=len(usable))[usable]
        counted = np.bincount(line, minlength=len(usable))[usable]
        return float(max(whole, (sums / np.sqrt(np.maximum(counted, 1))).max() + self.bias))

    def score(self, normal: str) -> float:
        """0..1; ``BLOCK_AT`` exactly at the validated threshold. ``normal`` keeps its lines (``normalize_lines``)."""
        shifted = self.margin(normal) - self.threshold + math.log(BLOCK_AT / (1 - BLOCK_AT))
        return 1 / (1 + math.exp(-max(-50.0, min(50.0, shifted))))


@cache
def _models() -> tuple[LearnedScorer, DocumentScorer]:
    """Both models of ``injection_model.npz``, read once."""
    with resources.files(__package__).joinpath("injection_model.npz").open("rb") as file, np.load(file) as data:
        if str(data["features"]) != FEATURES:
            raise RuntimeError(f"injection_model.npz was trained on {data['features']}, not {FEATURES}: retrain it")
        if str(data["document_features"]) != DOCUMENT_FEATURES:
            raise RuntimeError(f"injection_model.npz's document model was trained on {data['document_features']}: retrain it")
        prompts = LearnedScorer(
            weights=data["weights"].astype(np.float32),
            bias=float(data["bias"]),
            threshold=float(data["threshold"]),
            threshold_short=float(data["threshold_short"]),
            bits=int(data["bits"]),
            about=str(data["about"]),
        )
        documents = DocumentScorer(
            weights=data["document_weights"].astype(np.float32),
            bias=float(data["document_bias"]),
            threshold=float(data["document_threshold"]),
            bits=int(data["document_bits"]),
            about=str(data["document_about"]),
        )
    return prompts, documents


def learned_scorer() -> LearnedScorer:
    """The prompt model shipped with the package (loaded once)."""
    return _models()[0]


def document_scorer() -> DocumentScorer:
    """The document model shipped beside the prompt model (loaded once)."""
    return _models()[1]
