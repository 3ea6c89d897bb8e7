"""What makes dev and prod what they are: namespace and labels, replica counts and autoscaling,
the database (SQLite on a volume, or PostgreSQL from a Secret), the Ingress for the event
stream, and one place for the public host name."""

import re

import pytest
import yaml

from support.k8s import (
    REPO,
    all_containers,
    containers,
    copy_tree_for_kustomize,
    env_value,
    image_env,
    image_of,
    label,
    pod_spec,
    render,
)

# Pushpin's keep-alive events on an open stream come every 20 s (django-eventstream).
KEEP_ALIVE_S = 20
NAMESPACED_EXEMPT = {"Namespace"}
# What k8s/components/ingress-tls writes until the overlay's host replaces it.
PLACEHOLDER_HOST = "host.invalid"


def test_one_namespace_with_restricted_pod_security(overlay):
    (namespace,) = overlay.of_kind("Namespace")
    name = namespace["metadata"]["name"]
    labels = namespace["metadata"].get("labels", {})
    assert labels.get("pod-security.kubernetes.io/enforce") == "restricted", (
        f"{overlay.name}: namespace {name} should enforce the restricted Pod Security profile, "
        f"has labels {labels}"
    )
    elsewhere = [
        f"{o['kind']}/{o['metadata']['name']}: {o['metadata'].get('namespace')}"
        for o in overlay.objects
        if o["kind"] not in NAMESPACED_EXEMPT and o["metadata"].get("namespace") != name
    ]
    assert not elsewhere, f"{overlay.name}: objects outside namespace {name}: {elsewhere}"


def test_every_object_and_pod_carries_the_kit_label(overlay):
    missing = [
        f"{o['kind']}/{o['metadata']['name']}"
        for o in overlay.objects
        if o["metadata"].get("labels", {}).get("app.kubernetes.io/part-of") != "rtdash"
    ] + [
        f"pods of {w['metadata']['name']}"
        for w in overlay.workloads()
        if w["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/part-of") != "rtdash"
    ]
    assert not missing, f"{overlay.name}: no app.kubernetes.io/part-of=rtdash on {missing}"


def _app_settings(overlay):
    (settings,) = [
        cm["data"]
        for cm in overlay.of_kind("ConfigMap")
        if cm["metadata"]["name"].startswith("app-settings-")
    ]
    return settings


def _app_image_containers(overlay):
    return [(w, c) for w, c, _ in all_containers(overlay) if image_of(c) == "app"]


def test_pushpin_readiness_host_is_allowed(overlay):
    """Pushpin's readiness probe asks the app for /events/ with `Host: localhost`."""
    readiness = " ".join(
        containers(overlay.workload("pushpin"), init=False)[0]["readinessProbe"]["exec"]["command"]
    )
    host = re.search(r"-H 'Host: ([^']+)'", readiness).group(1)
    allowed = _app_settings(overlay)["DJANGO_ALLOWED_HOSTS"].split(",")
    assert host in allowed, (
        f"{overlay.name}: Pushpin's readiness probe uses Host {host}, "
        f"not in DJANGO_ALLOWED_HOSTS {allowed}"
    )


# -- dev ------------------------------------------------------------------------------------


def test_dev_runs_one_replica_of_each(dev):
    counts = {d["metadata"]["name"]: d["spec"].get("replicas") for d in dev.of_kind("Deployment")}
    assert counts == {"app": 1, "ticker": 1, "pushpin": 1, "nginx": 1}, f"dev replicas: {counts}"
    assert not dev.of_kind("HorizontalPodAutoscaler", "Ingress"), "dev: no autoscaler, no Ingress"


def test_dev_keeps_sqlite_on_one_volume_for_every_app_container(dev):
    data_dir = image_env("app", "DJANGO_DATA_DIR")
    claims = set()
    for workload, container in _app_image_containers(dev):
        where = label(workload, container)
        assert env_value(container, "DATABASE_URL") is None, f"dev {where}: sets DATABASE_URL"
        volumes = {v["name"]: v for v in pod_spec(workload)["volumes"]}
        mounts = [m for m in container["volumeMounts"] if m["mountPath"] == data_dir]
        assert len(mounts) == 1, f"dev {where}: expected a volume at {data_dir} (SQLite)"
        claim = volumes[mounts[0]["name"]].get("persistentVolumeClaim", {}).get("claimName")
        assert claim, f"dev {where}: {data_dir} should be a PersistentVolumeClaim"
        claims.add(claim)
    assert len(claims) == 1, f"dev: every app container must share one database, got {claims}"
    dev.get("PersistentVolumeClaim", claims.pop())


# -- prod -----------------------------------------------------------------------------------


def test_prod_runs_at_least_three_pushpin_nodes_without_an_autoscaler(prod):
    replicas = prod.get("Deployment", "pushpin")["spec"].get("replicas")
    assert replicas is not None and replicas >= 3, f"prod: expected >= 3 Pushpin pods: {replicas}"
    targets = [h["spec"]["scaleTargetRef"]["name"] for h in prod.of_kind("HorizontalPodAutoscaler")]
    # Scaling Pushpin down cuts the streams it holds: its count is set by hand.
    assert "pushpin" not in targets, "prod: Pushpin must not be autoscaled"


@pytest.mark.parametrize("name", ["app", "nginx"])
def test_prod_autoscales_app_and_nginx_from_two(prod, name):
    target = {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
    hpas = [
        h for h in prod.of_kind("HorizontalPodAutoscaler") if h["spec"]["scaleTargetRef"] == target
    ]
    assert len(hpas) == 1, f"prod: expected one HorizontalPodAutoscaler for {name}, got {len(hpas)}"
    spec = hpas[0]["spec"]
    assert spec.get("minReplicas", 1) >= 2, f"prod: {name} minReplicas {spec.get('minReplicas')}"
    assert spec["maxReplicas"] > spec["minReplicas"], f"prod: {name} cannot scale: {spec}"
    # A count in the Deployment would reset the autoscaler's on every apply.
    deployment = prod.get("Deployment", name)
    assert "replicas" not in deployment["spec"], (
        f"prod: Deployment {name} sets replicas {deployment['spec']['replicas']}; "
        "its HorizontalPodAutoscaler owns the count"
    )


def test_prod_uses_postgresql_from_a_secret(prod):
    for workload, container in _app_image_containers(prod):
        where = label(workload, container)
        entry = env_value(container, "DATABASE_URL")
        ref = (entry or {}).get("valueFrom", {}).get("secretKeyRef")
        assert ref == {"name": "app-database", "key": "DATABASE_URL"}, (
            f"prod {where}: expected DATABASE_URL from Secret app-database, got {entry}"
        )
        # The base's settings must still be there next to it.
        sources = [next(iter(s.values()))["name"] for s in container["envFrom"]]
        assert sources[0].startswith("app-settings-") and "app-secrets" in sources, (
            f"prod {where}: expected envFrom app-settings and app-secrets, got {sources}"
        )
    assert not prod.of_kind("PersistentVolumeClaim"), "prod: no SQLite volume"


def _ingress_for(prod, path):
    for ingress in prod.of_kind("Ingress"):
        for rule in ingress["spec"]["rules"]:
            if any(p["path"] == path for p in rule["http"]["paths"]):
                return ingress
    pytest.fail(f"prod: no Ingress routes {path}")


def test_prod_serves_the_host_over_tls(prod):
    for ingress in prod.of_kind("Ingress"):
        hosts = {r["host"] for r in ingress["spec"]["rules"]}
        tls = {h for t in ingress["spec"].get("tls", []) for h in t["hosts"]}
        assert hosts and hosts <= tls, (
            f"prod: Ingress {ingress['metadata']['name']} serves {hosts}, TLS covers {tls}"
        )
        assert ingress["spec"].get("ingressClassName"), "prod: name the ingress class"


def test_prod_event_stream_keeps_streaming_settings(prod):
    annotations = _ingress_for(prod, "/events/")["metadata"].get("annotations", {})
    prefix = "nginx.ingress.kubernetes.io/"
    assert annotations.get(f"{prefix}proxy-buffering") == "off", (
        f"prod: /events/ must not be buffered by the ingress controller: {annotations}"
    )
    site = (REPO / "nginx/origin.conf").read_text()
    events_block = site[site.index("location /events/") :]
    kit_timeout = int(re.search(r"proxy_read_timeout (\d+)s;", events_block).group(1))
    for key in ("proxy-read-timeout", "proxy-send-timeout"):
        timeout = int(annotations.get(prefix + key, 60))
        assert timeout > max(KEEP_ALIVE_S, kit_timeout), (
            f"prod: /events/ {key} {timeout} s must exceed the {KEEP_ALIVE_S} s between "
            f"keep-alives and the kit nginx's own {kit_timeout} s"
        )
    # Everything else keeps the controller's defaults.
    other = _ingress_for(prod, "/")["metadata"].get("annotations", {})
    assert f"{prefix}proxy-buffering" not in other, "prod: buffering off for / too"


def test_prod_app_accepts_its_host(prod):
    host = _ingress_for(prod, "/")["spec"]["rules"][0]["host"]
    settings = _app_settings(prod)
    assert host in settings["DJANGO_ALLOWED_HOSTS"].split(","), (
        f"prod: DJANGO_ALLOWED_HOSTS {settings['DJANGO_ALLOWED_HOSTS']} lacks {host}"
    )
    assert f"https://{host}" in settings.get("DJANGO_CSRF_TRUSTED_ORIGINS", "").split(","), (
        f"prod: DJANGO_CSRF_TRUSTED_ORIGINS lacks https://{host}"
    )
    assert settings.get("DJANGO_SECURE_COOKIES") == "1", "prod: cookies must be HTTPS-only"


def test_the_host_is_set_in_one_place(kustomize, tmp_path):
    """The overlay's ConfigMap ingress-host (local-config) is the only place the host is
    written: the component ingress-tls copies it everywhere, and its own placeholder never
    reaches a render."""
    tree = copy_tree_for_kustomize(tmp_path)
    host_file = tree / "k8s/overlays/prod/host.yaml"
    (doc,) = yaml.safe_load_all(host_file.read_text())
    original = doc["data"]["host"]
    host_file.write_text(
        host_file.read_text().replace(f"host: {original}", "host: dash.test.invalid", 1)
    )
    text = yaml.safe_dump_all(render(tree / "k8s/overlays/prod"))
    for stale in (original, PLACEHOLDER_HOST):
        assert stale not in text, (
            f"prod: after changing the host in host.yaml, {stale} is still in the render:\n"
            + "\n".join(line for line in text.splitlines() if stale in line)
        )
    # Both Ingresses (rule and TLS block), DJANGO_ALLOWED_HOSTS, DJANGO_CSRF_TRUSTED_ORIGINS.
    assert text.count("dash.test.invalid") == 6, f"expected the new host 6 times:\n{text}"
    assert "https://dash.test.invalid" in text and "dash.test.invalid,localhost" in text
