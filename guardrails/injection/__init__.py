"""The prompt-injection check: normalise, then look for the shapes of an attack."""

from ._guardrail import InjectionGuardrail, InjectionSettings, injection_score
from ._normalize import normalize, views

__all__ = ["InjectionGuardrail", "InjectionSettings", "injection_score", "normalize", "views"]
