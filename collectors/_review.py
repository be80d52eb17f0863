"""Sampling checks' decisions for people to judge (ISO 42001 9.1: are the controls effective?).

``ReviewSampler`` is an exporter on the event bus, like the event log: it sees the very
``exchange`` and ``guardrail.verdict`` records the event log writes, after the policy's
content setting has been applied to them. A queued sample is built from those records
only, so it never holds more than the event log holds: with ``event_log.content: none``
it holds no text at all, with ``redacted`` the same masked text, and a stage whose
masking check failed stays withheld.

Per system and check, each decision is a member of a stratum, its action (``allow``,
``flag``, ``redact``, ``block``, ``escalate``). The policy sets a rate per action (rare
actions can be sampled more), and the first ``min_per_window`` decisions of a stratum in
each window are always taken, so a rare action is seen even at a low rate. Every sample
keeps the probability it had of being drawn (1 for those first ones, the rate after),
which the estimates (``_effectiveness``) use as inverse-probability weights.

Only checks that ran (outcome ``ok``) are sampled: a timeout resolved by its fail mode is
not the check's judgement of the content. Verdicts on documents screened with
``check_documents`` are not part of an exchange's summary and are not sampled.
"""

from __future__ import annotations

import queue
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Annotated, Any

import structlog
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ._exporter import Event, ExportResult

__all__ = ["ACTIONS", "DEFAULT_RATES", "ReviewConfig", "ReviewSampler"]

log = structlog.get_logger("aimsguard.review")

ACTIONS = ("allow", "flag", "redact", "block", "escalate")
DEFAULT_RATES = {"allow": 0.01, "flag": 0.2, "redact": 0.05, "block": 0.2, "escalate": 0.5}
_PENDING_MAX = 10_000  # verdict records waiting for their exchange event


def _rates(value: Mapping[str, float]) -> dict[str, float]:
    unknown = sorted(set(value) - set(ACTIONS))
    if unknown:
        raise ValueError(f"unknown action(s) {unknown}: rates are per action, one of {list(ACTIONS)}")
    bad = {k: v for k, v in value.items() if not 0.0 <= v <= 1.0}
    if bad:
        raise ValueError(f"rates are shares between 0 and 1 (got {bad})")
    return dict(value)


class ReviewConfig(BaseModel):
    """``systems.<id>.review``: which share of the checks' decisions people judge."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rates: dict[str, float] = DEFAULT_RATES  # per action; an action not named is not sampled past the minimum
    checks: dict[str, dict[str, float]] = {}  # per check id: rates that override ``rates``
    min_per_window: Annotated[int, Field(ge=0, le=10_000)] = 3  # per check and action, always taken
    window_s: Annotated[float, Field(gt=0, le=31 * 86400)] = 3600.0
    double_label_share: Annotated[float, Field(ge=0, le=1)] = 0.1  # samples two reviewers label (agreement)
    seed: int | None = None  # a fixed random seed (reproducible draws, e.g. in tests)

    @field_validator("rates")
    @classmethod
    def _valid_rates(cls, value: dict[str, float]) -> dict[str, float]:
        return _rates(value)

    @field_validator("checks")
    @classmethod
    def _valid_check_rates(cls, value: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        return {check: _rates(rates) for check, rates in value.items()}

    def rate(self, check: str, action: str) -> float:
        override = self.checks.get(check, {})
        return override[action] if action in override else self.rates.get(action, 0.0)


class _Stratum:
    __slots__ = ("count", "start")

    def __init__(self, start: float) -> None:
        self.start = start
        self.count = 0


class ReviewSampler:
    """Draws decisions from ``exchange`` events and queues them in the records store.

    Draws on the bus's worker; writes on a thread of its own behind a bounded queue
    (``max_pending`` batches; past that a batch is dropped, ``on_count(..., "dropped")``).
    A store that fails loses that batch's samples (``"failed"``); nothing is retried, since
    a retried batch would draw its decisions twice.
    """

    name = "review"

    def __init__(
        self,
        store: Any,
        configs: Mapping[str, ReviewConfig],
        *,
        on_count: Callable[[str, str, str], None] | None = None,
        clock: Callable[[], float] = time.time,
        max_pending: int = 1000,
    ) -> None:
        self.store = store
        self.configs = dict(configs)
        self._on_count = on_count
        self._clock = clock
        self._rngs = {system: random.Random(config.seed) for system, config in self.configs.items()}
        self._strata: dict[tuple[str, str, str], _Stratum] = {}
        self._pending: OrderedDict[tuple[str, str, str], Event] = OrderedDict()
        self._lock = threading.Lock()
        self.failures = 0
        self._queue: queue.Queue[list[dict[str, Any]] | None] = queue.Queue(maxsize=max_pending)
        self._writer = threading.Thread(target=self._write_forever, name="aimsguard-review", daemon=True)
        self._writer.start()

    def export(self, batch: Sequence[Event]) -> ExportResult:
        samples: list[dict[str, Any]] = []
        with self._lock:
            for event in batch:
                kind = event.get("event")
                if kind == "guardrail.verdict" and event.get("system") in self.configs and not event.get("source"):
                    key = (str(event.get("request_id")), str(event.get("stage")), str(event.get("guardrail")))
                    self._pending[key] = event
                    while len(self._pending) > _PENDING_MAX:
                        self._pending.popitem(last=False)
                elif kind == "exchange" and event.get("system") in self.configs:
                    samples.extend(self._draw(event))
        if samples:
            # The store is written from a thread of its own: a slow database must not hold up
            # the bus (and with it the event log, which answers may wait for).
            try:
                self._queue.put_nowait(samples)
            except queue.Full:
                for sample in samples:
                    self._count(sample["system"], sample["guardrail"], "dropped")
        return ExportResult.SUCCESS

    def _write_forever(self) -> None:
        while True:
            samples = self._queue.get()
            try:
                if samples is None:
                    return
                self._write(samples)
            finally:
                self._queue.task_done()

    def _write(self, samples: list[dict[str, Any]]) -> None:
        try:
            self.store.add_review_samples(samples)
        except Exception as exc:  # noqa: BLE001 - a failing store never fails the bus
            self.failures += 1
            log.error("review_samples_lost", count=len(samples), error_type=type(exc).__name__)
            for sample in samples:
                self._count(sample["system"], sample["guardrail"], "failed")
            return
        for sample in samples:
            self._count(sample["system"], sample["guardrail"], "queued")

    def _count(self, system: str, check: str, outcome: str) -> None:
        if self._on_count is not None:
            self._on_count(system, check, outcome)

    def _draw(self, event: Event) -> list[dict[str, Any]]:
        system = str(event["system"])
        config = self.configs[system]
        rng = self._rngs[system]
        now = self._clock()
        request_id = str(event.get("request_id") or "")
        drawn = []
        for verdict in event.get("verdicts") or []:
            if verdict.get("outcome") != "ok" or verdict.get("action") not in ACTIONS:
                continue
            check, stage, action = str(verdict.get("guardrail")), str(verdict.get("stage")), str(verdict["action"])
            detail = self._pending.pop((request_id, stage, check), None)
            stratum = self._strata.get((system, check, action))
            if stratum is None or now - stratum.start >= config.window_s:
                stratum = self._strata[(system, check, action)] = _Stratum(now)
            stratum.count += 1
            p = 1.0 if stratum.count <= config.min_per_window else config.rate(check, action)
            if p <= 0.0 or (p < 1.0 and rng.random() >= p):
                continue
            content, note = _content(event, stage)
            drawn.append(
                {
                    "system": system,
                    "guardrail": check,
                    "stage": stage,
                    "action": action,
                    "score": float(verdict.get("score") or 0.0),
                    "reasons": list(detail.get("reasons") or []) if detail else [],
                    "findings": list(detail.get("findings") or []) if detail else [],
                    "request_id": request_id,
                    "policy_version": str(event.get("policy_version") or ""),
                    "content": content,
                    "content_note": note,
                    "decided_at": _event_time(event),
                    "inclusion_p": p,
                    "labels_wanted": 2 if rng.random() < config.double_label_share else 1,
                }
            )
        return drawn

    def force_flush(self, timeout: float = 10.0) -> bool:
        """Wait until the samples handed over so far are written (or failed)."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)
        return True

    def shutdown(self) -> None:
        if self._writer.is_alive():
            self.force_flush(5.0)
            self._queue.put(None)
            self._writer.join(5.0)


def _content(event: Event, stage: str) -> tuple[dict[str, Any] | None, str]:
    """What a reviewer may read of the exchange: exactly the event's ``input``/``output``
    fields (the event log's content decision made them), the question too for an output
    check. Absent fields mean content is not logged; null ones that it was withheld."""
    keys = ("input",) if stage == "input" else ("input", "output")
    if not any(key in event for key in keys):
        return None, "content is not logged (event_log.content: none): judge from the check's reasons"
    withheld = event.get("content_withheld") or {}
    content = {key: event.get(key) for key in keys if key in event}
    if content.get(stage) is None:
        return None, f"withheld, as in the event log: {withheld.get(stage, 'not recorded')}"
    return content, ""


def _event_time(event: Event) -> datetime:
    ts = event.get("ts")
    if isinstance(ts, str):
        try:
            return datetime.fromisoformat(ts.replace("Z", "+00:00")).astimezone(timezone.utc)
        except ValueError:
            pass
    return datetime.now(timezone.utc)
