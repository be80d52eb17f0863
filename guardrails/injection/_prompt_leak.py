"""The prompt-leak check (``prompt_leak``, output stage): the answer must not give away the
system prompt or a canary string (OWASP LLM07).

A canary (a marker planted in the system prompt) found anywhere in the answer, disguises
undone, is a leak. So is an answer that reproduces the system prompt in part: the share of
the prompt's five-word runs found in the answer, or of its runs of three content words
(stop words left out, which catches light rewording). The system prompt comes from the
request (its system and developer messages) or from the policy.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import Field

from .._base import GuardrailSettings, InlineGuardrail
from .._verdict import Action, CheckRequest, Finding, Stage, Verdict
from ._normalize import normalize

__all__ = ["PromptLeakGuardrail", "PromptLeakSettings", "leak_score"]

_WORD = re.compile(r"[^\W_]+")
_STOP = frozenset(
    "a an the and or but if of to in on at for with by from as is are was were be been being it its this that these those "
    "you your yours we our us i me my he she they them their his her not no do does did so than then there here can will "
    "would should could may might must shall about into over under up down out very just also only all any each".split()
)


class PromptLeakSettings(GuardrailSettings):
    canaries: list[Annotated[str, Field(min_length=6)]] = []
    system_prompt: str | None = Field(default=None, description="for apps whose system prompt never travels in the request")
    threshold: Annotated[float, Field(gt=0, le=1)] = 0.25
    action: Action = Action.BLOCK


def _shingles(words: list[str], size: int) -> set[tuple[str, ...]]:
    return {tuple(words[i : i + size]) for i in range(len(words) - size + 1)}


def leak_score(answer: str, system_prompt: str) -> float:
    """How much of the system prompt the answer reproduces (0..1)."""
    prompt_words = _WORD.findall(normalize(system_prompt))
    answer_words = _WORD.findall(normalize(answer))
    scores = []
    verbatim = _shingles(prompt_words, 5)
    if verbatim:
        scores.append(len(verbatim & _shingles(answer_words, 5)) / len(verbatim))
    content = _shingles([w for w in prompt_words if w not in _STOP], 3)
    if content:
        scores.append(len(content & _shingles([w for w in answer_words if w not in _STOP], 3)) / len(content))
    return max(scores, default=0.0)


class PromptLeakGuardrail(InlineGuardrail):
    name = "prompt_leak"
    version = "1"
    stages = frozenset({Stage.OUTPUT})
    Settings = PromptLeakSettings

    def __init__(self, settings: PromptLeakSettings, **kwargs: Any) -> None:  # type: ignore[override]
        super().__init__(settings, **kwargs)
        self.settings: PromptLeakSettings = settings
        self._canaries = [normalize(c) for c in settings.canaries]

    def check_inline(self, request: CheckRequest) -> Verdict:
        system_prompt = request.metadata.get("system_prompt") or self.settings.system_prompt or ""
        findings: list[Finding] = []
        top = 0.0
        for segment, text in enumerate(request.texts):
            normal = normalize(text)
            for number, canary in enumerate(self._canaries):
                if canary in normal:
                    top = 1.0
                    findings.append(Finding("prompt_leak:canary", segment, 0, len(text), 1.0, f"canary {number + 1} in the answer"))
            if system_prompt:
                score = leak_score(text, system_prompt)
                if score >= self.settings.threshold:
                    top = max(top, score)
                    findings.append(
                        Finding("prompt_leak:system_prompt", segment, 0, len(text), score, f"reproduces {score:.0%} of the system prompt")
                    )
        if not findings:
            return Verdict(guardrail=self.instance_id, stage=request.stage, score=top)
        return Verdict(
            guardrail=self.instance_id,
            stage=request.stage,
            action=self.settings.action,
            score=top,
            reasons=tuple(f.explanation for f in findings),
            findings=tuple(findings),
        )
