"""`ansible-playbook deploy.yml` onto real systemd hosts (containers: one app host, two Pushpin
nodes, one nginx host, one monitoring host, as ansible/inventories/test lists them), then
pytest-testinfra through that same inventory, who may connect to which port, and events end to
end through nginx and every Pushpin node.

One set of hosts is deployed once for the whole module; the tests run in file order (the
restart test last but one, the failing deploy last)."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import re
import ssl
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import requests
import testinfra
import yaml

from support import own_project as own_project_block
from support import verify_report
from support.ansible_hosts import (
    ANSIBLE_BIN,
    TEST_INVENTORY,
    THIS_MACHINE,
    HostCluster,
    changed_tasks,
    clean_env,
    inventory_hosts,
    new_secrets,
    playbook,
    recap,
    stopped_before_any_host,
)
from support.monitoring import wait_query
from support.sse import SSEStream, open_stream, probe_channel
from support.stack import REPO
from verify.targets import AnsibleTarget, listening_units

pytestmark = pytest.mark.slow


@dataclass
class Deployment:
    cluster: HostCluster
    env: dict[str, str]
    secrets: dict[str, str]
    preview: object  # --check --diff on the fresh hosts
    fresh_fingerprints: dict[str, str]
    after_preview_fingerprints: dict[str, str]
    first: object
    first_seconds: float

    def host(self, group: str, index: int = 0):
        return self.cluster.by_group(group)[index]

    @property
    def nginx(self):
        return self.host("nginx")


def fingerprint(cluster: HostCluster, name: str) -> str:
    """Every file under /etc, /opt, /usr and dpkg's database (path, size, mtime, mode, owner)."""
    status, out = cluster.exec(
        name,
        "sh",
        "-c",
        "find /etc /opt /usr /var/lib/dpkg -xdev -printf '%p %s %T@ %m %u\\n' 2>/dev/null | sort",
    )
    assert status == 0, f"{name}: fingerprint failed: {out[-500:]}"
    return hashlib.sha256(out.encode()).hexdigest()


@pytest.fixture(scope="module")
def deployment(docker_client):
    # testinfra's Ansible backend calls ansible-inventory: the virtualenv's bin/ first.
    old_path = os.environ["PATH"]
    os.environ["PATH"] = f"{ANSIBLE_BIN}{os.pathsep}{old_path}"
    cluster = HostCluster(docker_client, inventory_hosts())
    cluster.build_image()
    cluster.destroy()  # leftovers of an interrupted run
    try:
        cluster.start()
        secrets = new_secrets()
        env = clean_env(**secrets)
        fresh = {h.name: fingerprint(cluster, h.name) for h in cluster.hosts}
        preview = playbook(env, "--check", "--diff")
        after_preview = {h.name: fingerprint(cluster, h.name) for h in cluster.hosts}
        started = time.monotonic()
        first = playbook(env)
        seconds = time.monotonic() - started
        print(f"first deploy: {seconds:.1f} s")
        yield Deployment(cluster, env, secrets, preview, fresh, after_preview, first, seconds)
    finally:
        cluster.destroy()
        os.environ["PATH"] = old_path


@pytest.fixture(scope="module")
def hosts(deployment):
    """testinfra hosts by inventory name, through the Ansible inventory."""
    found = testinfra.get_hosts(["ansible://all"], ansible_inventory=str(TEST_INVENTORY))
    by_name = {h.backend.host: h for h in found}
    expected = {h.name for h in deployment.cluster.hosts}
    assert set(by_name) == expected, f"testinfra found {sorted(by_name)}, expected {expected}"
    return by_name


def group_hosts(deployment, hosts, group):
    return [(h, hosts[h.name]) for h in deployment.cluster.by_group(group)]


# --- Convergence ------------------------------------------------------------------------------


def test_check_mode_on_fresh_hosts_runs_and_changes_nothing(deployment):
    stats = recap(deployment.preview.stdout)
    assert all(s["failed"] == 0 and s["unreachable"] == 0 for s in stats.values()), stats
    assert all(stats[h.name]["changed"] > 0 for h in deployment.cluster.hosts), (
        f"a check run on fresh hosts should report what it would change: {stats}"
    )
    changed = [
        name
        for name, before in deployment.fresh_fingerprints.items()
        if deployment.after_preview_fingerprints[name] != before
    ]
    assert not changed, f"--check changed files on {changed}"


def test_first_deploy_converges_every_host(deployment):
    stats = recap(deployment.first.stdout)
    names = {h.name for h in deployment.cluster.hosts}
    assert names <= set(stats), f"expected every host in the recap, got {sorted(stats)}"
    for name in names:
        assert stats[name]["failed"] == 0 and stats[name]["unreachable"] == 0, stats
        assert stats[name]["changed"] > 0, f"{name}: a first deploy changed nothing: {stats}"


def test_second_deploy_changes_nothing(deployment):
    started = time.monotonic()
    again = playbook(deployment.env)
    print(f"second deploy: {time.monotonic() - started:.1f} s")
    stats = recap(again.stdout)
    changed = {name: s["changed"] for name, s in stats.items() if s["changed"]}
    assert not changed, (
        f"expected changed=0 on every host, got {changed}: {changed_tasks(again.stdout)}"
    )


def test_check_mode_after_deploy_reports_no_change(deployment):
    started = time.monotonic()
    check = playbook(deployment.env, "--check", "--diff")
    print(f"check run: {time.monotonic() - started:.1f} s")
    stats = recap(check.stdout)
    changed = {name: s["changed"] for name, s in stats.items() if s["changed"]}
    assert not changed, f"--check reports changes after a deploy: {changed_tasks(check.stdout)}"


def test_no_secret_in_the_output(deployment):
    # The --diff preview on fresh hosts showed every file it would write.
    for name, value in deployment.secrets.items():
        for run in (deployment.preview, deployment.first):
            assert value not in run.stdout + run.stderr, f"{name} appears in ansible's output"


def main_pid(cluster, host: str, unit: str) -> int:
    status, out = cluster.exec(host, "systemctl", "show", "-P", "MainPID", unit)
    assert status == 0 and int(out) > 0, f"{host}: {unit} has no main process ({out.strip()})"
    return int(out)


def test_redeploy_repairs_drift_reloading_what_can_reload(deployment):
    cluster = deployment.cluster
    edge, app, mon = deployment.nginx, deployment.host("app"), deployment.host("monitoring")
    node0, node1 = deployment.host("pushpin", 0), deployment.host("pushpin", 1)
    pids = {
        (edge.name, "nginx.service"): main_pid(cluster, edge.name, "nginx.service"),
        (node0.name, "pushpin.service"): main_pid(cluster, node0.name, "pushpin.service"),
        (node1.name, "pushpin.service"): main_pid(cluster, node1.name, "pushpin.service"),
        (app.name, "app.service"): main_pid(cluster, app.name, "app.service"),
    }
    cluster.exec(edge.name, "sh", "-c", "echo '# local edit' >>/etc/nginx/kit/site.conf")
    cluster.exec(app.name, "sh", "-c", "echo 'raise SystemExit' >/opt/rtdash/app/stray.py")
    # The firewall tables, three ways: deleted (as by `nft flush ruleset`), flushed (the table
    # is there, its rules are not), and a hand-made exception (one more allowed address).
    for host, *command in (
        (node1.name, "nft", "delete", "table", "inet", "rtdash_pushpin"),
        (app.name, "nft", "flush", "table", "inet", "rtdash_app"),
        (node0.name, "nft", "add", "element", "inet", "rtdash_pushpin", "allowed_7999",
         f"{{ {mon.address} }}"),
    ):  # fmt: skip
        status, out = cluster.exec(host, *command)
        assert status == 0, f"{host}: {' '.join(command)} failed: {out}"
    # Each opened a way in that the firewall had closed.
    holes = [(edge.name, node1.address, 5561), (mon.name, app.address, 8000),
             (mon.name, node0.address, 7999)]  # fmt: skip
    opened = cluster.connect_all(holes)
    assert set(opened.values()) == {"accepted"}, f"expected the drift to open {holes}: {opened}"

    result = playbook(deployment.env)
    changed = changed_tasks(result.stdout)
    for task, host in (
        ("nginx : Install the nginx config", edge.name),
        ("nginx : Reload nginx", edge.name),
        *(
            (task, host.name)
            for host in (node0, node1, app)
            for task in (
                "port_allowlist : Compare the loaded table with its rules file",
                "port_allowlist : Apply the firewall",
            )
        ),
        ("app : Remove files that left the project", app.name),
        ("app : Reload app", app.name),
    ):
        assert any(c.startswith(task) and c.endswith(host) for c in changed), (
            f"expected '{task}' to change {host}; changed: {changed}"
        )
    # Reloaded in place (no dropped streams or requests), not restarted.
    for (host, unit), pid in pids.items():
        assert main_pid(cluster, host, unit) == pid, f"{host}: {unit} was restarted"
    closed = cluster.connect_all(holes)
    assert set(closed.values()) == {"no answer"}, f"expected {holes} closed again: {closed}"
    assert cluster.exec(app.name, "test", "-e", "/opt/rtdash/app/stray.py")[0] != 0


# --- Services (testinfra) ---------------------------------------------------------------------

# The kit's own services (app, ticker, pushpin, nginx): running and enabled, as their own
# users that cannot log in, with exactly their processes, are `make verify`'s rows ("service
# running", "own non-root user"; test_make_verify_passes_on_the_hosts). What it does not look
# at, the monitoring units: unit -> (group, user, the unit's processes).
SERVICES = {
    # Debian's units, as packaged (ps shows 15 characters of a command).
    "prometheus-nginx-exporter.service": ("nginx", "prometheus", {"prometheus-ngin"}),
    "prometheus.service": ("monitoring", "prometheus", {"prometheus"}),
}


def unit_processes(host, unit: str) -> list[tuple[str, str]]:
    """(user, command) of every process systemd counts in `unit`."""
    rows = host.check_output("ps -eo unit:40=,euser:32=,comm=").splitlines()
    return [(user, comm) for u, user, comm in (r.split(None, 2) for r in rows) if u == unit]


@pytest.mark.parametrize("unit", sorted(SERVICES))
def test_monitoring_service_enabled_running_as_its_own_user(deployment, hosts, unit):
    group, user, commands = SERVICES[unit]
    for test_host, host in group_hosts(deployment, hosts, group):
        service = host.service(unit)
        assert service.is_enabled, f"{test_host.name}: {unit} is not enabled"
        assert service.is_running, f"{test_host.name}: {unit} is not running"
        account = host.user(user)
        assert account.exists and account.uid != 0, f"{test_host.name}: user {user} {account}"
        assert account.shell == "/usr/sbin/nologin", f"{test_host.name}: {user} can log in"
        processes = unit_processes(host, unit)
        assert {comm for _, comm in processes} == commands, (
            f"{test_host.name}: {unit} runs {processes}, expected the commands {commands}"
        )
        others = [p for p in processes if p[0] != user]
        assert not others, f"{test_host.name}: {unit} processes not run by {user}: {others}"


def test_one_ticker_in_the_deployment(deployment, hosts):
    running = [
        h.name
        for h, host in group_hosts(deployment, hosts, "app")
        if host.service("ticker.service").is_running
    ]
    assert len(running) == 1, f"expected exactly one ticker, running on {running}"


# group -> (the firewall's name, the unit it guards): table inet rtdash_<name>, loaded by
# <name>-firewall.service from /etc/rtdash-firewall/<name>.nft (role port_allowlist).
FIREWALLS = {"pushpin": ("pushpin", "pushpin.service"), "app": ("app", "app.service")}


@pytest.mark.parametrize("group", sorted(FIREWALLS))
def test_firewall_is_loaded_and_its_service_waits_for_it(deployment, hosts, group):
    name, guarded = FIREWALLS[group]
    firewall = f"{name}-firewall.service"
    for test_host, host in group_hosts(deployment, hosts, group):
        service = host.service(firewall)
        assert service.is_enabled and service.is_running, (
            f"{test_host.name}: expected {firewall} enabled and active, got {service}"
        )
        rules = host.file(f"/etc/rtdash-firewall/{name}.nft")
        assert (rules.user, rules.mode) == ("root", 0o644), (
            f"{test_host.name}: {rules.path} {rules.user} {oct(rules.mode)}"
        )
        assert host.run(f"nft list table inet rtdash_{name}").rc == 0
        # The guarded service starts after the table is loaded, and not without it.
        drop_in = f"/etc/systemd/system/{guarded}.d/{name}-firewall.conf"
        show = {
            prop: host.check_output(f"systemctl show -P {prop} {guarded}")
            for prop in ("DropInPaths", "After", "Wants", "ExecStartPre")
        }
        assert drop_in in show["DropInPaths"].split(), f"{test_host.name}: {guarded} {show}"
        assert firewall in show["After"].split() and firewall in show["Wants"].split(), (
            f"{test_host.name}: expected {guarded} after {firewall}, got {show}"
        )
        assert f"nft list table inet rtdash_{name} " in show["ExecStartPre"], (
            f"{test_host.name}: expected {guarded} to check for its table first, got {show}"
        )


def test_packaged_units_are_replaced_by_the_kits(deployment, hosts):
    for unit, group in (("pushpin.service", "pushpin"), ("nginx.service", "nginx")):
        for test_host, host in group_hosts(deployment, hosts, group):
            path = host.check_output(f"systemctl show -P FragmentPath {unit}")
            assert path == f"/etc/systemd/system/{unit}", (
                f"{test_host.name}: {unit} loaded from {path}, expected the kit's unit"
            )


def test_the_monitoring_host_listens_on_its_internal_address_only(deployment, hosts):
    """(The other hosts' listeners, each with the unit that opened it: `make verify`'s
    "listening sockets".)"""
    for test_host, host in group_hosts(deployment, hosts, "monitoring"):
        got = listening_units(host)
        want = {f"{test_host.address}:9090": ("prometheus.service", host.user("prometheus").uid)}
        assert got == want, f"{test_host.name}: expected listeners {want}, got {got}"


# (group, path on the host, file in the repository): installed as they are. (nginx's and
# Pushpin's: `make verify`'s "config = repository".)
SHARED_FILES = [
    ("monitoring", "/etc/prometheus/prometheus.yml", "monitoring/prometheus.yml"),
    ("monitoring", "/etc/prometheus/rules.yml", "monitoring/rules.yml"),
]


@pytest.mark.parametrize(("group", "path", "source"), SHARED_FILES)
def test_config_in_place_is_the_repository_file(deployment, hosts, group, path, source):
    expected = (REPO / source).read_text()
    for test_host, host in group_hosts(deployment, hosts, group):
        installed = host.file(path)
        assert installed.exists, f"{test_host.name}: {path} missing"
        assert installed.user == "root", f"{test_host.name}: {path} owned by {installed.user}"
        assert installed.content_string == expected, (
            f"{test_host.name}: {path} differs from the repository's {source}"
        )


def tracked_files(tree: str) -> dict[str, str]:
    """The repository's tracked files of a tree (sha256 by path), as the role installs it: the
    image build files at its top stay out."""
    listed = (
        subprocess.run(["git", "ls-files", "-z", tree], cwd=REPO, capture_output=True, check=True)
        .stdout.decode()
        .split("\0")
    )
    found = {}
    for name in filter(None, listed):
        relative = str(Path(name).relative_to(tree))
        if relative not in ("Dockerfile", ".dockerignore"):
            found[relative] = hashlib.sha256((REPO / name).read_bytes()).hexdigest()
    return found


@pytest.mark.parametrize(
    ("tree", "installed_at"),
    [("app/demo", "/opt/rtdash/app"), ("app/realtime", "/opt/rtdash/realtime")],
)
def test_app_code_is_the_repository_code(deployment, hosts, tree, installed_at):
    expected = tracked_files(tree)
    for test_host, host in group_hosts(deployment, hosts, "app"):
        out = host.check_output(f"cd {installed_at} && find . -type f -exec sha256sum {{}} +")
        installed = {
            name[2:]: digest for digest, name in (ln.split(None, 1) for ln in out.splitlines())
        }
        assert installed == expected, (
            f"{test_host.name}: {installed_at} differs from {tree}: "
            f"missing {sorted(set(expected) - set(installed))}, "
            f"extra {sorted(set(installed) - set(expected))}, "
            f"changed {sorted(k for k in expected if installed.get(k, expected[k]) != expected[k])}"
        )


def root_only_env_file(name: str, host, path: str) -> dict[str, str]:
    """The values of a systemd environment file (the kit quotes them or writes them bare),
    after checking that only root can read it (it holds secrets)."""
    env = host.file(path)
    assert (env.user, env.mode) == ("root", 0o600), f"{name}: {path} {env.user} {oct(env.mode)}"
    values = {}
    for line in env.content_string.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key] = value[1:-1] if value.startswith('"') else value
    return values


def test_per_deployment_values_are_in_root_only_environment_files(deployment, hosts):
    apps = [h.address for h in deployment.cluster.by_group("app")]
    nodes = [h.address for h in deployment.cluster.by_group("pushpin")]
    for test_host, host in group_hosts(deployment, hosts, "pushpin"):
        values = root_only_env_file(test_host.name, host, "/etc/pushpin/pushpin.env")
        assert values["PUSHPIN_SIG_KEY"] == deployment.secrets["PUSHPIN_SIG_KEY"]
        assert values["PUSHPIN_CONTROL_ADDR"] == test_host.address
        assert sorted(values["PUSHPIN_APP_TARGETS"].split()) == sorted(f"{a}:8000" for a in apps)
        rendered = host.file("/run/pushpin/pushpin.conf")
        assert (rendered.user, rendered.mode) == ("pushpin", 0o600), (
            f"{test_host.name}: rendered config {rendered.user} {oct(rendered.mode)}"
        )
        assert f"sig_key={deployment.secrets['PUSHPIN_SIG_KEY']}\n" in rendered.content_string
        assert "changeme" not in rendered.content_string
    for test_host, host in group_hosts(deployment, hosts, "app"):
        values = root_only_env_file(test_host.name, host, "/etc/rtdash/app.env")
        assert values["DJANGO_SECRET_KEY"] == deployment.secrets["DJANGO_SECRET_KEY"]
        assert values["PUSHPIN_SIG_KEY"] == deployment.secrets["PUSHPIN_SIG_KEY"]
        assert values["PUSHPIN_CONTROL_URLS"].split(",") == [f"http://{a}:5561" for a in nodes]
        assert values["GUNICORN_BIND"] == f"{test_host.address}:8000"
    for test_host, host in group_hosts(deployment, hosts, "nginx"):
        upstreams = host.file("/etc/nginx/kit/upstreams.conf").content_string
        blocks = dict(re.findall(r"upstream (\w+) \{([^}]*)\}", upstreams))
        servers = {name: re.findall(r"server (\S+);", body) for name, body in blocks.items()}
        assert servers == {
            "pushpin": [f"{a}:7999" for a in nodes],
            "app": [f"{a}:8000" for a in apps],
        }, f"{test_host.name}: upstreams.conf lists {servers}"


def test_nginx_access_log_is_written_and_rotated(deployment, hosts):
    for test_host, host in group_hosts(deployment, hosts, "nginx"):
        marker = uuid.uuid4().hex
        page = f"/accounts/login/?{marker}"
        response = requests.get(f"http://{test_host.address}:8080{page}", timeout=5)
        assert response.status_code == 200, f"{test_host.name}: {page} {response.status_code}"
        log = host.file("/var/log/nginx/access.log")
        assert log.user == "nginx", f"{test_host.name}: access log owned by {log.user}"
        assert f"GET {page} " in log.content_string, f"{test_host.name}: not logged"
        rotate = host.run("logrotate --debug /etc/logrotate.d/nginx")
        assert rotate.rc == 0, f"{test_host.name}: logrotate rejects its config: {rotate.stderr}"
        assert "copytruncate" in host.file("/etc/logrotate.d/nginx").content_string


def test_pushpin_open_file_limit_is_raised(deployment, hosts):
    for test_host, host in group_hosts(deployment, hosts, "pushpin"):
        limits = host.check_output("cat /proc/$(pgrep -x condure)/limits")
        line = next(ln for ln in limits.splitlines() if ln.startswith("Max open files"))
        assert line.split()[3:5] == ["20000", "20000"], f"{test_host.name}: condure {line}"


# --- Who may connect to which port ----------------------------------------------------------

# port -> (the group listening on it, the groups whose hosts may connect to it besides the
# host itself). Every other host, and this machine, gets no answer (the firewall drops it).
GUARDED_PORTS = {
    5561: ("pushpin", {"app"}),  # Pushpin's publish port: the publishers only
    7999: ("pushpin", {"nginx"}),  # Pushpin's client port: streams come through nginx only
    8000: ("app", {"nginx", "pushpin"}),  # gunicorn: nginx, and the nodes asking what to hold
}


@pytest.mark.parametrize("port", sorted(GUARDED_PORTS))
def test_guarded_port_is_reachable_only_from_its_clients(deployment, port):
    group, clients = GUARDED_PORTS[port]
    cluster = deployment.cluster
    expected = {}
    for target in cluster.by_group(group):
        for source in cluster.hosts:
            allowed = source == target or bool(clients & set(source.groups))
            expected[(source.name, target.address, port)] = "accepted" if allowed else "no answer"
        expected[(THIS_MACHINE, target.address, port)] = "no answer"
        if port == 7999:  # the node's own healthcheck
            expected[(target.name, "127.0.0.1", port)] = "accepted"
    got = cluster.connect_all(list(expected))
    wrong = {
        f"{source} -> {address}:{port}": f"expected {want}, got {got[(source, address, port)]}"
        for (source, address, port), want in expected.items()
        if got[(source, address, port)] != want
    }
    assert not wrong, f"port {port} on the {group} hosts, open to {sorted(clients)}: {wrong}"
    print(f"port {port}: {len(expected)} attempts as expected")


# --- Forwarded headers ------------------------------------------------------------------------

# A form POST straight to the app host's :8000, without a CSRF cookie: Django's CSRF check
# refuses it either way and its 403 page says why. A request it takes for HTTPS is refused for
# the missing Referer (strict Referer checking is for HTTPS only), any other for the cookie.
SCHEME_PROBE = """
import http.client, json, sys
address, host, path, headers = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
connection = http.client.HTTPConnection(address, 8000, timeout=10)
connection.request("POST", path, body=b"", headers={"Host": host, **headers})
response = connection.getresponse()
print(response.status)
print(response.read().decode(errors="replace"))
"""


def scheme_the_app_sees(deployment, source, headers: dict[str, str]) -> str:
    """What a request from host `source` to the app host's :8000 is to the app: "https" or
    "http" (Django's request.is_secure(), through its CSRF check), or "refused by gunicorn"
    (400: contradictory scheme headers, which gunicorn only reads from its proxies). Checks
    that gunicorn's access log names `source`'s address as the peer of the request Django
    answered."""
    cluster, app = deployment.cluster, deployment.host("app")
    marker = uuid.uuid4().hex
    path = f"/accounts/login/?probe={marker}"
    status, out = cluster.exec(
        source.name,
        *("python3", "-c", SCHEME_PROBE, app.address, deployment.nginx.address, path),
        json.dumps(headers),
    )
    assert status == 0, f"{source.name}: the request to {app.address}:8000 failed: {out}"
    code, _, body = out.partition("\n")
    if code == "400" and "Contradictory scheme headers" in body:
        return "refused by gunicorn"  # (before Django: no access log line)
    if code == "403" and "this HTTPS site requires a" in body:
        seen = "https"
    elif code == "403" and "this site requires a CSRF cookie" in body:
        seen = "http"
    else:
        raise AssertionError(f"{source.name} {headers}: expected a CSRF 403, got {code}: {body}")
    deadline = time.monotonic() + 10
    while True:  # gunicorn's access log, in the journal: the peer address comes first
        _, log = cluster.exec(app.name, "journalctl", "-u", "app.service", "-o", "cat", "-n", "500")
        peers = [line.split()[0] for line in log.splitlines() if f"POST {path} " in line]
        if peers:
            break
        assert time.monotonic() < deadline, f"{app.name}: gunicorn did not log {path}"
        time.sleep(0.5)
    assert peers == [source.address], f"expected gunicorn to see {source.address}, got {peers}"
    return seen


def test_gunicorn_takes_the_forwarded_scheme_from_the_kits_proxies_only(deployment, hosts):
    cluster, app = deployment.cluster, deployment.host("app")
    proxies = cluster.by_group("nginx") + cluster.by_group("pushpin")
    trusted = [h.address for h in proxies] + ["127.0.0.1"]
    values = root_only_env_file(app.name, hosts[app.name], "/etc/rtdash/app.env")
    got = values["GUNICORN_FORWARDED_ALLOW_IPS"]
    assert got.split(",") == trusted, f"GUNICORN_FORWARDED_ALLOW_IPS: expected {trusted}, got {got}"
    pid = main_pid(cluster, app.name, "app.service")  # the gunicorn master runs with it
    _, environ = cluster.exec(app.name, "cat", f"/proc/{pid}/environ")
    assert f"GUNICORN_FORWARDED_ALLOW_IPS={got}" in environ.split("\0"), (
        f"gunicorn (pid {pid}) was not started with GUNICORN_FORWARDED_ALLOW_IPS={got}"
    )

    # (request headers, what the app should make of them from a proxy, and from another peer)
    cases = [
        ({}, "http", "http"),
        # The scheme is gunicorn's reading alone (wsgi.url_scheme; the app sets no
        # SECURE_PROXY_SSL_HEADER): nginx's X-Forwarded-Proto, or X-Forwarded-Ssl, believed
        # from the proxies only.
        ({"X-Forwarded-Proto": "https"}, "https", "http"),
        ({"X-Forwarded-Ssl": "on"}, "https", "http"),
        # From a proxy, contradicting headers get gunicorn's 400; from another peer both are
        # ignored.
        ({"X-Forwarded-Proto": "https", "X-Forwarded-Ssl": "off"}, "refused by gunicorn", "http"),
    ]
    # The one peer besides the proxies that the firewall lets reach :8000: the app host itself
    # on its internal address (loopback, but from that address, which is no proxy).
    wrong = []
    for headers, from_a_proxy, from_another_peer in cases:
        for peer in [*proxies, app]:
            want = from_another_peer if peer == app else from_a_proxy
            seen = scheme_the_app_sees(deployment, peer, headers)
            if seen != want:
                wrong.append(f"{peer.name} {headers}: expected {want}, got {seen}")
    assert not wrong, f"gunicorn trusts {trusted}: {wrong}"


# --- Monitoring -------------------------------------------------------------------------------


def prometheus_url(deployment) -> str:
    return f"http://{deployment.host('monitoring').address}:9090"


def wait_prometheus(deployment, expr: str, predicate, timeout: float, what: str) -> list[dict]:
    return wait_query(prometheus_url(deployment), expr, predicate, timeout, what)


def scrape_targets(deployment) -> set[tuple[str, str]]:
    cluster = deployment.cluster
    (app, *_), nodes, edges = (cluster.by_group(g) for g in ("app", "pushpin", "nginx"))
    return {
        ("app", f"{app.address}:9808"),
        ("ticker", f"{app.address}:9809"),
        *(("pushpin", f"{n.address}:9810") for n in nodes),
        *(("nginx", f"{e.address}:9113") for e in edges),
        ("prometheus", f"{deployment.host('monitoring').address}:9090"),
    }


def test_prometheus_scrapes_every_host_of_the_inventory(deployment, hosts):
    expected = scrape_targets(deployment)
    result = wait_prometheus(
        deployment,
        "up",
        lambda r: (
            {(s["metric"]["job"], s["metric"]["instance"]) for s in r if s["value"][1] == "1"}
            == expected
        ),
        60,
        f"up == 1 for exactly {sorted(expected)}",
    )
    print(f"Prometheus: {len(result)} targets up")
    # The target lists are the inventory's hosts; the jobs add the ports.
    mon = hosts[deployment.host("monitoring").name]
    nodes = [n.address for n in deployment.cluster.by_group("pushpin")]
    listed = yaml.safe_load(mon.file("/etc/prometheus/targets/pushpin.yml").content_string)
    assert listed == [{"targets": nodes}], f"targets/pushpin.yml: {listed}"
    rules = requests.get(f"{prometheus_url(deployment)}/api/v1/rules", timeout=10).json()
    rules = rules["data"]["groups"]
    loaded = {rule["name"] for group in rules for rule in group["rules"]}
    shipped = yaml.safe_load((REPO / "monitoring/rules.yml").read_text())["groups"]
    assert loaded == {r["alert"] for g in shipped for r in g["rules"]}, f"loaded: {loaded}"


def test_the_ops_figures_on_the_app_host(deployment):
    app = deployment.host("app")
    status, out = deployment.cluster.exec(app.name, "rtdash-manage", "opsstatus", "--sample", "1")
    assert status == 0, f"opsstatus on {app.name}: {out}"
    for node in deployment.cluster.by_group("pushpin"):
        assert re.search(rf"^{re.escape(node.address)}:5561\s+up\s", out, re.M), out
    assert f"http://{app.address}:9808/metrics" in out, f"the app's counters not read:\n{out}"


@contextlib.contextmanager
def pushpin_stopped(cluster, node):
    """Pushpin stopped on `node` for the block; started again after it, and healthy."""
    status, out = cluster.exec(node.name, "systemctl", "stop", "pushpin")
    assert status == 0, f"systemctl stop pushpin on {node.name}: {out}"
    try:
        yield
    finally:  # the tests after this one need the node back, whatever happened here
        status, out = cluster.exec(node.name, "systemctl", "start", "pushpin")
        assert status == 0, f"systemctl start pushpin on {node.name}: {out}"
        deadline = time.monotonic() + 30
        while cluster.exec(node.name, "/usr/local/lib/pushpin-kit/healthcheck")[0] != 0:
            assert time.monotonic() < deadline, f"{node.name} not healthy 30 s after its start"
            time.sleep(0.5)


def test_a_stopped_node_goes_down_raises_its_alert_and_counts_failures(deployment):
    cluster, node = deployment.cluster, deployment.host("pushpin", 1)
    instance, name = f"{node.address}:9810", f"{node.address}:5561"
    with pushpin_stopped(cluster, node):
        wait_prometheus(
            deployment,
            f'up{{job="pushpin", instance="{instance}"}}',
            lambda r: r and r[0]["value"][1] == "0",
            30,
            f"{instance} down",
        )
        alerts = wait_prometheus(
            deployment,
            f'ALERTS{{alertname="PushpinNodeDown", instance="{instance}"}}',
            lambda r: r and r[0]["metric"]["alertstate"] in ("pending", "firing"),
            40,
            "PushpinNodeDown pending or firing",
        )
        print(f"PushpinNodeDown {alerts[0]['metric']['alertstate']} for {instance}")
        # The ticker publishes every second to every node of the inventory: refused, counted.
        wait_prometheus(
            deployment,
            f'increase(rtdash_pushpin_publish_failures_total{{job="ticker", node="{name}"}}[1m])',
            lambda r: r and float(r[0]["value"][1]) > 0,
            40,
            f"the ticker's failures to {name} rising",
        )


# --- End to end -------------------------------------------------------------------------------
# One publish reaching streams held on every node and through nginx, and a resumed stream
# getting exactly what it missed, are `make verify`'s "delivery via every node" and
# "Last-Event-ID resume" (below). Here: what verify may not do to a live deployment (restart a
# node), nginx's balancing, and the TLS origin and a new project's deploy further down.


def publish(deployment, chan: str, event: str, data: str, check: bool = True) -> tuple[int, str]:
    app = deployment.host("app")
    status, out = deployment.cluster.exec(app.name, "rtdash-manage", "publish", chan, event, data)
    if check:
        assert status == 0, f"publish on {app.name} exited {status}: {out}"
    return status, out


def via_nginx(deployment, chan: str, **kw) -> SSEStream:
    edge = deployment.nginx
    return open_stream(edge.address, 8080, chan, where=f"nginx on {edge.name}", **kw)


@pytest.fixture
def node_endpoints(deployment):
    """Each Pushpin node's client port as this machine reaches it, the way `make verify` does
    (the nodes' firewalls admit only the nginx hosts: a relay on one), {node: (address, port)}."""
    target = AnsibleTarget("test")
    with contextlib.ExitStack() as stack:
        yield {
            node.name: stack.enter_context(target.node_stream_endpoint(node))
            for node in target.nodes("pushpin")
        }


def via_node(deployment, endpoints, node, chan: str, **kw) -> SSEStream:
    # With the Host of the app's origin, as nginx passes it on.
    origin = {"Host": f"{deployment.nginx.address}:8080"}
    address, port = endpoints[node.name]
    return open_stream(address, port, chan, where=node.name, headers=origin, **kw)


def test_nginx_spreads_new_streams_over_every_node(deployment):
    nodes = deployment.cluster.by_group("pushpin")
    chan = probe_channel()
    streams = [via_nginx(deployment, chan) for _ in range(2 * len(nodes))]
    try:
        for stream in streams:
            stream.wait_open()
    finally:
        for stream in streams:
            stream.close()
    # nginx's access log names the upstream of each stream.
    deadline, used = time.monotonic() + 10, set()
    while time.monotonic() < deadline and len(used) < len(nodes):
        _, log = deployment.cluster.exec(deployment.nginx.name, "cat", "/var/log/nginx/access.log")
        used = set(re.findall(rf"channel={chan} .* upstream=([\d.]+):7999", log))
        time.sleep(0.5)
    assert used == {n.address for n in nodes}, f"nginx sent the streams to {used} only"


def test_after_a_node_restarts_reconnecting_clients_lose_no_event(deployment, node_endpoints):
    node = deployment.host("pushpin", 0)
    chan = probe_channel()
    first = via_node(deployment, node_endpoints, node, chan)
    try:
        first.wait_open()
        publish(deployment, chan, "seq", "0")
        seen = first.next(timeout=5)
        assert seen is not None and seen.data == "0", f"expected event 0, got {seen}"
        status, out = deployment.cluster.exec(node.name, "systemctl", "restart", "pushpin")
        assert status == 0, f"systemctl restart pushpin on {node.name}: {out}"
        assert first.closed.wait(10), f"the stream on {node.name} survived its restart"
    finally:
        first.close()

    # Published while the client is away (the restarted node may still be starting: the event
    # is stored either way, and the publish names the node it could not reach).
    for n in (1, 2, 3):
        status, out = publish(deployment, chan, "seq", str(n), check=False)
        assert status == 0 or f"{node.address}:5561" in out, f"publish {n}: {out}"

    deadline = time.monotonic() + 30
    while deployment.cluster.exec(node.name, "/usr/local/lib/pushpin-kit/healthcheck")[0] != 0:
        assert time.monotonic() < deadline, f"{node.name} not healthy 30 s after its restart"
        time.sleep(0.5)

    # Back on the restarted node and through nginx (any node): exactly what was missed, in order.
    again = [
        via_node(deployment, node_endpoints, node, chan, last_event_id=seen.id),
        via_nginx(deployment, chan, last_event_id=seen.id),
    ]
    try:
        for stream in again:
            stream.wait_open()
            replayed = stream.collect(4, timeout=3)  # one more than expected: no extras
            assert [e.data for e in replayed] == ["1", "2", "3"], (
                f"{stream.host}:{stream.port}: expected events 1, 2, 3 after {seen.id}, "
                f"got {[(e.id, e.data) for e in replayed]}"
            )
        publish(deployment, chan, "seq", "4")  # and both keep streaming live
        for stream in again:
            live = stream.next(timeout=5)
            assert live is not None and live.data == "4", (
                f"{stream.host}:{stream.port}: live event 4? {live}"
            )
    finally:
        for stream in again:
            stream.close()


# --- make verify against the hosts -----------------------------------------------------------
# (Before the TLS origin test: the suite reaches the origin over plain HTTP.)


def run_verify(deployment, tmp_path: Path):
    """`make verify INVENTORY=test`, as an operator runs it after a deploy: (status, output,
    rows of its table)."""
    result = subprocess.run(
        ["make", "verify", "INVENTORY=test"],
        cwd=REPO,
        env=deployment.env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    output = result.stdout + result.stderr
    (tmp_path / "verify.out").write_text(output)  # the whole report, to read after a failure
    return result.returncode, output, verify_report.table(output, "verify: Ansible inventory test")


def test_make_verify_passes_on_the_hosts(deployment, tmp_path):
    status, output, rows = run_verify(deployment, tmp_path)
    bad = verify_report.failed(rows)
    assert status == 0 and not bad, f"make verify exited {status}; failed {bad}\n{output[-4000:]}"
    # The checks this suite leaves to it, made on every host of their group.
    cluster, target = deployment.cluster, AnsibleTarget
    made = {(check, where.split(":")[0]) for check, where, _, _ in rows}
    for role, group in target.groups.items():
        for host in cluster.by_group(group):
            for check in ("service running", "own non-root user"):
                assert (check, host.name) in made, f"no {check!r} row for {host.name}: {rows}"
            if role in target.listeners:
                assert ("listening sockets", host.name) in made, f"{host.name}: {rows}"
    for config in target.config_files:
        for host in cluster.by_group(target.groups[config.role]):
            assert ("config = repository", f"{host.name}:{config.path}") in {
                (c, w) for c, w, _, _ in rows
            }, f"no row for {config.path} on {host.name}"
    for node in deployment.cluster.by_group("pushpin"):
        held = verify_report.delivered_per_node(rows, node.name)
        assert len(held) == 3, f"{node.name}: expected 3 streams delivered, rows {held}"


def test_make_verify_fails_naming_a_host_whose_pushpin_is_stopped(deployment, tmp_path):
    cluster, node = deployment.cluster, deployment.host("pushpin", 1)
    with pushpin_stopped(cluster, node):
        status, output, rows = run_verify(deployment, tmp_path)
    assert status != 0, f"make verify passed with pushpin stopped on {node.name}:\n{output[-3000:]}"
    bad = verify_report.failed(rows)
    named = [r for r in bad if r[1] == node.name and r[0] == "service running"]
    assert named, f"make verify did not name {node.name} as not running: {bad}"
    # The other node still got the event: only the stopped one (and the publish that could
    # not reach it) fail.
    others = {r[1] for r in bad if not r[1].startswith(node.name) and " publish " not in r[1]}
    assert not others, f"expected only {node.name} to fail, also failed: {sorted(others)}"


# --- The TLS origin ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_dir(tmp_path_factory, deployment):
    """A self-signed certificate for the nginx host's address, as nginx_tls_dir wants it."""
    directory = tmp_path_factory.mktemp("tls")
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-days", "1", "-subj", "/CN=rtdash-ansible-test",
            "-addext", f"subjectAltName=IP:{deployment.nginx.address}",
            "-keyout", str(directory / "tls.key"), "-out", str(directory / "tls.crt"),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return directory


def test_tls_origin_with_http2_after_a_reload(deployment, hosts, tls_dir):
    cluster, edge = deployment.cluster, deployment.nginx
    pid = main_pid(cluster, edge.name, "nginx.service")
    playbook(deployment.env, "-e", json.dumps({"nginx_tls_dir": str(tls_dir)}))
    assert main_pid(cluster, edge.name, "nginx.service") == pid, "nginx restarted, not reloaded"

    host = hosts[edge.name]
    expected = (REPO / "nginx/site-tls.conf").read_text()
    assert host.file("/etc/nginx/kit/site.conf").content_string == expected
    key = host.file("/etc/nginx/tls/tls.key")
    assert (key.user, key.group, key.mode) == ("root", "nginx", 0o640), (
        f"tls.key {key.user}:{key.group} {oct(key.mode)}"
    )
    assert key.content_string == (tls_dir / "tls.key").read_text()

    origin = f"https://{edge.address}:8443"
    trust = ssl.create_default_context(cafile=str(tls_dir / "tls.crt"))
    with httpx.Client(http2=True, verify=trust, timeout=10) as client:
        health = client.get(f"{origin}/nginx-health")
        assert (health.status_code, health.http_version) == (200, "HTTP/2"), health
        assert "max-age" in health.headers.get("strict-transport-security", "")
        plain = client.get(f"http://{edge.address}:8080/", follow_redirects=False)
        assert plain.status_code == 301 and plain.headers["location"].startswith("https://")

        chan = probe_channel()
        with client.stream("GET", f"{origin}/events/?channel={chan}") as stream:
            assert stream.status_code == 200, stream.status_code
            lines = stream.iter_lines()  # a read waiting over 10 s fails the test
            opened = any(line == "event: stream-open" for line in itertools.islice(lines, 50))
            assert opened, "no stream-open on the TLS origin"
            publish(deployment, chan, "secure", "over-tls")
            assert next(ln for ln in lines if "over-tls" in ln) == "data: over-tls"


# --- Your own project ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def own_project(tmp_path_factory):
    """The README's new project ("Your own dashboards"), created by its block."""
    return own_project_block.create(tmp_path_factory.mktemp("own"))


def test_a_new_project_deploys_and_its_events_reach_every_node(
    deployment, node_endpoints, own_project
):
    """The same hosts, redeployed with app_source_dir: the project the README's block created
    (`django-admin startproject`, a dashboard, a producer). Its page is served through nginx,
    its producer runs on the ticker, and an event published on the app host reaches streams
    through nginx and on every Pushpin node."""
    result = playbook(deployment.env, "-e", json.dumps({"app_source_dir": str(own_project)}))
    stats = recap(result.stdout)
    assert all(s["failed"] == 0 and s["unreachable"] == 0 for s in stats.values()), stats
    page = requests.get(
        f"http://{deployment.nginx.address}:8080{own_project_block.DASHBOARD_PATH}", timeout=10
    )
    assert page.status_code == 200 and 'data-sse-channel="sales"' in page.text, (
        f"the new project's dashboard through nginx: {page.status_code} {page.text[:300]}"
    )
    app = deployment.host("app")
    _, journal = deployment.cluster.exec(app.name, "journalctl", "-u", "ticker", "-n", "50")
    assert "sales.producers.OrdersToday every 1 s" in journal, journal[-1500:]
    nodes = deployment.cluster.by_group("pushpin")
    streams = [via_node(deployment, node_endpoints, node, "sales") for node in nodes]
    streams += [via_nginx(deployment, "sales") for _ in nodes]
    try:
        for stream in streams:
            stream.wait_open()
        marker = f"own-{uuid.uuid4().hex[:8]}"
        _, out = publish(deployment, "sales", "check", marker)
        assert f"published to {len(nodes)} Pushpin node(s)" in out, out
        missing = []
        for stream in streams:
            event = stream.collect(1, timeout=5, event_type="check")
            if [e.data for e in event] != [marker]:
                missing.append(f"{stream.host}:{stream.port} got {event}")
        assert not missing, f"{len(missing)} of {len(streams)} streams missed it: {missing}"
    finally:
        for stream in streams:
            stream.close()


# --- A deploy without its secrets -------------------------------------------------------------


@pytest.mark.parametrize("missing", ["DJANGO_SECRET_KEY", "PUSHPIN_SIG_KEY"])
def test_deploy_without_a_secret_stops_before_touching_any_host(deployment, missing):
    cluster = deployment.cluster
    before = {h.name: fingerprint(cluster, h.name) for h in cluster.hosts}
    env = {k: v for k, v in deployment.env.items() if k != missing}
    result = playbook(env, check=False)
    stopped_before_any_host(result, f"{missing} is missing")
    after = {h.name: fingerprint(cluster, h.name) for h in cluster.hosts}
    assert after == before, "files changed on the hosts"
