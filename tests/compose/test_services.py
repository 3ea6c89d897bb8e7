"""pytest-testinfra against the running compose stack: each service runs as its own non-root
user, listens where it should and nowhere else, with the config from this repository."""

import socket

import pytest
import testinfra

from support.stack import REPO

pytestmark = pytest.mark.slow

# service -> (uid, listening sockets expected "addr:port", with CONTROL for the control address)
SERVICES = {
    "app": (10001, {"0.0.0.0:8000"}),
    "ticker": (10001, set()),
    "pushpin": (
        10002,
        {"0.0.0.0:7999", "CONTROL:5561", "127.0.0.1:5560", "127.0.0.1:5562", "127.0.0.1:5563"},
    ),
    "nginx": (10003, {"0.0.0.0:8080", "[::]:8080"}),
}


def host_of(container):
    return testinfra.get_host(f"docker://{container.name}")


def listening(host) -> set[str]:
    out = host.check_output("ss -ltnH")
    found = {line.split()[3] for line in out.splitlines()}
    # Docker's embedded DNS listens inside every container on 127.0.0.11.
    return {addr for addr in found if not addr.startswith("127.0.0.11:")}


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_every_process_runs_as_the_service_user(stack, service):
    uid, _ = SERVICES[service]
    for container in stack.containers(service):
        host = host_of(container)
        # One `ps` of every process (including this check's own shell, which runs as the
        # image user, as `docker exec` does by default).
        rows = [
            line.split(None, 2)
            for line in host.check_output("ps -eo euid=,pid=,comm=").splitlines()
        ]
        assert rows, f"{container.name}: no process listed"
        others = [(pid, comm, euid) for euid, pid, comm in rows if int(euid) != uid]
        assert not others, (
            f"{container.name}: expected every process to run as uid {uid}, found {others}"
        )
        assert host.user().uid == uid, (
            f"{container.name}: image user is {host.user().uid}, expected {uid}"
        )


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_listens_where_it_should_and_nowhere_else(stack, service):
    _, expected = SERVICES[service]
    for container in stack.containers(service):
        control = stack.address(container, "control") if "CONTROL:5561" in expected else None
        want = {addr.replace("CONTROL", control or "") for addr in expected}
        got = listening(host_of(container))
        assert got == want, (
            f"{container.name}: expected listening sockets {sorted(want)}, got {sorted(got)}"
        )


def test_pushpin_control_port_is_bound_to_the_control_network_only(stack):
    for container in stack.containers("pushpin"):
        control = stack.address(container, "control")
        assert control.startswith(stack.control_subnet.rsplit(".", 1)[0] + "."), (
            f"{container.name}: control address {control} outside {stack.control_subnet}"
        )
        host = host_of(container)
        assert host.socket(f"tcp://{control}:5561").is_listening
        assert not host.socket("tcp://0.0.0.0:5561").is_listening


@pytest.mark.parametrize(
    ("service", "path", "source"),
    [
        ("pushpin", "/etc/pushpin/pushpin.conf", "pushpin/pushpin.conf"),
        ("pushpin", "/etc/pushpin/routes", "pushpin/routes"),
        ("pushpin", "/usr/local/lib/pushpin-kit/run-pushpin", "pushpin/run-pushpin"),
        ("nginx", "/etc/nginx/nginx.conf", "nginx/nginx.conf"),
        ("nginx", "/etc/nginx/kit/limits.conf", "nginx/limits.conf"),
        ("nginx", "/etc/nginx/kit/origin.conf", "nginx/origin.conf"),
        ("nginx", "/etc/nginx/kit/site.conf", "nginx/site.conf"),
        ("nginx", "/etc/nginx/kit/upstreams.conf", "nginx/upstreams/compose.conf"),
    ],
)
def test_config_in_place_is_the_repository_file(stack, service, path, source):
    expected = (REPO / source).read_text()
    for container in stack.containers(service):
        config = host_of(container).file(path)
        assert config.exists, f"{container.name}: {path} missing"
        assert config.content_string == expected, f"{container.name}: {path} differs from {source}"


def test_pushpin_runs_with_the_generated_signing_key(stack):
    key = stack.secrets()["PUSHPIN_SIG_KEY"]
    for container in stack.containers("pushpin"):
        rendered = host_of(container).file("/run/pushpin/pushpin.conf")
        assert rendered.mode == 0o600, (
            f"{container.name}: rendered config (holds the key) mode {oct(rendered.mode)}"
        )
        assert f"sig_key={key}\n" in rendered.content_string
        assert "changeme" not in rendered.content_string


def test_nginx_validates_its_config(stack):
    for container in stack.containers("nginx"):
        result = host_of(container).run("nginx -t")
        assert result.rc == 0, f"{container.name}: nginx -t failed: {result.stderr}"


def test_only_nginx_is_published_and_only_on_loopback(stack):
    published = {}
    for container in stack.containers():
        for port, bindings in (container.attrs["NetworkSettings"]["Ports"] or {}).items():
            for binding in bindings or []:
                published.setdefault(container.labels["com.docker.compose.service"], []).append(
                    (port, binding["HostIp"], binding["HostPort"])
                )
    assert published == {"nginx": [("8080/tcp", "127.0.0.1", str(stack.http_port))]}, (
        f"expected only nginx 8080 on 127.0.0.1:{stack.http_port}, found {published}"
    )


@pytest.mark.parametrize("port", [5560, 5561, 5562, 5563])
def test_no_control_port_answers_on_the_host(stack, port):
    with socket.socket() as sock:
        sock.settimeout(2)
        assert sock.connect_ex(("127.0.0.1", port)) != 0, f"127.0.0.1:{port} accepts connections"
