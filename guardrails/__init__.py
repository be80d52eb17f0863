"""aimsguard's checks and the types they share with the runtime."""

from ._base import Guardrail, GuardrailSettings, InlineGuardrail, window_start
from ._registry import GuardrailRegistry, default_registry
from ._verdict import Action, CheckRequest, Finding, Outcome, Stage, Verdict, apply_redactions, log_masks, most_severe
from .rules import RulesGuardrail

__all__ = [
    "Action",
    "CheckRequest",
    "Finding",
    "Guardrail",
    "GuardrailRegistry",
    "GuardrailSettings",
    "InlineGuardrail",
    "Outcome",
    "RulesGuardrail",
    "Stage",
    "Verdict",
    "apply_redactions",
    "default_registry",
    "log_masks",
    "most_severe",
    "window_start",
]
