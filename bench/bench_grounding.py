"""The grounding check: quality on public labelled data and on the project's own set, and speed
against a 2,000-chunk KB.

Public data (HaluEval QA, FaithDial's audit; see bench/grounding_public.py and
tests/data/SOURCES.md) is read from fetched mirrors; only its test split is reported here
(settings were chosen on the train split: ``--split train`` prints that one). Each answer is
checked against its own knowledge passage, as a retrieved passage, with its question.

The large knowledge base is the example one plus 2,000 generated product-help sections
(written to a temporary folder); answers of about 1,000 characters mix supported and
unsupported claims.

    .venv/bin/python bench/bench_grounding.py
"""

from __future__ import annotations

import json
import random
import statistics
import tempfile
import time
from pathlib import Path

from aimsguard.guardrails import Action, CheckRequest, Stage
from aimsguard.guardrails.grounding import GroundingGuardrail, GroundingSettings, claims_of, judge_claim
from aimsguard.guardrails.knowledge import Chunk, Passage

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
    cached = GroundingGuardrail(GroundingSettings(knowledge_base=folder), instance_id="grounding")
    cached.load()
    sentences = [json.loads(line)["answer"] for line in EVAL.read_text().splitlines()]
    answers = []
    for i in range(60):
        answer = ""
        while len(answer) < 1000:
            answer += rng.choice(sentences) + " "
        answers.append(answer[:1000].rsplit(" ", 1)[0])
    print(f"\nknowledge base of {len(guardrail.kb.chunks)} chunks loaded and indexed in {load_s:.2f} s")
    for label, check in (("no retrieval cache", guardrail), ("retrieval cache warm (a stream re-checked)", cached)):
        times = []
        for answer in answers * 3:
            began = time.perf_counter()
            _check(check, answer, "How does billing work?")
            times.append(time.perf_counter() - began)
        print(f"1,000-character answers (~8 claims each), {label}: median {statistics.median(times) * 1000:.2f} ms, "
              f"p95 {sorted(times)[int(len(times) * 0.95)] * 1000:.2f} ms")
    # The same answers' retrieval alone (bm25s), so the alignment's share shows beside it.
    queries = [[f"{c.text} How does billing work?" for c in claims_of(answer, "How does billing work?")] for answer in answers]
    times = []
    for claims in queries * 3:
        began = time.perf_counter()
        guardrail.kb.search_many(claims, k=guardrail.settings.passages)
        times.append(time.perf_counter() - began)
    print(f"of which retrieval alone (bm25s, same claims): median {statistics.median(times) * 1000:.2f} ms")


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
