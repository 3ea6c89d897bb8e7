"""The dev overlay's pods, run in Docker as its manifests say (support/kubelet.py): the migrate
Job and the init containers complete, every container passes its own readiness and liveness
probes with its read-only root filesystem and only the volumes the manifests give it, and an
event published in the app reaches a browser's stream through nginx and every Pushpin pod."""

import secrets

import pytest

from support.k8s import K8S, Render, containers, render
from support.kubelet import DockerKubelet
from support.sse import SSEStream

pytestmark = pytest.mark.slow

# Two Pushpin pods (dev runs one): a publish must reach every pod behind `pushpin-control`.
REPLICAS = {"pushpin": 2}
# In Kubernetes a Service name resolves before any pod behind it runs; in Docker a name exists
# once a container carries it. So start first what nginx (pushpin, app) and Pushpin (app) name.
START_ORDER = ["app", "pushpin", "ticker", "nginx"]


@pytest.fixture(scope="module")
def pods(docker_client, images, kustomize, tmp_path_factory):
    dev = Render("dev", render(K8S / "overlays/dev"))
    rendered = {c["image"] for w in dev.workloads() for c in containers(w)}
    assert rendered <= set(images.values()), f"dev runs {rendered}, the build made {images}"
    secret_data = {
        "app-secrets": {
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(48),
            "PUSHPIN_SIG_KEY": secrets.token_urlsafe(32),
        }
    }
    kubelet = DockerKubelet(docker_client, dev, tmp_path_factory.mktemp("pods"), secret_data)
    running = {}
    try:
        for job in dev.of_kind("Job"):
            for container in containers(job):
                kubelet.run(job, container, detach=False)
        deployments = sorted(
            dev.of_kind("Deployment"), key=lambda d: START_ORDER.index(d["metadata"]["name"])
        )
        for deployment in deployments:
            name = deployment["metadata"]["name"]
            spec = deployment["spec"]["template"]["spec"]
            for ordinal in range(REPLICAS.get(name, deployment["spec"].get("replicas", 1))):
                for init in spec.get("initContainers", []):
                    kubelet.run(deployment, init, ordinal, detach=False)
                for container in spec["containers"]:
                    # nginx is reached the way `kubectl port-forward svc/nginx` would.
                    ports = {"8080/tcp": ("127.0.0.1", None)} if name == "nginx" else None
                    started = kubelet.run(deployment, container, ordinal, ports=ports)
                    running[(name, ordinal)] = (started, container)
        yield kubelet, running
    finally:
        kubelet.cleanup()


def test_every_container_passes_its_probes(pods):
    kubelet, running = pods
    for started, container in running.values():
        kubelet.wait_probe(started, container, "readinessProbe")
    for started, container in running.values():
        passed, output = kubelet.probe(started, container, "livenessProbe")
        assert passed, f"{started.name}: liveness probe failed: {output}"


def test_an_event_reaches_the_browser_through_every_pushpin_pod(pods):
    kubelet, running = pods
    for started, container in running.values():
        kubelet.wait_probe(started, container, "readinessProbe")
    nginx, _ = running[("nginx", 0)]
    nginx.reload()
    port = int(nginx.attrs["NetworkSettings"]["Ports"]["8080/tcp"][0]["HostPort"])
    stream = SSEStream("127.0.0.1", port, "/events/?channel=probe-k8s")
    try:
        assert stream.status == 200, f"GET /events/ through nginx: {stream.status}"
        stream.wait_open()
        app, _ = running[("app", 0)]
        result = app.exec_run(["python", "manage.py", "publish", "probe-k8s", "k8s", "hello"])
        output = result.output.decode()
        assert result.exit_code == 0, f"manage.py publish failed: {output}"
        nodes = REPLICAS["pushpin"]
        assert f"published to {nodes} Pushpin node(s)" in output, (
            f"expected the publish to reach all {nodes} Pushpin pods: {output}"
        )
        event = stream.next(timeout=10)
        assert event is not None and (event.type, event.data) == ("k8s", "hello"), (
            f"expected event k8s 'hello' through nginx, got {event}"
        )
    finally:
        stream.close()
