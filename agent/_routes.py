"""Which dialect serves which route: the one table a new wire API is registered in; and which
other routes are model calls aimsguard cannot read (``unguarded_route``).

A model call to a route no dialect reads would bypass every check, so it is never passed
silently: the system's ``unknown_routes`` blocks it (the default) or passes it, and either
way it is recorded. What counts as a model call is a fixed list of the route families the
model vendors use under a version prefix (``/v1/``, ``/v1beta/``, ``/v2/``): generation,
embedding, audio, images, moderation, assistants and their runs, batches, realtime, and
Gemini-style ``models/{model}:{method}``; and the ``GET`` routes that read stored model
output back (``GET /v1/responses/{id}``). Everything else (``GET /v1/models``, files,
fine-tuning jobs, any non-versioned path) is the app's own business and passes as before.
"""

from __future__ import annotations

from ._dialect import Dialect
from ._dialect_anthropic import ANTHROPIC_MESSAGES, MESSAGES_PATH
from ._dialect_responses import OPENAI_RESPONSES, RESPONSES_PATH
from ._dialect_openai import CHAT_PATH, COMPLETIONS_PATH, EMBEDDINGS_PATH, OPENAI_CHAT, OPENAI_COMPLETIONS, OPENAI_EMBEDDINGS

__all__ = ["MODEL_CALL_FAMILIES", "ROUTES", "STORED_OUTPUT_FAMILIES", "dialect_for", "unguarded_route"]

ROUTES: dict[str, Dialect] = {
    CHAT_PATH: OPENAI_CHAT, COMPLETIONS_PATH: OPENAI_COMPLETIONS, EMBEDDINGS_PATH: OPENAI_EMBEDDINGS,
    MESSAGES_PATH: ANTHROPIC_MESSAGES,
    RESPONSES_PATH: OPENAI_RESPONSES,
}

_VERSIONS = frozenset({"v1", "v1beta", "v1alpha", "v2"})
MODEL_CALL_FAMILIES = frozenset(
    {
        # OpenAI (and the many servers that copy its routes)
        "responses", "chat", "completions", "embeddings", "audio", "images", "moderations", "assistants",
        "threads", "batches", "realtime", "conversations", "edits", "engines", "videos",
        # Anthropic
        "messages", "complete",
        # Cohere and other vendors
        "generate", "embed", "rerank", "classify", "summarize",
    }
)  # fmt: skip
"""First path segments after the version that mean "a model reads or writes text here"."""

STORED_OUTPUT_FAMILIES = frozenset({"responses", "chat", "completions", "messages", "threads", "conversations", "assistants"})
"""Families whose ``GET`` routes hand back what a model wrote and the vendor stored
(``GET /v1/responses/{id}``, stored chat completions, thread messages, Anthropic's batch
results): the answer as the upstream wrote it, before any check — a redacted leak or a
blocked answer read back, or a background response's output that no check ever saw."""


def dialect_for(path: str) -> Dialect | None:
    """The dialect of a guarded route; None for traffic aimsguard does not read."""
    return ROUTES.get(path)


def unguarded_route(method: str, path: str) -> str | None:
    """The route template of a model call no dialect reads (``/v1/audio/*``), or None.

    The template, never the raw path, names it in metrics: it is built from the fixed sets
    above, so ids in a path (``/v1/threads/thread_abc/runs``) never become label values.
    ``method`` is the HTTP method, or ``WEBSOCKET`` for a websocket (realtime) connection.
    A ``GET`` counts where it reads stored model output (``STORED_OUTPUT_FAMILIES``).
    """
    if method not in ("POST", "WEBSOCKET", "GET") or (path in ROUTES and method != "GET"):
        return None
    version, _, rest = path.removeprefix("/").partition("/")
    if version not in _VERSIONS or not rest:
        return None
    family, _, deeper = rest.partition("/")
    if method == "GET":
        return f"/{version}/{family}" + ("/*" if deeper.strip("/") else "") if family in STORED_OUTPUT_FAMILIES else None
    if family == "models" and ":" in deeper:  # Gemini: /v1beta/models/gemini-pro:generateContent
        return f"/{version}/models/{{model}}:{{method}}"
    if family not in MODEL_CALL_FAMILIES:
        return None
    return f"/{version}/{family}" + ("/*" if deeper.strip("/") else "")
