"""The figures operators ask for first: how many streams are open, on which Pushpin node, and
is every publish arriving. Read from the same Prometheus endpoints Prometheus scrapes:

- each Pushpin node's own endpoint (``prometheus_port``): open connections, and the messages
  its publish API received from every publisher (so the publish rate counts them all);
- the publishers' endpoints (this process's registry, plus OPS_METRICS_URLS): items each node
  accepted or that failed to reach it, streams opened, replays, resets.

The ops dashboard (published by the ticker) and ``manage.py opsstatus`` (``make status``) show
these same figures.
"""

from __future__ import annotations

import http.client
import socket
import time
from collections import defaultdict
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from prometheus_client.parser import text_string_to_metric_families

from realtime import metrics

TIMEOUT = 1.0  # a node that does not answer its metrics within this counts as down


@dataclass
class Node:
    name: str  # the publish address, as the publisher names the node (ip:5561)
    metrics_url: str
    up: bool = False
    streams: float = 0.0  # pushpin_connection_connected
    received: float = 0.0  # pushpin_message_received (publishes from every publisher)
    sent: float = 0.0  # pushpin_message_sent (deliveries to clients)
    error: str = ""


@dataclass
class Figures:
    at: float
    nodes: list[Node]
    published: dict[str, float] = field(default_factory=dict)  # per node, all publishers
    failed: dict[str, float] = field(default_factory=dict)
    streams_opened: float = 0.0
    replays: float = 0.0
    resets: float = 0.0
    sources: list[str] = field(default_factory=list)  # publisher endpoints read
    source_errors: list[str] = field(default_factory=list)

    @property
    def streams(self) -> float:
        return sum(n.streams for n in self.nodes if n.up)

    @property
    def nodes_up(self) -> int:
        return sum(n.up for n in self.nodes)

    def rates(self, before: Figures | None) -> dict[str, float]:
        """Publishes per second each node received since `before` (None: not known yet)."""
        if before is None or self.at <= before.at:
            return {}
        earlier = {n.name: n for n in before.nodes if n.up}
        span = self.at - before.at
        return {
            n.name: max(0.0, n.received - earlier[n.name].received) / span
            for n in self.nodes
            if n.up and n.name in earlier
        }


def parse(text: str) -> dict[str, list[tuple[dict, float]]]:
    """Prometheus text format: {sample name: [(labels, value), ...]}."""
    samples: dict[str, list[tuple[dict, float]]] = defaultdict(list)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[sample.name].append((sample.labels, sample.value))
    return samples


def fetch(url: str, timeout: float = TIMEOUT) -> str:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)
    try:
        conn.request("GET", parts.path or "/metrics")
        response = conn.getresponse()
        body = response.read().decode(errors="replace")
        if response.status != 200:
            raise OSError(f"HTTP {response.status} from {url}")
        return body
    finally:
        conn.close()


def expand(url: str) -> list[str]:
    """A metrics URL per address its host resolves to (every replica behind one name)."""
    parts = urlsplit(url)
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 80, type=socket.SOCK_STREAM)
    except socket.gaierror:
        return [url]  # fetching it says why
    addresses = sorted({info[4][0] for info in infos})
    return [
        url.replace(parts.netloc, f"{a if ':' not in a else f'[{a}]'}:{parts.port or 80}", 1)
        for a in addresses
    ]


def read_node(node: Node) -> Node:
    try:
        samples = parse(fetch(node.metrics_url))
    except (OSError, http.client.HTTPException, ValueError) as exc:
        node.up, node.error = False, f"{type(exc).__name__}: {exc}"
        return node

    def value(name: str) -> float:
        found = samples.get(name) or samples.get(f"{name}_total") or [({}, 0.0)]
        return float(found[0][1])

    node.up = True
    node.streams = value("pushpin_connection_connected")
    node.received = value("pushpin_message_received")
    node.sent = value("pushpin_message_sent")
    return node


def add_publisher(figures: Figures, samples: dict) -> None:
    for name, into in (
        ("rtdash_pushpin_published_total", figures.published),
        ("rtdash_pushpin_publish_failures_total", figures.failed),
    ):
        for labels, value in samples.get(name, []):
            into[labels["node"]] = into.get(labels["node"], 0.0) + value
    for name, attr in (
        ("rtdash_streams_opened_total", "streams_opened"),
        ("rtdash_stream_replays_total", "replays"),
        ("rtdash_stream_resets_total", "resets"),
    ):
        setattr(figures, attr, getattr(figures, attr) + sum(v for _, v in samples.get(name, [])))


def collect(node_names: list[str], metrics_port: int, publisher_urls: list[str]) -> Figures:
    """Read every node's endpoint and every publisher's counters (this process's included)."""
    nodes = [
        read_node(Node(name, f"http://{name.rsplit(':', 1)[0]}:{metrics_port}/metrics"))
        for name in node_names
    ]
    figures = Figures(time.monotonic(), nodes)
    from prometheus_client.exposition import generate_latest

    add_publisher(figures, parse(generate_latest(metrics.registry()).decode()))
    figures.sources.append("this process")
    for url in publisher_urls:
        for each in expand(url):
            try:
                add_publisher(figures, parse(fetch(each)))
                figures.sources.append(each)
            except (OSError, http.client.HTTPException, ValueError) as exc:
                figures.source_errors.append(f"{each}: {type(exc).__name__}: {exc}")
    return figures


def collect_for_this_app() -> Figures:
    """collect() with the app's settings: the nodes the publisher sends to right now."""
    from django.conf import settings

    from realtime.publishing import get_cluster

    return collect(get_cluster().nodes(), settings.PUSHPIN_METRICS_PORT, settings.OPS_METRICS_URLS)
