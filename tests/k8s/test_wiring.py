"""The objects fit together: selectors match pod labels, Services reach declared ports, every
referenced object is rendered or documented as the operator's, the images are this repo's."""

import re

import yaml

from support.k8s import (
    REPO,
    all_containers,
    compose_images,
    container_port,
    containers,
    image_of,
    label,
    pod_labels,
    pod_spec,
    selector_matches,
)

# Objects the pods need that are never in the repository (secret values): the operator creates
# them, as the README's "Deploying to Kubernetes" says. {overlay: {(kind, name): keys}}
APP_SECRETS = {("Secret", "app-secrets"): {"DJANGO_SECRET_KEY", "PUSHPIN_SIG_KEY"}}
OPERATOR_SUPPLIED = {
    "dev": APP_SECRETS,
    "prod": {
        **APP_SECRETS,
        ("Secret", "app-database"): {"DATABASE_URL"},
        ("Secret", "app-tls"): {"tls.crt", "tls.key"},
    },
}

# Which of the repository's images each container runs.
IMAGE_FOR_CONTAINER = {
    "app": "app",
    "wait-for-migrations": "app",
    "ticker": "app",
    "migrate": "app",
    "pushpin": "pushpin",
    "nginx": "nginx",
}


def test_workload_selectors_match_their_pods(overlay):
    for workload in overlay.workloads():
        selector = workload["spec"].get("selector")
        if workload["kind"] == "Job" and selector is None:
            continue  # Kubernetes generates a Job's selector
        assert selector_matches(selector, pod_labels(workload)), (
            f"{overlay.name}: {workload['metadata']['name']} selector {selector} does not match "
            f"its pod labels {pod_labels(workload)}"
        )


def test_each_service_selects_exactly_one_workload(overlay):
    for service in overlay.of_kind("Service"):
        selected = overlay.workloads_behind(service)
        assert len(selected) == 1, (
            f"{overlay.name}: Service {service['metadata']['name']} selects {selected}, "
            "expected exactly one workload"
        )


def test_service_target_ports_exist_on_a_container(overlay):
    for service in overlay.of_kind("Service"):
        (workload,) = [overlay.workload(n) for n in overlay.workloads_behind(service)]
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            found = [c for c in containers(workload, init=False) if container_port(c, target)]
            declared = [p for c in containers(workload, init=False) for p in c.get("ports", [])]
            assert found, (
                f"{overlay.name}: Service {service['metadata']['name']} port {port['port']} "
                f"targets {target!r}; {workload['metadata']['name']} declares {declared}"
            )


def test_other_selectors_select_something(overlay):
    """A budget, policy or peer whose selector matches no pod protects nothing (a typo)."""
    selectors = [
        (f"PDB {p['metadata']['name']}", p["spec"]["selector"])
        for p in overlay.of_kind("PodDisruptionBudget")
    ]
    for policy in overlay.of_kind("NetworkPolicy"):
        name = f"NetworkPolicy {policy['metadata']['name']}"
        selectors.append((name, policy["spec"]["podSelector"]))
        for rule in policy["spec"].get("ingress", []) + policy["spec"].get("egress", []):
            for peer in rule.get("from", []) + rule.get("to", []):
                if "podSelector" in peer and "namespaceSelector" not in peer:
                    selectors.append((f"{name} peer", peer["podSelector"]))
    empty = [f"{name}: {sel}" for name, sel in selectors if not overlay.workloads_selected_by(sel)]
    assert not empty, f"{overlay.name}: selectors matching no pod:\n" + "\n".join(empty)


def test_horizontal_pod_autoscalers_target_rendered_deployments(overlay):
    for hpa in overlay.of_kind("HorizontalPodAutoscaler"):
        target = hpa["spec"]["scaleTargetRef"]
        overlay.get(target["kind"], target["name"])


def _references(overlay):
    """(what refers, kind, name, key or None) for every object a pod or Ingress names."""
    for workload, container, _ in all_containers(overlay):
        where = label(workload, container)
        for source in container.get("envFrom", []):
            if "configMapRef" in source:
                yield where, "ConfigMap", source["configMapRef"]["name"], None
            if "secretRef" in source:
                yield where, "Secret", source["secretRef"]["name"], None
        for env in container.get("env", []):
            ref = env.get("valueFrom", {})
            for kind, key_ref in (("ConfigMap", "configMapKeyRef"), ("Secret", "secretKeyRef")):
                if key_ref in ref:
                    yield where, kind, ref[key_ref]["name"], ref[key_ref]["key"]
    for workload in overlay.workloads():
        where = f"{workload['kind']}/{workload['metadata']['name']}"
        spec = pod_spec(workload)
        yield where, "ServiceAccount", spec.get("serviceAccountName", "default"), None
        for volume in spec.get("volumes", []):
            if "configMap" in volume:
                for item in volume["configMap"].get("items") or [{"key": None}]:
                    yield where, "ConfigMap", volume["configMap"]["name"], item["key"]
            if "secret" in volume:
                yield where, "Secret", volume["secret"]["secretName"], None
            if "persistentVolumeClaim" in volume:
                claim = volume["persistentVolumeClaim"]["claimName"]
                yield where, "PersistentVolumeClaim", claim, None
    for ingress in overlay.of_kind("Ingress"):
        where = f"Ingress/{ingress['metadata']['name']}"
        for tls in ingress["spec"].get("tls", []):
            yield where, "Secret", tls["secretName"], None


def test_referenced_objects_exist_or_are_operator_supplied(overlay):
    supplied = OPERATOR_SUPPLIED[overlay.name]
    problems, used = [], set()
    for where, kind, name, key in _references(overlay):
        obj = overlay.find(kind, name)
        if obj is not None:
            if key is not None and key not in obj.get("data", {}):
                problems.append(f"{where}: {kind} {name} has no key {key!r}")
        elif (kind, name) in supplied:
            used.add((kind, name))
            if key is not None and key not in supplied[(kind, name)]:
                problems.append(f"{where}: key {key!r} of {kind} {name} is not documented")
        else:
            problems.append(f"{where}: {kind} {name} is neither rendered nor operator-supplied")
    assert not problems, f"{overlay.name}:\n" + "\n".join(problems)
    assert used == set(supplied), (
        f"{overlay.name}: documented as operator-supplied but not used: {set(supplied) - used}"
    )


def test_operator_supplied_objects_are_documented(overlay):
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Deploying to Kubernetes", 1)
    assert len(section) == 2, "README.md has no section '## Deploying to Kubernetes'"
    section = section[1].split("\n## ", 1)[0]
    kustomization = (REPO / f"k8s/overlays/{overlay.name}/kustomization.yaml").read_text()
    for (kind, name), keys in OPERATOR_SUPPLIED[overlay.name].items():
        for text, where in (
            (section, "the README's Kubernetes section"),
            (kustomization, "the overlay"),
        ):
            assert name in text, f"{where} does not mention the {kind} {name} operators supply"
        for key in keys - {"tls.crt", "tls.key"}:
            assert key in section, f"the README's Kubernetes section does not name {name}'s {key}"


def test_no_secret_values_in_the_repository(overlay):
    secrets = [s["metadata"]["name"] for s in overlay.of_kind("Secret")]
    assert not secrets, f"{overlay.name}: renders Secrets {secrets}; their values must not be here"


def test_ingress_backends_exist(overlay):
    for ingress in overlay.of_kind("Ingress"):
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                service = overlay.get("Service", backend["name"])
                ports = [(p.get("name"), p["port"]) for p in service["spec"]["ports"]]
                wanted = backend["port"].get("name") or backend["port"].get("number")
                assert any(wanted in p for p in ports), (
                    f"{overlay.name}: Ingress {ingress['metadata']['name']} wants port "
                    f"{wanted!r} of Service {backend['name']}, which has {ports}"
                )


def test_images_are_the_ones_this_repository_builds(overlay):
    built = compose_images()
    problems = []
    for workload, container, _ in all_containers(overlay):
        expected = IMAGE_FOR_CONTAINER.get(container["name"])
        image = image_of(container)
        if expected is None or image != expected:
            problems.append(
                f"{label(workload, container)}: expected image {built.get(expected, expected)}, "
                f"got {container['image']}"
            )
    assert not problems, f"{overlay.name}:\n" + "\n".join(problems)


def test_dev_runs_the_images_compose_builds(dev):
    built = {name: f"{image}:{tag}" for name, (image, tag) in compose_images().items()}
    for workload, container, _ in all_containers(dev):
        expected = built[image_of(container)]
        assert container["image"] == expected, (
            f"dev {label(workload, container)}: expected {expected} (as `make up` builds it), "
            f"got {container['image']}"
        )
        # Images loaded into a local cluster are used, never pulled.
        assert container.get("imagePullPolicy") == "IfNotPresent", (
            f"dev {label(workload, container)}: expected imagePullPolicy IfNotPresent"
        )


def test_prod_images_are_pinned_with_the_images_transformer(prod):
    kustomization = yaml.safe_load((REPO / "k8s/overlays/prod/kustomization.yaml").read_text())
    pinned = {entry["name"]: entry for entry in kustomization.get("images", [])}
    assert set(pinned) == {f"rtdash/{n}" for n in ("app", "pushpin", "nginx")}, (
        f"prod: expected `images` entries for rtdash/app, rtdash/pushpin, rtdash/nginx: {pinned}"
    )
    for workload, container, _ in all_containers(prod):
        ref = container["image"]
        tag = re.search(r":([^:/@]+)$", ref)
        assert "@sha256:" in ref or (tag and tag.group(1) != "latest"), (
            f"prod {label(workload, container)}: expected a pinned tag or digest, got {ref}"
        )
