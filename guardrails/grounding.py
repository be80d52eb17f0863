"""The grounding check (``grounding``, output stage): is the answer backed by the knowledge base?

The answer is split into claims (sentences; small talk such as "Happy to help!" and
questions back to the user are not claims). For each claim the best passages are
retrieved (BM25, with the user's question as context) and the claim is scored:

- support: the share of the claim's content words found in the best passage;
- facts: every number, price, currency, percentage, duration and date in the claim, and
  every capitalised name (a plan, a product), must appear in that passage — "25 EUR" where
  the knowledge base says "20 EUR" is unsupported however many words match.

A claim is supported when its support reaches ``min_support`` and no fact disagrees. The
verdict lists each unsupported claim with its best evidence; ``action`` says what an
unsupported answer gets (flag, block or escalate). No model call: milliseconds, and every
decision explains itself.
"""

from __future__ import annotations

import functools
import re
import time
from collections import OrderedDict
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field

from ._base import GuardrailSettings, InlineGuardrail
from ._verdict import Action, CheckRequest, Finding, Stage, Verdict
from .knowledge import KnowledgeBase, Passage

__all__ = ["GroundingGuardrail", "GroundingSettings", "claims_of", "score_claim"]

_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_WORD = re.compile(r"[^\W_]+(?:[.,'’][^\W_]+)*")
_NUMBER_FACT = re.compile(
    r"(?:[$€£]\s?)?\d+(?:[.,]\d+)*\s?(?:%|percent|eur|euros?|usd|dollars?|gbp|pounds?|gb|tb|mb|"
    r"days?|weeks?|months?|years?|hours?|minutes?|seconds?|users?)?",
    re.IGNORECASE,
)
_SMALL_TALK = re.compile(
    r"^(?:hi|hello|hey|thanks?|thank you|you're welcome|happy to help|glad to help|sure|of course|certainly|great|"
    r"no problem|good question|i hope (?:this|that) helps|let me know|is there anything else|have a (?:nice|great) day|"
    r"best regards|kind regards|cheers)\b",
    re.IGNORECASE,
)
_STOP = frozenset(
    "a an the and or but if of to in on at for with by from as is are was were be been being it its this that these those "
    "you your yours we our us i me my he she they them their his her not no do does did so than then there here can will "
    "would should could may might must shall about into over under up down out very just also only all any each per "
    "has have had get gets got which what when where who how".split()
)


def claims_of(answer: str) -> list[tuple[int, int, str]]:
    """(start, end, sentence) for each sentence that states something."""
    claims, position = [], 0
    for part in _SENTENCE.split(answer):
        start = answer.find(part, position)
        position = start + len(part)
        sentence = part.strip()
        words = [w for w in _WORD.findall(sentence.lower()) if w not in _STOP]
        if len(words) < 3 or _SMALL_TALK.match(sentence) or sentence.endswith("?"):
            continue
        claims.append((start, start + len(part), sentence))
    return claims


def _stem(word: str) -> str:
    word = word.lower()
    for suffix in ("ing", "ed", "es", "s"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


# Words that state an amount or a polarity: "unlimited" where the evidence says "one" is as
# wrong as a wrong number.
_QUANTITY_WORDS = frozenset(
    "unlimited free zero one two three four five six seven eight nine ten twelve once twice none never always "
    "instantly immediately lifetime".split()
)


def _facts(text: str) -> set[str]:
    facts = {w for w in _WORD.findall(text.lower()) if w in _QUANTITY_WORDS}
    facts |= {re.sub(r"\s+", "", m.group(0).lower()).replace(",", ".") for m in _NUMBER_FACT.finditer(text) if any(c.isdigit() for c in m.group(0))}
    # Capitalised words that are not the first of their sentence: names of plans, products, places.
    for sentence in _SENTENCE.split(text):
        words = sentence.split()
        facts |= {w.strip(".,;:!?()\"'").lower() for w in words[1:] if w[:1].isupper() and w.strip(".,;:!?()\"'").isalpha()}
    return facts


@functools.lru_cache(maxsize=16_384)
def _profile(text: str) -> tuple[frozenset[str], frozenset[str], str]:
    """(stemmed content words, facts, text without spaces) — cached: passages recur."""
    words = frozenset(_stem(w) for w in _WORD.findall(text.lower()) if w not in _STOP)
    flat = re.sub(r"\s+", "", text.lower()).replace(",", ".")
    return words, frozenset(_facts(text)), flat


def score_claim(claim: str, passage_text: str) -> tuple[float, list[str]]:
    """(support 0..1, facts of the claim the passage does not have)."""
    claim_words, claim_facts, _ = _profile(claim)
    passage_words, passage_facts, passage_flat = _profile(passage_text)
    support = len(claim_words & passage_words) / len(claim_words) if claim_words else 1.0
    missing = sorted(f for f in claim_facts if f not in passage_facts and f not in passage_flat)
    return support, missing


class GroundingSettings(GuardrailSettings):
    knowledge_base: Path | None = Field(default=None, description="default: the system's knowledge_base")
    min_support: Annotated[float, Field(gt=0, le=1)] = 0.6
    passages: Annotated[int, Field(ge=1, le=10)] = 3
    action: Action = Action.FLAG
    reload_every_s: Annotated[float, Field(ge=0)] = 10.0
    retrieval_cache: Annotated[int, Field(ge=0)] = 4096  # queries remembered (0: none)


class GroundingGuardrail(InlineGuardrail):
    name = "grounding"
    version = "1"
    stages = frozenset({Stage.OUTPUT})
    Settings = GroundingSettings

    def __init__(self, settings: GroundingSettings, **kwargs: Any) -> None:  # type: ignore[override]
        super().__init__(settings, **kwargs)
        self.settings: GroundingSettings = settings
        self.kb: KnowledgeBase | None = None
        self._signature: tuple[float, int] | None = None
        self._checked_at = 0.0
        self._retrieved: OrderedDict[tuple[str, str], list[Passage]] = OrderedDict()

    def load(self) -> None:
        directory = self.settings.knowledge_base or self.shared.get("knowledge_base")
        if directory is None:
            raise ValueError("no knowledge base: set settings.knowledge_base or the system's knowledge_base")
        self._directory = Path(directory)
        self._reload()

    def _reload(self) -> None:
        self.kb = KnowledgeBase.from_directory(self._directory)
        self._signature = KnowledgeBase.signature(self._directory)
        self._checked_at = time.monotonic()

    def _reload_if_changed(self) -> None:
        """Edits to the knowledge base are picked up within ``reload_every_s``."""
        if not self.settings.reload_every_s or time.monotonic() - self._checked_at < self.settings.reload_every_s:
            return
        self._checked_at = time.monotonic()
        if KnowledgeBase.signature(self._directory) != self._signature:
            self._reload()

    def _retrieve(self, queries: list[str]) -> list[list[Passage]]:
        """Passages per query: one retrieval for all new queries (per-call overhead dominates
        on a large index), and remembered ones reused — a streamed answer is checked again
        at each release, with the same claims."""
        assert self.kb is not None
        key = self.kb.snapshot
        new = [q for q in dict.fromkeys(queries) if (key, q) not in self._retrieved]
        for query, passages in zip(new, self.kb.search_many(new, k=self.settings.passages), strict=True):
            self._retrieved[(key, query)] = passages
        answer = [self._retrieved[(key, q)] for q in queries]
        while len(self._retrieved) > self.settings.retrieval_cache:
            self._retrieved.popitem(last=False)
        return answer

    def describe(self) -> dict[str, Any]:
        described = super().describe()
        if self.kb is not None:
            described["knowledge_base_snapshot"] = self.kb.snapshot
            described["knowledge_base_chunks"] = len(self.kb.chunks)
        return described

    def check_inline(self, request: CheckRequest) -> Verdict:
        self._reload_if_changed()
        assert self.kb is not None
        findings: list[Finding] = []
        claims = 0
        found = [(segment, start, end, claim) for segment, text in enumerate(request.texts) for start, end, claim in claims_of(text)]
        retrieved = self._retrieve([f"{claim} {request.question or ''}" for *_, claim in found])
        for (segment, start, end, claim), passages in zip(found, retrieved, strict=True):
            claims += 1
            judged = [(score_claim(claim, p.chunk.text), p) for p in passages]
            best = max(judged, key=lambda j: (not j[0][1], j[0][0]), default=None)
            if best is not None and best[0][0] >= self.settings.min_support and not best[0][1]:
                continue
            findings.append(_unsupported(segment, start, end, best))
        if not findings:
            return Verdict(guardrail=self.instance_id, stage=request.stage, score=1.0 if claims else 0.0)
        supported = 1 - len(findings) / claims
        return Verdict(
            guardrail=self.instance_id,
            stage=request.stage,
            action=self.settings.action,
            score=round(supported, 4),
            reasons=(f"{len(findings)} of {claims} claims not supported by the knowledge base",),
            findings=tuple(findings),
        )


def _unsupported(segment: int, start: int, end: int, best: tuple[tuple[float, list[str]], Passage] | None) -> Finding:
    if best is None:
        return Finding("grounding:unsupported", segment, start, end, 0.0, "no passage of the knowledge base matches", sensitive=False)
    (support, missing), passage = best
    where = f"{passage.chunk.source}" + (f" › {passage.chunk.title}" if passage.chunk.title else "")
    # Counted, not quoted: a claim's names and numbers may be personal data.
    why = f"{len(missing)} fact(s) (numbers, names) not in the evidence" if missing else f"support {support:.2f}"
    return Finding("grounding:unsupported", segment, start, end, support, f"{why}; best evidence: {where}", sensitive=False)
