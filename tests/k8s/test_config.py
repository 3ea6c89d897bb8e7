"""Config written once: the Pushpin and nginx pods run their images' config (built from the
repository's pushpin/ and nginx/, as compose runs it) with only nginx's upstream list mounted
over it, from a ConfigMap generated from nginx/upstreams/kubernetes.conf whose content hash
rolls the pods; the addresses in those files are Services of the render."""

import re

import pytest

from support.k8s import (
    REPO,
    containers,
    copy_tree_for_kustomize,
    env_value,
    mounted_files,
    render,
)

# The one file of the images' config that differs on Kubernetes: the upstream list.
MOUNTED_OVER_THE_IMAGE = {
    "pushpin": {},
    "nginx": {"/etc/nginx/kit/upstreams.conf": REPO / "nginx/upstreams/kubernetes.conf"},
}


@pytest.mark.parametrize("image", ["pushpin", "nginx"])
def test_pods_run_the_images_config_but_for_the_upstream_list(overlay, image):
    workload = overlay.workload(image)
    # (The nginx pod also runs the exporter sidecar, from the same image.)
    (container,) = [c for c in containers(workload, init=False) if c["name"] == image]
    seen = mounted_files(overlay, workload, container)
    expected = MOUNTED_OVER_THE_IMAGE[image]
    assert set(seen) == set(expected), (
        f"{overlay.name}: {image} should see {sorted(expected)} from a ConfigMap, "
        f"sees {sorted(seen)}"
    )
    for path, source in expected.items():
        assert seen[path].encode() == source.read_bytes(), (
            f"{overlay.name}: {image}'s {path} differs from {source.relative_to(REPO)}"
        )


def test_the_upstream_list_is_generated_with_a_content_hash(overlay):
    generated = [
        cm["metadata"]["name"]
        for cm in overlay.of_kind("ConfigMap")
        if re.fullmatch(r"nginx-upstreams-[a-z0-9]{10}", cm["metadata"]["name"])
    ]
    assert len(generated) == 1, (
        f"{overlay.name}: expected one nginx-upstreams-<hash>, got {generated}"
    )
    assert not overlay.get("ConfigMap", generated[0]).get("binaryData"), "unexpected binaryData"


def _config_map_of(objects, deployment):
    for obj in objects:
        if obj["kind"] == "Deployment" and obj["metadata"]["name"] == deployment:
            return sorted(
                v["configMap"]["name"]
                for v in obj["spec"]["template"]["spec"]["volumes"]
                if "configMap" in v
            )
    raise AssertionError(f"no Deployment {deployment}")


def test_an_upstream_change_rolls_the_nginx_pods(kustomize, tmp_path):
    tree = copy_tree_for_kustomize(tmp_path)
    before = _config_map_of(render(tree / "k8s/overlays/prod"), "nginx")
    with open(tree / "nginx/upstreams/kubernetes.conf", "a") as f:
        f.write("# changed\n")
    after = _config_map_of(render(tree / "k8s/overlays/prod"), "nginx")
    assert before != after, (
        f"editing nginx/upstreams/kubernetes.conf left nginx's ConfigMap name at {before}: "
        "pods would not roll"
    )


def test_nginx_upstreams_are_services_of_the_render(overlay):
    upstreams = (REPO / "nginx/upstreams/kubernetes.conf").read_text()
    servers = re.findall(r"^\s*server\s+([\w-]+):(\d+)", upstreams, re.MULTILINE)
    assert {name for name, _ in servers} == {"pushpin", "app"}, f"unexpected upstreams {servers}"
    for name, port in servers:
        service = overlay.get("Service", name)
        assert int(port) in [p["port"] for p in service["spec"]["ports"]], (
            f"{overlay.name}: nginx proxies to {name}:{port}; Service {name} has "
            f"{service['spec']['ports']}"
        )
        assert overlay.workloads_behind(service) == [name], (
            f"{overlay.name}: Service {name} should reach the {name} pods, "
            f"reaches {overlay.workloads_behind(service)}"
        )
        assert service["spec"].get("clusterIP") != "None", (
            f"{overlay.name}: nginx resolves {name} once: it must be a Service with a cluster IP"
        )


def test_pushpin_forwards_to_the_app_service(overlay):
    (pushpin,) = containers(overlay.workload("pushpin"), init=False)
    targets = env_value(pushpin, "PUSHPIN_APP_TARGETS")["value"]
    for target in targets.split():
        name, port = target.split(":")
        service = overlay.get("Service", name)
        assert overlay.workloads_behind(service) == ["app"], f"{target} does not reach the app"
        assert int(port) in [p["port"] for p in service["spec"]["ports"]], f"{target}: no port"


def test_the_app_publishes_to_every_pushpin_pod(overlay):
    settings = next(
        cm["data"]
        for cm in overlay.of_kind("ConfigMap")
        if cm["metadata"]["name"].startswith("app-settings-")
    )
    urls = settings["PUSHPIN_CONTROL_URLS"].split(",")
    for url in urls:
        host, port = re.fullmatch(r"http://([\w-]+):(\d+)", url.strip()).groups()
        service = overlay.get("Service", host)
        spec = service["spec"]
        # Headless: the name resolves to each pod's address, so every node gets every publish.
        assert spec.get("clusterIP") == "None", f"{overlay.name}: {host} must be headless"
        # Nodes still holding streams (not ready yet, or draining) must get events too.
        assert spec.get("publishNotReadyAddresses") is True, (
            f"{overlay.name}: {host} must list not-ready and terminating Pushpin pods"
        )
        assert overlay.workloads_behind(service) == ["pushpin"], f"{host} selects no Pushpin pod"
        (pushpin,) = containers(overlay.workload("pushpin"), init=False)
        (entry,) = [p for p in spec["ports"] if p["port"] == int(port)]
        listening = pushpin["ports"]
        assert any(
            entry.get("targetPort", entry["port"]) in (p.get("name"), p["containerPort"])
            and p["containerPort"] == 5561
            for p in listening
        ), f"{overlay.name}: {url} does not reach Pushpin's publish port 5561"


def test_pushpin_and_the_app_share_the_signing_key(overlay):
    (pushpin,) = containers(overlay.workload("pushpin"), init=False)
    key_ref = env_value(pushpin, "PUSHPIN_SIG_KEY")["valueFrom"]["secretKeyRef"]
    assert key_ref["key"] == "PUSHPIN_SIG_KEY", f"pushpin reads its key from {key_ref}"
    for name in ("app", "ticker"):
        (container,) = containers(overlay.workload(name), init=False)
        secrets = [s["secretRef"]["name"] for s in container["envFrom"] if "secretRef" in s]
        assert key_ref["name"] in secrets, (
            f"{overlay.name}: {name} should read PUSHPIN_SIG_KEY from Secret {key_ref['name']}, "
            f"reads {secrets}"
        )


def test_pushpin_binds_its_publish_port_to_the_pod_address(overlay):
    (pushpin,) = containers(overlay.workload("pushpin"), init=False)
    addr = env_value(pushpin, "PUSHPIN_CONTROL_ADDR") or {}
    field_path = addr.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
    assert field_path == "status.podIP", (
        f"{overlay.name}: expected PUSHPIN_CONTROL_ADDR from status.podIP, got {addr}"
    )
