import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from aimsguard.agent import PolicyError, load_policy, parse_policy

from ..support import EXAMPLE_POLICY, policy_dict, write_policy


# Where the example policy's input rules check sits among its input checks.
RULES_AT = next(
    i for i, c in enumerate(yaml.safe_load(EXAMPLE_POLICY.read_text())["systems"]["support-bot"]["checks"]["input"]) if c["guardrail"] == "rules"
)


def test_example_policy_is_valid_and_resolves_paths_against_its_file() -> None:
    policy = load_policy(EXAMPLE_POLICY)
    system = policy.systems["support-bot"]
    assert system.knowledge_base == (EXAMPLE_POLICY.parent / "knowledge").resolve()
    assert policy.event_log.directory.is_absolute()
    assert policy.default_system_id == "support-bot"
    assert policy.policy_version.startswith("sha256:")


def test_version_changes_with_the_rules_and_not_with_location_or_comments(tmp_path: Path) -> None:
    data = yaml.safe_load(EXAMPLE_POLICY.read_text())
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = write_policy(tmp_path / "a", data)
    b = write_policy(tmp_path / "b", data)
    b.write_text("# a comment\n" + b.read_text())
    assert load_policy(a).policy_version == load_policy(b).policy_version
    data["systems"]["support-bot"]["checks"]["input"][0]["timeout_ms"] = 51
    assert load_policy(write_policy(tmp_path / "a", data)).policy_version != load_policy(b).policy_version


def test_secrets_come_from_the_environment_and_never_show_in_the_version(tmp_path: Path) -> None:
    data = policy_dict(tmp_path)
    data["systems"]["support-bot"]["upstream"]["api_key"] = "${TEST_SECRET_KEY}"
    one = parse_policy(data, env={"TEST_SECRET_KEY": "sk-one"})
    two = parse_policy(data, env={"TEST_SECRET_KEY": "sk-two"})
    assert one.systems["support-bot"].upstream.api_key.get_secret_value() == "sk-one"
    assert one.policy_version == two.policy_version
    assert "sk-one" not in repr(one)


def test_one_version_whatever_the_environment_fills_in() -> None:
    # The demo fills the upstream URL from its environment; the report and docs do not:
    # all three must show the version of the file as written.
    import os

    demo_env = {**os.environ, "AIMSGUARD_DEMO_UPSTREAM": "http://127.0.0.1:9999/v1", "AIMSGUARD_EVENT_DIR": "/tmp/elsewhere"}
    data = yaml.safe_load(EXAMPLE_POLICY.read_text())
    plain_env = {k: v for k, v in os.environ.items() if not k.startswith("AIMSGUARD_")}
    demo = parse_policy(data, env=demo_env)
    plain = parse_policy(data, env=plain_env)
    assert demo.systems["support-bot"].upstream.base_url != plain.systems["support-bot"].upstream.base_url
    assert demo.policy_version == plain.policy_version
    # What is written still counts: another default is another policy.
    data["systems"]["support-bot"]["upstream"]["base_url"] = "${AIMSGUARD_DEMO_UPSTREAM:-http://127.0.0.1:8082/v1}"
    assert parse_policy(data, env=plain_env).policy_version != plain.policy_version


def test_a_missing_environment_variable_names_the_key(tmp_path: Path) -> None:
    data = policy_dict(tmp_path)
    data["systems"]["support-bot"]["upstream"]["api_key"] = "${NOT_SET_ANYWHERE_123}"
    with pytest.raises(PolicyError) as caught:
        parse_policy(data, source="p.yaml", env={})
    assert "systems.support-bot.upstream.api_key" in str(caught.value)
    assert "NOT_SET_ANYWHERE_123 is not set" in str(caught.value)


@pytest.mark.parametrize(
    ("mutate", "key_path", "problem"),
    [
        (lambda d: d["gateway"].update(max_body_bytes="lots"), "gateway.max_body_bytes", "valid integer"),
        (lambda d: d["gateway"].update(prot=8080), "gateway.prot", "unknown key"),
        (lambda d: d["systems"]["support-bot"]["checks"]["input"][0].update(fail_mode="sideways"),
         "systems.support-bot.checks.input[0].fail_mode", "'open' or 'closed'"),
        (lambda d: d["systems"]["support-bot"]["checks"]["input"][0].update(timeout_ms=0),
         "systems.support-bot.checks.input[0].timeout_ms", "greater than 0"),
        (lambda d: d["systems"]["support-bot"]["checks"]["output"][0].update(guardrail="telepathy"),
         "systems.support-bot.checks.output[0].guardrail", "unknown guardrail 'telepathy'"),
        (lambda d: d["systems"]["support-bot"]["checks"]["input"][RULES_AT]["settings"]["rules"][0].update(patterns=["(x"]),
         f"systems.support-bot.checks.input[{RULES_AT}].settings.rules[0].patterns[0]", "not a valid regular expression"),
        (lambda d: d["systems"]["support-bot"]["upstream"].update(base_url="not a url"),
         "systems.support-bot.upstream.base_url", "URL"),
        (lambda d: d["systems"]["support-bot"].pop("owner"), "systems.support-bot.owner", "Field required"),
        (lambda d: d["gateway"].update(default_system="nope"), "gateway.default_system", "names no system"),
        (lambda d: d["systems"]["support-bot"]["streaming"].update(holdback_chars=16), "systems.support-bot.streaming.holdback_chars",
         "at least 42 when a pii check watches the output"),
        (lambda d: d["systems"].update({"Bad Id": d["systems"]["support-bot"]}), "systems.Bad Id", "pattern"),
    ],
)
def test_invalid_policy_names_file_key_and_problem(tmp_path: Path, mutate, key_path: str, problem: str) -> None:
    data = policy_dict(tmp_path)
    mutate(data)
    path = write_policy(tmp_path, data)
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    message = str(caught.value)
    assert str(path) in message
    line = next(line for line in message.splitlines() if key_path in line)
    assert problem in line


def test_all_problems_are_reported_at_once(tmp_path: Path) -> None:
    data = policy_dict(tmp_path)
    data["gateway"]["port"] = -1
    data["event_log"]["fail_mode"] = "maybe"
    with pytest.raises(PolicyError) as caught:
        parse_policy(data)
    assert {p.key_path for p in caught.value.problems} == {"gateway.port", "event_log.fail_mode"}


def test_broken_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("version: 1\nsystems:\n  a: [unclosed\n")
    with pytest.raises(PolicyError, match=r"line \d+, column \d+: not valid YAML"):
        load_policy(path)


def test_missing_file_is_a_policy_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read the file"):
        load_policy(tmp_path / "absent.yaml")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "aimsguard.agent.cli", *args], capture_output=True, text=True, timeout=60)


def test_check_config_command_accepts_the_example_and_refuses_a_broken_file(tmp_path: Path) -> None:
    ok = _cli("check-config", str(EXAMPLE_POLICY))
    assert ok.returncode == 0, ok.stderr
    assert "valid, policy version sha256:" in ok.stdout
    data = policy_dict(tmp_path)
    data["systems"]["support-bot"]["checks"]["input"][0]["timeout_ms"] = "soon"
    bad = _cli("check-config", str(write_policy(tmp_path, data)))
    assert bad.returncode == 2
    assert "systems.support-bot.checks.input[0].timeout_ms" in bad.stderr


def test_check_config_loads_every_check_and_lists_every_problem_and_the_gateway_stops_with_one_line(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from aimsguard.agent.cli import app

    data = policy_dict(tmp_path)
    system = data["systems"]["support-bot"]
    system["knowledge_base"] = str(tmp_path / "no-such-folder")
    pii_at = next(i for i, c in enumerate(system["checks"]["input"]) if c["guardrail"] == "pii")
    system["checks"]["input"][pii_at].setdefault("settings", {})["ner_model"] = "xx_not_installed_pipeline"
    (tmp_path / "a-file").write_text("")
    data["event_log"]["directory"] = str(tmp_path / "a-file" / "events")
    grounding_at = next(i for i, c in enumerate(system["checks"]["output"]) if c["guardrail"] == "grounding")
    policy = write_policy(tmp_path, data)

    checked = CliRunner().invoke(app, ["check-config", str(policy)])
    assert checked.exit_code == 2
    assert "(3 problem(s))" in checked.stderr
    assert f"systems.support-bot.checks.input[{pii_at}]: guardrail 'pii-in': failed to load: the spaCy pipeline 'xx_not_installed_pipeline'" in checked.stderr
    assert f"systems.support-bot.checks.output[{grounding_at}]: guardrail 'grounding': failed to load: knowledge base folder" in checked.stderr
    assert "event_log.directory:" in checked.stderr

    served = CliRunner().invoke(app, ["gateway", "--config", str(policy), "--port", "9"])
    assert served.exit_code == 2
    assert served.exception is None or isinstance(served.exception, SystemExit)
    [line] = [line for line in served.stderr.splitlines() if line.startswith("error:")]
    assert "guardrail 'pii-in': failed to load" in line and f"check-config {policy}" in line
    assert "Traceback" not in served.output
