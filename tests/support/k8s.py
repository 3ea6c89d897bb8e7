"""Render the kustomize overlays offline and look at the objects (tests/k8s).

There is no cluster here: what a cluster would refuse or get wrong is checked on the rendered
objects themselves, with kubectl's built-in kustomize, strict schemas of a pinned Kubernetes
version, and a small model of NetworkPolicy semantics.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from kubernetes_validate import utils as kubernetes_validate

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
OVERLAYS = ("dev", "prod")
# The schemas the manifests must satisfy: the oldest Kubernetes the kit supports (the first with
# PodDisruptionBudget's unhealthyPodEvictionPolicy on by default) and the one it is written for.
KUBERNETES_VERSIONS = ("1.27.0", "1.32.0")
KUBERNETES_VERSION = KUBERNETES_VERSIONS[-1]
MIN_KUSTOMIZE = (5, 0)

WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job")


class RenderError(AssertionError):
    """kubectl kustomize failed or warned."""


def kubectl() -> str:
    path = shutil.which("kubectl")
    if path is None:
        pytest.fail("kubectl is not on PATH: the Kubernetes tests render with `kubectl kustomize`")
    return path


def kustomize_version() -> tuple[int, ...]:
    out = subprocess.run(
        [kubectl(), "version", "--client", "-o", "json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    version = json.loads(out).get("kustomizeVersion", "")
    match = re.match(r"v(\d+)\.(\d+)", version)
    if not match:
        pytest.fail(f"kubectl reports no kustomize version (got {version!r})")
    return tuple(int(n) for n in match.groups())


def render(directory: Path) -> list[dict]:
    """The objects `kubectl kustomize DIRECTORY` prints; any warning on stderr is a failure."""
    proc = subprocess.run(
        [kubectl(), "kustomize", str(directory)], capture_output=True, text=True, timeout=120
    )
    if proc.returncode != 0:
        raise RenderError(
            f"kubectl kustomize {directory} failed (exit {proc.returncode}):\n{proc.stderr}"
        )
    if proc.stderr.strip():
        raise RenderError(
            f"kubectl kustomize {directory} printed warnings, expected none:\n{proc.stderr}"
        )
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


def schema_errors(obj: dict, version: str = KUBERNETES_VERSION) -> list[str]:
    """Why `obj` fails strict validation against Kubernetes `version` (empty: it passes).

    Strict: an unknown field fails. An unknown kind, or an API version that this Kubernetes
    does not serve (removed or never existed), fails too: kubernetes-validate's command line
    only warns about those.
    """
    where = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')} ({obj.get('apiVersion')})"
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(str(p) for p in exc.path) or "(top level)"
        return [f"{where}: {path}: {exc.message}"]
    except kubernetes_validate.SchemaNotFoundError as exc:
        return [f"{where}: {exc.message}"]
    return []


def copy_tree_for_kustomize(destination: Path) -> Path:
    """A copy of what the overlays read (k8s/, pushpin/, nginx/), to render edited variants."""
    for name in ("k8s", "pushpin", "nginx"):
        shutil.copytree(REPO / name, destination / name)
    return destination


# -- kustomizations and components ---------------------------------------------------------------

COMPONENTS = K8S / "components"
# Objects kustomize reads (a replacement's source) but leaves out of the render.
LOCAL_CONFIG = "config.kubernetes.io/local-config"
_HASH_SUFFIX = re.compile(r"-[a-z0-9]{10}$")


def kustomization(directory: Path) -> dict:
    return yaml.safe_load((directory / "kustomization.yaml").read_text())


def components_of(directory: Path) -> list[str]:
    """The components a kustomization lists, by their directory's name under k8s/components."""
    names = []
    for entry in kustomization(directory).get("components", []):
        path = (directory / entry).resolve()
        assert path.parent.name == "components" and path.parent.parent.name == "k8s", (
            f"{directory}: component {entry} is not a directory of k8s/components"
        )
        names.append(path.name)
    return names


def is_local_config(obj: dict) -> bool:
    return (obj.get("metadata") or {}).get("annotations", {}).get(LOCAL_CONFIG) == "true"


def own_objects(directory: Path) -> list[dict]:
    """The objects in the resource files a kustomization lists itself (not its directories)."""
    objects = []
    for entry in kustomization(directory).get("resources", []):
        path = directory / entry
        if path.is_file():
            objects += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return objects


def object_ids(objects: list[dict]) -> set[tuple[str, str]]:
    """(kind, name) of every object that is applied; a generated ConfigMap without its hash, the
    Namespace without its name (overlays choose it)."""
    ids = set()
    for obj in objects:
        if is_local_config(obj):
            continue
        name = obj["metadata"]["name"]
        if obj["kind"] == "ConfigMap":
            name = _HASH_SUFFIX.sub("", name)
        elif obj["kind"] == "Namespace":
            name = ""
        ids.add((obj["kind"], name))
    return ids


# -- label selectors ---------------------------------------------------------------------------


def selector_matches(selector: Mapping | None, labels: Mapping) -> bool:
    """Kubernetes LabelSelector semantics: {} matches everything, None matches nothing."""
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
        if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            raise ValueError(f"unknown label selector operator {op!r}")
    return True


# -- the rendered objects ----------------------------------------------------------------------


@dataclass
class Render:
    name: str
    objects: list[dict]

    def of_kind(self, *kinds: str) -> list[dict]:
        return [o for o in self.objects if o["kind"] in kinds]

    def find(self, kind: str, name: str) -> dict | None:
        for obj in self.objects:
            if obj["kind"] == kind and obj["metadata"]["name"] == name:
                return obj
        return None

    def get(self, kind: str, name: str) -> dict:
        obj = self.find(kind, name)
        if obj is None:
            names = sorted(o["metadata"]["name"] for o in self.of_kind(kind))
            pytest.fail(f"{self.name}: expected a {kind} named {name!r}; the render has {names}")
        return obj

    def workloads(self) -> list[dict]:
        return self.of_kind(*WORKLOAD_KINDS)

    def workload(self, name: str) -> dict:
        for obj in self.workloads():
            if obj["metadata"]["name"] == name:
                return obj
        names = sorted(o["metadata"]["name"] for o in self.workloads())
        pytest.fail(f"{self.name}: expected a workload named {name!r}; the render has {names}")

    def workloads_selected_by(self, selector: Mapping | None) -> list[str]:
        return [
            w["metadata"]["name"]
            for w in self.workloads()
            if selector_matches(selector, pod_labels(w))
        ]

    def workloads_behind(self, service: dict) -> list[str]:
        """The workloads whose pods a Service selects (its selector is a plain label map)."""
        selector = service["spec"].get("selector")
        return self.workloads_selected_by({"matchLabels": selector} if selector else None)

    def config_map_data(self, name: str) -> dict[str, str]:
        return self.get("ConfigMap", name).get("data", {})


def pod_spec(workload: dict) -> dict:
    return workload["spec"]["template"]["spec"]


def pod_labels(workload: dict) -> dict:
    return workload["spec"]["template"]["metadata"].get("labels", {})


def containers(workload: dict, init: bool = True) -> list[dict]:
    spec = pod_spec(workload)
    return (spec.get("initContainers", []) if init else []) + spec["containers"]


def all_containers(render: Render) -> Iterator[tuple[dict, dict, bool]]:
    """(workload, container, is_init) for every container of every workload."""
    for workload in render.workloads():
        spec = pod_spec(workload)
        for container in spec.get("initContainers", []):
            yield workload, container, True
        for container in spec["containers"]:
            yield workload, container, False


def label(workload: dict, container: dict) -> str:
    return f"{workload['kind']}/{workload['metadata']['name']} container {container['name']!r}"


def container_port(container: dict, port: int | str) -> dict | None:
    for p in container.get("ports", []):
        if port in (p.get("name"), p["containerPort"]):
            return p
    return None


def env_value(container: dict, name: str) -> dict | None:
    for entry in container.get("env", []):
        if entry["name"] == name:
            return entry
    return None


def mounted_files(render: Render, workload: dict, container: dict) -> dict[str, str]:
    """The files a container sees from ConfigMap volumes: {path in the container: content}."""
    volumes = {v["name"]: v for v in pod_spec(workload).get("volumes", [])}
    files: dict[str, str] = {}
    for mount in container.get("volumeMounts", []):
        source = volumes[mount["name"]].get("configMap")
        if source is None:
            continue
        data = render.config_map_data(source["name"])
        items = source.get("items") or [{"key": k, "path": k} for k in data]
        for item in items:
            if "subPath" in mount:
                if item["path"] == mount["subPath"]:
                    files[mount["mountPath"]] = data[item["key"]]
            else:
                files[f"{mount['mountPath'].rstrip('/')}/{item['path']}"] = data[item["key"]]
    return files


# -- resource quantities -----------------------------------------------------------------------

_SUFFIXES = {
    "m": 1e-3,
    "": 1,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}


def quantity(value: str | int | float) -> float:
    match = re.fullmatch(r"([0-9.]+)([a-zA-Z]*)", str(value))
    if not match or match.group(2) not in _SUFFIXES:
        raise ValueError(f"not a Kubernetes quantity: {value!r}")
    return float(match.group(1)) * _SUFFIXES[match.group(2)]


# -- NetworkPolicy semantics -------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """Something that opens or accepts connections.

    A pod has labels and its namespace's labels; `ours` pods are in the rendered namespace, so
    the rendered NetworkPolicies apply to them. An address outside the cluster has
    namespace_labels None. `ports`: (port, protocol, port name or "").
    """

    name: str
    labels: Mapping = field(default_factory=dict)
    namespace_labels: Mapping | None = None
    ports: tuple[tuple[int, str, str], ...] = ()
    ours: bool = False


def _policy_types(policy: dict) -> list[str]:
    spec = policy["spec"]
    return spec.get("policyTypes") or ["Ingress", *(["Egress"] if "egress" in spec else [])]


def _peer_matches(peer: dict, other: Endpoint, own_namespace_labels: Mapping) -> bool:
    if "ipBlock" in peer:
        # Pod addresses fall inside most blocks (pod CIDRs are not known here): an ipBlock
        # counts as reaching pods too, which can only make the flow check stricter.
        return True
    if other.namespace_labels is None:
        return False  # an address outside the cluster: only an ipBlock peer matches it
    if "namespaceSelector" in peer:
        if not selector_matches(peer["namespaceSelector"], other.namespace_labels):
            return False
    elif other.namespace_labels != own_namespace_labels:
        return False  # a podSelector alone means pods of the policy's own namespace
    return "podSelector" not in peer or selector_matches(peer["podSelector"], other.labels)


def _port_matches(rule_ports: list | None, port: int, protocol: str, port_name: str) -> bool:
    if not rule_ports:
        return True
    for entry in rule_ports:
        if entry.get("protocol", "TCP") != protocol:
            continue
        allowed = entry.get("port")
        if allowed is None:
            return True
        if isinstance(allowed, str):
            if allowed == port_name:
                return True
        elif allowed <= port <= entry.get("endPort", allowed):
            return True
    return False


@dataclass
class NetworkModel:
    policies: list[dict]
    namespace_labels: Mapping

    def _allows(self, direction: str, subject: Endpoint, other: Endpoint, port, proto, name):
        selecting = [
            p
            for p in self.policies
            if direction in _policy_types(p)
            and selector_matches(p["spec"]["podSelector"], subject.labels)
        ]
        if not selecting:
            return True  # a pod no policy isolates accepts everything
        key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
        for policy in selecting:
            for rule in policy["spec"].get(key, []):
                peers = rule.get(peers_key)
                if (
                    not peers or any(_peer_matches(p, other, self.namespace_labels) for p in peers)
                ) and _port_matches(rule.get("ports"), port, proto, name):
                    return True
        return False

    def flows(self, endpoints: list[Endpoint]) -> set[tuple[str, str, str]]:
        """Every (source, destination, "port/protocol") that the policies let through."""
        allowed = set()
        for src in endpoints:
            for dst in endpoints:
                if src is dst or not (src.ours or dst.ours):
                    continue  # a pod always reaches itself; outsiders' own traffic is not ours
                for port, proto, name in dst.ports:
                    if src.ours and not self._allows("Egress", src, dst, port, proto, name):
                        continue
                    if dst.ours and not self._allows("Ingress", dst, src, port, proto, name):
                        continue
                    allowed.add((src.name, dst.name, f"{port}/{proto}"))
        return allowed


# -- what the repository builds ----------------------------------------------------------------

IMAGE_REF = re.compile(r"(?:^|/)rtdash/(?P<name>app|pushpin|nginx)(?P<ref>[:@].*)?$")


def image_of(container: dict) -> str | None:
    """Which of the repository's images (app, pushpin, nginx) a container runs, if any."""
    match = IMAGE_REF.search(container["image"])
    return match.group("name") if match else None


def dockerfile(image: str) -> str:
    return (REPO / image / "Dockerfile").read_text()


def image_user(image: str) -> int:
    """The numeric user the image runs as (its last USER instruction)."""
    users = re.findall(r"^USER\s+(\d+)\s*$", dockerfile(image), re.MULTILINE)
    assert users, f"{image}/Dockerfile: expected a numeric USER instruction"
    return int(users[-1])


def image_env(image: str, name: str) -> str:
    match = re.search(rf"^ENV\s+{name}=(\S+)", dockerfile(image), re.MULTILINE)
    assert match, f"{image}/Dockerfile: expected ENV {name}=..."
    return match.group(1)


def compose_images() -> dict[str, tuple[str, str]]:
    """{service: (image name, default tag)} for the services compose builds."""
    compose = yaml.safe_load((REPO / "compose/compose.yaml").read_text())
    images = {}
    for name, service in compose["services"].items():
        if "build" not in service or name not in ("app", "pushpin", "nginx"):
            continue
        match = re.fullmatch(r"([^:]+):\$\{\w+:-([^}]+)\}", service["image"])
        assert match, f"compose service {name}: unexpected image {service['image']!r}"
        images[name] = (match.group(1), match.group(2))
    return images


# -- Pod Security "restricted" -------------------------------------------------------------------

RESTRICTED_CONTAINER = {
    "runAsNonRoot": True,
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "seccompProfile": {"type": "RuntimeDefault"},
    "capabilities": {"drop": ["ALL"]},
}


def pod_security_problems(render: Render) -> list[str]:
    """Where a workload or any of its containers (init containers and sidecars included) falls
    short of the "restricted" settings, or does not run as its image's own user."""
    problems = []
    for workload in render.workloads():
        spec = pod_spec(workload)
        pod = spec.get("securityContext", {})
        name = f"{workload['kind']}/{workload['metadata']['name']}"
        for key in ("hostNetwork", "hostPID", "hostIPC"):
            if spec.get(key):
                problems.append(f"{name}: {key} is set")
        if any("hostPath" in v for v in spec.get("volumes", [])):
            problems.append(f"{name}: mounts a hostPath volume")
        for container in containers(workload):
            ctx = {**pod, **container.get("securityContext", {})}
            where = label(workload, container)
            for key, value in RESTRICTED_CONTAINER.items():
                if ctx.get(key) != value:
                    problems.append(f"{where}: {key} expected {value}, got {ctx.get(key)}")
            if ctx.get("privileged"):
                problems.append(f"{where}: privileged")
            image = image_of(container)
            if image and ctx.get("runAsUser") != image_user(image):
                problems.append(
                    f"{where}: runAsUser expected {image_user(image)} (USER of {image}/Dockerfile)"
                    f", got {ctx.get('runAsUser')}"
                )
            if any("hostPort" in p for p in container.get("ports", [])):
                problems.append(f"{where}: uses a hostPort")
    return problems


# -- the Prometheus operator's custom resources --------------------------------------------------

OPERATOR_KINDS = ("ServiceMonitor", "PrometheusRule")


def crd_errors(obj: dict) -> list[str]:
    """Why `obj` (a ServiceMonitor or PrometheusRule) fails the operator's CRD schema.

    kubernetes-validate knows built-in kinds only. The operator's schemas come as models
    generated from its CRDs (cloudcoil.models.prometheus_operator); they accept unknown fields
    silently, so every key is also checked against the model's fields: strict, like the rest.
    """
    import pydantic
    from cloudcoil.models.prometheus_operator import v1

    where = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
    if obj.get("apiVersion") != "monitoring.coreos.com/v1" or obj.get("kind") not in OPERATOR_KINDS:
        return [f"{where}: not a monitoring.coreos.com/v1 {'/'.join(OPERATOR_KINDS)}"]
    model = getattr(v1, obj["kind"])
    try:
        model.model_validate(obj)
    except pydantic.ValidationError as exc:
        return [f"{where}: {error['loc']}: {error['msg']}" for error in exc.errors()]
    return [f"{where}: {e}" for e in _unknown_fields(model, obj, "")]


def _unknown_fields(annotation, value, path: str) -> list[str]:
    import types
    import typing

    import pydantic

    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unknown_fields(typing.get_args(annotation)[0], value, path)
    if origin in (typing.Union, types.UnionType):
        # Optional[X] and the like: the members the value can be (None matches nothing here).
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        found = [_unknown_fields(a, value, path) for a in members]
        return min(found, key=len) if found else []
    if origin in (list, typing.List) and isinstance(value, list):  # noqa: UP006
        (item,) = typing.get_args(annotation) or (typing.Any,)
        return [e for i, v in enumerate(value) for e in _unknown_fields(item, v, f"{path}[{i}]")]
    if origin in (dict, typing.Dict) and isinstance(value, dict):  # noqa: UP006
        item = (typing.get_args(annotation) or (str, typing.Any))[1]
        return [e for k, v in value.items() for e in _unknown_fields(item, v, f"{path}.{k}")]
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        if not isinstance(value, dict):
            return []
        fields = {(f.alias or name): f for name, f in annotation.model_fields.items()}
        fields.update({name: f for name, f in annotation.model_fields.items()})
        errors = []
        for key, item in value.items():
            if key not in fields:
                errors.append(f"{path or '(top level)'}: unknown field {key!r}")
            else:
                errors += _unknown_fields(fields[key].annotation, item, f"{path}.{key}")
        return errors
    return []
