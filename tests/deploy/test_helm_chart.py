"""The Helm chart in deploy/helm/aimsguard, linted and rendered by Helm's own Go SDK.

helm-python-sdk binds Helm v4's official SDK (no helm binary or Go toolchain needed here):
`lint` and `render` are what `helm lint` and `helm template` run. The rendered manifests are
then checked against the Kubernetes API's own OpenAPI schemas (kubernetes-validate, strict:
an unknown or misspelt field fails), and for the wiring a cluster would only reveal at run
time: selectors, probe paths, the per-pod event log, secrets kept out of the manifests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from aimsguard.agent._gateway import create_gateway
from aimsguard.agent._guard import Guard
from aimsguard.agent._policy import GatewayConfig
from tests.support import EXAMPLE_POLICY, ROOT

CHART = ROOT / "deploy" / "helm" / "aimsguard"
VALUE_FILES = {
    "defaults": None,
    "fleet": CHART / "ci" / "fleet-values.yaml",
    "deployment": CHART / "ci" / "deployment-values.yaml",
}
# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest schemas shipped.
KUBE_VERSIONS = ["1.30.0", kubernetes_validate.latest_version()]


def _values(name: str) -> dict[str, Any]:
    path = VALUE_FILES[name]
    return yaml.safe_load(path.read_text()) if path else {}


def _render(values: dict[str, Any]) -> list[dict[str, Any]]:
    with helm.Chart.load(str(CHART)) as chart:
        manifests = chart.render(values, name="ag", namespace="prod")
    return [
        doc
        for name, text in manifests.items()
        if name.endswith(".yaml")
        for doc in yaml.safe_load_all(text)
        if doc
    ]


def _one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {[d['metadata']['name'] for d in found]}"
    return found[0]


def _workload(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] in ("StatefulSet", "Deployment"))


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container["env"]}


@pytest.mark.parametrize("values_name", VALUE_FILES)
def test_helm_lint_finds_nothing_above_info(values_name: str) -> None:
    report = helm.lint(str(CHART), _values(values_name), strict=True, namespace="prod")
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert report["errors"] == [] and problems == []


@pytest.mark.parametrize("values_name", VALUE_FILES)
@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_rendered_manifests_are_valid_kubernetes_objects(values_name: str, kube_version: str) -> None:
    docs = _render(_values(values_name))
    assert {"Service", "PodDisruptionBudget"} <= {d["kind"] for d in docs}
    for doc in docs:
        if doc["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # a CRD: its shape is checked in test_service_monitor_scrapes_the_gateway_port
        kubernetes_validate.validate(doc, kube_version, strict=True)


@pytest.mark.parametrize("values_name", VALUE_FILES)
def test_selectors_reach_the_gateway_pods(values_name: str) -> None:
    docs = _render(_values(values_name))
    workload = _workload(docs)
    pod_labels = workload["spec"]["template"]["metadata"]["labels"]
    assert workload["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    for service in (d for d in docs if d["kind"] == "Service"):
        assert service["spec"]["selector"].items() <= pod_labels.items()
        assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]
    pdb = _one(docs, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    if workload["kind"] == "StatefulSet":
        _one(docs, "Service", workload["spec"]["serviceName"])


def test_autoscaler_scales_the_workload_and_owns_its_replica_count() -> None:
    docs = _render(_values("fleet"))
    workload, hpa = _workload(docs), _one(docs, "HorizontalPodAutoscaler")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == (workload["kind"], workload["metadata"]["name"])
    assert "replicas" not in workload["spec"]  # else every upgrade would reset the autoscaler's choice
    assert hpa["spec"]["minReplicas"] == 3 and workload["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"]


def test_service_monitor_scrapes_the_gateway_port() -> None:
    docs = _render(_values("fleet"))
    monitor = _one(docs, "ServiceMonitor")
    service = _one(docs, "Service", "ag-aimsguard")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]} and endpoint["path"] == "/metrics"
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == ["prod"]


@pytest.mark.anyio
async def test_probe_and_scrape_paths_are_served_by_the_gateway(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The paths the manifests name answer 200 on a real gateway with the example policy."""
    import httpx

    container = _workload(_render({}))["spec"]["template"]["spec"]["containers"][0]
    paths = {container[p]["httpGet"]["path"] for p in ("readinessProbe", "livenessProbe", "startupProbe")}
    monitor = _one(_render(_values("fleet")), "ServiceMonitor")
    paths.add(monitor["spec"]["endpoints"][0]["path"])
    monkeypatch.setenv("AIMSGUARD_EVENT_DIR", str(tmp_path / "events"))
    monkeypatch.setenv("AIMSGUARD_RECORDS_URL", f"sqlite:///{tmp_path / 'records.db'}")
    guard = Guard.from_file(EXAMPLE_POLICY)
    try:
        transport = httpx.ASGITransport(app=create_gateway(guard))
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            statuses = {path: (await client.get(path)).status_code for path in sorted(paths)}
    finally:
        guard.close()
    assert statuses == dict.fromkeys(sorted(paths), 200)


@pytest.mark.parametrize("values_name", VALUE_FILES)
def test_each_pod_writes_its_own_event_log_chain_on_its_own_volume(values_name: str) -> None:
    values = _values(values_name)
    workload = _workload(_render(values))
    pod = workload["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = _env(container)
    mount = next(m for m in container["volumeMounts"] if m["name"] == "events")
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["AIMSGUARD_EVENT_DIR"]["value"] == f"{mount['mountPath']}/$(POD_NAME)"
    if workload["kind"] == "StatefulSet":
        (claim,) = workload["spec"]["volumeClaimTemplates"]
        assert claim["metadata"]["name"] == "events"
        # Scaling down or deleting the set must not delete evidence (Art. 12/19 retention).
        assert workload["spec"]["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain", "whenScaled": "Retain"}
    else:
        volume = next(v for v in pod["volumes"] if v["name"] == "events")
        assert volume["ephemeral"]["volumeClaimTemplate"]["spec"]["resources"]["requests"]["storage"]
    # The example policy takes its event directory and records store from these variables.
    policy_text = EXAMPLE_POLICY.read_text()
    assert "${AIMSGUARD_EVENT_DIR" in policy_text and "${AIMSGUARD_RECORDS_URL" in policy_text


def test_shared_store_urls_come_from_secrets_not_the_manifests() -> None:
    docs = _render(_values("fleet"))
    env = _env(_workload(docs)["spec"]["template"]["spec"]["containers"][0])
    assert env["AIMSGUARD_RECORDS_URL"]["valueFrom"]["secretKeyRef"] == {"name": "aimsguard-records", "key": "url"}
    assert env["AIMSGUARD_STATE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "aimsguard-state", "key": "url"}
    rendered = yaml.safe_dump_all(docs)
    assert "postgresql+psycopg://" not in rendered and "redis://" not in rendered


def test_the_vault_key_comes_from_its_secret_and_redis_without_one_is_refused() -> None:
    env = _env(_workload(_render(_values("fleet")))["spec"]["template"]["spec"]["containers"][0])
    assert env["AIMSGUARD_STATE_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "aimsguard-secrets", "key": "state-key"}
    shared = {"postgresql": {"existingSecret": "records"}, "redis": {"existingSecret": "state"}}
    with pytest.raises(helm.HelmRenderError, match="encrypted at rest"):
        _render(shared)
    # A key loaded through envFromSecrets is the user's to vouch for: the chart cannot see inside.
    assert _render({**shared, "envFromSecrets": ["aimsguard-secrets"]})


def test_more_than_one_replica_without_a_shared_records_store_is_refused() -> None:
    with pytest.raises(helm.HelmRenderError, match="shared records store"):
        _render({"replicaCount": 3})
    with pytest.raises(helm.HelmRenderError, match="shared records store"):
        _render({"autoscaling": {"enabled": True, "maxReplicas": 4}})


@pytest.mark.parametrize(
    "bad",
    [{"replicaCount": "three"}, {"workload": {"kind": "DaemonSet"}}, {"eventLog": {"size": "lots"}}, {"replicas": 3}],
)
def test_values_outside_the_schema_are_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(helm.HelmValuesError):
        _render(bad)


def test_a_stopping_pod_has_time_to_leave_the_service_and_drain() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    pod = _workload(_render({}))["spec"]["template"]["spec"]
    pre_stop = pod["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"]
    drain = GatewayConfig().drain_timeout_s
    assert pod["terminationGracePeriodSeconds"] == values["terminationGracePeriodSeconds"]
    assert pod["terminationGracePeriodSeconds"] >= pre_stop + drain + 5


def test_policy_given_inline_is_mounted_and_named_on_the_command_line() -> None:
    docs = _render(_values("deployment"))
    config_map = _one(docs, "ConfigMap")
    pod = _workload(docs)["spec"]["template"]["spec"]
    container = pod["containers"][0]
    config_path = container["args"][container["args"].index("--config") + 1]
    mount = next(m for m in container["volumeMounts"] if m["name"] == "policy")
    volume = next(v for v in pod["volumes"] if v["name"] == "policy")
    assert config_path == f"{mount['mountPath']}/aimsguard.yaml"
    assert volume["configMap"]["name"] == config_map["metadata"]["name"]
    assert "aimsguard.yaml" in config_map["data"]
    # A changed policy changes the pod template, so the pods roll and load it.
    other = _render({**_values("deployment"), "policy": {"content": "policy_version: '2027-01'\n"}})
    assert _workload(other)["spec"]["template"]["metadata"]["annotations"] != _workload(docs)["spec"]["template"]["metadata"]["annotations"]
