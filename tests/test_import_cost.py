"""What importing the runtime costs: the heavy analysis libraries load only when used.

fairlearn (with scikit-learn and pandas) and matplotlib cost over a second and
~150 MiB; a gateway whose policy watches no system for bias must not pay for them.
Each case runs in a fresh interpreter, since this test process has imported everything.
"""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

HEAVY = ("fairlearn", "sklearn", "pandas", "matplotlib")


def _loaded_after(code: str) -> list[str]:
    probe = textwrap.dedent(code) + f"\nimport sys, json\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_importing_the_agent_loads_no_analysis_library() -> None:
    assert _loaded_after("import aimsguard.agent, aimsguard.collectors, aimsguard.guardrails") == []


def test_a_gateway_without_a_fairness_section_loads_no_analysis_library(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        json.dumps(
            {
                "event_log": {"directory": str(tmp_path / "events")},
                "systems": {"bot": {"name": "Bot", "owner": "team", "upstream": {"base_url": "http://127.0.0.1:9/v1"}}},
            }
        )
    )
    code = f"""
        from aimsguard.agent import Guard, create_gateway
        guard = Guard.from_file({str(policy)!r})
        create_gateway(guard)
        guard.close()
    """
    assert _loaded_after(code) == []


def test_evaluating_fairness_does_load_fairlearn() -> None:
    # The other side of the lazy import: the evaluation still runs on the real library.
    code = """
        from aimsguard.collectors._fairness import YES, NO, UNKNOWN, GUARD_NONE, evaluate
        counts = {(g, o, UNKNOWN, GUARD_NONE): 30 for g in ("a", "b") for o in (YES, NO)}
        assert evaluate("group", counts, ["a", "b"], 10).demographic_parity_ratio == 1.0
    """
    assert "fairlearn" in _loaded_after(code)
