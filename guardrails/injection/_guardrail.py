"""The prompt-injection check (``injection``): local, no model call, explains itself.

Each text is checked in every form ``views`` gives (normalised, de-leeted, decoded
fragments) against the patterns of seven kinds of attack. The pattern score is the weight
of the surest kind found, a little more for each further kind. The learned scorer
(``_learned``) reads the normalised text too (a short text against an operating point of its own:
one word can tip a linear model there); the check's score is the larger of the two,
so either alone can flag or block, and a finding says which one spoke. Texts a third party
wrote (a tool's result, a document screened with ``check_documents``: the request's roles say
so) are read by the document model instead, which looks at each line too. The policy maps the
score to flag and block (or escalate). Findings name the kind and the form it was found in.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, model_validator

from .._base import GuardrailSettings, InlineGuardrail
from .._verdict import Action, CheckRequest, Finding, Verdict
from ._learned import document_scorer, learned_scorer
from ._normalize import normalize_lines, views
from ._patterns import CATEGORIES, WORDS

__all__ = ["InjectionGuardrail", "InjectionSettings", "injection_score"]

_VIEW_NAMES = ("text", "de-leeted", "decoded")
# Message roles whose text a third party wrote: read by the document model.
DOCUMENT_ROLES = frozenset({"tool", "function", "document"})


class InjectionSettings(GuardrailSettings):
    flag_threshold: Annotated[float, Field(ge=0, le=1)] = 0.5
    block_threshold: Annotated[float, Field(ge=0, le=1)] = 0.8
    action: Action = Field(default=Action.BLOCK, description="what a score over block_threshold does: block or escalate")
    categories: list[str] = Field(default_factory=lambda: [c.name for c in CATEGORIES])
    learned: bool = Field(default=True, description="also score with the shipped learned model (off: patterns only)")

    @model_validator(mode="after")
    def _valid(self) -> InjectionSettings:
        known = {c.name for c in CATEGORIES}
        unknown = sorted(set(self.categories) - known)
        if unknown:
            raise ValueError(f"unknown categories {unknown} (known: {sorted(known)})")
        if self.flag_threshold > self.block_threshold:
            raise ValueError("flag_threshold must not exceed block_threshold")
        if self.action not in (Action.BLOCK, Action.ESCALATE):
            raise ValueError("action must be block or escalate")
        return self


def injection_score(
    text: str, categories: frozenset[str] | None = None, *, learned: bool = True, document: bool = False
) -> tuple[float, list[tuple[str, str]]]:
    """(score, [(kind, form it was found in)]) for one text: the larger of the pattern and model scores.

    ``document``: the text is third-party (a retrieved document, a tool's result), read by
    the document model line by line; otherwise by the prompt model. The model's kind is
    ``learned``, listed when its score reaches 0.5.
    """
    found: dict[str, str] = {}
    forms = views(text)
    for number, view in enumerate(forms):
        words = set(WORDS.findall(view))
        for category in CATEGORIES:
            if category.name in found or (categories is not None and category.name not in categories):
                continue
            if category.search(view, words):
                found[category.name] = _VIEW_NAMES[min(number, 2)]
    pattern = 0.0
    if found:
        weights = sorted((c.weight for c in CATEGORIES if c.name in found), reverse=True)
        pattern = min(1.0, weights[0] + 0.05 * (len(weights) - 1))
    if not learned or not forms[0]:
        model = 0.0
    elif document:
        model = document_scorer().score(normalize_lines(text))
    else:
        model = learned_scorer().score(forms[0])
    if model >= 0.5:
        found["learned"] = "document" if document else "text"
    return max(pattern, model), list(found.items())


def _explain(kind: str, form: str) -> str:
    if kind == "learned":
        return "learned scorer (over the whole text)" if form == "text" else "learned scorer (document model)"
    return f"{kind.replace('_', ' ')} (in the {form})"


class InjectionGuardrail(InlineGuardrail):
    name = "injection"
    version = "3"
    Settings = InjectionSettings
    screens_documents = True

    def __init__(self, settings: InjectionSettings, **kwargs: Any) -> None:  # type: ignore[override]
        super().__init__(settings, **kwargs)
        self.settings: InjectionSettings = settings
        self._categories = frozenset(settings.categories)

    def load(self) -> None:
        if self.settings.learned:
            learned_scorer()  # read the weights at start-up, not on the first request
            document_scorer()

    def check_inline(self, request: CheckRequest) -> Verdict:
        findings: list[Finding] = []
        top = 0.0
        roles = request.roles or ()
        for segment, text in enumerate(request.texts):
            document = segment < len(roles) and roles[segment] in DOCUMENT_ROLES
            score, found = injection_score(text, self._categories, learned=self.settings.learned, document=document)
            top = max(top, score)
            findings.extend(
                Finding(f"injection:{category}", segment, 0, len(text), score, _explain(category, form), sensitive=False)
                for category, form in found
            )
        if top >= self.settings.block_threshold:
            action = self.settings.action
        elif top >= self.settings.flag_threshold:
            action = Action.FLAG
        else:
            action = Action.ALLOW
        return Verdict(
            guardrail=self.instance_id,
            stage=request.stage,
            action=action,
            score=top,
            reasons=tuple(sorted({f.explanation for f in findings})),
            findings=tuple(findings),
        )
