"""The Guardrail interface: a named, versioned check with its own settings model."""

from __future__ import annotations

import abc
from collections.abc import MutableMapping
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from ._verdict import CheckRequest, Stage, Verdict

__all__ = ["Guardrail", "GuardrailSettings", "InlineGuardrail", "window_start"]


class GuardrailSettings(BaseModel):
    """Base for a check's ``settings`` block in the policy: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Guardrail(abc.ABC):
    """A check for one or both stages.

    A subclass declares its registry ``name``, a ``version`` (recorded with each
    verdict so an auditor can tell which logic ran), the ``stages`` it supports and a
    ``Settings`` model. ``load()`` is called once at start-up for heavy assets;
    ``check()`` runs per exchange and may raise: the pipeline turns an exception or an
    overrun into an ``error``/``timeout`` verdict resolved by the policy's fail mode.
    """

    name: ClassVar[str]
    version: ClassVar[str] = "1"
    inline: ClassVar[bool] = False
    # Judges text a third party wrote (retrieved documents, tool results), so the runtime
    # also runs it, as an input check, on the documents a caller screens.
    screens_documents: ClassVar[bool] = False
    # Its findings mask content kept for people (logs, handoff tickets): when it did not
    # run, the text it would have masked is withheld rather than kept raw.
    masks_content: ClassVar[bool] = False
    stages: ClassVar[frozenset[Stage]] = frozenset(Stage)
    Settings: ClassVar[type[GuardrailSettings]] = GuardrailSettings
    # Inputs longer than this (characters, all texts together) are analysed in a worker
    # process, off the event loop, where the budget can stop the work; shorter ones run in
    # place, where they cost less than the hop. None: never (a check that awaits I/O).
    offload_above_chars: ClassVar[int | None] = None

    def __init__(
        self, settings: GuardrailSettings, *, instance_id: str | None = None, shared: MutableMapping[str, Any] | None = None
    ) -> None:
        self.settings = settings
        self.instance_id = instance_id or self.name
        # State shared by the checks of one AI system (e.g. the personal-data vault that
        # the input check fills and the output check reads).
        self.shared: MutableMapping[str, Any] = shared if shared is not None else {}

    def load(self) -> None:
        """Load models or indexes once, before the first request. Default: nothing."""

    @abc.abstractmethod
    async def check(self, request: CheckRequest) -> Verdict:
        """Look at ``request.texts`` and answer with a Verdict."""

    @property
    def decides_release(self) -> bool:
        """Whether a verdict of this check can change what a stream releases (stop it or
        redact). One that can only flag is looked at less often in a stream: the same text is
        judged, in fewer and longer looks, and all of it by the stream's end. Default: True."""
        return True

    def stream_start(self, text: str, unjudged: int, holdback: int) -> int:
        """Where this check must start reading a streamed answer again when the text from
        ``unjudged`` on is new to it (``holdback``: the policy's longest text a check must see
        whole). Default: from the start each time, which is always right but makes a stream
        cost the square of its length; a check that needs less says so."""
        return 0

    def analyse(self, request: CheckRequest) -> Any:
        """The CPU-bound part of the check, synchronous and picklable in and out: it runs in a
        worker process, so it must not change state this process keeps (``decide`` does).
        Needed when ``offload_above_chars`` is set."""
        raise NotImplementedError(f"{type(self).__name__} cannot run in a worker process")

    def quick_analysis(self, request: CheckRequest) -> Any | None:
        """What ``analyse`` would return, when a cheap look tells without the work (nothing the
        check looks for can be in the text); None when it cannot tell. Asked in the serving
        process before a text goes to a worker process: the round trip costs ~2 ms. Default: None."""
        return None

    def decide(self, request: CheckRequest, analysis: Any) -> Verdict:
        """The verdict from what ``analyse`` returned, in the serving process. Default: it is the verdict."""
        verdict: Verdict = analysis
        return verdict

    async def decide_async(self, request: CheckRequest, analysis: Any) -> Verdict:
        """``decide`` for a check whose decision awaits I/O (a vault in the shared state).
        Default: ``decide``."""
        return self.decide(request, analysis)

    @property
    def decides_with_io(self) -> bool:
        """Whether ``decide_async`` may wait for I/O. Only then does the decision run under the
        check's deadline: one that never waits cannot be interrupted anyway, and a deadline
        costs a timer on the event loop (a stream's look pays it some forty times). Default:
        whether the class replaces ``decide_async`` (the base one is ``decide``)."""
        return type(self).decide_async is not Guardrail.decide_async

    def describe(self) -> dict[str, Any]:
        """What this check is and how it is set, for events and technical documentation."""
        return {
            "id": self.instance_id,
            "guardrail": self.name,
            "version": self.version,
            "settings": self.settings.model_dump(mode="json"),
        }


class InlineGuardrail(Guardrail):
    """A check that only computes (no I/O, no waiting) and finishes in microseconds.

    On short inputs the pipeline calls ``check_inline`` directly: no task and no timer,
    which matter on the per-chunk path of a stream; its budget is judged after the fact
    (an overrun still counts as a ``timeout``). Longer inputs run in a worker process
    (``offload_above_chars``), where the budget stops the work.
    """

    inline = True
    offload_above_chars = 2_000  # ~1 ms of the heavier checks here; past that, off the loop

    @abc.abstractmethod
    def check_inline(self, request: CheckRequest) -> Verdict:
        """Look at ``request.texts`` and answer with a Verdict, synchronously."""

    def analyse(self, request: CheckRequest) -> Verdict:
        return self.check_inline(request)

    async def check(self, request: CheckRequest) -> Verdict:
        return self.check_inline(request)


def window_start(text: str, unjudged: int, holdback: int) -> int:
    """``stream_start`` for a check whose matches are no longer than the hold-back window
    (patterns, recognizers): the new text and one window before it, from a word's start
    (a window cut inside a word would make its tail look like a word of its own)."""
    start = max(0, unjudged - holdback)
    cut = max(text.rfind(" ", max(0, start - holdback), start), text.rfind("\n", max(0, start - holdback), start))
    return cut + 1 if cut >= 0 else start
