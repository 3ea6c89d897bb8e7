"""Real systemd hosts for the Ansible tests: containers with systemd as PID 1 (the way
ENVIRONMENT.md runs them, no --privileged), on a Docker network of their own, named and
addressed as ansible/inventories/test says. Plus helpers to run ansible-playbook like a user."""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import docker

from support.stack import REPO

# ansible-playbook, ansible-inventory: from the virtualenv running the tests.
ANSIBLE_BIN = Path(sys.executable).parent
ANSIBLE_DIR = REPO / "ansible"
TEST_INVENTORY = ANSIBLE_DIR / "inventories" / "test"
PLAYBOOK = ANSIBLE_DIR / "deploy.yml"
HOST_IMAGE = "rtdash-ansible/host:test"
HOST_DOCKERFILE_DIR = REPO / "tests" / "ansible"
NETWORK = "rtdash-ansible"
SUBNET = "172.31.90.0/24"
LABEL = {"rtdash.test": "ansible"}
# Secrets and settings of the machine running the tests must not leak into a deploy.
_CLEAN_ENV_PREFIXES = ("DJANGO_", "PUSHPIN_", "DATABASE_", "ANSIBLE_", "KIT_")
# Where a connection attempt starts: a host of the cluster, or this machine (the test runner,
# on NETWORK's gateway address, outside the inventory).
THIS_MACHINE = "this machine"

# One TCP connection attempt, run on a host: what came of it.
_CONNECT = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2).close()
    print("accepted")
except ConnectionRefusedError:
    print("refused")
except TimeoutError:
    print("no answer")
"""


@dataclass(frozen=True)
class TestHost:
    name: str  # inventory name = container name
    groups: tuple[str, ...]
    address: str  # rtdash_internal_address = the container's address on NETWORK


def inventory_hosts(inventory: Path = TEST_INVENTORY) -> list[TestHost]:
    """The hosts of an inventory, as ansible-inventory sees them (the one source of names,
    groups and addresses for the containers)."""
    cmd = [str(ANSIBLE_BIN / "ansible-inventory"), "-i", str(inventory), "--list"]
    out = run_ansible(cmd, env=clean_env())
    data = json.loads(out.stdout)
    hostvars = data["_meta"]["hostvars"]
    hosts = []
    for name in sorted(hostvars):
        groups = tuple(
            sorted(g for g, v in data.items() if g != "_meta" and name in v.get("hosts", []))
        )
        hosts.append(TestHost(name, groups, hostvars[name]["rtdash_internal_address"]))
    return hosts


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_CLEAN_ENV_PREFIXES)}
    # The same settings `make deploy` uses; no colours in the output the tests parse.
    env.update(ANSIBLE_CONFIG=str(ANSIBLE_DIR / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    env["PATH"] = f"{ANSIBLE_BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def new_secrets() -> dict[str, str]:
    return {
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(40),
        "PUSHPIN_SIG_KEY": secrets.token_urlsafe(24),
    }


def run_ansible(cmd: list[str], env: dict[str, str], timeout: float = 900, check: bool = True):
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} exited {result.returncode}\n--- stdout\n{result.stdout[-6000:]}"
            f"\n--- stderr\n{result.stderr[-3000:]}"
        )
    return result


def playbook(
    env: dict[str, str], *args: str, inventory: Path = TEST_INVENTORY, check: bool = True
) -> subprocess.CompletedProcess:
    """ansible-playbook -i INVENTORY ansible/deploy.yml ARGS, as the README shows it."""
    cmd = [str(ANSIBLE_BIN / "ansible-playbook"), "-i", str(inventory), str(PLAYBOOK), *args]
    return run_ansible(cmd, env=env, check=check)


RECAP = re.compile(
    r"^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M
)


def recap(output: str) -> dict[str, dict[str, int]]:
    """PLAY RECAP per host: {'host': {'ok': .., 'changed': .., 'unreachable': .., 'failed': ..}}"""
    found = {}
    for host, ok, changed, unreachable, failed in RECAP.findall(output):
        found[host] = {
            "ok": int(ok),
            "changed": int(changed),
            "unreachable": int(unreachable),
            "failed": int(failed),
        }
    return found


def changed_tasks(output: str) -> list[str]:
    """'task name -> host' for every task or handler result reported as changed."""
    task, found = "", []
    for line in output.splitlines():
        if line.startswith(("TASK [", "RUNNING HANDLER [")):
            task = line[line.index("[") + 1 : line.rfind("]")]
        elif line.startswith("changed: ["):
            found.append(f"{task} -> {line[10 : line.index(']')]}")
    return found


def stopped_before_any_host(result, *expected: str) -> None:
    out = result.stdout
    assert result.returncode != 0, f"deploy.yml went on: {out[-2000:]}"
    assert "deploy.yml stopped before touching any host" in out, out[-2000:]
    for text in expected:
        assert text in out, f"expected the failure to say {text!r}: {out[-2000:]}"
    # The check runs on the controller: no other play started, no task ran on a host.
    plays = re.findall(r"^PLAY \[(.*)\]", out, re.M)
    assert plays == ["Check the inventory and the secrets before touching any host"], plays
    touched = {host: s for host, s in recap(out).items() if s["ok"] or s["unreachable"]}
    assert not touched, f"hosts were contacted: {touched}"


class HostCluster:
    """The test inventory's hosts as running systemd containers."""

    def __init__(self, client: docker.DockerClient, hosts: list[TestHost]):
        self.client = client
        self.hosts = hosts

    def build_image(self) -> None:
        # Layers are cached: after the first build this takes a second.
        subprocess.run(
            ["docker", "build", "-q", "-t", HOST_IMAGE, str(HOST_DOCKERFILE_DIR)],
            check=True,
            capture_output=True,
            timeout=900,
        )

    def destroy(self) -> None:
        """Remove the containers and the network (also those of an interrupted run)."""
        names = {h.name for h in self.hosts}
        for container in self.client.containers.list(
            all=True, filters={"label": "rtdash.test=ansible"}
        ):
            container.remove(force=True)
        for name in names:
            try:
                self.client.containers.get(name).remove(force=True)
            except docker.errors.NotFound:
                pass
        for network in self.client.networks.list(names=[NETWORK]):
            network.remove()

    def start(self) -> None:
        network = self.client.networks.create(
            NETWORK,
            driver="bridge",
            ipam=docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=SUBNET)]),
            labels=LABEL,
        )
        for host in self.hosts:
            container = self.client.containers.create(
                HOST_IMAGE,
                name=host.name,
                hostname=host.name,
                labels=LABEL,
                # systemd as PID 1 without --privileged (ENVIRONMENT.md); NET_ADMIN for nftables.
                cap_add=["SYS_ADMIN", "NET_ADMIN"],
                security_opt=["seccomp=unconfined"],
                cgroupns="host",
                volumes={"/sys/fs/cgroup": {"bind": "/sys/fs/cgroup", "mode": "rw"}},
                tmpfs={"/run": "", "/run/lock": ""},
                # Only the test network, at the inventory's address (no default bridge).
                network=network.name,
                networking_config={
                    network.name: self.client.api.create_endpoint_config(ipv4_address=host.address)
                },
                detach=True,
            )
            container.start()
        for host in self.hosts:
            self.wait_booted(host.name)

    def wait_booted(self, name: str, timeout: float = 60) -> None:
        container = self.client.containers.get(name)
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            result = container.exec_run(["systemctl", "is-system-running"])
            state = result.output.decode().strip()
            if state in ("running", "degraded"):
                return
            time.sleep(0.5)
        raise AssertionError(f"{name}: systemd not up after {timeout}s (state {state!r})")

    def container(self, name: str):
        return self.client.containers.get(name)

    def by_group(self, group: str) -> list[TestHost]:
        return [h for h in self.hosts if group in h.groups]

    def exec(self, name: str, *cmd: str, timeout: float = 60) -> tuple[int, str]:
        """Run a command on a host (as root); returns (exit status, output)."""
        result = subprocess.run(
            ["docker", "exec", name, *cmd], capture_output=True, text=True, timeout=timeout
        )
        return result.returncode, result.stdout + result.stderr

    def connect(self, from_host: str, address: str, port: int) -> str:
        """One TCP connection from a host (or THIS_MACHINE) to address:port: "accepted",
        "refused" (nothing listens), or "no answer" (nothing within 2 s: a firewall dropped
        it)."""
        if from_host != THIS_MACHINE:
            status, out = self.exec(from_host, "python3", "-c", _CONNECT, address, str(port))
            return out.strip() if status == 0 else f"error: {out.strip()[-300:]}"
        try:
            socket.create_connection((address, port), timeout=2).close()
            return "accepted"
        except ConnectionRefusedError:
            return "refused"
        except TimeoutError:
            return "no answer"

    def connect_all(self, attempts: list[tuple[str, str, int]]) -> dict[tuple[str, str, int], str]:
        """connect() for every (from host, address, port), side by side (a dropped one takes
        its whole 2 s)."""
        with ThreadPoolExecutor(max_workers=16) as pool:
            return dict(zip(attempts, pool.map(lambda a: self.connect(*a), attempts), strict=True))
