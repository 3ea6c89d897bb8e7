"""What `make verify` checks, per kind of deployment: a compose project on this machine, the
hosts of an Ansible inventory, or a Kubernetes namespace. A Target says where each service runs
(testinfra hosts), what it should look like there (user, listeners, config files), how to reach
the public origin and each Pushpin node's stream port from here, and how to publish on an app
host. The scenarios (check_*.py) are written once against this interface."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import testinfra

from support.relay import RELAY_SCRIPT
from support.stack import REPO, free_port

INVENTORIES = REPO / "ansible" / "inventories"
# The services every deployment has, in the order the table lists them.
ROLES = ("app", "ticker", "pushpin", "nginx")
# Pushpin's stream port, its publish port (and the other control ports), gunicorn's port.
STREAM_PORT, PUBLISH_PORT, APP_PORT = 7999, 5561, 8000
CONTROL_PORTS = (5560, 5561, 5562, 5563)
# Metrics listeners (README "Monitoring"): app, ticker, Pushpin, nginx's exporter.
METRICS_PORTS = {"app": 9808, "ticker": 9809, "pushpin": 9810, "nginx": 9113}


# Docker's embedded DNS listens inside every container (and test host) on 127.0.0.11.
DOCKER_DNS = "127.0.0.11:"


def listener_address(listener: str) -> str:
    """A `listeners` entry without the "(unit)" that may follow its address."""
    return listener.split()[0]


class TargetError(Exception):
    """The target cannot be named or reached as given (a usage error, not a failed check)."""


@dataclass
class Node:
    """One place a service runs: a container, an inventory host or a pod."""

    name: str
    role: str
    backend: str  # testinfra host spec
    running: bool = True
    state: str = "running"
    address: str = ""  # its internal address (listeners, metrics, publish port)
    _host: object = field(default=None, repr=False)

    @property
    def host(self):
        if self._host is None:
            self._host = testinfra.get_host(self.backend)
        return self._host


@dataclass(frozen=True)
class ConfigFile:
    role: str
    path: str  # where the deployment has it
    source: str  # the repository file it must equal


def _files(role: str, directory: str, names: list[str], source_dir: str) -> list[ConfigFile]:
    return [ConfigFile(role, f"{directory}/{n}", f"{source_dir}/{n}") for n in names]


# What every path installs as it is; each adds its own (scripts, its upstreams file).
PUSHPIN_CONFIG = _files("pushpin", "/etc/pushpin", ["pushpin.conf", "routes"], "pushpin")
PUSHPIN_KIT_DIR = "/usr/local/lib/pushpin-kit"
NGINX_CONFIG = [
    ConfigFile("nginx", "/etc/nginx/nginx.conf", "nginx/nginx.conf"),
    *_files(
        "nginx",
        "/etc/nginx/kit",
        ["limits.conf", "origin.conf", "site.conf", "status.conf"],
        "nginx",
    ),
]
# The images' users (compose and Kubernetes run the same images).
IMAGE_USERS = {"app": 10001, "ticker": 10001, "pushpin": 10002, "nginx": 10003}
# Pushpin's listeners ("ADDR": the node's internal address): streams on every address, publish
# and metrics on the internal one, its other control ports on loopback.
PUSHPIN_LISTENERS = {"0.0.0.0:7999", "ADDR:5561", "ADDR:9810"} | {
    f"127.0.0.1:{port}" for port in (5560, 5562, 5563)
}


class Target:
    kind = ""
    # role -> the uid (int) or user name (str) its processes must all run as.
    users: dict[str, int | str] = {}
    # role -> listening sockets ("ADDR" stands for the node's internal address; "(unit)" after
    # one: opened by that other service on the same host, where the target can tell).
    listeners: dict[str, set[str]] = {}
    # role -> the commands its processes run, exactly, where the target can tell them apart
    # from the check's own (systemd units); not checked where absent.
    commands: dict[str, set[str]] = {}
    config_files: list[ConfigFile] = []
    # The command that runs the app's manage.py on an app node.
    manage = "python manage.py"

    name = ""

    def nodes(self, role: str) -> list[Node]:
        raise NotImplementedError

    def preflight(self) -> None:
        """Raise TargetError when the target cannot be looked at at all (before any check)."""

    def close(self) -> None:
        """Release what reaching the target took (port-forwards)."""

    def origin(self) -> tuple[str, int]:
        """The public origin (host, port) as this machine reaches it."""
        raise NotImplementedError

    def origin_host_header(self) -> str:
        host, port = self.origin()
        return f"{host}:{port}"

    @contextlib.contextmanager
    def node_stream_endpoint(self, node: Node) -> Iterator[tuple[str, int]]:
        """Where this machine reaches `node`'s stream port (7999), for as long as the context."""
        raise NotImplementedError
        yield  # pragma: no cover

    def app_node(self) -> Node:
        running = [n for n in self.nodes("app") if n.running]
        if not running:
            raise AssertionError(f"{self.name}: no running app node to publish on")
        return running[0]

    def publish(self, chan: str, event: str, data: str) -> tuple[int, str, float]:
        """`manage.py publish` on an app node: (exit status, output, seconds it took)."""
        node = self.app_node()
        cmd = f"{self.manage} publish {shlex.quote(chan)} {shlex.quote(event)} {shlex.quote(data)}"
        started = time.monotonic()
        result = node.host.run(cmd)
        took = time.monotonic() - started
        return result.rc, (result.stdout + result.stderr).strip(), took

    def fill(self, node: Node, address: str) -> str:
        return address.replace("ADDR", node.address)

    def processes(self, node: Node) -> list[tuple[str, str, str]]:
        """(user, pid, command) of the service's processes on `node`: every process of its
        container or pod (including the check's own, which runs as the image's user)."""
        rows = node.host.check_output("ps -eo euid=,pid=,comm=").splitlines()
        return [tuple(line.split(None, 2)) for line in rows if line.strip()]

    def account_problems(self, node: Node) -> list[str]:
        """What is wrong with the account the role runs as, beyond its uid (checked apart)."""
        return []

    def listening(self, node: Node) -> set[str]:
        return set(listening_units(node.host))

    def published_ports(self) -> list[tuple[str, str, str, str]] | None:
        """(service, port, host address, host port) of every port the deployment publishes
        on this machine, where the target knows them (compose); None elsewhere."""
        return None

    def edge_addresses(self, node: Node) -> list[str]:
        """The addresses of a Pushpin node an nginx node might try its control ports on."""
        return [node.address] if node.address else []


# -- compose -------------------------------------------------------------------------------


def _docker(*args: str) -> str:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise TargetError(f"docker {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


class ComposeTarget(Target):
    """A compose project started by `make up` (PROJECT) on this machine: its containers over
    `docker exec`, its origin on the published nginx port."""

    kind = "compose"
    users = IMAGE_USERS
    listeners = {
        "app": {"0.0.0.0:8000", "ADDR:9808"},
        "ticker": {"ADDR:9809"},
        "pushpin": PUSHPIN_LISTENERS,
        "nginx": {"0.0.0.0:8080", "[::]:8080"},
    }
    config_files = [
        *PUSHPIN_CONFIG,
        *_files("pushpin", PUSHPIN_KIT_DIR, ["run-pushpin"], "pushpin"),
        *NGINX_CONFIG,
        ConfigFile("nginx", "/etc/nginx/kit/upstreams.conf", "nginx/upstreams/compose.conf"),
    ]

    def __init__(self, project: str):
        if not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", project):
            raise TargetError(f"PROJECT={project!r} is not a compose project name")
        self.project = project
        self.name = f"compose project {project}"
        self._nodes: dict[str, list[Node]] | None = None

    def _inspect(self) -> list[dict]:
        ids = _docker(
            "ps", "--all", "--quiet",
            "--filter", f"label=com.docker.compose.project={self.project}",
            "--filter", "label=com.docker.compose.oneoff=False",
        ).split()  # fmt: skip
        if not ids:
            raise TargetError(f"no containers of compose project {self.project}: make up first")
        return json.loads(_docker("inspect", *ids))

    def _load(self) -> dict[str, list[Node]]:
        if self._nodes is None:
            found: dict[str, list[Node]] = {role: [] for role in ROLES}
            self._containers = {}
            for info in self._inspect():
                role = info["Config"]["Labels"].get("com.docker.compose.service")
                name = info["Name"].lstrip("/")
                self._containers[name] = info
                if role not in found:
                    continue
                networks = info["NetworkSettings"]["Networks"]
                control = networks.get(f"{self.project}_control", {}).get("IPAddress", "")
                state = info["State"]
                found[role].append(
                    Node(
                        name=name,
                        role=role,
                        backend=f"docker://{name}",
                        running=state["Status"] == "running",
                        state=state["Status"],
                        address=control,
                    )
                )
            for nodes in found.values():
                nodes.sort(key=lambda n: n.name)
            self._nodes = found
        return self._nodes

    def nodes(self, role: str) -> list[Node]:
        return self._load()[role]

    def preflight(self) -> None:
        self._load()

    def network_address(self, node: Node, network: str) -> str:
        networks = self._containers[node.name]["NetworkSettings"]["Networks"]
        return networks.get(f"{self.project}_{network}", {}).get("IPAddress", "")

    def edge_addresses(self, node: Node) -> list[str]:
        # The address on the network nginx shares with it. (Its publish address is on
        # `control`, which nginx has no route into: a try would leave through the edge
        # network's gateway, so it is never made; nginx's networks are checked instead.)
        address = self.network_address(node, "streams")
        return [address] if address else []

    def published_ports(self) -> list[tuple[str, str, str, str]]:
        self._load()
        found = []
        for _, info in sorted(self._containers.items()):
            service = info["Config"]["Labels"]["com.docker.compose.service"]
            for port, bindings in sorted((info["NetworkSettings"]["Ports"] or {}).items()):
                for binding in bindings or []:
                    found.append((service, port, binding["HostIp"], binding["HostPort"]))
        return found

    def origin(self) -> tuple[str, int]:
        for node in self.nodes("nginx"):
            ports = self._containers[node.name]["NetworkSettings"]["Ports"] or {}
            for binding in ports.get("8080/tcp") or []:
                return binding["HostIp"] or "127.0.0.1", int(binding["HostPort"])
        raise TargetError(f"{self.name}: nginx publishes no port 8080 (is it running?)")

    @contextlib.contextmanager
    def node_stream_endpoint(self, node: Node) -> Iterator[tuple[str, int]]:
        # The streams network is internal but this machine has an address on it.
        address = self.network_address(node, "streams")
        if not address:
            raise AssertionError(f"{node.name}: no address on the streams network ({node.state})")
        yield address, STREAM_PORT


# -- Ansible -------------------------------------------------------------------------------


def listening_units(host) -> dict[str, tuple[str, int]]:
    """{address: (systemd unit that opened it, owner uid)} of a host's listening TCP sockets
    (ss -e: each socket's cgroup and uid)."""
    found = {}
    for line in host.check_output("ss -ltneH").splitlines():
        if not line.strip() or line.split()[3].startswith(DOCKER_DNS):
            continue
        unit = re.search(r"cgroup:\S*/([^/\s]+)", line)
        uid = re.search(r"uid:(\d+)", line)
        found[line.split()[3]] = (
            unit.group(1) if unit else "no unit",
            int(uid.group(1)) if uid else 0,
        )
    return found


# The shells of accounts nobody logs in as.
NO_LOGIN_SHELLS = {"/usr/sbin/nologin", "/sbin/nologin", "/bin/false", "/usr/bin/false"}


def ansible_options(args: str) -> dict[str, str]:
    """ANSIBLE_ARGS (as `make deploy` takes them) as the environment ansible-inventory and the
    testinfra ansible backend read: vault, user, key and SSH options. --check/--diff are
    accepted and mean nothing here (verify changes nothing anyway)."""
    env: dict[str, str] = {}
    words = shlex.split(args)
    takes = {
        "--vault-password-file": "ANSIBLE_VAULT_PASSWORD_FILE",
        "--vault-id": "ANSIBLE_VAULT_IDENTITY_LIST",
        "-u": "ANSIBLE_REMOTE_USER",
        "--user": "ANSIBLE_REMOTE_USER",
        "--private-key": "ANSIBLE_PRIVATE_KEY_FILE",
        "--key-file": "ANSIBLE_PRIVATE_KEY_FILE",
        "--ssh-common-args": "ANSIBLE_SSH_COMMON_ARGS",
        "--ssh-extra-args": "ANSIBLE_SSH_EXTRA_ARGS",
        "--become-user": "ANSIBLE_BECOME_USER",
    }
    flags = {"-b": ("ANSIBLE_BECOME", "true"), "--become": ("ANSIBLE_BECOME", "true")}
    ignored = {"--check", "-C", "--diff", "-D", "-v", "-vv", "-vvv"}
    i = 0
    while i < len(words):
        word = words[i]
        name, eq, value = word.partition("=")
        if name in takes:
            if not eq:
                i += 1
                if i == len(words):
                    raise TargetError(f"ANSIBLE_ARGS: {word} needs a value")
                value = words[i]
            env[takes[name]] = value
        elif word in flags:
            key, value = flags[word]
            env[key] = value
        elif word in ignored:
            pass
        elif word in ("--ask-vault-pass", "-J", "--ask-vault-password"):
            raise TargetError(
                "ANSIBLE_ARGS: verify cannot prompt for the vault password; "
                "use --vault-password-file FILE"
            )
        else:
            raise TargetError(f"ANSIBLE_ARGS: {word!r} is not an option verify can pass on")
        i += 1
    return env


def ansible_tool(name: str) -> str:
    """An Ansible command from the virtualenv running the suite, else from PATH (testinfra's
    ansible backend calls them by name: the virtualenv's bin/ goes on PATH too)."""
    here = Path(sys.executable).parent
    if (here / name).exists() and str(here) not in os.environ.get("PATH", "").split(":"):
        os.environ["PATH"] = f"{here}:{os.environ.get('PATH', '')}"
    return str(here / name) if (here / name).exists() else name


def inventory_path(inventory: str) -> Path:
    """INVENTORY as `make deploy` takes it: an environment under ansible/inventories, or a path."""
    candidate = INVENTORIES / inventory
    if "/" not in inventory and candidate.is_dir():
        return candidate
    path = Path(inventory)
    if path.exists():
        return path.resolve()
    names = " ".join(sorted(p.name for p in INVENTORIES.iterdir() if p.is_dir()))
    raise TargetError(f"INVENTORY={inventory}: no such inventory (one of: {names}, or a path)")


class AnsibleTarget(Target):
    """The hosts of an Ansible inventory by its groups (app, pushpin, nginx), over testinfra's
    ansible backend (the inventory's connection: SSH in production)."""

    kind = "ansible"
    users = {"app": "app", "ticker": "app", "pushpin": "pushpin", "nginx": "nginx"}
    # (systemd unit of each role, as the roles install them)
    units = {
        "app": "app.service",
        "ticker": "ticker.service",
        "pushpin": "pushpin.service",
        "nginx": "nginx.service",
    }
    listeners = {
        "app": {"ADDR:8000", "ADDR:9808", "ADDR:9809 (ticker.service)"},
        "pushpin": PUSHPIN_LISTENERS,
        "nginx": {"0.0.0.0:8080", "[::]:8080", "ADDR:9113 (prometheus-nginx-exporter.service)"},
    }
    commands = {
        "app": {"gunicorn"},
        "ticker": {"python"},
        "pushpin": {"pushpin", "condure", "zurl", "pushpin-proxy", "pushpin-handler"},
        "nginx": {"nginx"},
    }
    config_files = [
        *PUSHPIN_CONFIG,
        *_files(
            "pushpin",
            PUSHPIN_KIT_DIR,
            ["run-pushpin", "render-config", "healthcheck", "declared"],
            "pushpin",
        ),
        *NGINX_CONFIG,
    ]
    manage = "rtdash-manage"
    # The group each role's hosts are in (the ticker runs on the app hosts).
    groups = {"app": "app", "ticker": "app", "pushpin": "pushpin", "nginx": "nginx"}

    def __init__(self, inventory: str, ansible_args: str = "", origin: str = ""):
        self.inventory = inventory_path(inventory)
        self.env = ansible_options(ansible_args)
        self.name = f"Ansible inventory {inventory}"
        self._origin = origin
        self._inventory: dict | None = None

    def inventory_data(self) -> dict:
        if self._inventory is None:
            result = subprocess.run(
                [ansible_tool("ansible-inventory"), "-i", str(self.inventory), "--list"],
                capture_output=True,
                text=True,
                timeout=120,
                env={**os.environ, **self.env},
            )
            if result.returncode != 0:
                raise TargetError(f"ansible-inventory -i {self.inventory}: {result.stderr}")
            self._inventory = json.loads(result.stdout)
            os.environ.update(self.env)  # for the testinfra backend's own ansible calls
        return self._inventory

    def preflight(self) -> None:
        self.inventory_data()

    def group_hosts(self, group: str) -> list[str]:
        data = self.inventory_data()
        return sorted(data.get(group, {}).get("hosts", []))

    def hostvars(self, name: str) -> dict:
        return self.inventory_data()["_meta"]["hostvars"].get(name, {})

    def nodes(self, role: str) -> list[Node]:
        hosts = self.group_hosts(self.groups[role])
        if not hosts:
            raise TargetError(f"{self.name}: group {self.groups[role]} has no hosts")
        nodes = []
        for name in hosts:
            node = Node(
                name=name,
                role=role,
                backend=f"ansible://{name}?ansible_inventory={self.inventory}",
                address=self.hostvars(name).get("rtdash_internal_address", ""),
            )
            unit = self.units[role]
            service = node.host.service(unit)
            # Running and enabled: a service that would not come back after a reboot fails.
            node.running = service.is_running and service.is_enabled
            node.state = (
                "running, enabled"
                if node.running
                else f"{unit} not running"
                if not service.is_running
                else f"{unit} running but not enabled (not started at boot)"
            )
            nodes.append(node)
        return nodes

    def account_problems(self, node: Node) -> list[str]:
        account = node.host.user(self.users[node.role])
        if not account.exists:
            return [f"user {account.name} does not exist"]
        if account.shell not in NO_LOGIN_SHELLS:
            return [f"user {account.name} can log in (shell {account.shell})"]
        return []

    def listening(self, node: Node) -> set[str]:
        """Listening sockets, each naming the unit that opened it when that is not the role's
        own."""
        own = self.units[node.role]
        return {
            address if unit == own else f"{address} ({unit})"
            for address, (unit, _) in listening_units(node.host).items()
        }

    def processes(self, node: Node) -> list[tuple[str, str, str]]:
        """(user, pid, command) of every process systemd counts in the role's unit."""
        unit = self.units[node.role]
        rows = node.host.check_output("ps -eo unit:40=,euser:32=,pid=,comm=").splitlines()
        split = (line.split(None, 3) for line in rows if line.strip())
        return [(user, pid, comm) for u, user, pid, comm in split if u == unit]

    def origin(self) -> tuple[str, int]:
        if self._origin:
            host, _, port = self._origin.rpartition(":")
            return host, int(port)
        name = self.group_hosts("nginx")[0]
        hostvars = self.hostvars(name)
        address = hostvars.get("ansible_host") or hostvars.get("rtdash_internal_address") or name
        return address, int(hostvars.get("nginx_http_port", 8080))

    @contextlib.contextmanager
    def node_stream_endpoint(self, node: Node) -> Iterator[tuple[str, int]]:
        """Only the nginx hosts may reach a node's stream port: an SSH forward through one
        (the inventory's user, port and key), or, where the inventory does not connect over
        SSH (the test hosts: `docker exec`), a relay on it (a transient unit with a bounded
        lifetime); either is closed afterwards."""
        name = self.group_hosts("nginx")[0]
        hostvars = self.hostvars(name)
        address = node.address or node.name
        if hostvars.get("ansible_connection", "ssh") in ("ssh", "smart", "paramiko_ssh"):
            with ssh_forward(hostvars, name, address, STREAM_PORT) as port:
                yield "127.0.0.1", port
            return
        nginx = Node(name, "nginx", f"ansible://{name}?ansible_inventory={self.inventory}")
        listen = hostvars.get("rtdash_internal_address") or hostvars.get("ansible_host", name)
        with relay(nginx, listen, address, STREAM_PORT) as port:
            yield listen, port


# A relay lives at most this long (seconds), whatever happens to the run that started it.
RELAY_LIFETIME = 600


@contextlib.contextmanager
def relay(via: Node, listen: str, address: str, port: int) -> Iterator[int]:
    """A TCP relay on `via` (systemd-run, python3) from listen:<a free port> to address:port."""
    used = {line.split()[3].rsplit(":", 1)[-1] for line in via.host.check_output(
        "ss -ltnH").splitlines() if line.strip()}  # fmt: skip
    local = next(p for p in range(17500, 17600) if str(p) not in used)
    unit = f"rtdash-verify-relay-{local}"
    script = shlex.quote(RELAY_SCRIPT)
    started = via.host.run(
        f"systemd-run --unit={unit} --collect --quiet --service-type=exec "
        f"-p RuntimeMaxSec={RELAY_LIFETIME} python3 -c {script} {listen} {local}:{address}:{port}"
    )
    if started.rc != 0:
        raise AssertionError(f"{via.name}: the relay to {address}:{port} did not start: "
                             f"{started.stderr.strip()}")  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while not connects(listen, local, timeout=1):
            if time.monotonic() > deadline:
                raise AssertionError(f"{via.name}: relay {listen}:{local} not listening in 10 s")
            time.sleep(0.2)
        yield local
    finally:
        via.host.run(f"systemctl stop {unit}")


def connects(host: str, port: int, timeout: float = 2) -> bool:
    """Whether this machine's TCP connection to host:port is accepted."""
    with socket.socket() as sock:
        sock.settimeout(timeout)
        return sock.connect_ex((host, port)) == 0


def ssh_command(hostvars: dict, name: str) -> list[str]:
    cmd = ["ssh", "-o", "BatchMode=yes", "-o", "ExitOnForwardFailure=yes"]
    if hostvars.get("ansible_port"):
        cmd += ["-p", str(hostvars["ansible_port"])]
    key = hostvars.get("ansible_ssh_private_key_file") or os.environ.get("ANSIBLE_PRIVATE_KEY_FILE")
    if key:
        cmd += ["-i", str(key)]
    extra = hostvars.get("ansible_ssh_common_args") or os.environ.get("ANSIBLE_SSH_COMMON_ARGS")
    if extra:
        cmd += shlex.split(extra)
    user = hostvars.get("ansible_user") or os.environ.get("ANSIBLE_REMOTE_USER")
    address = hostvars.get("ansible_host", name)
    return [*cmd, f"{user}@{address}" if user else address]


def stop(process: subprocess.Popen) -> None:
    """End a forward this suite started (by its own handle), and reap it."""
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


def wait_listening(port: int, process: subprocess.Popen, what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{what} exited {process.returncode}: {process.stderr.read()}")
        if connects("127.0.0.1", port, timeout=1):
            return
        time.sleep(0.2)
    raise AssertionError(f"{what}: 127.0.0.1:{port} not listening after {timeout}s")


@contextlib.contextmanager
def ssh_forward(hostvars: dict, name: str, address: str, port: int) -> Iterator[int]:
    local = free_port()
    cmd = ssh_command(hostvars, name)
    cmd[1:1] = ["-N", "-L", f"127.0.0.1:{local}:{address}:{port}"]
    process = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    try:
        wait_listening(local, process, f"ssh forward through {name} to {address}:{port}")
        yield local
    finally:
        stop(process)


# -- Kubernetes ----------------------------------------------------------------------------


class KubernetesTarget(Target):
    """The pods of a namespace in kubectl's current context (testinfra's kubectl backend),
    selected by app.kubernetes.io/name; the origin and each Pushpin pod through port-forwards
    opened and closed here (or the origin as given, e.g. the Ingress's address)."""

    kind = "k8s"
    users = IMAGE_USERS
    listeners = {
        "app": {"0.0.0.0:8000", "0.0.0.0:9808"},
        "ticker": {"0.0.0.0:9809"},
        "pushpin": PUSHPIN_LISTENERS,
        "nginx": {"0.0.0.0:8080", "[::]:8080", "0.0.0.0:9113"},
    }
    config_files = [
        *PUSHPIN_CONFIG,
        *NGINX_CONFIG,
        ConfigFile("nginx", "/etc/nginx/kit/upstreams.conf", "nginx/upstreams/kubernetes.conf"),
    ]

    def __init__(self, namespace: str, kubectl: str = "kubectl", origin: str = ""):
        if not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", namespace):
            raise TargetError(f"K8S_NAMESPACE={namespace!r} is not a namespace name")
        self.namespace, self.kubectl = namespace, kubectl
        self.name = f"Kubernetes namespace {namespace}"
        self._origin = origin
        self._forward: tuple[subprocess.Popen, int] | None = None

    def _pods(self, role: str) -> list[dict]:
        result = subprocess.run(
            [self.kubectl, "-n", self.namespace, "get", "pods", "-o", "json",
             "-l", f"app.kubernetes.io/name={role}"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        if result.returncode != 0:
            raise TargetError(f"kubectl get pods -n {self.namespace}: {result.stderr.strip()}")
        return json.loads(result.stdout)["items"]

    def nodes(self, role: str) -> list[Node]:
        nodes = []
        for pod in self._pods(role):
            name, phase = pod["metadata"]["name"], pod["status"].get("phase", "?")
            nodes.append(
                Node(
                    name=name,
                    role=role,
                    backend=f"kubectl://{name}?container={role}&namespace={self.namespace}",
                    running=phase == "Running",
                    state=phase,
                    address=pod["status"].get("podIP", ""),
                )
            )
        return sorted(nodes, key=lambda n: n.name)

    def preflight(self) -> None:
        if not self._pods("app") and not self._pods("pushpin"):
            raise TargetError(f"{self.name}: no app or pushpin pods (kubectl's current context)")

    def port_forward(self, resource: str, port: int) -> tuple[subprocess.Popen, int]:
        local = free_port()
        process = subprocess.Popen(
            [self.kubectl, "-n", self.namespace, "port-forward", "--address", "127.0.0.1",
             resource, f"{local}:{port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        wait_listening(local, process, f"kubectl port-forward {resource} {port}")
        return process, local

    def origin(self) -> tuple[str, int]:
        if self._origin:
            host, _, port = self._origin.rpartition(":")
            return host, int(port)
        if self._forward is None:
            self._forward = self.port_forward("service/nginx", 8080)
        return "127.0.0.1", self._forward[1]

    def close(self) -> None:
        if self._forward is not None:
            stop(self._forward[0])
            self._forward = None

    @contextlib.contextmanager
    def node_stream_endpoint(self, node: Node) -> Iterator[tuple[str, int]]:
        process, local = self.port_forward(f"pod/{node.name}", STREAM_PORT)
        try:
            yield "127.0.0.1", local
        finally:
            stop(process)


# -- choosing one ----------------------------------------------------------------------------


def parse_target(
    project: str = "",
    inventory: str = "",
    namespace: str = "",
    ansible_args: str = "",
    origin: str = "",
    kubectl: str = "kubectl",
) -> Target:
    """The one target make verify's variables name: INVENTORY, K8S_NAMESPACE, else PROJECT."""
    if inventory and namespace:
        raise TargetError("set INVENTORY or K8S_NAMESPACE, not both")
    if ansible_args and not inventory:
        raise TargetError("ANSIBLE_ARGS is for an Ansible inventory: set INVENTORY too")
    if inventory:
        return AnsibleTarget(inventory, ansible_args, origin=origin)
    if namespace:
        return KubernetesTarget(namespace, kubectl=kubectl, origin=origin)
    if origin:
        raise TargetError("ORIGIN is for INVENTORY or K8S_NAMESPACE; compose publishes its own")
    return ComposeTarget(project or "rtdash")
