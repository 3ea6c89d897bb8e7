"""Monitoring on Kubernetes: every component's pods carry scrape annotations naming a declared
metrics port, the same port monitoring/prometheus.yml scrapes; the optional component for the
Prometheus operator renders into either overlay, its ServiceMonitor finds every metrics
endpoint, its PrometheusRule is monitoring/rules.yml itself, and every object validates (the
operator's kinds against its CRD schemas); the base needs none of those CRDs."""

import copy
import re
import subprocess
import sys

import pytest
import yaml

from support.k8s import (
    K8S,
    KUBERNETES_VERSIONS,
    OPERATOR_KINDS,
    OVERLAYS,
    REPO,
    Render,
    container_port,
    containers,
    copy_tree_for_kustomize,
    crd_errors,
    env_value,
    pod_labels,
    render,
    schema_errors,
)

COMPONENT = K8S / "components/monitoring"
PROMETHEUS = yaml.safe_load((REPO / "monitoring/prometheus.yml").read_text())


def job_ports() -> dict[str, int]:
    """{job: port} as monitoring/prometheus.yml scrapes the kit's components (its relabelling
    adds the port); not Prometheus itself (the operator's Prometheus scrapes itself)."""
    ports = {}
    for job in PROMETHEUS["scrape_configs"]:
        if job["job_name"] == "prometheus":
            continue
        for relabel in job.get("relabel_configs", []):
            if relabel.get("target_label") == "__address__":
                ports[job["job_name"]] = int(relabel["replacement"].rsplit(":", 1)[1])
    return ports


def test_the_scrape_config_has_a_job_per_component():
    assert job_ports() == {"app": 9808, "ticker": 9809, "pushpin": 9810, "nginx": 9113}


@pytest.mark.parametrize("workload", ["app", "ticker", "pushpin", "nginx"])
def test_pods_carry_scrape_annotations_for_their_metrics_port(overlay, workload):
    template = overlay.workload(workload)["spec"]["template"]
    annotations = template["metadata"].get("annotations", {})
    assert annotations.get("prometheus.io/scrape") == "true", f"{workload}: {annotations}"
    assert annotations.get("prometheus.io/path") == "/metrics"
    port = int(annotations["prometheus.io/port"])
    assert port == job_ports()[workload], (
        f"{overlay.name}: {workload} annotates port {port}; monitoring/prometheus.yml scrapes "
        f"{job_ports()[workload]}"
    )
    declared = [
        container_port(c, "metrics")
        for c in containers(overlay.workload(workload), init=False)
        if container_port(c, "metrics")
    ]
    assert [p["containerPort"] for p in declared] == [port], (
        f"{overlay.name}: {workload} should declare one port named metrics = {port}: {declared}"
    )


def test_the_app_and_the_ticker_listen_for_prometheus(overlay):
    settings = next(
        cm["data"]
        for cm in overlay.of_kind("ConfigMap")
        if cm["metadata"]["name"].startswith("app-settings-")
    )
    assert settings.get("METRICS_ADDR") == "0.0.0.0", (
        f"{overlay.name}: METRICS_ADDR {settings.get('METRICS_ADDR')!r}: without it the app "
        "and the ticker serve no metrics"
    )
    (pushpin,) = containers(overlay.workload("pushpin"), init=False)
    assert env_value(pushpin, "PUSHPIN_CONTROL_ADDR"), "pushpin's metrics bind its pod address"


def test_the_base_and_overlays_need_no_operator_crds(overlay):
    used = [o["kind"] for o in overlay.objects if o["apiVersion"].startswith("monitoring.")]
    assert not used, f"{overlay.name} renders operator objects {used}: they belong in the component"


# -- the component ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def with_component(kustomize, tmp_path_factory) -> dict[str, Render]:
    """Each overlay with `components: [../../components/monitoring]` added, as the README says."""
    tree = copy_tree_for_kustomize(tmp_path_factory.mktemp("component"))
    renders = {}
    for name in OVERLAYS:
        path = tree / "k8s/overlays" / name / "kustomization.yaml"
        kustomization = yaml.safe_load(path.read_text())
        kustomization.setdefault("components", []).append("../../components/monitoring")
        path.write_text(yaml.safe_dump(kustomization))
        renders[name] = Render(name, render(path.parent))
    return renders


@pytest.fixture(params=OVERLAYS)
def monitored(request, with_component) -> Render:
    return with_component[request.param]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_the_component_validates_strictly(monitored, version):
    errors = []
    for obj in monitored.objects:
        if obj["kind"] in OPERATOR_KINDS:
            errors += crd_errors(obj)
        else:
            errors += schema_errors(obj, version)
    assert not errors, f"{monitored.name} + monitoring:\n" + "\n".join(errors)
    kinds = sorted(o["kind"] for o in monitored.objects if o["kind"] in OPERATOR_KINDS)
    assert kinds == sorted(OPERATOR_KINDS), f"expected one of each operator kind, got {kinds}"
    namespace = monitored.of_kind("Namespace")[0]["metadata"]["name"]
    for obj in monitored.objects:
        if obj["kind"] in OPERATOR_KINDS:
            assert obj["metadata"].get("namespace") == namespace, f"{obj['kind']}: namespace"


def test_the_crd_check_refuses_an_unknown_field(monitored):
    monitor = copy.deepcopy(monitored.get("ServiceMonitor", "rtdash"))
    monitor["spec"]["endpoints"][0]["intervall"] = "10s"
    assert crd_errors(monitor), "expected 'intervall' refused"
    rule = copy.deepcopy(monitored.get("PrometheusRule", "rtdash"))
    rule["spec"]["groups"][0]["rules"][0]["for"] = 60
    assert crd_errors(rule), "expected a numeric `for` refused"


def test_the_prometheus_rule_is_the_rule_file(monitored):
    rule = monitored.get("PrometheusRule", "rtdash")
    assert rule["spec"] == yaml.safe_load((REPO / "monitoring/rules.yml").read_text()), (
        "the PrometheusRule differs from monitoring/rules.yml: run `make monitoring-k8s`"
    )


def test_the_committed_prometheus_rule_is_current():
    generated = subprocess.run(
        [sys.executable, str(REPO / "monitoring/render-prometheusrule")],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    committed = (COMPONENT / "prometheusrule.yaml").read_text()
    assert committed == generated, (
        "k8s/components/monitoring/prometheusrule.yaml is not what monitoring/rules.yml "
        "generates: run `make monitoring-k8s`"
    )


def test_the_service_monitor_finds_every_metrics_endpoint(monitored):
    monitor = monitored.get("ServiceMonitor", "rtdash")
    spec = monitor["spec"]
    selected = [
        s
        for s in monitored.of_kind("Service")
        if all(
            s["metadata"].get("labels", {}).get(k) == v
            for k, v in spec["selector"]["matchLabels"].items()
        )
    ]
    jobs = {}
    for service in selected:
        job = service["metadata"]["labels"][spec["jobLabel"]]
        (workload,) = monitored.workloads_behind(service)
        assert workload == job, f"Service {service['metadata']['name']} reaches {workload}"
        (port,) = [p for p in service["spec"]["ports"] if p["name"] == spec["endpoints"][0]["port"]]
        declared = [
            container_port(c, port["targetPort"])
            for c in containers(monitored.workload(workload), init=False)
            if container_port(c, port["targetPort"])
        ]
        assert declared, f"{workload}: no container port {port['targetPort']!r}"
        jobs[job] = declared[0]["containerPort"]
        assert "app.kubernetes.io/name" in pod_labels(monitored.workload(workload))
    assert jobs == job_ports(), f"ServiceMonitor jobs {jobs}, prometheus.yml {job_ports()}"
    interval = PROMETHEUS["global"]["scrape_interval"]
    assert spec["endpoints"][0]["interval"] == interval, "scrape interval differs"


def test_make_monitoring_k8s_writes_the_rule():
    out = subprocess.run(
        ["make", "--no-print-directory", "-n", "monitoring-k8s"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0 and re.search(
        r"render-prometheusrule.*> *k8s/components/monitoring/prometheusrule\.yaml", out.stdout
    ), f"make -n monitoring-k8s:\n{out.stdout}{out.stderr}"
