"""The explicit registry that maps the names a policy uses to Guardrail classes.

Registration is explicit (no subclass discovery), so what a policy can name never
depends on what happens to have been imported.
"""

from __future__ import annotations

from collections.abc import Iterator

from ._base import Guardrail

__all__ = ["GuardrailRegistry", "default_registry"]


class GuardrailRegistry:
    def __init__(self, *classes: type[Guardrail]) -> None:
        self._classes: dict[str, type[Guardrail]] = {}
        for cls in classes:
            self.register(cls)

    def register(self, cls: type[Guardrail]) -> type[Guardrail]:
        """Add a Guardrail class; usable as a class decorator."""
        if cls.name in self._classes and self._classes[cls.name] is not cls:
            raise ValueError(f"a guardrail named {cls.name!r} is already registered")
        self._classes[cls.name] = cls
        return cls

    def get(self, name: str) -> type[Guardrail]:
        try:
            return self._classes[name]
        except KeyError:
            known = ", ".join(sorted(self._classes)) or "none"
            raise KeyError(f"unknown guardrail {name!r} (known: {known})") from None

    def __contains__(self, name: object) -> bool:
        return name in self._classes

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._classes))


def default_registry() -> GuardrailRegistry:
    """A registry holding every guardrail that ships with aimsguard."""
    from .grounding import GroundingGuardrail
    from .injection import InjectionGuardrail, PromptLeakGuardrail
    from .pii import PiiGuardrail
    from .rules import RulesGuardrail

    return GuardrailRegistry(RulesGuardrail, PiiGuardrail, InjectionGuardrail, PromptLeakGuardrail, GroundingGuardrail)
