"""The knowledge base's search: bm25s's index read by our own batched search, with bm25s's results."""

import json
import random
from pathlib import Path

import numpy as np
import pytest

from aimsguard.guardrails.grounding import claims_of
from aimsguard.guardrails.knowledge import Chunk, KnowledgeBase

ROOT = Path(__file__).resolve().parents[2]
EVAL = ROOT / "tests" / "data" / "grounding_eval.jsonl"


def _queries() -> list[str]:
    rows = [json.loads(line) for line in EVAL.read_text().splitlines()]
    queries = [f"{claim.text} {row['question']}" for row in rows for claim in claims_of(row["answer"], row["question"])]
    return queries + ["", "the of and", "zzz unknown words", "refund refund refund", "Pro plan price", "minutes admin"]


def _generated() -> KnowledgeBase:
    """Many chunks that share most words: scores tie a lot, the case bm25s's top-k is slow on."""
    rng = random.Random(5)
    topics, verbs = ["invoices", "exports", "webhooks", "teams", "backups"], ["configure", "rotate", "share", "restore"]
    chunks = [Chunk("g.jsonl", f"{t} {i}", f"To {v} {t} in workspace {i}, open Settings and choose {v}. It takes up to "
                                            f"{rng.randrange(2, 60)} minutes and needs the admin role.")
              for i, (t, v) in enumerate((rng.choice(topics), rng.choice(verbs)) for _ in range(600))]
    return KnowledgeBase(KnowledgeBase.from_directory(ROOT / "configs" / "knowledge").chunks + chunks)


@pytest.mark.parametrize("kb", [KnowledgeBase.from_directory(ROOT / "configs" / "knowledge"), _generated()], ids=["example", "ties"])
@pytest.mark.parametrize("k", [1, 3, 10])
def test_search_many_gives_bm25s_results(kb: KnowledgeBase, k: int) -> None:
    queries = _queries()
    found = kb.search_many(queries, k=k)
    indices, scores = kb._retriever.retrieve(kb._tokenize(queries), k=min(k, len(kb.chunks)), show_progress=False, n_threads=0)
    position = {id(chunk): i for i, chunk in enumerate(kb.chunks)}
    for query, passages, theirs, their_scores in zip(queries, found, indices, scores, strict=True):
        expected = [float(s) for s in their_scores if s > 0]
        assert [p.score for p in passages] == expected, query  # the same scores, to the bit
        ours = [position[id(p.chunk)] for p in passages]
        # The same chunks, except which of several equal scores made the cut (bm25s leaves that to argpartition).
        cut = expected[-1] if expected else 0.0
        assert {i for i, p in zip(ours, passages) if p.score > cut} == {int(i) for i, s in zip(theirs, their_scores) if s > cut}, query
        # Among equal scores the earlier chunk comes first.
        for (a, pa), (b, pb) in zip(zip(ours, passages), zip(ours[1:], passages[1:])):
            assert pa.score > pb.score or (pa.score == pb.score and a < b)


def test_a_query_with_no_known_word_finds_nothing() -> None:
    kb = KnowledgeBase([Chunk("a.md", "Refunds", "Annual plans can be refunded within 30 days.")])
    assert kb.search_many(["zzz qqq", "", "annual refund"], k=3)[:2] == [[], []]
    assert [p.chunk.title for p in kb.search_many(["annual refund"], k=3)[0]] == ["Refunds"]
    assert np.isfinite([p.score for p in kb.search("annual refund")]).all()
