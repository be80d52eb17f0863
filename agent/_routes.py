"""Which dialect serves which route: the one table a new wire API is registered in."""

from __future__ import annotations

from ._dialect import Dialect
from ._dialect_anthropic import ANTHROPIC_MESSAGES, MESSAGES_PATH
from ._dialect_openai import CHAT_PATH, COMPLETIONS_PATH, OPENAI_CHAT, OPENAI_COMPLETIONS

__all__ = ["ROUTES", "dialect_for"]

ROUTES: dict[str, Dialect] = {CHAT_PATH: OPENAI_CHAT, COMPLETIONS_PATH: OPENAI_COMPLETIONS, MESSAGES_PATH: ANTHROPIC_MESSAGES}


def dialect_for(path: str) -> Dialect | None:
    """The dialect of a guarded route; None for traffic aimsguard does not read."""
    return ROUTES.get(path)
