"""A knowledge base: a folder of documents, cut into chunks, searched with BM25 (bm25s).

Markdown is cut at headings (each chunk keeps its heading for context), plain text and
HTML (its text, by the standard library's parser) at blank lines or paragraphs, and JSON
lines give one chunk per line (``{"text", "title"?}``). Everything is local.

bm25s builds the index (its Lucene BM25 scores per term and chunk); the search reads that
index itself, for all queries of an answer at once: bm25s spends ~0.2 ms per query on
work that does not depend on the index (its tokeniser's vocabulary, a top-k by
``argpartition``, which is slow on the many equal scores of a large index), which made
retrieval nearly all of a check's time. The scores are bm25s's to the bit (the same float32
sums in the same order); among equal scores the earlier chunk comes first.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import bm25s
import numpy as np
from bm25s.tokenization import STOPWORDS_EN

# bm25s sets its own logger to DEBUG on import, so every index build would print a line.
logging.getLogger("bm25s").setLevel(logging.WARNING)

__all__ = ["Chunk", "KnowledgeBase", "Passage"]

_SUFFIXES = (".md", ".markdown", ".txt", ".html", ".htm", ".jsonl")
_HEADING = re.compile(r"^#{1,6}\s+(.*)$", re.MULTILINE)
# Queries are cut as bm25s.tokenize cuts the chunks (its defaults, English stop words).
_TERMS = re.compile(r"(?u)\b\w\w+\b").findall
_STOPWORDS = frozenset(STOPWORDS_EN)


@dataclass(frozen=True, slots=True)
class Chunk:
    source: str
    title: str
    text: str


@dataclass(frozen=True, slots=True)
class Passage:
    chunk: Chunk
    score: float


class _HtmlText(HTMLParser):
    """The visible text of an HTML page, a paragraph per block element."""

    _BLOCKS = frozenset({"p", "div", "li", "h1", "h2", "h3", "h4", "h5", "h6", "br", "tr", "section", "article"})

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        elif tag in self._BLOCKS:
            self.parts.append("\n\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._skip = max(0, self._skip - 1)

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def _chunks_of(source: str, text: str) -> list[Chunk]:
    if source.endswith(".jsonl"):
        chunks = []
        for line in text.splitlines():
            if line.strip():
                item = json.loads(line)
                chunks.append(Chunk(source, str(item.get("title", "")), str(item["text"])))
        return chunks
    if source.endswith((".html", ".htm")):
        parser = _HtmlText()
        parser.feed(text)
        text = "".join(parser.parts)
    if not source.endswith((".md", ".markdown")):
        return [Chunk(source, "", block.strip()) for block in re.split(r"\n\s*\n", text) if block.strip()]
    chunks = []
    headings = list(_HEADING.finditer(text))
    if headings and headings[0].start() > 0 and text[: headings[0].start()].strip():
        chunks.append(Chunk(source, "", text[: headings[0].start()].strip()))
    for i, heading in enumerate(headings):
        end = headings[i + 1].start() if i + 1 < len(headings) else len(text)
        body = text[heading.end() : end].strip()
        if body:
            chunks.append(Chunk(source, heading.group(1).strip(), body))
    if not headings and text.strip():
        chunks.append(Chunk(source, "", text.strip()))
    return chunks


class KnowledgeBase:
    def __init__(self, chunks: Sequence[Chunk]) -> None:
        if not chunks:
            raise ValueError("the knowledge base holds no text")
        self.chunks = list(chunks)
        self.snapshot = hashlib.sha256("\x00".join(f"{c.source}\x00{c.text}" for c in self.chunks).encode()).hexdigest()[:16]
        retriever = bm25s.BM25()
        retriever.index(self._tokenize([f"{c.title}\n{c.text}" for c in self.chunks]), show_progress=False)
        self._retriever = retriever  # kept for comparison (tests/guardrails/test_knowledge.py)
        # The index as bm25s holds it: per term, the chunks that have it and its score in each.
        self._terms: dict[str, int] = retriever.vocab_dict
        self._scores: np.ndarray = retriever.scores["data"]
        self._chunk_ids: np.ndarray = retriever.scores["indices"]
        self._offsets: np.ndarray = retriever.scores["indptr"]

    @classmethod
    def from_directory(cls, directory: str | Path) -> KnowledgeBase:
        root = Path(directory)
        if not root.is_dir():
            raise FileNotFoundError(f"knowledge base folder {root} does not exist")
        chunks: list[Chunk] = []
        for path in sorted(p for p in root.rglob("*") if p.suffix.lower() in _SUFFIXES and p.is_file()):
            chunks.extend(_chunks_of(str(path.relative_to(root)), path.read_text(encoding="utf-8")))
        return cls(chunks)

    @staticmethod
    def signature(directory: str | Path) -> tuple[float, int]:
        """Changes when a document is added, removed or edited."""
        files = [p for p in Path(directory).rglob("*") if p.suffix.lower() in _SUFFIXES and p.is_file()]
        return (max((p.stat().st_mtime for p in files), default=0.0), len(files))

    @staticmethod
    def _tokenize(texts: list[str]) -> bm25s.tokenization.Tokenized:
        return bm25s.tokenize(texts, stopwords="en", show_progress=False)

    def search(self, query: str, k: int = 3) -> list[Passage]:
        """The best ``k`` chunks for ``query``, best first; chunks that share no term are left out."""
        return self.search_many([query], k)[0]

    def search_many(self, queries: list[str], k: int = 3) -> list[list[Passage]]:
        """``search`` for several queries in one call: their scores summed in one pass over
        the index, and the best ``k`` of each taken by ``k`` row-wise maxima."""
        if not queries:
            return []
        terms = self._terms
        # Each query's known terms, repeats kept (a repeated word counts again, as in bm25s).
        ids = [[terms[t] for t in _TERMS(q.lower()) if t not in _STOPWORDS and t in terms] for q in queries]
        count = len(self.chunks)
        rows = np.fromiter((row for row, query in enumerate(ids) for _ in query), np.int64)
        found = np.fromiter((t for query in ids for t in query), np.int64, count=len(rows))
        starts, lengths = self._offsets[found], self._offsets[found + 1] - self._offsets[found]
        # The positions in the index of every (term, chunk) entry of every query term, in order.
        at = np.arange(int(lengths.sum())) + np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)
        scores = np.zeros(len(queries) * count, dtype=self._scores.dtype)
        # add.at adds in order: each chunk's score is the sum over the query's terms in turn, in float32, as bm25s's.
        np.add.at(scores, self._chunk_ids[at] + np.repeat(rows * count, lengths), self._scores[at])
        scores = scores.reshape(len(queries), count)
        every = np.arange(len(queries))
        best: list[list[Passage]] = [[] for _ in queries]
        for _ in range(min(k, count)):
            top = scores.argmax(axis=1)  # the first of equal maxima: the earlier chunk
            values = scores[every, top]
            if not (values > 0).any():
                break
            for row in np.flatnonzero(values > 0):
                best[row].append(Passage(self.chunks[int(top[row])], float(values[row])))
            scores[every, top] = -np.inf
        return best
