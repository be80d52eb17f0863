"""The rules check: deny-listed terms and regular expressions, each with an action.

Terms match case-insensitively on word boundaries; patterns are Python regular
expressions (use ``(?i)`` for case-insensitive ones). A ``redact`` rule replaces each
match with its replacement text; other actions leave the text as it is.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, Field, model_validator

from ._base import GuardrailSettings, InlineGuardrail, window_start
from ._verdict import Action, CheckRequest, Finding, Verdict, most_severe

__all__ = ["Rule", "RulesGuardrail", "RulesSettings"]


def _compiles(pattern: str) -> str:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"not a valid regular expression: {exc}") from None
    return pattern


class Rule(GuardrailSettings):
    id: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")]
    terms: list[Annotated[str, Field(min_length=1)]] = []
    patterns: list[Annotated[str, AfterValidator(_compiles)]] = []
    action: Action = Action.BLOCK
    replacement: str = "[REDACTED]"
    reason: str = ""

    @model_validator(mode="after")
    def _has_something_to_match(self) -> Rule:
        if not self.terms and not self.patterns:
            raise ValueError("a rule needs at least one of 'terms' or 'patterns'")
        if self.action is Action.ALLOW:
            raise ValueError("'allow' is not a rule action: a rule that matches must do something")
        return self


class RulesSettings(GuardrailSettings):
    rules: Annotated[list[Rule], Field(min_length=1)]


class _CompiledRule:
    __slots__ = ("rule", "regexes")

    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        self.regexes: list[tuple[str, re.Pattern[str]]] = []
        if rule.terms:
            alternation = "|".join(re.escape(t) for t in sorted(rule.terms, key=len, reverse=True))
            # \b only where the term itself starts/ends with a word character.
            self.regexes.append(("term", re.compile(rf"(?<!\w)(?:{alternation})(?!\w)", re.IGNORECASE)))
        for index, pattern in enumerate(rule.patterns):
            self.regexes.append((f"pattern {index}", re.compile(pattern)))


class RulesGuardrail(InlineGuardrail):
    name = "rules"
    version = "1"
    Settings = RulesSettings
    stream_start = staticmethod(window_start)  # a streamed answer: the new text and one window before it

    def __init__(self, settings: RulesSettings, **kwargs: Any) -> None:  # type: ignore[override]
        super().__init__(settings, **kwargs)
        self._rules = [_CompiledRule(rule) for rule in settings.rules]

    def check_inline(self, request: CheckRequest) -> Verdict:
        findings: list[Finding] = []
        fired: dict[str, Rule] = {}
        for segment, text in enumerate(request.texts):
            for compiled in self._rules:
                rule = compiled.rule
                for label, regex in compiled.regexes:
                    for match in regex.finditer(text):
                        if match.end() == match.start():
                            continue
                        fired[rule.id] = rule
                        findings.append(
                            Finding(
                                kind=f"rule:{rule.id}",
                                segment=segment,
                                start=match.start(),
                                end=match.end(),
                                explanation=f"rule {rule.id} ({label})",
                                replacement=rule.replacement if rule.action is Action.REDACT else None,
                            )
                        )
        if not fired:
            return Verdict(guardrail=self.instance_id, stage=request.stage)
        reasons = tuple(rule.reason or f"matched rule {rule_id}" for rule_id, rule in fired.items())
        return Verdict(
            guardrail=self.instance_id,
            stage=request.stage,
            action=most_severe(rule.action for rule in fired.values()),
            score=1.0,
            reasons=reasons,
            findings=tuple(findings),
        )
