"""The technical documentation pack (ISO 42001 A.6.2.7), generated from the running policy."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from aimsguard.agent._policy import load_policy
from aimsguard.agent._techdocs import _rule_scope, build_techdoc, techdoc_document
from aimsguard.agent.cli import app
from aimsguard.collectors.report import render_markdown
from aimsguard.guardrails import default_registry
from aimsguard.guardrails.knowledge import KnowledgeBase

from ..support import EXAMPLE_POLICY, KNOWLEDGE

ALERTS = EXAMPLE_POLICY.parent / "prometheus" / "aimsguard-alerts.yml"


def _markdown(policy_file: Path) -> str:
    policy = load_policy(policy_file)
    text, _ = render_markdown(techdoc_document(build_techdoc(policy, "support-bot", alert_rules=ALERTS)), "charts")
    return text


@pytest.fixture(scope="module")
def example_doc() -> str:
    return _markdown(EXAMPLE_POLICY)


def test_names_every_check_of_the_policy_with_its_settings(example_doc: str) -> None:
    policy = load_policy(EXAMPLE_POLICY)
    system = policy.systems["support-bot"]
    for stage in ("input", "output"):
        for check in getattr(system.checks, stage):
            assert f"### Check {check.instance_id} ({check.guardrail}, {stage})" in example_doc
            version = default_registry().get(check.guardrail).version
            assert f"| {check.instance_id} | {check.guardrail} | {stage} | {version} | {check.fail_mode.value} | {check.timeout_ms:g} ms |" in example_doc
    assert "| block_threshold | 0.8 |" in example_doc  # the injection check's threshold
    assert "| actions.CREDIT_CARD | block |" in example_doc
    assert "| rules[legal-threat].action | escalate |" in example_doc
    assert policy.policy_version in example_doc
    assert system.purpose in example_doc and system.owner in example_doc


def test_shows_the_versions_of_what_runs(example_doc: str) -> None:
    import importlib.metadata

    assert f"Presidio analyzer {importlib.metadata.version('presidio-analyzer')}" in example_doc
    assert "| MailAddressRecognizer | 0.0.1 | EMAIL_ADDRESS |" in example_doc
    assert f"Knowledge base snapshot {KnowledgeBase.from_directory(KNOWLEDGE).snapshot}" in example_doc


def test_lists_logging_metrics_alerts_and_the_oversight_path(example_doc: str) -> None:
    assert "| kept for | 183 days" in example_doc
    assert "| aimsguard_requests_total | counter |" in example_doc
    assert "| gen_ai_server_request_duration_seconds | histogram |" in example_doc
    assert "| AimsguardPersonalDataLeak | page | every system (per system) | support-bot: personal data" in example_doc
    assert "| AimsguardEventLogFailing | page | the whole deployment |" in example_doc
    assert "(action escalate): input-rules." in example_doc


@pytest.mark.parametrize(
    ("expr", "scope"),
    [
        ('rate(x{system="support-bot"}[5m])', "this system"),
        ('rate(x{system=~"support-.*"}[5m])', "this system"),
        ('rate(x{system="loan-advisor"}[5m])', None),
        ('rate(x{system!="support-bot"}[5m])', None),
        ("sum by (system) (rate(x[5m]))", "every system (per system)"),
        ('up{job="aimsguard"} == 0', "the whole deployment"),
    ],
)
def test_alert_rules_are_matched_to_the_system(expr: str, scope: str | None) -> None:
    assert _rule_scope(expr, "support-bot") == scope


def test_a_policy_change_changes_the_document(example_doc: str, tmp_path: Path) -> None:
    document = yaml.safe_load(EXAMPLE_POLICY.read_text())
    document["systems"]["support-bot"]["knowledge_base"] = str(KNOWLEDGE)
    output_checks = document["systems"]["support-bot"]["checks"]["output"]
    next(c for c in output_checks if c["id"] == "grounding")["settings"]["min_support"] = 0.75
    output_checks.append({"guardrail": "rules", "id": "no-prices", "fail_mode": "open", "timeout_ms": 20,
                          "settings": {"rules": [{"id": "price", "patterns": [r"\d+ EUR"], "action": "escalate"}]}})
    changed = tmp_path / "policy.yaml"
    changed.write_text(yaml.safe_dump(document))
    text = _markdown(changed)
    assert text != example_doc
    assert "### Check no-prices (rules, output)" in text and "### Check no-prices" not in example_doc
    assert "| min_support | 0.75 |" in text and "| min_support | 0.7 |" in example_doc
    assert load_policy(changed).policy_version in text and load_policy(changed).policy_version not in example_doc
    assert "input-rules, no-prices." in text


def test_cli_writes_html(tmp_path: Path) -> None:
    out = tmp_path / "docs.html"
    result = CliRunner().invoke(app, ["docs", "--system", "support-bot", "-c", str(EXAMPLE_POLICY), "-f", "html", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text().startswith("<!DOCTYPE html>") and "Check pii-out (pii, output)" in out.read_text()
    bad = CliRunner().invoke(app, ["docs", "--system", "nope", "-c", str(EXAMPLE_POLICY)])
    assert bad.exit_code == 2 and "unknown system 'nope'" in bad.output


def test_cli_writes_into_its_own_folder_unless_told(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["docs", "--system", "support-bot", "-c", str(EXAMPLE_POLICY)])
    assert result.exit_code == 0, result.output
    assert [p.name for p in tmp_path.iterdir()] == ["var"]  # nothing dropped into the current directory
    written = tmp_path / "var" / "docs" / "aimsguard-docs-support-bot.md"
    assert written.is_file() and f"wrote {Path('var/docs/aimsguard-docs-support-bot.md')}" in result.stderr


def test_documents_the_fairness_configuration_and_every_metric_owner(example_doc: str) -> None:
    policy = load_policy(EXAMPLE_POLICY)
    loan = policy.systems["loan-assistant"].fairness
    text, _ = render_markdown(techdoc_document(build_techdoc(policy, "loan-assistant", alert_rules=ALERTS)), "charts")
    assert "Fairness (bias monitoring)" in text
    for feature, categories in loan.features.items():
        assert f"| feature {feature} | {', '.join(categories)} |" in text
    assert f"| positive outcomes | {', '.join(loan.positive_outcomes)} |" in text
    assert f"| min_group_size | {loan.min_group_size} " in text
    assert f"the last {loan.window_events:,} exchanges, none older than {loan.window_s:g} s" in text
    assert "| threshold demographic_parity_ratio | min 0.8 |" in text and "| threshold block_rate_difference | max 0.05 |" in text
    assert "its outcomes are not monitored for bias" in example_doc  # support-bot has no fairness section
    for metric in ("aimsguard_fairness_metric | gauge", "aimsguard_fairness_breaches_total | counter", "aimsguard_feedback_total | counter",
                   "aimsguard_handoffs_total | counter", "aimsguard_handoffs_queued | gauge", "aimsguard_incidents_total | counter",
                   "aimsguard_records_errors_total | counter"):
        assert f"| {metric} |" in example_doc, metric


def test_documents_review_sampling_shadow_candidates_and_who_may_call(example_doc: str, tmp_path: Path) -> None:
    assert "| review rate, action block | 25.0% of decisions |" in example_doc
    assert "| review minimum | 3 per check and action every 3600 s (rare actions are seen) |" in example_doc
    assert "| shadow candidate | none |" in example_doc
    assert "| model calls on routes aimsguard cannot read | blocked with 403 route_not_guarded |" in example_doc
    document = yaml.safe_load(EXAMPLE_POLICY.read_text())
    system = document["systems"]["support-bot"]
    system["knowledge_base"] = str(KNOWLEDGE)
    system["shadow"] = {"candidate": "stricter-injection",
                        "checks": {"input": [{"guardrail": "injection", "id": "injection", "settings": {"block_threshold": 0.7}}]}}
    system["callers"] = {"require_key": True, "limits_fail_mode": "closed"}
    del system["review"]
    changed = tmp_path / "policy.yaml"
    changed.write_text(yaml.safe_dump(document))
    text = _markdown(changed)
    assert "| shadow candidate | stricter-injection: checks injection run on the same traffic, recorded, never applied |" in text
    assert "| review sampling | off:" in text and "review rate" not in text
    assert "| API key | required: a request without one of this system's keys gets 401 |" in text
    assert "refused with 503 limits_unavailable" in text
