"""Drive a compose stack of the kit the way a user does (`make up` / `make down`), under its own
project name, env file and port so it never touches the user's own stack."""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import docker

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "compose" / "compose.yaml"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stable_port() -> int:
    """A free port below the kernel's ephemeral range, for a port that must still be free when
    a container restarts: in that range any client socket (or Docker's own dynamic
    publishing) may take it in between."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    candidates = range(max(1025, low - 12000), low)
    for port in random.sample(candidates, min(200, len(candidates))):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError(f"no free port found below the ephemeral range ({low})")


def run(cmd: list[str], env: dict | None = None, timeout: float = 900, check: bool = True, **kw):
    result = subprocess.run(
        cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, **kw
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} exited {result.returncode}\n--- stdout\n{result.stdout[-4000:]}"
            f"\n--- stderr\n{result.stderr[-4000:]}"
        )
    return result


def make_here(*args: str, env: dict | None = None, timeout: float = 900, check: bool = True):
    """`make ARGS` with the virtualenv running these tests as the Makefile's VENV, taken as
    installed (`make test` installed it): a checkout without a .venv of its own does not
    build one."""
    venv = Path(sys.executable).parents[1]
    cmd = ["make", "-s", "-o", f"{venv}/.installed", f"VENV={venv}", *args]
    return run(cmd, env=env, timeout=timeout, check=check)


@dataclass
class ComposeStack:
    project: str
    env_file: Path
    http_port: int
    control_subnet: str
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        # The stack's settings are its env file and extra_env, never this process's.
        inherited = {
            k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PUSHPIN_", "KIT_"))
        }
        return {
            **inherited,
            "KIT_HTTP_PORT": str(self.http_port),
            "KIT_CONTROL_SUBNET": self.control_subnet,
            "KIT_STREAMS_SUBNET": streams_subnet(self.control_subnet),
            **self.extra_env,
        }

    def make(self, target: str, *args: str, timeout: float = 900, check: bool = True):
        return run(
            ["make", target, f"PROJECT={self.project}", f"ENV_FILE={self.env_file}", *args],
            env=self.env,
            timeout=timeout,
            check=check,
        )

    def verify(self, *args: str, timeout: float = 300):
        """`make verify` against this stack (not checked: the caller reads its outcome)."""
        return make_here(
            "verify", f"PROJECT={self.project}", f"ENV_FILE={self.env_file}", *args,
            env=self.env, timeout=timeout, check=False,
        )  # fmt: skip

    def compose(self, *args: str, check: bool = True, timeout: float = 300):
        cmd = ["docker", "compose", "-f", str(COMPOSE_FILE), "-p", self.project]
        cmd += ["--env-file", str(self.env_file), *args]
        return run(cmd, env=self.env, check=check, timeout=timeout)

    def run_docker(self, *args: str, check: bool = True, timeout: float = 120):
        return run(["docker", *args], check=check, timeout=timeout)

    def destroy(self) -> None:
        self.compose("down", "--volumes", "--remove-orphans", "--timeout", "5", check=False)

    # -- what is running ------------------------------------------------------------------

    def containers(self, service: str | None = None, all: bool = False):
        # One-off containers (`compose run`) are not the service's own.
        labels = [f"com.docker.compose.project={self.project}", "com.docker.compose.oneoff=False"]
        if service:
            labels.append(f"com.docker.compose.service={service}")
        found = docker.from_env().containers.list(all=all, filters={"label": labels})
        return sorted(found, key=lambda c: c.name)

    def container(self, service: str):
        (found,) = [c for c in self.containers(service) if c.status == "running"][:1] or [None]
        if found is None:
            raise AssertionError(f"no running container for service {service} in {self.project}")
        return found

    def address(self, container, network: str) -> str:
        container.reload()
        return container.attrs["NetworkSettings"]["Networks"][f"{self.project}_{network}"][
            "IPAddress"
        ]

    def pushpin_nodes(self) -> list[str]:
        """Each running Pushpin node's address on the streams network (reachable from here)."""
        return [
            self.address(c, "streams") for c in self.containers("pushpin") if c.status == "running"
        ]

    def secrets(self) -> dict[str, str]:
        lines = self.env_file.read_text().splitlines()
        return dict(
            line.split("=", 1) for line in lines if "=" in line and not line.startswith("#")
        )

    # -- acting on it ---------------------------------------------------------------------

    def manage(self, *args: str, service: str = "app", timeout: float = 60):
        """`python manage.py ARGS` inside a running container of `service`."""
        cmd = ["docker", "exec", self.container(service).name, "python", "manage.py", *args]
        return run(cmd, check=False, timeout=timeout)

    def publish(self, channel: str, event: str, data: str):
        result = self.manage("publish", channel, event, data)
        if result.returncode != 0:
            raise AssertionError(f"publish failed ({result.returncode}): {result.stderr.strip()}")
        return result

    def wait_healthy(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = self.health()
            if states and all(s in ("healthy", "exited(0)") for s in states.values()):
                return
            time.sleep(1)
        raise AssertionError(f"stack {self.project} not healthy after {timeout}s: {self.health()}")

    def health(self) -> dict[str, str]:
        out = {}
        for c in self.containers(all=True):
            state = c.attrs["State"]
            if state["Status"] == "exited":
                out[c.name] = f"exited({state['ExitCode']})"
            else:
                out[c.name] = state.get("Health", {}).get("Status", state["Status"])
        return out


def one_off(client, image: str, command: list[str], network: str, timeout: float = 120):
    """Run a command in a fresh container on one of a stack's networks (a client the test
    places there); returns (exit status, output), the container removed."""
    container = client.containers.run(
        image, command, network=network, detach=True, labels={"rtdash.test": "one-off"}
    )
    try:
        status = container.wait(timeout=timeout)["StatusCode"]
        return status, container.logs(stdout=True, stderr=True).decode(errors="replace")
    finally:
        container.remove(force=True)


def streams_subnet(control_subnet: str) -> str:
    """A test stack's streams network, next to its control network: 172.31.62.0/24 gives
    172.31.162.0/24 (each stack passes its own control subnet)."""
    octets = control_subnet.split(".")
    return ".".join([octets[0], octets[1], str(int(octets[2]) + 100), octets[3]])


def new_stack(tmp: Path, name: str, subnet: str, **extra_env: str) -> ComposeStack:
    return ComposeStack(
        project=name,
        env_file=tmp / f"{name}.env",
        http_port=free_port(),
        control_subnet=subnet,
        extra_env=extra_env,
    )


def dump(obj) -> str:
    return json.dumps(obj, indent=2, default=str)
