"""The deployment as it runs (pytest-testinfra on each host, container or pod): every service
running as its own non-root user, listening where it should and nowhere else, with the
repository's config files; Pushpin's control ports out of the edge's reach; health and metrics
on internal addresses only."""

from __future__ import annotations

import hashlib

from support.stack import REPO
from verify.targets import (
    APP_PORT,
    CONTROL_PORTS,
    METRICS_PORTS,
    ROLES,
    STREAM_PORT,
    connects,
    listener_address,
)

# One HTTP request from a host: "<status> <curl exit>" ("000 7": refused, "000 28": no answer).
# python3 where the host has no curl (every Ansible-managed host has python3).
HTTP_PROBE = """
if command -v curl >/dev/null 2>&1; then
  curl -s -m 3 -o /dev/null -w '%{{http_code}}' {url}; echo " $?"
else
  python3 -c '
import sys, urllib.request, urllib.error
try:
    print(urllib.request.urlopen(sys.argv[1], timeout=3).status, 0)
except urllib.error.HTTPError as e:
    print(e.code, 22)
except ConnectionRefusedError:
    print("000 7")
except Exception:
    print("000 28")
' {url}
fi
"""
PROMETHEUS_UI = ("prometheus", "9090/tcp", "127.0.0.1")
# curl exit statuses meaning no connection was made.
NOT_CONNECTED = {"7", "28"}


def http_probe(node, url: str) -> tuple[str, str]:
    """(HTTP status, curl exit status) of GET url, from `node`."""
    out = node.host.run(HTTP_PROBE.format(url=url)).stdout.split()
    return (out[0], out[1]) if len(out) == 2 else ("000", f"? {out}")


def test_every_service_runs(target, check):
    """service running."""
    for role in ROLES:
        nodes = target.nodes(role)
        if not nodes:
            check.row(role, False, detail=f"expected at least one {role} node, found none")
        for node in nodes:
            check.row(
                node.name, node.running, node.state, detail=f"expected running, is {node.state}"
            )
    check.done()


def test_every_service_runs_as_its_own_non_root_user(target, check):
    """own non-root user."""
    users = {role: target.users[role] for role in ROLES}
    shared = {
        (a, b) for a in ("app", "pushpin", "nginx") for b in ("app", "pushpin", "nginx")
        if a < b and users[a] == users[b]
    }  # fmt: skip
    if shared:
        check.row("(spec)", False, detail=f"services share a user: {sorted(shared)}")
    for role in ROLES:
        want = users[role]
        for node in target.nodes(role):
            if not node.running:
                check.row(node.name, False, detail=f"not running ({node.state})")
                continue
            rows = target.processes(node)
            wrong = [(pid, comm, user) for user, pid, comm in rows if user != str(want)]
            root = [(pid, comm) for user, pid, comm in rows if user in ("0", "root")]
            problems = [
                f"expected every process to run as {want}, found {wrong or 'none'}"
                if not rows or wrong or root or want in (0, "root") else "",
                *target.account_problems(node),
            ]  # fmt: skip
            commands = {comm for _, _, comm in rows}
            expected = target.commands.get(role)
            if expected is not None and commands != expected:
                problems.append(f"runs {sorted(commands)}, expected {sorted(expected)}")
            check.row(
                node.name,
                not any(problems),
                f"{want}: {len(rows)} processes",
                detail="; ".join(p for p in problems if p),
            )
    check.done()


def test_listens_where_it_should_and_nowhere_else(target, check):
    """listening sockets."""
    for role in ROLES:
        expected = target.listeners.get(role)
        if expected is None:
            continue
        for node in target.nodes(role):
            if not node.running:
                check.row(node.name, False, detail=f"not running ({node.state})")
                continue
            want = {target.fill(node, address) for address in expected}
            got = target.listening(node)
            check.row(
                node.name,
                got == want,
                " ".join(sorted(got)),
                detail=f"expected listening {sorted(want)}, got {sorted(got)}",
            )
    check.done()


def test_deployed_config_is_the_repository_file(target, check):
    """config = repository."""
    for config in target.config_files:
        expected = (REPO / config.source).read_bytes()
        for node in target.nodes(config.role):
            where = f"{node.name}:{config.path}"
            if not node.running:
                check.row(where, False, detail=f"not running ({node.state})")
                continue
            deployed = node.host.file(config.path)
            if not deployed.exists:
                check.row(
                    where, False, detail=f"{config.path} missing (repository: {config.source})"
                )
                continue
            content = deployed.content
            owner = deployed.user
            problems = [
                f"{config.path} differs from the repository's {config.source} "
                f"(sha256 {hashlib.sha256(expected).hexdigest()[:12]} expected)"
                if content != expected else "",
                # Not the service's to change: root's, as every path installs it.
                f"{config.path} is owned by {owner}, expected root" if owner != "root" else "",
            ]  # fmt: skip
            check.row(
                where,
                not any(problems),
                f"sha256 {hashlib.sha256(content).hexdigest()[:12]}, {owner}",
                detail="; ".join(p for p in problems if p),
            )
    check.done()


def test_pushpin_control_ports_are_unreachable_from_the_edge(target, check):
    """control ports closed to the edge."""
    nodes = [n for n in target.nodes("pushpin") if n.running]
    for edge in target.nodes("nginx"):
        if not edge.running:
            check.row(edge.name, False, detail=f"not running ({edge.state})")
            continue
        for node in nodes:
            for address in target.edge_addresses(node):
                for port in CONTROL_PORTS:
                    status, code = http_probe(edge, f"http://{address}:{port}/")
                    check.row(
                        f"{edge.name} -> {node.name} {address}:{port}",
                        code in NOT_CONNECTED,
                        "refused" if code == "7" else "no answer" if code == "28" else code,
                        detail=f"expected no connection, got HTTP {status} (curl {code})",
                    )
    # From this machine: nothing but the origin's own port answers on the origin's address
    # (compose: no container publishes any other port; anything else on this machine may
    # listen on loopback, so only the control ports are tried there).
    host, port = target.origin()
    published = target.published_ports()
    if published is not None:
        # nginx's origin, and Prometheus's UI with MONITORING=1, on loopback only.
        allowed = {("nginx", "8080/tcp", host, str(port))}
        extra = [p for p in published if p not in allowed and p[:3] != PROMETHEUS_UI]
        check.row(
            "published ports",
            ("nginx", "8080/tcp", host, str(port)) in published and not extra,
            " ".join(f"{s} {p} on {h}:{hp}" for s, p, h, hp in published),
            detail=f"expected only nginx 8080/tcp on {host}:{port}, found {published}",
        )
    others = (
        CONTROL_PORTS
        if published is not None
        else (*CONTROL_PORTS, APP_PORT, STREAM_PORT, *METRICS_PORTS.values())
    )
    # Where the origin is an nginx host's internal address (an inventory without a public
    # one, as the test hosts), that host's own internal listeners (the exporter) answer there
    # by design: the listening-sockets check holds them to that address.
    own = {
        int(listener_address(listener).rsplit(":", 1)[1])
        for edge in target.nodes("nginx")
        if edge.address == host
        for listener in target.listeners.get("nginx", ())
        if listener.startswith("ADDR:")
    }
    for other in others:
        if other == port or other in own:
            continue
        reached = connects(host, other)
        check.row(
            f"this machine -> {host}:{other}",
            not reached,
            "closed" if not reached else "open",
            detail="expected no connection, it was accepted",
        )
    check.done()


def test_health_and_metrics_answer_on_internal_addresses_only(target, check):
    """health and metrics internal only."""
    for role, port in METRICS_PORTS.items():
        for node in target.nodes(role):
            if not node.running or not node.address:
                if role == "nginx":
                    continue  # compose runs nginx's exporter only with MONITORING=1
                check.row(node.name, False, detail=f"not running ({node.state})")
                continue
            listening = {listener_address(a) for a in target.listeners.get("nginx", ())}
            if role == "nginx" and f"ADDR:{port}" not in listening:
                continue
            url = f"http://{node.address}:{port}/metrics"
            status, code = http_probe(node, url)
            check.row(
                f"{node.name} {node.address}:{port}/metrics",
                status == "200",
                f"HTTP {status}",
                detail=f"expected 200 from {url}, got {status} (curl {code})",
            )
    for node in target.nodes("app"):
        if node.running:
            address = node.address or "127.0.0.1"
            status, code = http_probe(node, f"http://127.0.0.1:{APP_PORT}/healthz")
            if target.kind == "ansible":
                status, code = http_probe(node, f"http://{address}:{APP_PORT}/healthz")
            check.row(
                f"{node.name} /healthz",
                status == "200",
                f"HTTP {status}",
                detail=f"expected 200 from the app's own address, got {status} (curl {code})",
            )
    import requests

    host, port = target.origin()
    for path in ("/healthz", "/metrics"):
        response = requests.get(f"http://{host}:{port}{path}", timeout=5)
        check.row(
            f"origin {host}:{port}{path}",
            response.status_code == 404,
            f"HTTP {response.status_code}",
            detail=f"expected 404 through the public origin, got {response.status_code}",
        )
    check.done()
