"""A knowledge base: a folder of documents, cut into chunks, searched with BM25 (bm25s).

Markdown is cut at headings (each chunk keeps its heading for context), plain text and
HTML (its text, by the standard library's parser) at blank lines or paragraphs, and JSON
lines give one chunk per line (``{"text", "title"?}``). Everything is local.
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

# bm25s sets its own logger to DEBUG on import, so every index build would print a line.
logging.getLogger("bm25s").setLevel(logging.WARNING)

__all__ = ["Chunk", "KnowledgeBase", "Passage"]

_SUFFIXES = (".md", ".markdown", ".txt", ".html", ".htm", ".jsonl")
_HEADING = re.compile(r"^#{1,6}\s+(.*)$", re.MULTILINE)


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
        self._retriever = bm25s.BM25()
        self._retriever.index(self._tokenize([f"{c.title}\n{c.text}" for c in self.chunks]), show_progress=False)

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
        """``search`` for several queries in one call (one tokenisation, one retrieval)."""
        if not queries:
            return []
        k = min(k, len(self.chunks))
        indices, scores = self._retriever.retrieve(self._tokenize(queries), k=k, show_progress=False, n_threads=0)  # 0: no thread pool per call
        return [
            [Passage(self.chunks[int(i)], float(s)) for i, s in zip(row_indices, row_scores, strict=True) if s > 0]
            for row_indices, row_scores in zip(indices, scores, strict=True)
        ]
