"""Public labelled grounding data, read from fetched mirrors (never committed), split train/test.

Sources (repository, path, commit and licence in tests/data/SOURCES.md, section Grounding):

- HaluEval QA (RUCAIBox/HaluEval, MIT): a question, its knowledge, a right answer
  (supported) and ChatGPT-written hallucinated answers (unsupported). The 10k-row
  ``data/qa_data.json`` is over the mirror's size limit; the 500 questions of
  ``generation/qa/qa_{one,multi}-turn_data.json`` are read instead (the same right answer,
  a different hallucinated one in each file).
- FaithDial's data audit (McGill-NLP/FaithDial, MIT): knowledge-grounded dialogue replies
  (gold and three models) annotated with the BEGIN taxonomy: ``Entailment`` is supported,
  ``Hallucination`` and ``Partial Hallucination`` are not; generic and uncooperative replies
  state nothing and are left out.

The split is by the knowledge text's hash, so the answers about one passage never straddle
train and test; ``tests/data/grounding_public_split.json`` lists each example's id and a
hash of its content per split, and ``--write-manifest`` rewrites it. The loader refuses
data whose hashes disagree with the manifest (the mirror changed: re-fetch the commit named
in SOURCES.md).

    .venv/bin/python bench/grounding_public.py --write-manifest
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MIRRORS = Path(os.environ.get("AIMSGUARD_MIRRORS", "/work/.mirror"))  # where `fetch` puts bare git mirrors
MANIFEST = ROOT / "tests" / "data" / "grounding_public_split.json"
TEST_SHARE = 40  # percent of knowledge passages held out for test

# (dataset, repository, commit, paths)
SOURCES = {
    "halueval-qa": ("RUCAIBox/HaluEval", "b7253db3cdaa0ab2c382f92b26b390109174f77e",
                    ("generation/qa/qa_one-turn_data.json", "generation/qa/qa_multi-turn_data.json")),
    "faithdial-audit": ("McGill-NLP/FaithDial", "25671c6e3aa7d667943b7744a2b91507e7187f83",
                        tuple(f"data-audit/{folder}/{name}.csv" for folder, names in (
                            ("gold", ("wow", "cmu", "topical")),
                            ("GPT2", ("gpt2_processed_wow", "gpt2_processed_cmu", "gpt2_processed_topical")),
                            ("DoHA", ("doha_processed_wow", "doha_processed_cmu", "doha_processed_topical")),
                            ("CTRL", ("ctrl_processed_wow", "ctrl_processed_cmu", "ctrl_processed_topicalchat")),
                        ) for name in names)),
}


@dataclass(frozen=True, slots=True)
class Example:
    dataset: str
    id: str
    question: str
    answer: str
    evidence: str
    supported: bool

    @property
    def digest(self) -> str:
        return hashlib.sha256(f"{self.evidence}\x00{self.question}\x00{self.answer}".encode()).hexdigest()[:12]

    @property
    def split(self) -> str:
        bucket = int(hashlib.sha256(self.evidence.encode()).hexdigest()[:8], 16) % 100
        return "test" if bucket < TEST_SHARE else "train"


class MissingData(LookupError):
    """A mirror is absent: the message names what to fetch."""


def _read(repo: str, commit: str, path: str) -> str:
    git_dir = MIRRORS / repo.replace("/", "+") / "repo"
    if not git_dir.is_dir():
        raise MissingData(f"{repo} is not fetched (fetch github:{repo}; expected at {git_dir})")
    shown = subprocess.run(["git", "--git-dir", str(git_dir), "show", f"{commit}:{path}"], check=False, capture_output=True, text=True)
    if shown.returncode:
        raise MissingData(f"{repo}@{commit[:10]}:{path} is not in the mirror ({shown.stderr.strip()})")
    return shown.stdout


def _halueval() -> Iterator[Example]:
    repo, commit, paths = SOURCES["halueval-qa"]
    seen: set[str] = set()
    for path in paths:
        for row_number, line in enumerate(_read(repo, commit, path).splitlines()):
            row = json.loads(line)
            stem = f"{Path(path).stem}:{row_number}"
            right = f"{row['question']}\x00{row['right_answer']}"
            if right not in seen:  # both files carry the same right answer
                seen.add(right)
                yield Example("halueval-qa", f"{stem}:right", row["question"], row["right_answer"], row["knowledge"], True)
            yield Example("halueval-qa", f"{stem}:hallucinated", row["question"], row["hallucinated_answer"], row["knowledge"], False)


_FAITHDIAL_SUPPORTED = {"entailment"}
_FAITHDIAL_UNSUPPORTED = {"hallucination", "partial hallucination", "entailment,hallucination"}


def _faithdial() -> Iterator[Example]:
    repo, commit, paths = SOURCES["faithdial-audit"]
    for path in paths:
        for row_number, row in enumerate(csv.DictReader(io.StringIO(_read(repo, commit, path)))):
            # gold files: evidence/history/response/BEGIN; model files: knowledge/history/<model>/begin_label
            evidence = row.get("evidence") or row.get("knowledge") or ""
            answer = row.get("response") or next(v for k, v in row.items() if k not in ("knowledge", "history", "begin_label", "vrm_label"))
            label = (row.get("BEGIN") or row.get("begin_label") or "").strip().lower()
            if label in _FAITHDIAL_SUPPORTED or label in _FAITHDIAL_UNSUPPORTED:
                yield Example("faithdial-audit", f"{path}:{row_number}", row.get("history", ""), answer, evidence,
                              label in _FAITHDIAL_SUPPORTED)


_LOADERS = {"halueval-qa": _halueval, "faithdial-audit": _faithdial}


def load(dataset: str, split: str, *, check_manifest: bool = True) -> list[Example]:
    """The examples of ``dataset`` in ``split`` ("train" or "test"); raises MissingData when absent."""
    examples = [e for e in _LOADERS[dataset]() if e.split == split]
    if check_manifest and MANIFEST.exists():
        expected = json.loads(MANIFEST.read_text())[dataset][split]
        found = {e.id: e.digest for e in examples}
        if found != expected:
            raise MissingData(f"{dataset} {split}: the mirror's data differ from {MANIFEST.name}; fetch the commit in SOURCES.md")
    return examples


def write_manifest() -> None:
    manifest = {name: {split: {e.id: e.digest for e in load(name, split, check_manifest=False)} for split in ("train", "test")}
                for name in _LOADERS}
    MANIFEST.write_text(json.dumps(manifest, indent=0, sort_keys=True) + "\n")
    for name, splits in manifest.items():
        print(name, {split: len(ids) for split, ids in splits.items()})


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write-manifest", action="store_true")
    if parser.parse_args().write_manifest:
        write_manifest()
    else:
        sys.exit(parser.print_help())
