"""Real Pushpin nodes for tests that need some outside a compose stack."""

from __future__ import annotations

import secrets
import time
from contextlib import contextmanager

import requests

from support.stack import stable_port


@contextmanager
def pushpin_nodes(client, image: str, count: int, fixed_ports: bool = False, **env: str):
    """Start `count` Pushpin containers; yield their publish URLs on 127.0.0.1 (on ports that
    are still free when a container restarts, with `fixed_ports`: Docker rebinds the same ones)."""
    containers = []
    try:
        for _ in range(count):
            containers.append(
                client.containers.run(
                    image,
                    detach=True,
                    environment={
                        "PUSHPIN_SIG_KEY": secrets.token_urlsafe(24),
                        "PUSHPIN_CONTROL_ADDR": "0.0.0.0",
                        **env,
                    },
                    ports={
                        "5561/tcp": ("127.0.0.1", stable_port() if fixed_ports else None),
                        # its Prometheus endpoint
                        "9810/tcp": ("127.0.0.1", stable_port() if fixed_ports else None),
                    },
                    labels={"rtdash.test": "pushpin"},
                )
            )
        urls = []
        for container in containers:
            container.reload()
            port = container.attrs["NetworkSettings"]["Ports"]["5561/tcp"][0]["HostPort"]
            urls.append(f"http://127.0.0.1:{port}")
        for url in urls:
            wait_answering(url)
        yield urls, containers
    finally:
        for container in containers:
            container.remove(force=True)


def metrics_url(container) -> str:
    """The node's Prometheus endpoint, as published on 127.0.0.1."""
    container.reload()
    port = container.attrs["NetworkSettings"]["Ports"]["9810/tcp"][0]["HostPort"]
    return f"http://127.0.0.1:{port}/metrics"


def wait_answering(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/", timeout=1).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise AssertionError(f"Pushpin publish port {url} did not answer within {timeout}s")


def received(container) -> float:
    """Publish items the node has received (its own count, from its Prometheus endpoint)."""
    text = requests.get(metrics_url(container), timeout=3).text
    for line in text.splitlines():
        if line.startswith("pushpin_message_received"):
            return float(line.split()[-1])
    raise AssertionError(f"{container.name}: no pushpin_message_received in its metrics")
