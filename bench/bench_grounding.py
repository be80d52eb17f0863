"""The grounding check: quality on public labelled data and on the project's own set, and speed
against a 2,000-chunk KB.

Public data (HaluEval QA, FaithDial's audit; see bench/grounding_public.py and
tests/data/SOURCES.md) is read from fetched mirrors; only its test split is reported here
(settings were chosen on the train split: ``--split train`` prints that one). Each answer is
checked against its own knowledge passage, as a retrieved passage, with its question.

The large knowledge base is the example one plus 2,000 generated product-help sections
(written to a temporary folder); answers of about 1,000 characters mix supported and
unsupported claims. The speed lines show the search before (bm25s's own retrieve) and now side
by side, in one run.

    .venv/bin/python bench/bench_grounding.py
"""

from __future__ import annotations

import functools
import json
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

from aimsguard.guardrails import Action, CheckRequest, Stage
from aimsguard.guardrails import grounding_align, grounding_claims
from aimsguard.guardrails.grounding import GroundingGuardrail, GroundingSettings, claims_of, judge_claim
from aimsguard.guardrails.knowledge import Chunk, KnowledgeBase, Passage

import grounding_public  # beside this script

ROOT = Path(__file__).resolve().parent.parent
EVAL = ROOT / "tests" / "data" / "grounding_eval.jsonl"
TOPICS = ["invoices", "exports", "webhooks", "teams", "projects", "storage", "backups", "audit logs", "api keys", "sso"]
VERBS = ["configure", "rotate", "download", "share", "archive", "restore", "limit", "monitor", "schedule", "delete"]


def _check(guardrail: GroundingGuardrail, answer: str, question: str | None = None):  # type: ignore[no-untyped-def]
    return guardrail.check_inline(CheckRequest(stage=Stage.OUTPUT, texts=[answer], system_id="bench", conversation_id="b", question=question))


def _grounded(example: grounding_public.Example, min_support: float) -> bool:
    passage = Passage(Chunk(example.dataset, "", example.evidence), 1.0)
    for claim in claims_of(example.answer, example.question):
        best = judge_claim(claim, [passage])
        if best is None or not best[0].supported(min_support):
            return False
    return True


def public_quality(split: str = "test", min_support: float = GroundingSettings().min_support) -> None:
    print(f"public data, {split} split (min_support {min_support}):")
    for dataset in ("halueval-qa", "faithdial-audit"):
        try:
            examples = grounding_public.load(dataset, split)
        except grounding_public.MissingData as missing:
            print(f"  {dataset}: skipped: {missing}")
            continue
        right = {True: 0, False: 0}
        total = {True: 0, False: 0}
        for example in examples:
            total[example.supported] += 1
            right[example.supported] += _grounded(example, min_support) == example.supported
        tpr, tnr = right[True] / total[True], right[False] / total[False]
        print(f"  {dataset}: {total[True]} supported, {total[False]} unsupported answers; supported allowed {tpr:.1%}, "
              f"unsupported caught {tnr:.1%}, balanced accuracy {(tpr + tnr) / 2:.1%}")


def quality() -> None:
    guardrail = GroundingGuardrail(GroundingSettings(knowledge_base=ROOT / "configs" / "knowledge"), instance_id="grounding")
    guardrail.load()
    rows = [json.loads(line) for line in EVAL.read_text().splitlines()]
    right = {True: 0, False: 0}
    total = {True: 0, False: 0}
    for row in rows:
        allowed = _check(guardrail, row["answer"], row["question"]).action is Action.ALLOW
        total[row["supported"]] += 1
        right[row["supported"]] += allowed == row["supported"]
    tpr, tnr = right[True] / total[True], right[False] / total[False]
    print(f"labelled set: {total[True]} supported, {total[False]} unsupported answers against configs/knowledge")
    print(f"supported answers allowed {tpr:.1%}, unsupported answers caught {tnr:.1%}, balanced accuracy {(tpr + tnr) / 2:.1%}")


def _bm25s_search_many(kb: KnowledgeBase, queries: list[str], k: int = 3) -> list[list[Passage]]:
    """The search as it was before 2026-12-05: bm25s's own tokenise and retrieve, for comparison."""
    if not queries:
        return []
    indices, scores = kb._retriever.retrieve(kb._tokenize(queries), k=min(k, len(kb.chunks)), show_progress=False, n_threads=0)
    return [[Passage(kb.chunks[int(i)], float(s)) for i, s in zip(row_i, row_s, strict=True) if s > 0]
            for row_i, row_s in zip(indices, scores, strict=True)]


def _forget_claims() -> None:
    """Forget the analyses of claims' texts: an answer seen for the first time; the passages'
    analyses and the words' endings stay, as in a knowledge base in use."""
    for cached in (grounding_align.anchor_words, grounding_align.content_words, grounding_align.facts_of, grounding_align._words,
                   grounding_align._claim_clauses, grounding_align._claim_parts, grounding_claims._read):
        cached.cache_clear()


def _forget_all() -> None:
    """Forget the passages' analyses met in checks and the words' endings too: a knowledge base
    just loaded (what a guardrail read ahead at load, ``analyse_ahead``, it keeps)."""
    _forget_claims()
    grounding_align._passage.cache_clear()
    grounding_align._light.cache_clear()


def _timed(run, items, before=None) -> tuple[list[float], list[float]]:  # type: ignore[no-untyped-def]
    """Wall-clock and CPU (this thread's) seconds per item: on a shared, loaded machine the wall
    clock also counts the time spent waiting for a core, the CPU time only the check's work."""
    wall, cpu = [], []
    for item in items:
        if before is not None:
            before()
        began, began_cpu = time.perf_counter(), time.thread_time()
        run(item)
        cpu.append(time.thread_time() - began_cpu)
        wall.append(time.perf_counter() - began)
    return wall, cpu


def _figures(times: tuple[list[float], list[float]]) -> str:
    wall, cpu = times
    return (f"median {statistics.median(wall) * 1000:.2f} ms, p95 {sorted(wall)[int(len(wall) * 0.95)] * 1000:.2f} ms "
            f"(CPU: median {statistics.median(cpu) * 1000:.2f} ms, p95 {sorted(cpu)[int(len(cpu) * 0.95)] * 1000:.2f} ms)")


def _streamed(guardrail: GroundingGuardrail, answer: str, question: str, piece: int = 40, holdback: int = 64) -> None:
    """An answer checked as a stream is (agent/_streaming.py): at each release only the text from
    the start of the sentence still open, via ``stream_start``; the step grows to 200 characters."""
    checked = 0
    for upto in [*range(piece, len(answer), piece), len(answer)]:
        if upto - checked < min(200, max(holdback // 2, checked // 2)) and upto < len(answer):
            continue
        start = guardrail.stream_start(answer[:upto], checked, holdback)
        guardrail.check_inline(CheckRequest(stage=Stage.OUTPUT, texts=[answer[start:upto]], system_id="bench",
                                            conversation_id="b", question=question))
        checked = upto


def speed(chunks: int = 2000) -> None:
    rng = random.Random(3)
    folder = Path(tempfile.mkdtemp(prefix="aimsguard-kb-"))
    for path in (ROOT / "configs" / "knowledge").glob("*.md"):
        (folder / path.name).write_text(path.read_text())
    lines = []
    for i in range(chunks):
        topic, verb = rng.choice(TOPICS), rng.choice(VERBS)
        lines.append(json.dumps({"title": f"{topic} {i}", "text": f"To {verb} {topic} in workspace {i}, open Settings > {topic.title()} "
                                 f"and choose {verb.title()}. It takes up to {rng.randrange(2, 60)} minutes and needs the admin role."}))
    (folder / "generated.jsonl").write_text("\n".join(lines))
    started = time.perf_counter()
    guardrail = GroundingGuardrail(GroundingSettings(knowledge_base=folder, retrieval_cache=0), instance_id="grounding")
    guardrail.load()
    load_s = time.perf_counter() - started
    assert guardrail.kb is not None
    # Its passages are read ahead in a background thread: the same work timed here, in this one.
    guardrail.wait_analysed()
    _forget_all()
    began = time.thread_time()
    for chunk in guardrail.kb.chunks:
        grounding_align.analyse_passage(chunk.title, chunk.text)
    ahead_cpu_s = time.thread_time() - began
    lazy = GroundingGuardrail(GroundingSettings(knowledge_base=folder, retrieval_cache=0, analyse_ahead=0), instance_id="grounding")
    lazy.load()
    before = GroundingGuardrail(GroundingSettings(knowledge_base=folder, retrieval_cache=0), instance_id="grounding")
    before.load()
    assert before.kb is not None
    before.kb.search_many = functools.partial(_bm25s_search_many, before.kb)  # type: ignore[method-assign]
    cached = GroundingGuardrail(GroundingSettings(knowledge_base=folder), instance_id="grounding")
    cached.load()
    for loaded in (before, cached):
        loaded.wait_analysed()
    sentences = [json.loads(line)["answer"] for line in EVAL.read_text().splitlines()]
    answers = []
    for i in range(60):
        answer = ""
        while len(answer) < 1000:
            answer += rng.choice(sentences) + " "
        answers.append(answer[:1000].rsplit(" ", 1)[0])
    question = "How does billing work?"
    claims = statistics.mean(len(claims_of(answer, question)) for answer in answers)
    load = os.getloadavg()
    print(f"\nknowledge base of {len(guardrail.kb.chunks)} chunks loaded and indexed in {load_s:.2f} s, its passages read ahead "
          f"(a background thread) in {ahead_cpu_s:.2f} s CPU; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} ({os.cpu_count()} cores)")
    print(f"1,000-character answers ({claims:.1f} claims each on average), per answer:")
    rows = (
        ("no retrieval cache, bm25s retrieve (before)", before, None),
        ("no retrieval cache (now)", guardrail, None),
        ("a new answer: claim analyses forgotten too, bm25s retrieve (before)", before, _forget_claims),
        ("a new answer: claim analyses forgotten too (now)", guardrail, _forget_claims),
        ("a knowledge base just loaded, its passages read when first met (before): nothing cached", lazy, _forget_all),
        ("a knowledge base just loaded, its passages read ahead at load (now): nothing else cached", guardrail, _forget_all),
        ("retrieval cache warm: a stream re-checked (now)", cached, None),
    )
    for label, check, clear in rows:
        print(f"  {label}: {_figures(_timed(lambda answer, check=check: _check(check, answer, question), answers * 3, clear))}")
    # The same answers' retrieval alone, so the alignment's share shows beside it.
    queries = [[f"{c.text} {question}" for c in claims_of(answer, question)] for answer in answers]
    k = guardrail.settings.passages
    print(f"  of which retrieval alone (same claims), bm25s retrieve (before): "
          f"{_figures(_timed(lambda q: _bm25s_search_many(guardrail.kb, q, k), queries * 3))}")
    print(f"  of which retrieval alone (same claims), KnowledgeBase.search_many (now): "
          f"{_figures(_timed(lambda q: guardrail.kb.search_many(q, k), queries * 3))}")
    # A stream: each answer streamed afresh (retrieval cache on, as in production, but new answers).
    streaming = GroundingGuardrail(GroundingSettings(knowledge_base=folder), instance_id="grounding")
    streaming.load()
    streaming.wait_analysed()
    fresh = [answer.replace(".", f" (ref {i}).", 1) for i, answer in enumerate(answers * 3)]  # no answer seen before
    print(f"  streamed in 40-character pieces, checked at each release from the open sentence's start (now): "
          f"{_figures(_timed(lambda answer: _streamed(streaming, answer, question), fresh))} for the whole answer")


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="grounding: quality and speed")
    parser.add_argument("--split", choices=("train", "test"), default="test", help="public split to report (tune on train only)")
    parser.add_argument("--min-support", type=float, default=GroundingSettings().min_support)
    parser.add_argument("--quality-only", action="store_true")
    arguments = parser.parse_args()
    public_quality(arguments.split, arguments.min_support)
    print()
    quality()
    if not arguments.quality_only:
        speed()
