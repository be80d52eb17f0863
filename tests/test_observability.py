"""Alert rules, dashboards and a real Prometheus scraping a real gateway."""

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import yaml

from .support import free_port, mixed_traffic, start_gateway_workers

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "configs" / "prometheus" / "aimsguard-alerts.yml"
RULE_TESTS = ROOT / "configs" / "prometheus" / "aimsguard-alerts.test.yml"
RUNBOOKS = ROOT / "configs" / "prometheus" / "RUNBOOKS.md"
DASHBOARDS = sorted((ROOT / "dashboards").glob("*.json"))


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is missing: .ci/run installs Debian's prometheus package")
        pytest.skip(f"{name} is not installed (apt-get install prometheus)")
    return path


def _alerts() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"] if "alert" in rule]


def test_alert_rules_are_valid_and_their_unit_tests_pass() -> None:
    promtool = _tool("promtool")
    check = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    tests = subprocess.run([promtool, "test", "rules", str(RULE_TESTS)], capture_output=True, text=True, cwd=RULE_TESTS.parent)
    assert tests.returncode == 0, tests.stdout + tests.stderr


def test_every_alert_has_a_runbook_and_a_unit_test() -> None:
    anchors = {re.sub(r"[^a-z0-9]", "", line[3:].lower()) for line in RUNBOOKS.read_text().splitlines() if line.startswith("## ")}
    tested = {t["alertname"] for case in yaml.safe_load(RULE_TESTS.read_text())["tests"] for t in case["alert_rule_test"]}
    for alert in _alerts():
        runbook = alert["annotations"]["runbook_url"]
        assert runbook.split("#")[1] in anchors, alert["alert"]
        assert alert["alert"] in tested, f"{alert['alert']} has no promtool unit test"
        assert alert["labels"]["severity"] in ("page", "ticket")


def _panels(dashboard: dict) -> list[dict]:
    return [p for p in dashboard["panels"] if p.get("targets")]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboards_have_datasource_and_system_variables_and_no_sdk_specific_filters(path: Path) -> None:
    dashboard = json.loads(path.read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert variables["system"]["includeAll"] and variables["system"]["multi"]
    for panel in _panels(dashboard):
        assert panel["datasource"]["uid"] == "${datasource}"
        for target in panel["targets"]:
            expr = target["expr"]
            assert not re.search(r"\b(job|instance|service_name|telemetry_sdk\w*)\s*=", expr), expr
            if "aimsguard_requests_total" in expr or "gen_ai_" in expr:
                assert 'system=~"$system"' in expr, f"{panel['title']}: not filtered by the system variable"
    provisioning = yaml.safe_load((ROOT / "dashboards/provisioning/dashboards/aimsguard.yml").read_text())
    assert provisioning["providers"][0]["options"]["path"].endswith("aimsguard")



def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def _substitute(expr: str) -> str:
    return (expr.replace("$__rate_interval", "20s").replace("$__range", "2m").replace("$__interval", "1s")
            .replace('"$system"', '"support-bot"'))


def test_prometheus_scrapes_the_gateway_and_every_dashboard_query_answers(gateway, tmp_path: Path) -> None:
    prometheus = _tool("prometheus")
    url, guard = gateway()
    port = int(url.rsplit(":", 1)[1])
    mixed_traffic(url)
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [{"job_name": "aimsguard", "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    prom_port = free_port()
    process = subprocess.Popen(
        [prometheus, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=warn"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    api = f"http://127.0.0.1:{prom_port}/api/v1"

    def query(expr: str) -> dict:
        return httpx.get(api + "/query", params={"query": expr}).json()

    try:
        _wait(lambda: httpx.get(f"http://127.0.0.1:{prom_port}/-/ready").status_code == 200, 30, "Prometheus to start")
        _wait(lambda: query('aimsguard_requests_total{status="ok"}')["data"]["result"], 30, "the first scrape")
        for _ in range(3):  # traffic between scrapes, so rates are not all zero
            mixed_traffic(url)
            time.sleep(1.2)
        guard.flush()
        time.sleep(2.5)

        rules = httpx.get(api + "/rules").json()["data"]["groups"]
        loaded = [r for g in rules for r in g["rules"] if r["type"] == "alerting"]
        assert len(loaded) == len(_alerts()) and all(r["health"] == "ok" for r in loaded)
        systems = httpx.get(api + "/label/system/values", params={"match[]": "aimsguard_requests_total"}).json()["data"]
        assert systems == ["support-bot"]

        for path in DASHBOARDS:
            for panel in _panels(json.loads(path.read_text())):
                may_be_empty = "Empty until" in panel.get("description", "") or "Empty while" in panel.get("description", "")
                for target in panel["targets"]:
                    answer = query(_substitute(target["expr"]))
                    where = f"{path.name} / {panel['title']}: {target['expr']}"
                    assert answer["status"] == "success", f"{where}: {answer.get('error')}"
                    if not may_be_empty:
                        assert answer["data"]["result"], f"{where}: no data"
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(15)


def test_metrics_are_aggregated_across_worker_processes(tmp_path: Path, upstream) -> None:
    from .support import policy_dict, write_policy

    policy = write_policy(tmp_path, policy_dict(tmp_path, upstream.url + "/v1"))
    process, port = start_gateway_workers(tmp_path, policy)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: httpx.get(url + "/healthz").status_code == 200, 60, "the workers to start")
        body = {"model": "demo", "messages": [{"role": "user", "content": "How much is the Pro plan?"}]}
        for _ in range(20):  # a new connection each time spreads requests over the workers
            assert httpx.post(url + "/v1/chat/completions", json=body, timeout=10).status_code == 200

        def total() -> float:
            text = httpx.get(url + "/metrics").text
            values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                      if line.startswith("aimsguard_requests_total{") and 'status="ok"' in line]
            return sum(values)

        assert _wait(lambda: total() == 20, 15, "all 20 requests to show in /metrics")
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(20)
