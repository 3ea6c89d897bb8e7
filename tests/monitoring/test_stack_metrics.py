"""The compose stack with the `monitoring` profile: every metrics endpoint counts what really
happened, a real Prometheus scrapes them all, a dead node shows as down and raises its alert,
and no metrics port is reachable from the host or through nginx."""

import socket
import time
import uuid

import pytest
import requests

from support.monitoring import by_label, total
from support.network import local_routes_to
from support.sse import SSEStream
from support.stack import REPO

pytestmark = pytest.mark.slow

PORTS = {"app": 9808, "ticker": 9809, "pushpin": 9810, "nginx-exporter": 9113}
N = 25  # events published in the counting test
# What a node gets from the publishing process: its events and, as the process exits, one resync
# item for their channel (realtime/resync.py: a process that exits sends its pending resyncs).
RESYNC = 1
STREAMS = 3


def publish_from_the_app(stack, channel: str, count: int, blocking: bool = True) -> str:
    """`count` events from one short-lived process in the app container (its counters join the
    app's through the multiprocess directory)."""
    code = (
        "from django_eventstream import send_event\n"
        "from realtime.cluster import PublishError\n"
        "from realtime.publishing import get_cluster\n"
        f"for i in range({count}):\n"
        "    try:\n"
        f"        send_event({channel!r}, 'n', str(i), json_encode=False,"
        f" async_publish={not blocking})\n"
        "    except PublishError as exc:\n"
        "        print('failed:', exc)\n"
        "get_cluster().finish()\n"
    )
    result = stack.manage("shell", "-c", code, timeout=120)
    assert result.returncode == 0, f"publishing from the app failed: {result.stderr[-2000:]}"
    return result.stdout


def node_names(monitored) -> dict[str, str]:
    """{container name: the node's name in the publisher's metrics (control address:5561)}."""
    stack = monitored.stack
    return {c.name: f"{stack.address(c, 'control')}:5561" for c in stack.containers("pushpin")}


def snapshot(monitored) -> dict:
    """Every endpoint but the ticker's (the counting test pauses the ticker)."""
    return {
        "app": monitored.scrape("app", PORTS["app"]),
        "nginx": monitored.scrape("nginx-exporter", PORTS["nginx-exporter"]),
        **{h: monitored.scrape(h, PORTS["pushpin"]) for h in monitored.pushpin_hosts()},
    }


def received(before: dict, after: dict, host: str) -> float:
    # (prometheus_client's parser names counter samples NAME_total.)
    return total(after[host], "pushpin_message_received_total") - total(
        before[host], "pushpin_message_received_total"
    )


def test_every_endpoint_counts_what_happened(monitored):
    stack = monitored.stack
    nodes = node_names(monitored)
    assert len(nodes) == 2, f"expected 2 Pushpin nodes, got {nodes}"
    ticker = stack.container("ticker")
    # Nothing else publishes while the counts are compared.
    ticker.pause()
    try:
        time.sleep(1)  # the ticker's queued items drain (each node answers in ms)
        before = snapshot(monitored)
        publish_from_the_app(stack, f"probe-metrics-{uuid.uuid4().hex[:6]}", N)
        after = snapshot(monitored)
    finally:
        ticker.unpause()
    for host, node in nodes.items():
        published = total(after["app"], "rtdash_pushpin_published_total", node=node) - total(
            before["app"], "rtdash_pushpin_published_total", node=node
        )
        assert published == N + RESYNC, (
            f"app endpoint: expected {N} + {RESYNC} items accepted by {node} ({host}), "
            f"counted {published}"
        )
        got = received(before, after, host)
        assert got == N + RESYNC, f"{host}'s own endpoint: expected {N} + {RESYNC}, got {got}"
        failed = total(after["app"], "rtdash_pushpin_publish_failures_total", node=node)
        assert failed == total(before["app"], "rtdash_pushpin_publish_failures_total", node=node)
        requests_ = total(after["app"], "rtdash_pushpin_publish_seconds_count", node=node)
        assert requests_ > total(before["app"], "rtdash_pushpin_publish_seconds_count", node=node)
    resyncs = {
        outcome: total(after["app"], "rtdash_pushpin_resyncs_total", outcome=outcome)
        - total(before["app"], "rtdash_pushpin_resyncs_total", outcome=outcome)
        for outcome in ("sent", "failed", "skipped")
    }
    assert resyncs == {"sent": RESYNC, "failed": 0, "skipped": 0}, resyncs
    # The ticker publishes to both nodes too, on its own endpoint.
    ticker = monitored.scrape("ticker", PORTS["ticker"])
    ticker_counts = by_label(ticker, "rtdash_pushpin_published_total", "node")
    assert set(ticker_counts) == set(nodes.values()) and all(ticker_counts.values()), (
        f"expected the ticker's items per node {sorted(nodes.values())}, got {ticker_counts}"
    )


def connections(monitored) -> float:
    hosts = monitored.pushpin_hosts()
    return sum(
        total(monitored.scrape(h, PORTS["pushpin"]), "pushpin_connection_connected") for h in hosts
    )


def settled_connections(monitored, quiet: float = 12, timeout: float = 60) -> float:
    """The Pushpin nodes' connection count once it has held still for longer than one
    stats report (10 s): connections that earlier tests' clients closed leave the count only
    at the next report, and must not be mistaken for a baseline that later falls."""
    value, since = connections(monitored), time.monotonic()
    deadline = since + timeout
    while time.monotonic() - since < quiet:
        assert time.monotonic() < deadline, f"the Pushpin connection count kept moving ({value})"
        time.sleep(1)
        now = connections(monitored)
        if now != value:
            value, since = now, time.monotonic()
    return value


def test_streams_are_counted_by_the_app_pushpin_and_nginx(monitored):
    stack = monitored.stack
    baseline = settled_connections(monitored)
    before = snapshot(monitored)
    channel = f"probe-streams-{uuid.uuid4().hex[:6]}"
    stack.publish(channel, "seed", "x")
    first = SSEStream("127.0.0.1", stack.http_port, f"/events/?channel={channel}")
    streams = [first]
    try:
        first.wait_open()
        # One client resumes from an event id (a reconnect), one from an id older than the store.
        streams.append(
            SSEStream(
                "127.0.0.1",
                stack.http_port,
                f"/events/?channel={channel}",
                last_event_id=f"{channel}:1",
            )
        )
        streams.append(
            SSEStream(
                "127.0.0.1",
                stack.http_port,
                f"/events/?channel={channel}&lastEventId={channel}:999999",
            )
        )
        assert [s.status for s in streams] == [200] * STREAMS
        resets = streams[2].collect(1, timeout=5, event_type="stream-reset")
        assert resets, "the client resuming from id 0 got no stream-reset"
        after = snapshot(monitored)

        def delta(source, name):
            return total(after[source], name) - total(before[source], name)

        assert delta("app", "rtdash_streams_opened_total") == STREAMS
        assert delta("app", "rtdash_stream_replays_total") == 2
        assert delta("app", "rtdash_stream_resets_total") == 1
        assert delta("nginx", "nginx_connections_active") >= STREAMS
        # Pushpin reports its connections every stats_report_interval (10 s).
        deadline = time.monotonic() + 25
        connected = baseline
        while time.monotonic() < deadline:
            connected = connections(monitored)
            if connected >= baseline + STREAMS:
                break
            time.sleep(1)
        assert connected >= baseline + STREAMS, (
            f"Pushpin nodes report {connected} connections, expected {baseline} + {STREAMS}"
        )
    finally:
        for stream in streams:
            stream.close()


def test_prometheus_scrapes_every_target(monitored):
    expected = {
        ("app", "app:9808"),
        ("ticker", "ticker:9809"),
        ("nginx", "nginx-exporter:9113"),
        ("prometheus", "localhost:9090"),
        *(("pushpin", f"{h}:9810") for h in monitored.pushpin_hosts()),
    }
    result = monitored.wait_query(
        "up",
        lambda r: (
            {(s["metric"]["job"], s["metric"]["instance"]) for s in r if s["value"][1] == "1"}
            >= expected
        ),
        60,
        f"up == 1 for {sorted(expected)}",
    )
    down = [s["metric"] for s in result if s["value"][1] != "1"]
    assert not down, f"targets down: {down}"
    # Prometheus has what the endpoints have: the app's items per node, and the rules loaded.
    per_node = monitored.query("sum by (node) (rtdash_pushpin_published_total)")
    assert len(per_node) == 2, f"expected publish counts for 2 nodes, got {per_node}"
    rules = requests.get(
        f"http://127.0.0.1:{monitored.prometheus_port}/api/v1/rules", timeout=10
    ).json()["data"]["groups"]
    names = {rule["name"] for group in rules for rule in group["rules"]}
    assert {"PushpinNodeDown", "PushpinPublishFailures", "StreamsDroppedSharply"} <= names


def test_prometheus_runs_the_repository_config_unprivileged(monitored):
    container = monitored.prometheus
    for path, source in (
        ("/etc/prometheus/prometheus.yml", "monitoring/prometheus.yml"),
        ("/etc/prometheus/rules.yml", "monitoring/rules.yml"),
    ):
        content = container.exec_run(["cat", path]).output.decode()
        assert content == (REPO / source).read_text(), f"{path} differs from {source}"
    uids = container.exec_run(["ps", "-eo", "euid="]).output.decode().split()
    assert set(uids) == {"10004"}, f"expected every process as uid 10004, got {set(uids)}"
    container.reload()
    assert container.attrs["HostConfig"]["ReadonlyRootfs"] is True
    assert container.attrs["State"]["Health"]["Status"] == "healthy"


def test_metrics_are_not_reachable_from_the_host_or_through_nginx(monitored, docker_client):
    stack = monitored.stack
    response = requests.get(f"http://127.0.0.1:{stack.http_port}/metrics", timeout=5)
    assert response.status_code == 404, f"/metrics through nginx: {response.status_code}"
    assert "rtdash_" not in response.text and "pushpin_" not in response.text
    # Every address of every container with a metrics listener, from the host: the control
    # addresses (where they listen) have no route from here at all, and are never tried (the
    # connection would leave the machine through the default route); the others refuse.
    reached, tried = [], 0
    for service, port in PORTS.items():
        for container in stack.containers(service):
            container.reload()
            for name, network in container.attrs["NetworkSettings"]["Networks"].items():
                address = network["IPAddress"]
                if name == f"{stack.project}_control":
                    routes = local_routes_to(address)
                    assert not routes, f"the host has a route to {address} ({name}): {routes}"
                    continue
                assert local_routes_to(address), f"{address} ({name}) is not on this host"
                tried += 1
                with socket.socket() as sock:
                    sock.settimeout(1)
                    if sock.connect_ex((address, port)) == 0:
                        reached.append(f"{container.name} {address}:{port}")
    assert tried >= 3, "expected the app's and the Pushpin nodes' streams addresses tried"
    for port in PORTS.values():
        with socket.socket() as sock:
            sock.settimeout(1)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                reached.append(f"127.0.0.1:{port}")
    assert not reached, f"metrics ports reachable from the host: {reached}"
    # nginx shares the streams network with the app and Pushpin, not their metrics addresses.
    nginx = stack.container("nginx")
    for service, port in (("app", 9808), ("pushpin", 9810)):
        for container in stack.containers(service):
            address = stack.address(container, "streams")
            result = nginx.exec_run(f"curl -s -m 2 -o /dev/null http://{address}:{port}/metrics")
            assert result.exit_code == 7, (
                f"nginx -> {container.name} {address}:{port}: expected refused (7), "
                f"got {result.exit_code}"
            )
    published = {
        (c.labels["com.docker.compose.service"], b["HostIp"])
        for c in stack.containers()
        for bindings in (c.attrs["NetworkSettings"]["Ports"] or {}).values()
        for b in bindings or []
    }
    assert published == {("nginx", "127.0.0.1"), ("prometheus", "127.0.0.1")}, published


def test_make_status_prints_the_figures(monitored):
    result = monitored.stack.make("status", timeout=120)
    lines = result.stdout.splitlines()
    for node in node_names(monitored).values():
        row = [line for line in lines if line.startswith(node)]
        assert row and " up " in row[0], f"make status: no 'up' row for {node}:\n{result.stdout}"
    assert "open streams" in result.stdout and "2 of 2 Pushpin node(s)" in result.stdout
    assert "http://" in result.stdout.split("publisher counters from:")[1], (
        f"make status did not read the app's counters:\n{result.stdout}"
    )


def test_a_killed_node_goes_down_and_raises_its_alert(monitored):
    stack = monitored.stack
    victim = stack.containers("pushpin")[-1]
    instance = f"{victim.name}:9810"
    departures_before = total(
        monitored.scrape("ticker", 9809), "rtdash_pushpin_node_departures_total"
    )
    victim.kill()
    try:
        monitored.wait_query(
            f'up{{job="pushpin", instance="{instance}"}}',
            lambda r: r and r[0]["value"][1] == "0",
            30,
            f"{instance} down",
        )
        alerts = monitored.wait_query(
            f'ALERTS{{alertname="PushpinNodeDown", instance="{instance}"}}',
            lambda r: r and r[0]["metric"]["alertstate"] in ("pending", "firing"),
            40,
            "PushpinNodeDown pending or firing",
        )
        print(f"PushpinNodeDown {alerts[0]['metric']['alertstate']} for {instance}")
        # The publisher notices the node leave (it no longer resolves) at its next publish, and
        # says so. The alert can be pending within a second of the kill (scrape and rule
        # evaluation may fall right after it), before the ticker's next tick: give it a few.
        departures = monitored.wait_total(
            "ticker", 9809, "rtdash_pushpin_node_departures_total",
            lambda value: value > departures_before, timeout=15,
        )  # fmt: skip
        assert departures > departures_before, (
            "the ticker did not count the node's departure within 15 s (ticks every 2 s)"
        )
        status = stack.make("status", timeout=120).stdout
        assert "1 of 1 Pushpin node(s)" in status, status
    finally:
        victim.start()
    stack.wait_healthy()
    monitored.wait_query(
        f'up{{job="pushpin", instance="{instance}"}}',
        lambda r: r and r[0]["value"][1] == "1",
        40,
        f"{instance} up again",
    )


def test_a_hung_node_counts_publish_failures(monitored):
    stack = monitored.stack
    nodes = node_names(monitored)
    victim = stack.containers("pushpin")[0]
    node = nodes[victim.name]
    # increase() needs a sample from before the failures: the node's series, at 0, scraped first
    # (whatever ran before this test).
    publish_from_the_app(stack, f"probe-hung-{uuid.uuid4().hex[:6]}", 1)
    series = f'rtdash_pushpin_publish_failures_total{{job="app", node="{node}"}}'
    monitored.wait_query(series, bool, 30, f"Prometheus to have scraped {series}")
    scraped = monitored.scrape("app", 9808)
    before = by_label(scraped, "rtdash_pushpin_publish_failures_total", "node")
    resyncs_before = by_label(scraped, "rtdash_pushpin_resyncs_total", "outcome")
    victim.pause()
    try:
        # Asynchronous, as app code publishes: queued for every node, each with its timeout.
        publish_from_the_app(stack, f"probe-hung-{uuid.uuid4().hex[:6]}", 3, blocking=False)
        app = monitored.scrape("app", 9808)
    finally:
        victim.unpause()
    after = by_label(app, "rtdash_pushpin_publish_failures_total", "node")
    failed = {n: after.get(n, 0) - before.get(n, 0) for n in nodes.values()}
    expected = {n: 3 + RESYNC if n == node else 0 for n in nodes.values()}
    assert failed == expected, f"expected failed items {expected} (hung: {node}), got {failed}"
    # The process's resync at exit did not reach the hung node: counted as failed once.
    resyncs = by_label(app, "rtdash_pushpin_resyncs_total", "outcome")
    failed_resyncs = resyncs.get("failed", 0) - resyncs_before.get("failed", 0)
    assert failed_resyncs == RESYNC, f"expected {RESYNC} failed resync, counted {failed_resyncs}"
    monitored.wait_query(
        f'increase(rtdash_pushpin_publish_failures_total{{job="app", node="{node}"}}[1m])',
        lambda r: r and float(r[0]["value"][1]) > 0,
        30,
        f"Prometheus to see the failures to {node}",
    )
