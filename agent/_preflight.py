"""Everything the gateway loads at start, tried before it starts.

A policy can be valid and still not start: a knowledge-base folder that is missing, an NER
model that is not installed, an event-log folder that cannot be written. ``check-config``
runs this to list every such problem at once, each with the key it comes from, instead of
the first one stopping start-up. Each check is built and loaded exactly as the gateway's
pipeline builds it (one ``Pipeline`` per check, so one failure does not hide the next).
"""

from __future__ import annotations

import os
from pathlib import Path

from aimsguard.guardrails import GuardrailRegistry, Stage, default_registry

from ._errors import GuardrailError, PolicyProblem
from ._pipeline import Pipeline
from ._policy import Policy
from ._state import state_key_problem

__all__ = ["startup_problems"]


def startup_problems(policy: Policy, registry: GuardrailRegistry | None = None) -> list[PolicyProblem]:
    """What would stop the gateway from starting with ``policy`` (empty: nothing)."""
    registry = registry or default_registry()
    problems: list[PolicyProblem] = []
    for system_id, system in policy.systems.items():
        for stage in Stage:
            for index, check in enumerate(system.checks.for_stage(stage)):
                alone = system.model_copy(
                    update={"checks": system.checks.model_copy(update={s.value: [check] if s is stage else [] for s in Stage})}
                )
                try:
                    Pipeline(system_id, alone, registry).close()
                except GuardrailError as error:
                    problems.append(PolicyProblem(f"systems.{system_id}.checks.{stage.value}[{index}]", str(error)))
    key_problem = state_key_problem(policy)
    if key_problem is not None:
        problems.append(key_problem)
    directory = policy.event_log.directory
    if not _writable(directory):
        problems.append(PolicyProblem("event_log.directory", f"{directory} cannot be created or written by this user"))
    return problems


def _writable(directory: Path) -> bool:
    """Whether ``directory`` is, or could be made, a folder this process can write to."""
    path = directory
    while not path.exists():
        if path.parent == path:
            return False
        path = path.parent
    return path.is_dir() and os.access(path, os.W_OK | os.X_OK)
