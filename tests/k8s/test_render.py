"""Every overlay renders with kubectl's kustomize, without warnings, and validates strictly
against the schemas of a pinned Kubernetes version; `make render` and `make deploy-k8s` drive
kubectl as the README says."""

import copy
import os
import subprocess
import textwrap

import pytest
import yaml

from support.k8s import (
    K8S,
    KUBERNETES_VERSIONS,
    OVERLAYS,
    REPO,
    RenderError,
    render,
    schema_errors,
)

DEPRECATED_FIELDS = {"commonLabels", "patchesStrategicMerge", "patchesJson6902", "bases", "vars"}


def test_both_overlays_exist():
    for name in OVERLAYS:
        path = K8S / "overlays" / name / "kustomization.yaml"
        assert path.is_file(), f"expected the {name} overlay at {path.relative_to(REPO)}"


@pytest.mark.parametrize("directory", ["base", *(f"overlays/{o}" for o in OVERLAYS)])
def test_renders_without_warnings(kustomize, directory):
    objects = render(K8S / directory)  # raises with kustomize's stderr on any warning
    assert objects, f"k8s/{directory} rendered no objects"


def test_a_warning_fails_the_render(kustomize, tmp_path):
    """The check above can fail: kustomize warns about deprecated fields such as commonLabels."""
    (tmp_path / "kustomization.yaml").write_text(
        textwrap.dedent("""\
            apiVersion: kustomize.config.k8s.io/v1beta1
            kind: Kustomization
            commonLabels:
              app: x
            resources: [cm.yaml]
        """)
    )
    (tmp_path / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n")
    with pytest.raises(RenderError, match="printed warnings"):
        render(tmp_path)


def test_kustomizations_use_no_deprecated_fields():
    found = {}
    for path in [*K8S.rglob("kustomization.yaml"), *REPO.glob("*/kustomization.yaml")]:
        used = DEPRECATED_FIELDS & set(yaml.safe_load(path.read_text()))
        if used:
            found[str(path.relative_to(REPO))] = sorted(used)
    assert not found, f"deprecated kustomize fields (use labels, patches, resources): {found}"


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_object_validates_strictly(overlay, version):
    errors = [error for obj in overlay.objects for error in schema_errors(obj, version)]
    assert not errors, (
        f"{overlay.name}: objects that Kubernetes {version} would refuse:\n" + "\n".join(errors)
    )


def _deployment():
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "x"},
        "spec": {
            "selector": {"matchLabels": {"a": "b"}},
            "template": {
                "metadata": {"labels": {"a": "b"}},
                "spec": {"containers": [{"name": "c", "image": "rtdash/app"}]},
            },
        },
    }


def _broken(change):
    obj = _deployment()
    change(obj)
    return obj


BROKEN = {
    "unknown field": _broken(
        lambda o: o["spec"]["template"]["spec"]["containers"][0].update(imagePullPolicyy="Always")
    ),
    "unknown top-level field": _broken(lambda o: o.update(extra={})),
    "wrong type": _broken(lambda o: o["spec"].update(replicas="three")),
    "missing required field": _broken(lambda o: o["spec"].pop("selector")),
    "unknown kind": _broken(lambda o: o.update(kind="Deploymentt")),
    "removed API (PodDisruptionBudget policy/v1beta1, gone in 1.25)": {
        "apiVersion": "policy/v1beta1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "x"},
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"a": "b"}}},
    },
    "removed API (Ingress extensions/v1beta1, gone in 1.22)": {
        "apiVersion": "extensions/v1beta1",
        "kind": "Ingress",
        "metadata": {"name": "x"},
        "spec": {"backend": {"serviceName": "nginx", "servicePort": 8080}},
    },
}


def test_the_validator_accepts_a_valid_object():
    assert schema_errors(_deployment()) == []


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_the_validator_refuses_broken_objects(case):
    errors = schema_errors(copy.deepcopy(BROKEN[case]))
    assert errors, f"expected strict validation to refuse an object with {case}; it passed"


def _make(*args, env=None):
    return subprocess.run(
        ["make", "--no-print-directory", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def test_make_render_prints_every_overlay(kustomize):
    proc = _make("render")
    assert proc.returncode == 0, f"make render failed:\n{proc.stderr}"
    namespaces = [
        doc["metadata"]["name"]
        for doc in yaml.safe_load_all(proc.stdout)
        if doc and doc["kind"] == "Namespace"
    ]
    found = sorted(p.parent.name for p in (K8S / "overlays").glob("*/kustomization.yaml"))
    assert len(namespaces) == len(found) and {"rtdash-dev", "rtdash"} <= set(namespaces), (
        f"expected one namespace per overlay {found} (dev: rtdash-dev, prod: rtdash), "
        f"got {namespaces}"
    )
    for name in found:
        assert f"# k8s/overlays/{name}\n" in proc.stdout, f"no header for overlay {name}"


@pytest.fixture
def fake_kubectl(tmp_path):
    """A kubectl that records its arguments instead of talking to a cluster."""
    log = tmp_path / "calls"
    script = tmp_path / "kubectl"
    script.write_text(f'#!/bin/sh\necho "$*" >> {log}\n')
    script.chmod(0o755)
    return script, log


def test_make_deploy_k8s_applies_the_overlay(fake_kubectl):
    script, log = fake_kubectl
    proc = _make("deploy-k8s", "OVERLAY=prod", f"KUBECTL={script}")
    assert proc.returncode == 0, f"make deploy-k8s failed:\n{proc.stdout}{proc.stderr}"
    calls = log.read_text().splitlines()
    expected = [
        "delete -k k8s/overlays/prod -l app.kubernetes.io/name=migrate --ignore-not-found",
        "apply -k k8s/overlays/prod",
    ]
    assert calls == expected, f"expected kubectl calls {expected}, got {calls}"


def test_make_deploy_k8s_refuses_an_unknown_overlay(fake_kubectl):
    script, log = fake_kubectl
    proc = _make("deploy-k8s", "OVERLAY=staging", f"KUBECTL={script}")
    assert proc.returncode != 0, "expected make deploy-k8s OVERLAY=staging to fail"
    assert "k8s/overlays/staging" in proc.stderr, f"expected the overlay named: {proc.stderr}"
    assert not log.exists(), f"kubectl ran anyway: {log.read_text()}"


def test_make_help_lists_the_kubernetes_targets():
    out = _make("help").stdout
    for target in ("render", "deploy-k8s"):
        assert target in out, f"`make help` does not list {target}:\n{out}"
