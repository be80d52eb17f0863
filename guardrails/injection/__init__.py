"""Prompt injection on the way in, prompt leaks on the way out."""

from ._guardrail import InjectionGuardrail, InjectionSettings, injection_score
from ._normalize import normalize, views
from ._prompt_leak import PromptLeakGuardrail, PromptLeakSettings, leak_score

__all__ = [
    "InjectionGuardrail",
    "InjectionSettings",
    "PromptLeakGuardrail",
    "PromptLeakSettings",
    "injection_score",
    "leak_score",
    "normalize",
    "views",
]
