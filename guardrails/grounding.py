"""The grounding check (``grounding``, output stage): is the answer backed by the knowledge base?

The answer is split into claims (``grounding_claims``: sentences, without the small talk,
hedges and frames around what they state; questions back to the user are not claims, questions
that tell are; a bare "Yes"/"No" stands for the question it answers, a short answer such as
"Delhi." is one claim with its question's polarity, and the speaker's own experience or taste,
"I love this movie", is a claim no passage backs). For each claim the best
passages are retrieved (BM25 over stemmed words, with the user's question as context) and
the claim is aligned with them (``grounding_align``):

- support: the share of the claim's content words (stemmed) found in the passage;
- facts: every number, price, duration and date, and every capitalised name, must be in
  the passage (or follow from its figures: 20 EUR a month is 240 EUR a year) and be said
  there about the same things as in the claim: a plan's refund window stated for another
  plan is a swap, however many words match;
- negation: "not refundable" is not "refundable".

A claim is supported when one passage gives it ``min_support`` and every fact, in place.
The verdict lists each unsupported claim with its best evidence; ``action`` says what an
unsupported answer gets (flag, block or escalate). In the default ``lexical`` mode there is
no model call: milliseconds, and every decision explains itself. ``mode: llm_judge`` asks an
OpenAI-compatible endpoint (``judge``) instead, with the same retrieved evidence; its
failure is the check's failure, which the policy's fail mode resolves.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import structlog
from pydantic import Field, model_validator

from ._base import GuardrailSettings, InlineGuardrail
from ._verdict import Action, CheckRequest, Finding, Stage, Verdict
from .grounding_align import Assessment, PassageAnalysis, analyse_passage, assess_claim, passage_of, word_support
from .grounding_claims import Claim, claims_of
from .grounding_judge import ClaimJudge, JudgeSettings
from .knowledge import Chunk, KnowledgeBase, Passage

__all__ = ["Claim", "GroundingGuardrail", "GroundingSettings", "claims_of", "judge_claim"]

log = structlog.get_logger("aimsguard.guardrails")

_MAX_CLAIM_CHARS = 1000  # a streamed run-on sentence is re-read from at most this far back


def judge_claim(claim: Claim, passages: list[Passage], analysed: Mapping[Chunk, PassageAnalysis] | None = None) -> tuple[Assessment, Passage] | None:
    """The passage that backs ``claim`` best, with how well; None when nothing was retrieved.
    A personal claim ("I love this movie") is backed by none: an assistant has no experiences.
    ``analysed``: passages already read (``analyse_passage``); the others are read here."""
    if claim.personal:
        return (Assessment(0.0, 0, 0, False, personal=True), passages[0]) if passages else None
    best: tuple[Assessment, Passage] | None = None
    for passage in passages:
        analysis = passage_of(passage.chunk.title, passage.chunk.text, analysed.get(passage.chunk) if analysed else None)
        if best is not None and _sound(best[0]) and word_support(claim.text, analysis) <= best[0].support:
            continue  # it cannot rank above a sound assessment with at least its support: not aligned at all
        # A short answer takes its polarity from its question: "Water damage." to "What does the
        # warranty exclude?" is said by "It excludes water damage".
        assessment = assess_claim(claim.text, passage.chunk.title, passage.chunk.text, negated=claim.negated != claim.question_says_not,
                                  whole_clauses=not claim.from_question, bare=claim.short_answer, analysis=analysis)
        if best is None or _rank(assessment) > _rank(best[0]):  # the first of equals stays
            best = (assessment, passage)
    return best


def _sound(assessment: Assessment) -> bool:
    """No fact missing or said of something else, no negation the other way."""
    return not (assessment.missing or assessment.misattached or assessment.negation_mismatch)


def _rank(assessment: Assessment) -> tuple[bool, float, int]:
    """How passages are ranked for a claim: sound first, then by support, then by fewer facts amiss."""
    return _sound(assessment), assessment.support, -(assessment.missing + assessment.misattached)


class GroundingSettings(GuardrailSettings):
    knowledge_base: Path | None = Field(default=None, description="default: the system's knowledge_base")
    min_support: Annotated[float, Field(gt=0, le=1)] = 0.7  # chosen on the public train split (bench/bench_grounding.py --split train)
    passages: Annotated[int, Field(ge=1, le=10)] = 3
    action: Action = Action.FLAG
    reload_every_s: Annotated[float, Field(ge=0)] = 10.0
    retrieval_cache: Annotated[int, Field(ge=0)] = 4096  # queries remembered (0: none)
    # Passages read for alignment when the knowledge base is (re)loaded, in a background thread,
    # so the first answers do not pay ~0.2 ms per passage they meet (~9 KB each; 0: read each when first met).
    analyse_ahead: Annotated[int, Field(ge=0)] = 16_384
    # "I love this movie", "I've been there": an assistant's own experience or taste is made up
    # (public data counts it as a hallucination); "ignore" reads such sentences as no claim.
    personal_statements: Literal["unsupported", "ignore"] = "unsupported"
    mode: Literal["lexical", "llm_judge"] = "lexical"
    judge: JudgeSettings | None = Field(default=None, description="the OpenAI-compatible endpoint of mode llm_judge")

    @model_validator(mode="after")
    def _judge_when_asked(self) -> GroundingSettings:
        if self.mode == "llm_judge" and self.judge is None:
            raise ValueError("mode llm_judge needs a judge: {base_url, model, api_key_env?, timeout_s?}")
        return self


class GroundingGuardrail(InlineGuardrail):
    name = "grounding"
    version = "3"
    stages = frozenset({Stage.OUTPUT})
    Settings = GroundingSettings

    def __init__(self, settings: GroundingSettings, **kwargs: Any) -> None:  # type: ignore[override]
        super().__init__(settings, **kwargs)
        self.settings: GroundingSettings = settings
        # A judge waits on the network: such a check runs as a task with its budget, off the loop.
        self.inline = settings.mode == "lexical"  # type: ignore[misc]
        self.judge: ClaimJudge | None = None
        self.kb: KnowledgeBase | None = None
        self._signature: tuple[float, int] | None = None
        self._checked_at = 0.0
        self._refreshing = _Once()  # one look for edits (and rebuild) at a time
        self._retrieved: OrderedDict[tuple[str, str], list[Passage]] = OrderedDict()
        # The knowledge base's passages read ahead; filled by a background thread, read by checks.
        self._analysed: dict[Chunk, PassageAnalysis] = {}
        self._analysing: threading.Thread | None = None

    def load(self) -> None:
        directory = self.settings.knowledge_base or self.shared.get("knowledge_base")
        if directory is None:
            raise ValueError("no knowledge base: set settings.knowledge_base or the system's knowledge_base")
        self._directory = Path(directory)
        self._reload()
        if self.settings.judge is not None and self.settings.mode == "llm_judge":
            self.judge = ClaimJudge(self.settings.judge)

    def _reload(self) -> None:
        self._install(KnowledgeBase.from_directory(self._directory), KnowledgeBase.signature(self._directory))

    def _install(self, kb: KnowledgeBase, signature: tuple[float, int]) -> None:
        analysed: dict[Chunk, PassageAnalysis] = {}
        # A check that reads the new kb with the old passages read ahead (or the reverse) still
        # judges alike: a passage not read ahead is read when met (the same pure function).
        self.kb, self._analysed = kb, analysed
        self._signature = signature
        self._checked_at = time.monotonic()
        if self.settings.analyse_ahead:
            # Not in load(): 2,000 passages take ~0.3 s of CPU.
            self._analysing = threading.Thread(target=self._analyse_ahead, args=(kb, analysed), daemon=True,
                                               name=f"aimsguard-{self.instance_id}-passages")
            self._analysing.start()

    def _analyse_ahead(self, kb: KnowledgeBase, analysed: dict[Chunk, PassageAnalysis]) -> None:
        """Read ``kb``'s passages into ``analysed``. A check meanwhile reads the ones not there
        yet itself (the same pure function, so the same verdicts); one dict item set at a time
        is atomic under the GIL."""
        try:
            for chunk in kb.chunks[: self.settings.analyse_ahead]:
                if self.kb is not kb:
                    return  # reloaded: the new knowledge base has its own thread
                if chunk not in analysed:
                    analysed[chunk] = analyse_passage(chunk.title, chunk.text)
                # Hand the GIL over between passages: an inline check on the event loop waits for
                # one passage (~0.2 ms) at most, not the interpreter's 5 ms switch interval.
                time.sleep(0)
        except Exception as exc:  # the checks read such a passage themselves (and fail as before)
            log.warning("grounding: passages not read ahead", guardrail=self.instance_id, error=repr(exc))

    def wait_analysed(self, timeout: float | None = None) -> bool:
        """Wait until the knowledge base's passages are read ahead; False if still reading after ``timeout``."""
        if self._analysing is not None:
            self._analysing.join(timeout)
        return self._analysing is None or not self._analysing.is_alive()

    def _reload_if_changed(self) -> None:
        """Edits to the knowledge base are picked up within ``reload_every_s``. On the event
        loop the look for edits (a walk of the folder) and the rebuild (some 50 ms for 2,000
        passages) run in a background thread, and checks meanwhile use the knowledge base they
        have: a check there would hold every other request for that long. Elsewhere (a check
        worker process, a thread) the check that finds the knowledge base due does both, as a
        worker forked long after an edit must not judge with the knowledge base it was forked with."""
        if not self.settings.reload_every_s or time.monotonic() - self._checked_at < self.settings.reload_every_s:
            return
        if not self._refreshing.begin():
            return  # another check is looking
        self._checked_at = time.monotonic()
        if _on_event_loop():
            threading.Thread(target=self._refresh, daemon=True, name=f"aimsguard-{self.instance_id}-reload").start()
        else:
            self._refresh()

    def _refresh(self) -> None:
        try:
            signature = KnowledgeBase.signature(self._directory)
            if signature != self._signature:
                self._install(KnowledgeBase.from_directory(self._directory), signature)
        except Exception as exc:  # an edit half written, a folder gone: the checks keep the knowledge base they have
            # The type only: a decoding error's repr holds the whole file it failed on.
            log.warning("grounding: knowledge base not reloaded", guardrail=self.instance_id, error_type=type(exc).__name__)
        finally:
            self._refreshing.end()

    def wait_reloaded(self, timeout: float = 30.0) -> bool:
        """Wait for a look for edits (and a rebuild) under way; False if still running after ``timeout``."""
        return self._refreshing.wait(timeout)

    def _retrieve(self, kb: KnowledgeBase, queries: list[str]) -> list[list[Passage]]:
        """Passages per query: one retrieval for all new queries (per-call overhead dominates
        on a large index), and remembered ones reused — a streamed answer is checked again
        at each release, with the same claims."""
        key = kb.snapshot
        new = [q for q in dict.fromkeys(queries) if (key, q) not in self._retrieved]
        for query, passages in zip(new, kb.search_many(new, k=self.settings.passages), strict=True):
            self._retrieved[(key, query)] = passages
        answer = [self._retrieved[(key, q)] for q in queries]
        while len(self._retrieved) > self.settings.retrieval_cache:
            self._retrieved.popitem(last=False)
        return answer

    @property
    def decides_release(self) -> bool:
        return self.settings.action.stops_exchange  # it never redacts: with action flag it only flags

    def stream_start(self, text: str, unjudged: int, holdback: int) -> int:
        """A streamed answer's claims are judged sentence by sentence: the one still open at
        ``unjudged`` is read again whole (a run-on one, its last ``_MAX_CLAIM_CHARS``)."""
        floor = max(0, unjudged - _MAX_CLAIM_CHARS)
        # The last sentence end before it (found from the right: a few C-speed searches).
        found = [(text.rfind(mark, floor, unjudged), mark) for mark in (". ", "! ", "? ", "\n")]
        return max([floor, *(at + len(mark) for at, mark in found if at >= 0)])

    def describe(self) -> dict[str, Any]:
        described = super().describe()
        if self.kb is not None:
            described["knowledge_base_snapshot"] = self.kb.snapshot
            described["knowledge_base_chunks"] = len(self.kb.chunks)
        return described

    async def check(self, request: CheckRequest) -> Verdict:
        if self.inline:
            return self.check_inline(request)
        return await asyncio.to_thread(self.check_inline, request)

    def check_inline(self, request: CheckRequest) -> Verdict:
        """Check ``request.texts`` (complete claims or whole answers) with ``request.question`` as context.

        Blocking and free of event-loop state, so it may run on the loop (lexical mode), in a
        thread or in a worker process; with a judge it waits on the network."""
        self._reload_if_changed()
        kb = self.kb  # one knowledge base for the whole check, even if a reload lands meanwhile
        assert kb is not None
        keep_personal = self.settings.personal_statements == "unsupported"
        found = [(segment, claim) for segment, text in enumerate(request.texts) for claim in self._settled_claims(text, request)
                 if keep_personal or not claim.personal]
        retrieved = self._retrieve(kb, [f"{claim.text} {request.question or ''}" for _, claim in found])
        if self.judge is not None:
            verdicts = self._judged(request.question, found, retrieved)
        else:
            analysed = self._analysed
            verdicts = [judge_claim(claim, passages, analysed) for (_, claim), passages in zip(found, retrieved, strict=True)]
        findings = [
            _unsupported(segment, claim, best)
            for (segment, claim), best in zip(found, verdicts, strict=True)
            if best is None or not best[0].supported(self.settings.min_support)
        ]
        if not findings:
            return Verdict(guardrail=self.instance_id, stage=request.stage, score=1.0 if found else 0.0)
        return Verdict(
            guardrail=self.instance_id,
            stage=request.stage,
            action=self.settings.action,
            score=round(1 - len(findings) / len(found), 4),
            reasons=(f"{len(findings)} of {len(found)} claims not supported by the knowledge base",),
            findings=tuple(findings),
        )

    def _settled_claims(self, text: str, request: CheckRequest) -> list[Claim]:
        """The claims of ``text``; of a stream's answer so far, when a finding could only
        flag, not those of the sentence still open at its end: the next look reads that
        sentence again from its start (``stream_start``), and judging half of it now would
        change nothing that is released (a fifth of the claims judged, and those the ones
        retrieval has never seen)."""
        claims = claims_of(text, request.question)
        if request.complete or self.settings.action.stops_exchange:
            return claims  # a stop must come before the text goes out: every part is judged
        open_from = self.stream_start(text, len(text), 0)
        return [claim for claim in claims if claim.start < open_from]

    def _judged(self, question: str | None, found: list[tuple[int, Claim]], retrieved: list[list[Passage]]) -> list[tuple[Assessment, Passage] | None]:
        """The judge's word on each claim, shown as an assessment (support 1 or 0) on the best passage."""
        assert self.judge is not None
        evidence = list(dict.fromkeys(p.chunk for passages in retrieved for p in passages))
        texts = [f"{c.title}\n{c.text}" if c.title else c.text for c in evidence]
        # A personal claim is unsupported whatever a judge would say: it needs no round trip.
        # A "No" stands for the question denied: the judge reads the answer's own words.
        asked = [i for i, (_, c) in enumerate(found) if not c.personal]
        statements = [f"It is not true that {found[i][1].text}" if found[i][1].negated else found[i][1].text for i in asked]
        said = dict(zip(asked, self.judge.judge(question, statements, texts) if asked else [], strict=True))
        return [
            judge_claim(claim, passages) if claim.personal
            else (Assessment(1.0 if said[i] else 0.0, 0, 0, False), passages[0]) if passages else None
            for i, ((_, claim), passages) in enumerate(zip(found, retrieved, strict=True))
        ]


def _unsupported(segment: int, claim: Claim, best: tuple[Assessment, Passage] | None) -> Finding:
    if best is None:
        return Finding("grounding:unsupported", segment, claim.start, claim.end, 0.0, "no passage of the knowledge base matches", sensitive=False)
    assessment, passage = best
    where = f"{passage.chunk.source}" + (f" › {passage.chunk.title}" if passage.chunk.title else "")
    # Counted, not quoted: a claim's names and numbers may be personal data.
    if assessment.personal:
        why = "a personal experience or taste of the speaker, which no knowledge base backs"
    elif assessment.misattached:
        why = f"{assessment.misattached} fact(s) found in the evidence but said there of something else"
    elif assessment.missing:
        why = f"{assessment.missing} fact(s) (numbers, names) not in the evidence"
    elif assessment.negation_mismatch:
        why = "the evidence says the opposite (negation)"
    else:
        why = f"support {assessment.support:.2f}"
    return Finding("grounding:unsupported", segment, claim.start, claim.end, assessment.support, f"{why}; best evidence: {where}", sensitive=False)


def _on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class _Once:
    """A flag that one thread at a time may raise (``begin``) and any thread may lower (``end``:
    the background thread lowers what the check raised). Made anew in a forked process, where a
    flag raised by a thread that did not come along would stay raised."""

    def __init__(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.Lock()

    def _own(self) -> threading.Lock:
        if self._pid != os.getpid():
            self._pid, self._lock = os.getpid(), threading.Lock()
        return self._lock

    def begin(self) -> bool:
        return self._own().acquire(blocking=False)

    def end(self) -> None:
        self._own().release()

    def wait(self, timeout: float) -> bool:
        lock = self._own()
        if not lock.acquire(timeout=timeout):
            return False
        lock.release()
        return True
