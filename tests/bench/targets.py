"""What the benchmark measures, side by side on one machine:

  kit     the kit's chain: nginx -> the Pushpin cluster (2 nodes) -> app (GRIP)
  direct  straight to one of the kit's Pushpin nodes (what nginx adds is the difference)
  stock   one Pushpin node with the Debian package's stock settings (message_rate=2500,
          message_hwm=25000), only made able to reach the app
  asgi    django-eventstream served by Django itself under uvicorn, no Pushpin
  app     the app alone, asked as a Pushpin node asks it (a signed Grip-Sig): it answers with
          the hold instruction at once (only the new-streams scenario uses it)

All run from this checkout's images in a compose project of their own (`rtdash-bench`).
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import docker
import jwt
import requests

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parents[1]
PROJECT = "rtdash-bench"
SUBNET = "172.31.66.0/24"
STREAMS_SUBNET = "172.31.166.0/24"
HOST = "127.0.0.1:8080"  # the origin the clients believe they talk to (Host header)


def run(cmd, env=None, check=True, timeout=900):
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode:
        raise RuntimeError(
            f"{' '.join(cmd)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
        )
    return result


@dataclass
class Target:
    name: str
    host: str
    port: int
    container: str  # the container whose log shows requests reaching Django
    publish: callable  # (channel, rate, count) -> summary dict
    headers: dict = field(default_factory=dict)

    def spec(self, channel: str) -> dict:
        return {
            "host": self.host,
            "port": self.port,
            "path": f"/events/?channel={channel}",
            "headers": {"Host": HOST, "Accept": "text/event-stream", **self.headers},
        }


class BenchStack:
    """The kit's compose stack plus the comparison servers, torn down on exit."""

    def __init__(self, env_file: Path):
        self.env_file = env_file
        self.client = docker.from_env()
        self.env = {
            **{
                k: v
                for k, v in os.environ.items()
                if not k.startswith(("DJANGO_", "PUSHPIN_", "KIT_"))
            },
            "KIT_HTTP_PORT": "18090",
            "KIT_CONTROL_SUBNET": SUBNET,
            "KIT_STREAMS_SUBNET": STREAMS_SUBNET,
        }
        self.extra: list = []

    def compose(self, *args, check=True):
        cmd = [
            "docker",
            "compose",
            "-f",
            "compose/compose.yaml",
            "-f",
            "tests/bench/compose.bench.yaml",
        ]
        return run(
            [*cmd, "-p", PROJECT, "--env-file", str(self.env_file), *args],
            env=self.env,
            check=check,
        )

    def up(self) -> None:
        run(["compose/generate-secrets.sh", str(self.env_file)])
        self.down()
        self.compose("up", "--build", "--detach", "--wait")
        self._start_stock_pushpin()
        self._start_asgi()

    def down(self) -> None:
        for container in self.extra:
            container.remove(force=True)
        self.extra.clear()
        for leftover in self.client.containers.list(all=True, filters={"label": "rtdash.bench"}):
            leftover.remove(force=True)
        self.compose("down", "--volumes", "--remove-orphans", "--timeout", "5", check=False)

    def container(self, service: str, index: int = 1):
        return self.client.containers.get(f"{PROJECT}-{service}-{index}")

    def address(self, container, network: str) -> str:
        container.reload()
        return container.attrs["NetworkSettings"]["Networks"][f"{PROJECT}_{network}"]["IPAddress"]

    def secrets(self) -> dict:
        pairs = [
            line.split("=", 1) for line in self.env_file.read_text().splitlines() if "=" in line
        ]
        return dict(pairs)

    def _run_extra(self, name, image, networks, **kwargs):
        first, *rest = networks
        container = self.client.containers.create(
            image, name=f"{PROJECT}-{name}", network=f"{PROJECT}_{first}",
            labels={"rtdash.bench": name}, **kwargs,
        )  # fmt: skip
        self.extra.append(container)
        # Every network before the start: run-pushpin binds to its address on `control`.
        for network in rest:
            self.client.networks.get(f"{PROJECT}_{network}").connect(container)
        container.start()
        return container

    def _start_stock_pushpin(self) -> None:
        # The kit's image and run-pushpin, with the packaged limits instead of the kit's.
        conf = (REPO / "pushpin" / "pushpin.conf").read_text()
        stock = conf.replace("message_rate=0", "message_rate=2500").replace(
            "message_hwm=0", "message_hwm=25000"
        )
        assert stock != conf, "pushpin.conf no longer sets message_rate/message_hwm"
        path = BENCH / "results" / "pushpin-stock.conf"
        path.parent.mkdir(exist_ok=True)
        path.write_text(stock)
        self.stock = self._run_extra(
            "pushpin-stock",
            "rtdash/pushpin:latest",
            ["streams", "control"],
            environment={
                "PUSHPIN_SIG_KEY": self.secrets()["PUSHPIN_SIG_KEY"],
                "PUSHPIN_CONTROL_ADDR": SUBNET,
                "PUSHPIN_APP_TARGETS": "app:8000",
            },
            volumes={str(path): {"bind": "/etc/pushpin/pushpin.conf", "mode": "ro"}},
            read_only=True,
            tmpfs={"/run/pushpin": "uid=10002,gid=10002,mode=0750", "/tmp": ""},
            ulimits=[docker.types.Ulimit(name="nofile", soft=20000, hard=20000)],
        )

    def _start_asgi(self) -> None:
        run(["docker", "build", "-q", "-t", "rtdash/bench-asgi", str(BENCH / "asgi")])
        secrets = self.secrets()
        self.asgi = self._run_extra(
            "asgi",
            "rtdash/bench-asgi",
            ["streams"],
            environment={
                "DJANGO_SECRET_KEY": secrets["DJANGO_SECRET_KEY"],
                "PUSHPIN_SIG_KEY": secrets["PUSHPIN_SIG_KEY"],
                "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
                "DJANGO_DATA_DIR": "/srv/app/data",
            },
            volumes={f"{PROJECT}_appdata": {"bind": "/srv/app/data", "mode": "rw"}},
            ulimits=[docker.types.Ulimit(name="nofile", soft=20000, hard=20000)],
        )

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        checks = {
            "stock pushpin": lambda: self._healthy(self.stock),
            "asgi": lambda: self._answers(
                f"http://{self.address(self.asgi, 'streams')}:8000/bench/health"
            ),
            "the app's view of the Pushpin nodes": lambda: len(self.app_resolves()) == 2,
        }
        for what, check in checks.items():
            while not check():
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{what} not ready after {timeout}s")
                time.sleep(0.5)

    def wait_ready_kit(self, timeout: float = 90) -> None:
        """After a scenario killed a node: every kit container healthy again."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            kit = self.client.containers.list(
                all=True, filters={"label": f"com.docker.compose.project={PROJECT}"}
            )
            pending = [c.name for c in kit if "migrate" not in c.name and not self._healthy(c)]
            if not pending:
                return
            time.sleep(1)
        raise RuntimeError(f"kit containers not healthy after {timeout}s: {pending}")

    def app_resolves(self) -> set[str]:
        """The Pushpin node addresses the app's publisher finds (`pushpin` in its DNS)."""
        out = run(["docker", "exec", f"{PROJECT}-app-1", "getent", "ahosts", "pushpin"]).stdout
        return {line.split()[0] for line in out.splitlines() if line.strip()}

    @staticmethod
    def _healthy(container) -> bool:
        container.reload()
        return container.attrs["State"].get("Health", {}).get("Status") == "healthy"

    @staticmethod
    def _answers(url: str) -> bool:
        try:
            return requests.get(url, timeout=2).status_code == 200
        except requests.RequestException:
            return False

    # -- publishing ---------------------------------------------------------------------------

    def probe_publish(self, channel, rate, count, control_urls=None) -> dict:
        """`manage.py probe_publish` in the app container: stored, then sent to every node."""
        cmd = ["docker", "exec"]
        if control_urls:
            cmd += ["-e", f"PUSHPIN_CONTROL_URLS={control_urls}"]
        cmd += [f"{PROJECT}-app-1", "python", "manage.py", "probe_publish", channel]
        cmd += ["--rate", str(rate), "--count", str(count)]
        out = run(cmd, timeout=count / rate + 120).stdout
        return json.loads(out.strip().splitlines()[-1])

    def probe_publish_background(self, channel, rate, count):
        """probe_publish on a thread of its own: the returned future has its summary."""
        from concurrent.futures import ThreadPoolExecutor

        pool = ThreadPoolExecutor(max_workers=1)
        future = pool.submit(self.probe_publish, channel, rate, count)
        pool.shutdown(wait=False)
        return future

    def asgi_publish(self, channel, rate, count) -> dict:
        url = f"http://{self.address(self.asgi, 'streams')}:8000/bench/publish"
        params = {"channel": channel, "rate": rate, "count": count}
        return requests.get(url, params=params, timeout=count / rate + 120).json()

    def targets(self) -> dict[str, Target]:
        nginx = self.container("nginx")
        node = self.container("pushpin", 1)
        app = self.container("app")
        stock_control = f"http://{self.address(self.stock, 'control')}:5561"
        return {
            "kit": Target(
                "kit", self.address(nginx, "edge"), 8080, f"{PROJECT}-app-1", self.probe_publish
            ),
            "direct": Target(
                "direct",
                self.address(node, "streams"),
                7999,
                f"{PROJECT}-app-1",
                self.probe_publish,
            ),
            "stock": Target(
                "stock",
                self.address(self.stock, "streams"),
                7999,
                f"{PROJECT}-app-1",
                lambda c, r, n: self.probe_publish(c, r, n, control_urls=stock_control),
            ),
            "asgi": Target(
                "asgi", self.address(self.asgi, "streams"), 8000, self.asgi.name, self.asgi_publish
            ),
            "app": Target(
                "app",
                self.address(app, "streams"),
                8000,
                app.name,
                self.probe_publish,
                headers={"Grip-Sig": self.grip_sig()},
            ),
        }

    def grip_sig(self) -> str:
        """A Grip-Sig as a Pushpin node of this stack signs it (valid for the run)."""
        claims = {"iss": "pushpin", "exp": int(time.time()) + 6 * 3600}
        return jwt.encode(claims, self.secrets()["PUSHPIN_SIG_KEY"], algorithm="HS256")

    # -- observing ----------------------------------------------------------------------------

    def rss_bytes(self, container) -> int:
        """Resident memory of a container (cgroup v1 `rss`, or v2 `anon`)."""
        for path, key in (
            (f"/sys/fs/cgroup/memory/docker/{container.id}/memory.stat", "rss"),
            (f"/sys/fs/cgroup/system.slice/docker-{container.id}.scope/memory.stat", "anon"),
        ):
            if os.path.exists(path):
                for line in open(path):
                    name, value = line.split()
                    if name == key:
                        return int(value)
        raise RuntimeError(f"no memory statistics for {container.name}")

    def cpu_seconds(self, container) -> float:
        """CPU time a container has used (cgroup v1 cpuacct, or v2 cpu.stat)."""
        for path, scale in (
            (f"/sys/fs/cgroup/cpu,cpuacct/docker/{container.id}/cpuacct.usage", 1e-9),
            (f"/sys/fs/cgroup/cpuacct/docker/{container.id}/cpuacct.usage", 1e-9),
        ):
            if os.path.exists(path):
                return int(open(path).read()) * scale
        path = f"/sys/fs/cgroup/system.slice/docker-{container.id}.scope/cpu.stat"
        for line in open(path):
            name, value = line.split()
            if name == "usage_usec":
                return int(value) * 1e-6
        raise RuntimeError(f"no CPU statistics for {container.name}")

    def component_cpu(self) -> dict[str, float]:
        """CPU seconds used so far by each component of the kit: every Pushpin container (the
        comparison ones included), nginx, the app (and the asgi server), added up per kind."""
        found: dict[str, float] = {}
        for container in (
            self.client.containers.list(filters={"label": "com.docker.compose.project=" + PROJECT})
            + self.extra
        ):
            name = container.name
            kind = next((k for k in ("pushpin", "nginx", "asgi", "app") if k in name), None)
            if kind is None or "ticker" in name or "migrate" in name:
                continue
            found[kind] = found.get(kind, 0.0) + self.cpu_seconds(container)
        return found

    def kit_rss(self) -> dict[str, int]:
        names = [
            c.name
            for c in self.client.containers.list(
                filters={"label": f"com.docker.compose.project={PROJECT}"}
            )
        ]
        return {
            n: self.rss_bytes(self.client.containers.get(n))
            for n in names
            if any(kind in n for kind in ("pushpin", "nginx", "app-"))
        }

    def django_requests(self, container_name: str, since: float, until: float) -> int:
        """Requests for /events/ the app answered in [since, until): its access log lines."""
        logs = self.client.containers.get(container_name).logs(
            since=int(since), until=int(until) + 1, timestamps=True
        )
        count = 0
        for line in logs.decode(errors="replace").splitlines():
            stamp, _, text = line.partition(" ")
            # Docker stamps each line in UTC, RFC 3339 with up to 9 fractional digits.
            whole, _, fraction = stamp.rstrip("Z").partition(".")
            at = datetime.datetime.fromisoformat(whole).replace(tzinfo=datetime.UTC).timestamp()
            at += float(f"0.{fraction or 0}")
            count += since <= at < until and '"GET /events/' in text
        return count
