"""A knowledge base: a folder of documents, cut into chunks, searched with BM25 (bm25s).

Markdown is cut at headings (each chunk keeps its heading for context), plain text at
blank lines. Everything is local: nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import bm25s

__all__ = ["Chunk", "KnowledgeBase", "Passage"]

_SUFFIXES = (".md", ".markdown", ".txt")
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


def _chunks_of(source: str, text: str) -> list[Chunk]:
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
    def _tokenize(texts: list[str]) -> bm25s.tokenization.Tokenized:
        return bm25s.tokenize(texts, stopwords="en", show_progress=False)

    def search(self, query: str, k: int = 3) -> list[Passage]:
        """The best ``k`` chunks for ``query``, best first; chunks that share no term are left out."""
        k = min(k, len(self.chunks))
        indices, scores = self._retriever.retrieve(self._tokenize([query]), k=k, show_progress=False)
        return [Passage(self.chunks[int(i)], float(s)) for i, s in zip(indices[0], scores[0], strict=True) if s > 0]
