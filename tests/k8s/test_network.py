"""NetworkPolicies allow exactly the flows of the design, and nothing else: every pair of pods
(and a few typical outsiders) on every port they listen on, plus one they do not, is checked
against the policies' semantics (default deny, pod and namespace selectors, ports)."""

import pytest

from support.k8s import Endpoint, NetworkModel, containers, pod_labels

UNLISTED_PORT = (1, "TCP", "")  # catches rules that allow every port

INTERNAL = {
    ("nginx", "app", "8000/TCP"),
    ("nginx", "pushpin", "7999/TCP"),
    ("pushpin", "app", "8000/TCP"),
    # The publish port has no authentication: only the publishers may reach it.
    ("app", "pushpin", "5561/TCP"),
    ("ticker", "pushpin", "5561/TCP"),
}
WORKLOADS = ("app", "ticker", "migrate", "pushpin", "nginx")
OUTSIDERS = ("outside", "ingress-nginx", "kube-dns", "other-namespace")
DNS = {(name, "kube-dns", port) for name in WORKLOADS for port in ("53/UDP", "53/TCP")}
EXPECTED = {
    # nginx is the public edge: the base lets anything reach it.
    "dev": INTERNAL | DNS | {(src, "nginx", "8080/TCP") for src in OUTSIDERS},
    # Behind the Ingress: only the ingress controller reaches nginx.
    "prod": INTERNAL
    | DNS
    | {("ingress-nginx", "nginx", "8080/TCP")}
    | {(name, "outside", "5432/TCP") for name in ("app", "ticker", "migrate")},
}


def _endpoints(overlay):
    (namespace,) = overlay.of_kind("Namespace")
    ns_labels = {
        **namespace["metadata"].get("labels", {}),
        "kubernetes.io/metadata.name": namespace["metadata"]["name"],
    }
    ours = []
    for workload in overlay.workloads():
        ports = {
            (p["containerPort"], p.get("protocol", "TCP"), p.get("name", ""))
            for c in containers(workload, init=False)
            for p in c.get("ports", [])
        }
        ours.append(
            Endpoint(
                workload["metadata"]["name"],
                pod_labels(workload),
                ns_labels,
                (*sorted(ports), UNLISTED_PORT),
                ours=True,
            )
        )
    outsiders = [
        # Any address outside the cluster: a browser, a database, a registry.
        Endpoint("outside", ports=((443, "TCP", ""), (5432, "TCP", ""), UNLISTED_PORT)),
        Endpoint(
            "ingress-nginx",
            {"app.kubernetes.io/name": "ingress-nginx"},
            {"kubernetes.io/metadata.name": "ingress-nginx"},
            ((80, "TCP", "http"), (443, "TCP", "https")),
        ),
        Endpoint(
            "kube-dns",
            {"k8s-app": "kube-dns"},
            {"kubernetes.io/metadata.name": "kube-system"},
            ((53, "UDP", "dns"), (53, "TCP", "dns-tcp"), UNLISTED_PORT),
        ),
        Endpoint(
            "other-namespace",
            {"app.kubernetes.io/name": "app"},  # same labels as ours, another namespace
            {"kubernetes.io/metadata.name": "other"},
            ((8000, "TCP", "http"), UNLISTED_PORT),
        ),
    ]
    return NetworkModel(overlay.of_kind("NetworkPolicy"), ns_labels), ours + outsiders


def test_only_the_designed_flows_are_allowed(overlay):
    model, endpoints = _endpoints(overlay)
    assert {e.name for e in endpoints if e.ours} == set(WORKLOADS)
    allowed = model.flows(endpoints)
    expected = EXPECTED[overlay.name]
    assert allowed == expected, (
        f"{overlay.name}: NetworkPolicies allow flows they should not:\n  "
        + "\n  ".join(sorted(map(str, allowed - expected)))
        + "\nand block flows they should allow:\n  "
        + "\n  ".join(sorted(map(str, expected - allowed)))
    )


def test_everything_is_denied_by_default(overlay):
    deny = [
        p
        for p in overlay.of_kind("NetworkPolicy")
        if p["spec"]["podSelector"] == {}
        and set(p["spec"].get("policyTypes", [])) == {"Ingress", "Egress"}
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
    ]
    assert len(deny) == 1, f"{overlay.name}: expected one default-deny policy, got {len(deny)}"


@pytest.mark.parametrize(
    ("removed", "flow", "allowed"),
    [
        # Without the default deny, the migrate Job's pod (no policy of its own) is open.
        ("default-deny", ("outside", "migrate", "1/TCP"), True),
        # Pushpin's policy is what lets the publishers in (the default deny stops them).
        ("pushpin", ("app", "pushpin", "5561/TCP"), False),
    ],
)
def test_the_flow_check_notices_a_missing_policy(overlay, removed, flow, allowed):
    model, endpoints = _endpoints(overlay)
    assert (flow in model.flows(endpoints)) is not allowed
    model.policies = [p for p in model.policies if p["metadata"]["name"] != removed]
    assert (flow in model.flows(endpoints)) is allowed, (
        f"removing NetworkPolicy {removed} should {'allow' if allowed else 'block'} {flow}"
    )
