"""The dev overlay's pods, run in Docker as its manifests say (support/kubelet.py): the migrate
Job and the init containers complete, every container passes its own readiness and liveness
probes with its read-only root filesystem and only the volumes the manifests give it, and an
event published in the app reaches a browser's stream through nginx and every Pushpin pod."""

import os
import secrets
from contextlib import contextmanager

import pytest
import requests
import yaml

from support import own_project as own_project_block
from support.k8s import K8S, Render, containers, render
from support.kubelet import DockerKubelet
from support.sse import SSEStream
from support.stack import run
from verify import check_streams
from verify.plugin import Check, Results
from verify.targets import STREAM_PORT, Node, Target

pytestmark = pytest.mark.slow

# Two Pushpin pods (dev runs one): a publish must reach every pod behind `pushpin-control`.
REPLICAS = {"pushpin": 2}
# In Kubernetes a Service name resolves before any pod behind it runs; in Docker a name exists
# once a container carries it. So start first what nginx (pushpin, app) and Pushpin (app) name.
START_ORDER = ["app", "pushpin", "ticker", "nginx"]


@contextmanager
def pods_of(docker_client, overlay: Render, images: set[str], workdir):
    """Every pod of a rendered overlay, run in Docker: (kubelet, {(workload, ordinal, container):
    (container, its manifest)})."""
    rendered = {c["image"] for w in overlay.workloads() for c in containers(w)}
    assert rendered <= images, f"{overlay.name} runs {rendered}, the build made {images}"
    secret_data = {
        "app-secrets": {
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(48),
            "PUSHPIN_SIG_KEY": secrets.token_urlsafe(32),
        }
    }
    kubelet = DockerKubelet(docker_client, overlay, workdir, secret_data)
    running = {}
    try:
        for job in overlay.of_kind("Job"):
            for container in containers(job):
                kubelet.run(job, container, detach=False)
        deployments = sorted(
            overlay.of_kind("Deployment"), key=lambda d: START_ORDER.index(d["metadata"]["name"])
        )
        for deployment in deployments:
            name = deployment["metadata"]["name"]
            spec = deployment["spec"]["template"]["spec"]
            for ordinal in range(REPLICAS.get(name, deployment["spec"].get("replicas", 1))):
                for init in spec.get("initContainers", []):
                    kubelet.run(deployment, init, ordinal, detach=False)
                for container in spec["containers"]:
                    # nginx is reached the way `kubectl port-forward svc/nginx` would.
                    forward = container["name"] == "nginx"
                    ports = {"8080/tcp": ("127.0.0.1", None)} if forward else None
                    started = kubelet.run(deployment, container, ordinal, ports=ports)
                    running[(name, ordinal, container["name"])] = (started, container)
        yield kubelet, running
    finally:
        kubelet.cleanup()


@pytest.fixture(scope="module")
def pods(docker_client, images, kustomize, tmp_path_factory):
    dev = Render("dev", render(K8S / "overlays/dev"))
    with pods_of(docker_client, dev, set(images.values()), tmp_path_factory.mktemp("pods")) as p:
        yield p


def nginx_port(running) -> int:
    nginx, _ = running[("nginx", 0, "nginx")]
    nginx.reload()
    return int(nginx.attrs["NetworkSettings"]["Ports"]["8080/tcp"][0]["HostPort"])


def publish_reaches_every_pushpin_pod(running, channel: str) -> None:
    """A stream through nginx gets an event published in the app pod, which reached every
    Pushpin pod behind `pushpin-control`."""
    stream = SSEStream("127.0.0.1", nginx_port(running), f"/events/?channel={channel}")
    try:
        assert stream.status == 200, f"GET /events/ through nginx: {stream.status}"
        stream.wait_open()
        app, _ = running[("app", 0, "app")]
        result = app.exec_run(["python", "manage.py", "publish", channel, "k8s", "hello"])
        output = result.output.decode()
        assert result.exit_code == 0, f"manage.py publish failed: {output}"
        nodes = REPLICAS["pushpin"]
        assert f"published to {nodes} Pushpin node(s)" in output, (
            f"expected the publish to reach all {nodes} Pushpin pods: {output}"
        )
        event = stream.collect(1, timeout=10, event_type="k8s")
        assert [(e.type, e.data) for e in event] == [("k8s", "hello")], (
            f"expected event k8s 'hello' through nginx, got {event}"
        )
    finally:
        stream.close()


class PodsInDocker(Target):
    """The running pods as `make verify`'s checks see a target: each pod's container by role,
    the origin where `kubectl port-forward svc/nginx` would put it, and each Pushpin pod's
    stream port at its address (reached the way nginx reaches it)."""

    kind = "pods in Docker"
    name = "the dev overlay's pods in Docker"

    def __init__(self, running):
        self.running = running

    def nodes(self, role: str) -> list[Node]:
        found = []
        for (workload, _, container_name), (started, _) in sorted(self.running.items()):
            if workload == role and container_name == role:
                started.reload()
                networks = started.attrs["NetworkSettings"]["Networks"]
                address = next(iter(networks.values()))["IPAddress"]
                found.append(Node(started.name, role, f"docker://{started.name}", address=address))
        return found

    def origin(self) -> tuple[str, int]:
        return "127.0.0.1", nginx_port(self.running)

    @contextmanager
    def node_stream_endpoint(self, node: Node):
        yield node.address, STREAM_PORT


def test_the_verify_suites_delivery_reaches_streams_on_each_pushpin_pod(pods, request):
    """make verify's delivery scenario (tests/verify/check_streams.py) on these pods: one
    publish in the app pod reaches 3 streams held on each Pushpin pod, addressed one by one,
    and 3 per pod through nginx, each within 1 s of the publish returning."""
    kubelet, running = pods
    for started, container in running.values():
        kubelet.wait_probe(started, container, "readinessProbe")
    target = PodsInDocker(running)
    assert len(target.nodes("pushpin")) == REPLICAS["pushpin"], target.nodes("pushpin")
    check = Check(Results(), request, "delivery via every node")
    check_streams.test_a_published_event_reaches_streams_on_every_pushpin_node(target, check)
    for node in target.nodes("pushpin"):
        held = [r for r in check.rows if r.where.startswith(f"{node.name} (direct)") and r.ok]
        assert len(held) == check_streams.DIRECT_STREAMS_PER_NODE, (node.name, check.rows)


def test_every_container_passes_its_probes(pods):
    kubelet, running = pods
    for started, container in running.values():
        kubelet.wait_probe(started, container, "readinessProbe")
    for started, container in running.values():
        passed, output = kubelet.probe(started, container, "livenessProbe")
        assert passed, f"{started.name}: liveness probe failed: {output}"


# What each pod's prometheus.io/port serves: a metric only that component has.
METRIC_OF = {"app": "rtdash_health_checks_total", "ticker": "rtdash_pushpin_published_total",
             "pushpin": "pushpin_connection_connected", "nginx": "nginx_up 1"}  # fmt: skip


def test_the_annotated_metrics_ports_serve_their_metrics(pods):
    kubelet, running = pods
    for started, container in running.values():
        kubelet.wait_probe(started, container, "readinessProbe")
    scraper, _ = running[("nginx", 0, "nginx-exporter")]  # any container with curl
    seen = set()
    for (name, ordinal, _), (started, container) in running.items():
        annotations = kubelet.render.workload(name)["spec"]["template"]["metadata"]["annotations"]
        if annotations.get("prometheus.io/scrape") != "true":
            continue
        # In a pod every container shares the address; here, ask the one that declares the port.
        declared = [p["containerPort"] for p in container.get("ports", [])]
        if int(annotations["prometheus.io/port"]) not in declared:
            continue
        seen.add((name, ordinal))
        started.reload()
        address = started.attrs["NetworkSettings"]["Networks"][kubelet.prefix]["IPAddress"]
        url = f"http://{address}:{annotations['prometheus.io/port']}/metrics"
        result = scraper.exec_run(["curl", "-fsS", "-m", "5", url])
        body = result.output.decode(errors="replace")
        assert result.exit_code == 0 and METRIC_OF[name] in body, (
            f"{name}: {url} should serve {METRIC_OF[name]!r} (curl exit {result.exit_code}):\n"
            f"{body[-1500:]}"
        )
    assert {n for n, _ in seen} == set(METRIC_OF), f"annotated pods: {sorted(seen)}"


# --- Your own project -------------------------------------------------------------------------

OWN_TAG = "own"


@pytest.fixture(scope="module")
def own_pods(docker_client, images, kustomize, tmp_path_factory):
    """The README's new project ("Your own dashboards", created by its block), built into its
    own app image on the kit's base, in an overlay of the user's: the dev overlay with the
    project's image in `images`, as the README says."""
    tmp = tmp_path_factory.mktemp("own-k8s")
    project = own_project_block.create(tmp)
    run(["make", "images", f"APP_DIR={project}", f"KIT_IMAGE_TAG={OWN_TAG}"], env=dict(os.environ))
    overlay = tmp / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [os.path.relpath(K8S / "overlays/dev", overlay)],
                "images": [{"name": "rtdash/app", "newTag": OWN_TAG}],
            }
        )
    )
    own = Render("own", render(overlay))
    built = {*images.values(), f"rtdash/app:{OWN_TAG}"}
    (tmp / "pods").mkdir()
    with pods_of(docker_client, own, built, tmp / "pods") as p:
        yield p


def test_a_new_projects_pods_serve_it_and_an_event_reaches_every_pushpin_pod(own_pods):
    kubelet, running = own_pods
    for started, container in running.values():
        kubelet.wait_probe(started, container, "readinessProbe")
    app, _ = running[("app", 0, "app")]
    assert app.image.tags == [f"rtdash/app:{OWN_TAG}"], app.image.tags
    port = nginx_port(running)
    page = requests.get(
        f"http://127.0.0.1:{port}{own_project_block.DASHBOARD_PATH}",
        headers={"Host": "localhost"},
        timeout=10,
    )
    assert page.status_code == 200 and 'data-sse-channel="sales"' in page.text, (
        f"the new project's dashboard through nginx: {page.status_code} {page.text[:300]}"
    )
    publish_reaches_every_pushpin_pod(running, "sales")
