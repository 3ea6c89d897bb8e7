"""Read a monitoring stack's metrics the way Prometheus does: endpoints are fetched from inside
the stack's Prometheus container (the only place besides the app that can reach them), and
Prometheus itself is asked through its published loopback port."""

from __future__ import annotations

import time
from collections import defaultdict

import requests
from prometheus_client.parser import text_string_to_metric_families

from support.stack import ComposeStack, run


def parse(text: str) -> list:
    """Every sample of a Prometheus text exposition (counters are named NAME_total)."""
    return [sample for family in text_string_to_metric_families(text) for sample in family.samples]


def total(samples: list, name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include `labels` (0 when there is none)."""
    return sum(
        s.value
        for s in samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


def by_label(samples: list, name: str, label: str) -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    for s in samples:
        if s.name == name:
            out[s.labels[label]] += s.value
    return dict(out)


class MonitoringStack:
    def __init__(self, stack: ComposeStack, prometheus_port: int):
        self.stack, self.prometheus_port = stack, prometheus_port

    @property
    def prometheus(self):
        return self.stack.container("prometheus")

    def endpoint(self, host: str, port: int) -> str:
        """GET http://HOST:PORT/metrics from inside the stack's control network."""
        result = run(
            ["docker", "exec", self.prometheus.name, "curl", "-fsS", "-m", "5",
             f"http://{host}:{port}/metrics"],
            check=False, timeout=30,
        )  # fmt: skip
        if result.returncode != 0:
            raise AssertionError(f"{host}:{port}/metrics: curl exit {result.returncode}")
        return result.stdout

    def scrape(self, host: str, port: int) -> list:
        return parse(self.endpoint(host, port))

    def wait_total(self, host: str, port: int, name: str, predicate, timeout: float) -> float:
        """Scrape HOST:PORT until `predicate(total of name)` holds; the last value either way."""
        return poll(lambda: total(self.scrape(host, port), name), predicate, timeout, 0.5)

    def pushpin_hosts(self) -> list[str]:
        return [c.name for c in self.stack.containers("pushpin")]

    @property
    def prometheus_url(self) -> str:
        return f"http://127.0.0.1:{self.prometheus_port}"

    def query(self, expr: str) -> list[dict]:
        return query(self.prometheus_url, expr)

    def wait_query(self, expr: str, predicate, timeout: float, what: str) -> list[dict]:
        return wait_query(self.prometheus_url, expr, predicate, timeout, what)


def query(prometheus_url: str, expr: str) -> list[dict]:
    """An instant query to the Prometheus at `prometheus_url`: its result list."""
    response = requests.get(f"{prometheus_url}/api/v1/query", params={"query": expr}, timeout=10)
    body = response.json()
    assert body.get("status") == "success", f"Prometheus {prometheus_url}: {expr!r}: {body}"
    return body["data"]["result"]


def poll(read, predicate, timeout: float, interval: float):
    """`read()` every `interval` s until `predicate` holds of its value or `timeout` s have
    passed; the last value either way."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if predicate(value) or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def wait_query(prometheus_url: str, expr: str, predicate, timeout: float, what: str) -> list[dict]:
    """Repeat `expr` until `predicate(result)` holds; fail naming `what` after `timeout` s."""
    result = poll(lambda: query(prometheus_url, expr), predicate, timeout, 1)
    if not predicate(result):
        raise AssertionError(f"after {timeout:.0f} s, expected {what}; {expr} gave {result}")
    return result
