"""Rules every workload of every overlay follows: probes that test the real thing, requests and
limits, the "restricted" Pod Security settings with the images' own users, writable paths on
volumes, service accounts without tokens, disruption budgets, graceful rollouts."""

import copy
import re

import pytest
import yaml

from support.k8s import (
    K8S,
    REPO,
    WORKLOAD_KINDS,
    Render,
    all_containers,
    container_port,
    containers,
    copy_tree_for_kustomize,
    image_of,
    is_local_config,
    label,
    pod_security_problems,
    pod_spec,
    quantity,
    render,
)

# Containers that run to completion (the migrate Job) get no probes: a readiness probe means
# nothing there, and the Job's backoffLimit and activeDeadlineSeconds bound it instead.
RUN_TO_COMPLETION = ("Job",)


def long_running(overlay):
    for workload, container, is_init in all_containers(overlay):
        if not is_init and workload["kind"] not in RUN_TO_COMPLETION:
            yield workload, container


def test_every_long_running_container_has_both_probes(overlay):
    missing = [
        f"{label(w, c)}: no {probe}"
        for w, c in long_running(overlay)
        for probe in ("readinessProbe", "livenessProbe")
        if probe not in c
    ]
    assert not missing, f"{overlay.name}: expected readiness and liveness probes:\n" + "\n".join(
        missing
    )


def test_probe_ports_are_the_containers_own(overlay):
    wrong = []
    for w, c in long_running(overlay):
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            action = c.get(probe, {}).get("httpGet") or c.get(probe, {}).get("tcpSocket")
            if action and container_port(c, action["port"]) is None:
                wrong.append(f"{label(w, c)} {probe}: port {action['port']!r} is not declared")
    assert not wrong, f"{overlay.name}:\n" + "\n".join(wrong)


def test_jobs_are_bounded(overlay):
    for job in overlay.of_kind("Job"):
        spec = job["spec"]
        for key in ("backoffLimit", "activeDeadlineSeconds", "ttlSecondsAfterFinished"):
            assert key in spec, f"{overlay.name}: Job {job['metadata']['name']} has no {key}"


def _probe(overlay, workload, container, probe):
    pod = containers(overlay.workload(workload), init=False)
    found = [c for c in pod if c["name"] == container]
    assert found, f"{overlay.name}: {workload} has no container {container!r}"
    assert probe in found[0], f"{overlay.name}: {workload}/{container} has no {probe}"
    return found[0][probe]


def test_app_probes_test_the_database_and_a_worker(overlay):
    readiness = _probe(overlay, "app", "app", "readinessProbe")["httpGet"]
    assert readiness["path"] == "/healthz", f"app readiness: expected /healthz, got {readiness}"
    health = (REPO / "app/realtime/src/realtime/health.py").read_text()
    assert '"/healthz"' in health and "SELECT 1" in health, (
        "realtime/health.py no longer answers /healthz with a database query"
    )
    # Liveness must not depend on the database: a static file, served by whitenoise.
    liveness = _probe(overlay, "app", "app", "livenessProbe")["httpGet"]["path"]
    assert liveness.startswith("/static/"), f"app liveness: expected a static file, got {liveness}"
    relative = liveness.removeprefix("/static/")
    assert list(REPO.glob(f"app/realtime/src/*/static/{relative}")), (
        f"app liveness probes {liveness}, but the package has no static/{relative}"
    )


def test_nginx_probes_do_not_depend_on_the_app(overlay):
    """An app or database outage must not take the nginx pods out of their Service, and the
    app's database-backed /healthz is not served on the public origin."""
    site = (REPO / "nginx/origin.conf").read_text()
    assert "location = /healthz {\n    return 404;" in site, "nginx proxies /healthz to the app"
    for probe in ("readinessProbe", "livenessProbe"):
        path = _probe(overlay, "nginx", "nginx", probe)["httpGet"]["path"]
        assert path == "/nginx-health" and f"location = {path}" in site, (
            f"nginx {probe} probes {path}, expected /nginx-health, answered by nginx itself"
        )


def test_pushpin_probes_run_the_images_healthcheck(overlay):
    # (That the image has it and it passes: test_pods_in_docker runs every probe.)
    healthcheck = "/usr/local/lib/pushpin-kit/healthcheck"
    liveness = " ".join(_probe(overlay, "pushpin", "pushpin", "livenessProbe")["exec"]["command"])
    readiness = " ".join(_probe(overlay, "pushpin", "pushpin", "readinessProbe")["exec"]["command"])
    assert healthcheck in liveness, f"pushpin liveness: expected {healthcheck}, got {liveness!r}"
    assert healthcheck in readiness and "127.0.0.1:7999/events/" in readiness, (
        f"pushpin readiness: expected the healthcheck and the /events/ route, got {readiness!r}"
    )


def test_ticker_probes_watch_its_heartbeat(overlay):
    ticker = containers(overlay.workload("ticker"), init=False)[0]
    command = ticker.get("command", []) + ticker.get("args", [])
    assert "--heartbeat-file" in command, f"ticker: expected --heartbeat-file in {command}"
    heartbeat = command[command.index("--heartbeat-file") + 1]
    for probe in ("readinessProbe", "livenessProbe"):
        probed = " ".join(ticker[probe]["exec"]["command"])
        assert heartbeat in probed, f"ticker {probe}: expected it to check {heartbeat}: {probed}"


def test_every_container_has_requests_and_limits(overlay):
    problems = []
    for w, c, _ in all_containers(overlay):
        resources = c.get("resources", {})
        for resource in ("cpu", "memory"):
            request = resources.get("requests", {}).get(resource)
            limit = resources.get("limits", {}).get(resource)
            if request is None or limit is None:
                problems.append(f"{label(w, c)}: {resource} request={request} limit={limit}")
            elif quantity(request) > quantity(limit):
                problems.append(f"{label(w, c)}: {resource} request {request} > limit {limit}")
    assert not problems, f"{overlay.name}: expected requests <= limits:\n" + "\n".join(problems)


def test_restricted_pod_security(overlay):
    problems = pod_security_problems(overlay)
    assert not problems, f"{overlay.name}:\n" + "\n".join(problems)


def test_the_pod_security_check_sees_every_container(overlay):
    """It looks at init containers and sidecars too (each overlay has both: wait-for-migrations,
    the nginx exporter): any one container without a setting is reported."""
    seen = list(all_containers(overlay))
    assert any(is_init for _, _, is_init in seen), f"{overlay.name}: no init container checked"
    assert any(len(containers(w, init=False)) > 1 for w in overlay.workloads()), (
        f"{overlay.name}: no pod with a sidecar checked"
    )
    for index, (workload, container, _) in enumerate(seen):
        broken = Render(overlay.name, copy.deepcopy(overlay.objects))
        _, target, _ = list(all_containers(broken))[index]
        del target["securityContext"]["readOnlyRootFilesystem"]
        expected = [f"{label(workload, container)}: readOnlyRootFilesystem expected True, got None"]
        assert pod_security_problems(broken) == expected, (
            f"{overlay.name}: {label(workload, container)} without readOnlyRootFilesystem went "
            f"unreported: {pod_security_problems(broken)}"
        )


# Per workload, in its pod: the image's user (it differs per image). Nothing else anywhere.
IMAGE_USER_KEYS = {"runAsUser", "runAsGroup", "fsGroup"}


def _security_contexts(node, path=""):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "securityContext":
                yield f"{path}.{key}", value
            else:
                yield from _security_contexts(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _security_contexts(value, f"{path}[{i}]")


def test_pod_hardening_is_written_once():
    """k8s/base/hardening.yaml holds the restricted settings, and the base's replacements copy
    them into every pod and container; no manifest or patch repeats them, and no container
    states a securityContext of its own (the hardening would replace it)."""
    problems, users, workloads = [], 0, 0
    for path in sorted(K8S.rglob("*.yaml")):
        where = path.relative_to(REPO)
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or (isinstance(doc, dict) and is_local_config(doc)):
                continue
            workloads += isinstance(doc, dict) and doc.get("kind") in WORKLOAD_KINDS
            for at, value in _security_contexts(doc):
                if at.endswith(".template.spec.securityContext") and set(value) <= IMAGE_USER_KEYS:
                    users += 1
                else:
                    problems.append(f"{where}: {at} = {value}")
    assert not problems, (
        "securityContext outside k8s/base/hardening.yaml (only a pod's image user belongs in a "
        "workload):\n" + "\n".join(problems)
    )
    assert users == workloads, f"expected the image's user in {workloads} workloads: {users}"


def test_pod_hardening_reaches_new_workloads_and_sidecars(kustomize, tmp_path):
    """A StatefulSet and a DaemonSet added to the base, and a sidecar added to the migrate Job,
    stating no securityContext but their image's user, render with every restricted setting."""
    tree = copy_tree_for_kustomize(tmp_path)
    base = tree / "k8s/base"

    def workload(kind):
        labels = {"app.kubernetes.io/name": kind.lower()}
        return {
            "apiVersion": "apps/v1",
            "kind": kind,
            "metadata": {"name": kind.lower(), "labels": labels},
            "spec": {
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "securityContext": {"runAsUser": 10001, "runAsGroup": 10001},
                        "containers": [{"name": "main", "image": "rtdash/app"}],
                    },
                },
            },
        }

    (base / "extra.yaml").write_text(
        yaml.safe_dump_all([workload("StatefulSet"), workload("DaemonSet")])
    )
    kustomization = base / "kustomization.yaml"
    kustomization.write_text(
        kustomization.read_text().replace("resources:\n", "resources:\n  - extra.yaml\n", 1)
    )
    job = yaml.safe_load((base / "migrate.yaml").read_text())
    job["spec"]["template"]["spec"]["containers"].append({"name": "sidecar", "image": "rtdash/app"})
    (base / "migrate.yaml").write_text(yaml.safe_dump(job))
    rendered = Render("dev + new workloads", render(tree / "k8s/overlays/dev"))
    checked = {(w["kind"], c["name"]) for w, c, _ in all_containers(rendered)}
    assert {("StatefulSet", "main"), ("DaemonSet", "main"), ("Job", "sidecar")} <= checked
    problems = pod_security_problems(rendered)
    assert not problems, "the hardening missed containers:\n" + "\n".join(problems)


def _writable_mounts(workload, container):
    volumes = {v["name"]: v for v in pod_spec(workload).get("volumes", [])}
    return [
        m["mountPath"]
        for m in container.get("volumeMounts", [])
        if not m.get("readOnly")
        and ("emptyDir" in volumes[m["name"]] or "persistentVolumeClaim" in volumes[m["name"]])
    ]


def _is_under(path, mounts):
    return any(path == m or path.startswith(m.rstrip("/") + "/") for m in mounts)


def _paths_written(container):
    """What a container writes (the root filesystem is read-only): from the repo's files."""
    image, name = image_of(container), container["name"]
    if image == "nginx" and "run-exporter" in " ".join(container.get("command", [])):
        # The exporter sidecar notes its listen address in /tmp (nginx/run-exporter).
        return ["/tmp"]
    if image == "nginx":
        # Plus stub_status's unix socket (status.conf).
        status = (REPO / "nginx/status.conf").read_text()
        sockets = re.findall(r"^\s*listen\s+unix:(\S+)/[^/;]+;", status, re.MULTILINE)
        conf = (REPO / "nginx/nginx.conf").read_text()
        return sockets + re.findall(r"^\s*(?:pid|\w+_temp_path)\s+(\S+?)/?;", conf, re.MULTILINE)
    if image == "pushpin":
        run_pushpin = (REPO / "pushpin/run-pushpin").read_text()
        run_dir = re.search(r"run_dir=\$\{PUSHPIN_RUN_DIR:-([^}]+)\}", run_pushpin).group(1)
        return [run_dir]
    if image == "app":
        # gunicorn's worker heartbeat files and Python's tempfile; the ticker's heartbeat.
        command = container.get("command", []) + container.get("args", [])
        if "--heartbeat-file" in command:
            return ["/tmp", command[command.index("--heartbeat-file") + 1]]
        return ["/tmp"]
    raise AssertionError(f"container {name!r} runs an image this test does not know")


def test_what_containers_write_is_on_a_volume(overlay):
    problems = []
    for w, c, _ in all_containers(overlay):
        mounts = _writable_mounts(w, c)
        for path in _paths_written(c):
            if not _is_under(path, mounts):
                problems.append(f"{label(w, c)}: writes {path}, writable mounts are {mounts}")
    assert not problems, f"{overlay.name}: read-only root filesystem:\n" + "\n".join(problems)


def test_service_accounts_exist_without_tokens(overlay):
    problems = []
    for workload in overlay.workloads():
        spec = pod_spec(workload)
        name = f"{workload['kind']}/{workload['metadata']['name']}"
        account = spec.get("serviceAccountName", "default")
        sa = overlay.find("ServiceAccount", account)
        if sa is None:
            problems.append(f"{name}: ServiceAccount {account!r} is not in the render")
        elif sa.get("automountServiceAccountToken") is not False:
            problems.append(f"ServiceAccount {account}: automountServiceAccountToken not false")
        if spec.get("automountServiceAccountToken") is not False:
            problems.append(f"{name}: pod automountServiceAccountToken expected false")
    assert not problems, f"{overlay.name}:\n" + "\n".join(problems)


def _min_replicas(overlay, deployment):
    for hpa in overlay.of_kind("HorizontalPodAutoscaler"):
        if hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]:
            return hpa["spec"].get("minReplicas", 1)
    return deployment["spec"].get("replicas", 1)


def test_served_deployments_have_a_budget_that_never_blocks_a_drain(overlay):
    served = {
        name for service in overlay.of_kind("Service") for name in overlay.workloads_behind(service)
    }
    assert served == {"app", "pushpin", "nginx"}, f"{overlay.name}: Services select {served}"
    pdbs = overlay.of_kind("PodDisruptionBudget")
    for name in sorted(served):
        deployment = overlay.get("Deployment", name)
        budgets = [p for p in pdbs if name in overlay.workloads_selected_by(p["spec"]["selector"])]
        assert len(budgets) == 1, (
            f"{overlay.name}: expected one PodDisruptionBudget for {name}, got {len(budgets)}"
        )
        spec = budgets[0]["spec"]
        replicas = _min_replicas(overlay, deployment)
        allowed = (
            int(spec["maxUnavailable"])
            if "maxUnavailable" in spec
            else replicas - int(spec["minAvailable"])
        )
        assert allowed >= 1, (
            f"{overlay.name}: PDB {budgets[0]['metadata']['name']} lets {allowed} of {replicas} "
            f"{name} pod(s) go: expected at least 1, or node drains block"
        )


def _sleep(container):
    command = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    assert command[:1] == ["sleep"], f"{container['name']}: expected preStop sleep, got {command}"
    return int(command[1])


def test_graceful_rollouts(overlay):
    for deployment in overlay.of_kind("Deployment"):
        name, spec = deployment["metadata"]["name"], deployment["spec"]
        strategy = spec.get("strategy", {})
        if name == "ticker":
            # A singleton: two tickers would publish every value twice.
            assert strategy.get("type") == "Recreate" and spec.get("replicas") == 1, (
                f"{overlay.name}: ticker expected Recreate with 1 replica, got {strategy}"
            )
            continue
        rolling = strategy.get("rollingUpdate", {})
        assert strategy.get("type") == "RollingUpdate" and rolling.get("maxUnavailable") in (
            0,
            "0%",
        ), f"{overlay.name}: {name} expected RollingUpdate with maxUnavailable 0, got {strategy}"


def _seconds(pattern, path):
    match = re.search(pattern, (REPO / path).read_text(), re.MULTILINE)
    assert match, f"{path}: expected to find {pattern!r}"
    return int(match.group(1))


@pytest.mark.parametrize(
    ("deployment", "drain"),
    [
        # nginx closes open event streams after worker_shutdown_timeout.
        ("nginx", lambda: _seconds(r"^worker_shutdown_timeout (\d+)s;", "nginx/nginx.conf")),
        # gunicorn finishes requests in flight within graceful_timeout.
        (
            "app",
            lambda: _seconds(r"^graceful_timeout = (\d+)", "app/realtime/src/realtime/gunicorn.py"),
        ),
        # Pushpin closes its streams at once; clients reconnect elsewhere.
        ("pushpin", lambda: 0),
    ],
)
def test_connections_drain_before_the_pod_is_killed(overlay, deployment, drain):
    workload = overlay.get("Deployment", deployment)
    container = containers(workload, init=False)[0]
    sleep = _sleep(container)
    grace = pod_spec(workload).get("terminationGracePeriodSeconds", 30)
    assert sleep >= 5, f"{deployment}: preStop sleeps {sleep} s; endpoints need a few seconds"
    assert grace > sleep + drain(), (
        f"{overlay.name}: {deployment} terminationGracePeriodSeconds {grace} must exceed "
        f"preStop {sleep} s + drain {drain()} s"
    )
