"""The package layers: guardrails and collectors sit below the agent and never import it.

A cycle between them made the import order matter and tied the report (a collector) to the
agent's runtime; the policy's objectives schema and the version now live in collectors.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("folder", ["collectors", "guardrails"])
def test_lower_layers_never_import_the_agent(folder: str) -> None:
    files = sorted((ROOT / folder).rglob("*.py"))
    assert files
    offenders = {
        str(path.relative_to(ROOT)): sorted(m for m in _imported_modules(path) if m.startswith("aimsguard.agent"))
        for path in files
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_agent_policy_still_offers_the_objectives_schema() -> None:
    from aimsguard.agent import _policy
    from aimsguard.collectors import Comparison, ObjectiveConfig, ObjectiveMetric

    assert (_policy.ObjectiveConfig, _policy.ObjectiveMetric, _policy.Comparison) == (ObjectiveConfig, ObjectiveMetric, Comparison)
