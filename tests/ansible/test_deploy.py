"""`ansible-playbook deploy.yml` onto real systemd hosts (containers: one app host, two Pushpin
nodes, one nginx host, as ansible/inventories/test lists them), then pytest-testinfra through
that same inventory, and events end to end through nginx and every Pushpin node.

One set of hosts is deployed once for the whole module; the tests run in file order (the
restart test last but one, the failing deploy last)."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import socket
import ssl
import subprocess
import time
import uuid
from dataclasses import dataclass

import httpx
import pytest
import requests
import testinfra
import yaml

from support.ansible_hosts import (
    ANSIBLE_BIN,
    TEST_INVENTORY,
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
from support.sse import SSEStream
from support.stack import REPO

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
    edge, node, app = deployment.nginx, deployment.host("pushpin", 1), deployment.host("app")
    pids = {
        (edge.name, "nginx.service"): main_pid(cluster, edge.name, "nginx.service"),
        (node.name, "pushpin.service"): main_pid(cluster, node.name, "pushpin.service"),
        (app.name, "app.service"): main_pid(cluster, app.name, "app.service"),
    }
    cluster.exec(edge.name, "sh", "-c", "echo '# local edit' >>/etc/nginx/kit/site.conf")
    cluster.exec(node.name, "nft", "delete", "table", "inet", "rtdash_pushpin")
    cluster.exec(app.name, "sh", "-c", "echo 'raise SystemExit' >/opt/rtdash/app/stray.py")

    result = playbook(deployment.env)
    changed = changed_tasks(result.stdout)
    for task, host in (
        ("nginx : Install the nginx config", edge.name),
        ("nginx : Reload nginx", edge.name),
        ("pushpin : Check that the firewall table is loaded", node.name),
        ("pushpin : Apply the pushpin firewall", node.name),
        ("app : Remove files that are not in the repository any more", app.name),
        ("app : Reload app", app.name),
    ):
        assert any(c.startswith(task) and c.endswith(host) for c in changed), (
            f"expected '{task}' to change {host}; changed: {changed}"
        )
    # Reloaded in place (no dropped streams or requests), not restarted.
    for (host, unit), pid in pids.items():
        assert main_pid(cluster, host, unit) == pid, f"{host}: {unit} was restarted"
    assert cluster.exec(node.name, "nft", "list", "table", "inet", "rtdash_pushpin")[0] == 0
    assert cluster.exec(app.name, "test", "-e", "/opt/rtdash/app/stray.py")[0] != 0


# --- Services (testinfra) ---------------------------------------------------------------------

# unit -> (group, user, the unit's processes)
SERVICES = {
    "app.service": ("app", "app", {"gunicorn"}),
    "ticker.service": ("app", "app", {"python"}),
    "pushpin.service": (
        "pushpin",
        "pushpin",
        {"pushpin", "condure", "zurl", "pushpin-proxy", "pushpin-handler"},
    ),
    "nginx.service": ("nginx", "nginx", {"nginx"}),
    # Debian's units, as packaged (ps shows 15 characters of a command).
    "prometheus-nginx-exporter.service": ("nginx", "prometheus", {"prometheus-ngin"}),
    "prometheus.service": ("monitoring", "prometheus", {"prometheus"}),
}


def unit_processes(host, unit: str) -> list[tuple[str, str]]:
    """(user, command) of every process systemd counts in `unit`."""
    rows = host.check_output("ps -eo unit:40=,euser:32=,comm=").splitlines()
    return [(user, comm) for u, user, comm in (r.split(None, 2) for r in rows) if u == unit]


@pytest.mark.parametrize("unit", sorted(SERVICES))
def test_service_enabled_running_as_its_own_user(deployment, hosts, unit):
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


def test_pushpin_firewall_unit_is_active(deployment, hosts):
    for test_host, host in group_hosts(deployment, hosts, "pushpin"):
        service = host.service("pushpin-firewall.service")
        assert service.is_enabled and service.is_running, (
            f"{test_host.name}: firewall unit {service}"
        )


def test_packaged_units_are_replaced_by_the_kits(deployment, hosts):
    for unit, group in (("pushpin.service", "pushpin"), ("nginx.service", "nginx")):
        for test_host, host in group_hosts(deployment, hosts, group):
            path = host.check_output(f"systemctl show -P FragmentPath {unit}")
            assert path == f"/etc/systemd/system/{unit}", (
                f"{test_host.name}: {unit} loaded from {path}, expected the kit's unit"
            )


# group -> {listening address: the unit whose process listens}; ADDR: the internal address.
LISTENING = {
    "app": {"ADDR:8000": "app.service", "ADDR:9808": "app.service", "ADDR:9809": "ticker.service"},
    "pushpin": {
        "0.0.0.0:7999": "pushpin.service",
        "ADDR:5561": "pushpin.service",
        "ADDR:9810": "pushpin.service",
        "127.0.0.1:5560": "pushpin.service",
        "127.0.0.1:5562": "pushpin.service",
        "127.0.0.1:5563": "pushpin.service",
    },
    "nginx": {
        "0.0.0.0:8080": "nginx.service",
        "[::]:8080": "nginx.service",
        "ADDR:9113": "prometheus-nginx-exporter.service",
    },
    "monitoring": {"ADDR:9090": "prometheus.service"},
}


@pytest.mark.parametrize("group", sorted(LISTENING))
def test_listens_where_it_should_and_nowhere_else(deployment, hosts, group):
    for test_host, host in group_hosts(deployment, hosts, group):
        want = {a.replace("ADDR", test_host.address): u for a, u in LISTENING[group].items()}
        got, owners = {}, {}
        # -e: each socket's owner uid and cgroup (the systemd unit that opened it).
        for line in host.check_output("ss -ltneH").splitlines():
            address = line.split()[3]
            if address.startswith("127.0.0.11:"):  # Docker's embedded DNS, not the host's
                continue
            unit = re.search(r"cgroup:\S*/([^/\s]+)", line)
            got[address] = unit.group(1) if unit else "?"
            owners[address] = int(re.search(r"uid:(\d+)", line).group(1)) if "uid:" in line else 0
        assert got == want, f"{test_host.name}: expected listeners {want}, got {got}"
        for address, unit in want.items():
            user = SERVICES[unit][1]
            assert owners[address] == host.user(user).uid, (
                f"{test_host.name}: {address} opened by uid {owners[address]}, expected {user}"
            )


# (group, path on the host, file in the repository): installed as they are.
SHARED_FILES = [
    ("pushpin", "/etc/pushpin/pushpin.conf", "pushpin/pushpin.conf"),
    ("pushpin", "/etc/pushpin/routes", "pushpin/routes"),
    ("pushpin", "/usr/local/lib/pushpin-kit/run-pushpin", "pushpin/run-pushpin"),
    ("pushpin", "/usr/local/lib/pushpin-kit/render-config", "pushpin/render-config"),
    ("pushpin", "/usr/local/lib/pushpin-kit/healthcheck", "pushpin/healthcheck"),
    ("nginx", "/etc/nginx/nginx.conf", "nginx/nginx.conf"),
    ("nginx", "/etc/nginx/kit/limits.conf", "nginx/limits.conf"),
    ("nginx", "/etc/nginx/kit/origin.conf", "nginx/origin.conf"),
    ("nginx", "/etc/nginx/kit/site.conf", "nginx/site.conf"),
    ("nginx", "/etc/nginx/kit/status.conf", "nginx/status.conf"),
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


def test_app_code_is_the_repository_code(deployment, hosts):
    excluded = yaml.safe_load((REPO / "ansible/roles/app/vars/main.yml").read_text())[
        "app_code_excluded"
    ]
    source = REPO / "app"
    expected = {
        str(p.relative_to(source)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in source.rglob("*")
        if p.is_file() and not re.search(excluded, str(p.relative_to(source)))
    }
    for test_host, host in group_hosts(deployment, hosts, "app"):
        out = host.check_output("cd /opt/rtdash/app && find . -type f -exec sha256sum {} +")
        installed = {
            name[2:]: digest for digest, name in (ln.split(None, 1) for ln in out.splitlines())
        }
        assert installed == expected, (
            f"{test_host.name}: code differs from app/: "
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
        response = requests.get(f"http://{test_host.address}:8080/healthz?{marker}", timeout=5)
        assert response.status_code == 200, f"{test_host.name}: /healthz {response.status_code}"
        log = host.file("/var/log/nginx/access.log")
        assert log.user == "nginx", f"{test_host.name}: access log owned by {log.user}"
        assert f"GET /healthz?{marker} " in log.content_string, f"{test_host.name}: not logged"
        rotate = host.run("logrotate --debug /etc/logrotate.d/nginx")
        assert rotate.rc == 0, f"{test_host.name}: logrotate rejects its config: {rotate.stderr}"
        assert "copytruncate" in host.file("/etc/logrotate.d/nginx").content_string


def test_pushpin_open_file_limit_is_raised(deployment, hosts):
    for test_host, host in group_hosts(deployment, hosts, "pushpin"):
        limits = host.check_output("cat /proc/$(pgrep -x condure)/limits")
        line = next(ln for ln in limits.splitlines() if ln.startswith("Max open files"))
        assert line.split()[3:5] == ["20000", "20000"], f"{test_host.name}: condure {line}"


# --- The publish port -------------------------------------------------------------------------


def can_connect(cluster, from_host: str, address: str, port: int) -> bool:
    status, _ = cluster.exec(
        from_host,
        "python3",
        "-c",
        f"import socket; socket.create_connection(({address!r}, {port}), timeout=2).close()",
    )
    return status == 0


def test_publish_port_is_reachable_only_from_the_app_hosts(deployment):
    cluster = deployment.cluster
    for node in cluster.by_group("pushpin"):
        for app in cluster.by_group("app"):
            assert can_connect(cluster, app.name, node.address, 5561), (
                f"app host {app.name} cannot reach {node.name}:5561"
            )
        for edge in cluster.by_group("nginx"):
            # The stream port answers (so the host can reach the node at all) ...
            assert can_connect(cluster, edge.name, node.address, 7999), (
                f"nginx host {edge.name} cannot reach {node.name}:7999"
            )
            # ... the publish port does not.
            assert not can_connect(cluster, edge.name, node.address, 5561), (
                f"nginx host {edge.name} reaches {node.name}:5561"
            )
        with socket.socket() as sock:  # nor does it from anywhere else (this machine)
            sock.settimeout(2)
            assert sock.connect_ex((node.address, 5561)) != 0, f"{node.address}:5561 reachable"


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


def test_a_stopped_node_goes_down_raises_its_alert_and_counts_failures(deployment):
    cluster, node = deployment.cluster, deployment.host("pushpin", 1)
    instance, name = f"{node.address}:9810", f"{node.address}:5561"
    status, out = cluster.exec(node.name, "systemctl", "stop", "pushpin")
    assert status == 0, f"systemctl stop pushpin on {node.name}: {out}"
    try:
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
    finally:
        status, out = cluster.exec(node.name, "systemctl", "start", "pushpin")
        assert status == 0, f"systemctl start pushpin on {node.name}: {out}"
    deadline = time.monotonic() + 30
    while cluster.exec(node.name, "/usr/local/lib/pushpin-kit/healthcheck")[0] != 0:
        assert time.monotonic() < deadline, f"{node.name} not healthy 30 s after its start"
        time.sleep(0.5)


# --- End to end -------------------------------------------------------------------------------


def channel() -> str:
    return f"probe-{uuid.uuid4().hex[:12]}"


def publish(deployment, chan: str, event: str, data: str, check: bool = True) -> tuple[int, str]:
    app = deployment.host("app")
    status, out = deployment.cluster.exec(app.name, "rtdash-manage", "publish", chan, event, data)
    if check:
        assert status == 0, f"publish on {app.name} exited {status}: {out}"
    return status, out


def via_nginx(deployment, chan: str, **kw) -> SSEStream:
    stream = SSEStream(deployment.nginx.address, 8080, f"/events/?channel={chan}", **kw)
    assert stream.status == 200, f"nginx answered {stream.status}: {stream.__dict__.get('body')}"
    return stream


def via_node(deployment, node, chan: str, **kw) -> SSEStream:
    # With the Host of the app's origin, as nginx passes it on.
    origin = {"Host": f"{deployment.nginx.address}:8080"}
    stream = SSEStream(node.address, 7999, f"/events/?channel={chan}", headers=origin, **kw)
    assert stream.status == 200, (
        f"{node.name} answered {stream.status}: {stream.__dict__.get('body')}"
    )
    return stream


def test_publish_on_the_app_host_reaches_clients_through_nginx_and_every_node(deployment):
    nodes = deployment.cluster.by_group("pushpin")
    chan = channel()
    streams = [via_node(deployment, node, chan) for node in nodes for _ in range(2)]
    streams += [via_nginx(deployment, chan) for _ in range(2 * len(nodes))]
    try:
        for stream in streams:
            stream.wait_open()
        _, out = publish(deployment, chan, "fanout", "to-everyone")
        assert f"published to {len(nodes)} Pushpin node(s)" in out, out
        missing = []
        for stream in streams:
            event = stream.next(timeout=5)
            if event is None or (event.type, event.data) != ("fanout", "to-everyone"):
                missing.append(f"{stream.host}:{stream.port} got {event}")
        assert not missing, f"{len(missing)} of {len(streams)} clients missed the event: {missing}"
    finally:
        for stream in streams:
            stream.close()
    # nginx spread its streams over every node (its access log names the upstream).
    deadline, used = time.monotonic() + 10, set()
    while time.monotonic() < deadline and len(used) < len(nodes):
        _, log = deployment.cluster.exec(deployment.nginx.name, "cat", "/var/log/nginx/access.log")
        used = set(re.findall(rf"channel={chan} .* upstream=([\d.]+):7999", log))
        time.sleep(0.5)
    assert used == {n.address for n in nodes}, f"nginx sent the streams to {used} only"


def test_after_a_node_restarts_reconnecting_clients_lose_no_event(deployment):
    node = deployment.host("pushpin", 0)
    chan = channel()
    first = via_node(deployment, node, chan)
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
        via_node(deployment, node, chan, last_event_id=seen.id),
        via_nginx(deployment, chan, last_event_id=seen.id),
    ]
    try:
        for stream in again:
            stream.wait_open()
            replayed = stream.collect(4, timeout=3)  # one more than expected: no extras
            assert [e.data for e in replayed] == ["1", "2", "3"], (
                f"{stream.host}: expected events 1, 2, 3 after {seen.id}, "
                f"got {[(e.id, e.data) for e in replayed]}"
            )
        publish(deployment, chan, "seq", "4")  # and both keep streaming live
        for stream in again:
            live = stream.next(timeout=5)
            assert live is not None and live.data == "4", f"{stream.host}: live event 4? {live}"
    finally:
        for stream in again:
            stream.close()


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

        chan = channel()
        with client.stream("GET", f"{origin}/events/?channel={chan}") as stream:
            assert stream.status_code == 200, stream.status_code
            lines = stream.iter_lines()  # a read waiting over 10 s fails the test
            opened = any(line == "event: stream-open" for line in itertools.islice(lines, 50))
            assert opened, "no stream-open on the TLS origin"
            publish(deployment, chan, "secure", "over-tls")
            assert next(ln for ln in lines if "over-tls" in ln) == "data: over-tls"


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
