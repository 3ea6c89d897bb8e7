"""The every-node publisher (realtime.cluster) on its own, without Docker: nodes are tiny HTTP
servers on 127.0.0.1 that answer POST /publish/ as Pushpin does (or stall on demand), and the
control host names resolve through a fake resolver the tests control (slow, failing, changing)."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
import tracemalloc
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from gripcontrol import HttpStreamFormat
from prometheus_client import REGISTRY
from pubcontrol import Item

from realtime import metrics as app_metrics
from realtime.cluster import NodeSender, PublishError, PushpinCluster
from realtime.resync import ChannelResync

ITEM = {"channel": "probe-cluster", "formats": {"http-stream": {"content": "data: x\n\n"}}}
BIG = {"channel": "probe-big", "formats": {"http-stream": {"content": f"data: {'x' * 65536}\n\n"}}}


def metric(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def wait_until(predicate, timeout: float = 5.0, what: str = "condition"):
    """Poll a condition that no event announces (a counter in another thread), with a deadline."""
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"expected {what} within {timeout} s; it did not happen")
        time.sleep(0.005)
    return result


class Node:
    """A Pushpin publish endpoint on 127.0.0.1: answers 200 "Published" (400 to a body above
    Pushpin's push_in_max_body_size), or with `stall` set, takes the request (`stalled` is set)
    and holds the answer until `release` is set."""

    MAX_BODY = 1_000_000  # pushpin/pushpin.conf

    def __init__(self):
        self.items: list[dict] = []
        self.bodies: list[int] = []  # sizes of the bodies POSTed
        self.stall = False
        self.stalled = threading.Event()
        self.release = threading.Event()
        node = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # kept alive, as Pushpin does

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                node.bodies.append(len(body))
                if node.stall:
                    node.stalled.set()
                    node.release.wait(30)
                    self.close_connection = True
                    return
                if len(body) > node.MAX_BODY:
                    answer, status = b"Request body too large.\n", 400
                else:
                    node.items += json.loads(body)["items"]
                    answer, status = b"Published\n", 200
                self.send_response(status)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.name = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.name}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def node():
    served = Node()
    yield served
    served.close()


@pytest.fixture
def stalled_node():
    served = Node()
    served.stall = True
    yield served
    served.close()


def refused_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


class Resolver:
    """Stands in for socket.getaddrinfo for names under `.test` (every other name, 127.0.0.1
    included, resolves for real, so the nodes stay reachable): each answers its `answers`
    entry, a list of IPs or an exception to raise; with `gate` set, a look-up first waits for
    it (a slow resolver), up to 3 s."""

    def __init__(self, real):
        self.real = real
        self.answers: dict[str, list[str] | Exception] = {}
        self.calls: dict[str, int] = {}
        self.gate: threading.Event | None = None
        self.entered = threading.Event()  # a look-up of a .test name began
        self._lock = threading.Lock()

    def __call__(self, host, port, *args, **kwargs):
        if not str(host).endswith(".test"):
            return self.real(host, port, *args, **kwargs)
        with self._lock:
            self.calls[host] = self.calls.get(host, 0) + 1
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(3)
        answer = self.answers[host]
        if isinstance(answer, Exception):
            raise answer
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port)) for ip in answer]


@pytest.fixture
def resolver(monkeypatch):
    fake = Resolver(socket.getaddrinfo)
    monkeypatch.setattr(socket, "getaddrinfo", fake)
    yield fake
    if fake.gate is not None:
        fake.gate.set()


def dns_blip() -> socket.gaierror:
    return socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")


def raise_once(real, exc: Exception, when):
    """`real`, except that its first call for which `when(*args)` holds raises `exc` (only this
    test's node: senders of other clusters may still be running)."""
    raised = threading.Event()

    def wrapper(*args, **kwargs):
        if when(*args) and not raised.is_set():
            raised.set()
            raise exc
        return real(*args, **kwargs)

    return wrapper


@contextmanager
def timed():
    took = [0.0]
    started = time.monotonic()
    yield took
    took[0] = time.monotonic() - started


# -- 1. a slow resolver stalls no publisher ---------------------------------------------------


def test_a_slow_resolver_delays_no_publish_to_the_known_nodes(node, resolver):
    resolver.answers["pushpin.test"] = ["127.0.0.1"]
    # TTL 0: every publish finds the node set stale and wants a fresh look-up.
    cluster = PushpinCluster([f"http://pushpin.test:{node.port}"], timeout=2, resolve_ttl=0)
    assert [r.ok for r in cluster.publish_items([ITEM])] == [True]
    resolver.gate = threading.Event()  # from now on a look-up takes 3 s
    resolver.entered.clear()
    calls_before = resolver.calls["pushpin.test"]

    took: dict[int, float] = {}
    errors: list[str] = []

    def publish(n: int):
        started = time.monotonic()
        try:
            results = cluster.publish_items([ITEM])
            assert [r.ok for r in results] == [True], results
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(f"publisher {n}: {exc!r}")
        took[n] = time.monotonic() - started

    publish(0)  # this one finds the set stale and starts the (slow) look-up
    assert resolver.entered.wait(2), "expected a look-up to start after the TTL; none did"
    threads = [threading.Thread(target=publish, args=(n,)) for n in range(1, 9)]
    for thread in threads:
        thread.start()
    with timed() as side_calls:
        names = cluster.nodes()
        drained = cluster.finish(timeout=2)
    for thread in threads:
        thread.join(5)

    assert not errors, f"expected every publish to reach the known node, got {errors}"
    slowest = max(took.values())
    assert slowest < 0.8, (
        f"expected publishes to finish well under 1 s while the look-up hangs 3 s; "
        f"the slowest took {slowest:.2f} s: {took}"
    )
    assert side_calls[0] < 0.8 and drained and names == [node.name], (
        f"expected nodes() and finish() at once during the look-up, got {names} / drained "
        f"{drained} in {side_calls[0]:.2f} s"
    )
    in_flight = resolver.calls["pushpin.test"] - calls_before
    assert in_flight == 1, f"expected 1 look-up in flight for 9 publishes, got {in_flight}"
    assert len(node.items) == 10, f"expected the node to get all 10 items, got {len(node.items)}"


def test_first_publishes_wait_for_the_one_look_up_in_flight(node, resolver):
    resolver.answers["pushpin.test"] = ["127.0.0.1"]
    resolver.gate = threading.Event()
    cluster = PushpinCluster([f"http://pushpin.test:{node.port}"], timeout=2)
    results: dict[str, object] = {}

    def publish(name: str):
        try:
            results[name] = [r.ok for r in cluster.publish_items([ITEM])]
        except PublishError as exc:
            results[name] = str(exc)

    first = threading.Thread(target=publish, args=("first",))
    first.start()
    assert resolver.entered.wait(2), "expected the first publish to start a look-up"
    others = [threading.Thread(target=publish, args=(f"other-{n}",)) for n in range(3)]
    for thread in others:
        thread.start()
    deadline = time.monotonic() + 0.3
    for thread in others:
        thread.join(max(0.0, deadline - time.monotonic()))
    waiting = sum(thread.is_alive() for thread in others)
    assert waiting == 3, (
        f"expected the 3 later publishes to wait for the first answer (no node is known yet), "
        f"{3 - waiting} returned first: {results}"
    )
    resolver.gate.set()
    for thread in [first, *others]:
        thread.join(5)
    assert results == {name: [True] for name in ("first", "other-0", "other-1", "other-2")}, (
        f"expected all 4 publishes to reach the node once it resolved, got {results}"
    )
    assert resolver.calls["pushpin.test"] == 1, (
        f"expected one look-up for the 4 publishes, got {resolver.calls['pushpin.test']}"
    )


# -- 2. a failing resolver drops no publish, and a publish to no node is counted ---------------


def test_a_failed_look_up_keeps_the_last_good_nodes(node, resolver, caplog):
    other = Node()
    try:
        resolver.answers["pushpin.test"] = ["127.0.0.1"]
        resolver.answers["other.test"] = ["127.0.0.1"]
        cluster = PushpinCluster(
            [f"http://pushpin.test:{node.port}", f"http://other.test:{other.port}"],
            timeout=2,
            resolve_ttl=0,
        )
        assert [r.ok for r in cluster.publish_items([ITEM])] == [True, True]
        failures_before = metric("rtdash_pushpin_resolve_failures_total")
        resolver.answers["pushpin.test"] = dns_blip()

        # A publish starts the (failing) look-up; wait until it was counted.
        cluster.publish_items([ITEM])
        wait_until(lambda: cluster.resolve_failures >= 1, what="the failed look-up counted")
        results = cluster.publish_items([ITEM])

        assert sorted((r.node, r.ok) for r in results) == sorted(
            [(node.name, True), (other.name, True)]
        ), f"expected both nodes to get the publish during the DNS blip, got {results}"
        assert cluster.nodes() == sorted([node.name, other.name]), cluster.nodes()
        assert len(node.items) == 3, f"expected 3 items at the node, got {len(node.items)}"
        counted = metric("rtdash_pushpin_resolve_failures_total") - failures_before
        assert counted >= 1, f"expected the failed look-up in the metric, got +{counted}"
        logged = [r.getMessage() for r in caplog.records if "does not resolve" in r.getMessage()]
        assert logged and f"last known node(s) {node.name}" in logged[0], (
            f"expected a warning naming the node still used, got {logged}"
        )
        assert cluster.node_departures == 0, "a failed look-up is not a node leaving"

        # When the name resolves again, with a changed answer, that answer is the truth.
        resolver.answers["pushpin.test"] = []
        resolver.answers["other.test"] = ["127.0.0.1"]
        wait_until(
            lambda: cluster.nodes() == [other.name], what=f"the node set to become {other.name}"
        )
        assert cluster.node_departures == 1, f"expected 1 departure, got {cluster.node_departures}"
    finally:
        other.close()


def test_a_publish_to_no_node_is_counted_and_retried_soon(node, resolver, caplog):
    resolver.answers["pushpin.test"] = dns_blip()
    # A TTL far longer than the test: the retry after a failure must not wait for it.
    cluster = PushpinCluster([f"http://pushpin.test:{node.port}"], timeout=2, resolve_ttl=60)
    label = f"pushpin.test:{node.port}"
    before = metric("rtdash_pushpin_publish_failures_total", node=label)

    with pytest.raises(PublishError) as raised:
        cluster.publish_items([ITEM, ITEM])
    assert "cannot reach any Pushpin node: pushpin.test resolved to no address" in str(
        raised.value
    ), str(raised.value)
    cluster.publish_items([ITEM], blocking=False)  # asynchronous: no exception, still counted
    counted = metric("rtdash_pushpin_publish_failures_total", node=label) - before
    assert counted == 3, f"expected 3 unpublished items counted against {label}, got {counted}"
    assert cluster.stats[label].failed == 3, cluster.stats
    errors = [
        r
        for r in caplog.records
        if r.levelno == logging.ERROR and "not published" in r.getMessage()
    ]
    assert len(errors) == 2 and "2 item(s) not published" in errors[0].getMessage(), (
        f"expected one error per unpublished publish, got {[r.getMessage() for r in errors]}"
    )

    # Asked for its nodes all the time for 1 s, the cluster looks the failing name up again
    # soon (not after the 60 s TTL) but only a few times a second.
    calls_before = resolver.calls["pushpin.test"]
    started = time.monotonic()
    while time.monotonic() - started < 1.0:
        cluster.nodes()
        time.sleep(0.001)
    calls = resolver.calls["pushpin.test"] - calls_before
    assert 2 <= calls <= 8, f"expected 2-8 look-ups in 1 s while the name fails, got {calls}"

    resolver.answers["pushpin.test"] = ["127.0.0.1"]
    wait_until(lambda: cluster.nodes() == [node.name], timeout=3, what="the node to resolve")
    assert [r.ok for r in cluster.publish_items([ITEM])] == [True]


# -- 3. an unexpected error costs its batch, never the node's sender --------------------------


def test_an_unexpected_error_fails_its_batch_and_the_sender_goes_on(node, monkeypatch, caplog):
    cluster = PushpinCluster([node.url], timeout=2)
    boom = raise_once(
        NodeSender._post, RuntimeError("boom"), lambda sender, _: sender.name == node.name
    )
    monkeypatch.setattr(NodeSender, "_post", boom)
    before = metric("rtdash_pushpin_publish_failures_total", node=node.name)

    with pytest.raises(PublishError) as raised:
        cluster.publish_items([ITEM, ITEM])
    errors = [(r.node, r.ok, r.error) for r in raised.value.results]
    assert errors == [(node.name, False, "RuntimeError: boom")] * 2, (
        f"expected both items of the batch to fail with the error, got {errors}"
    )
    counted = metric("rtdash_pushpin_publish_failures_total", node=node.name) - before
    assert counted == 2 and cluster.stats[node.name].failed == 2, (
        f"expected 2 failures counted, got metric +{counted}, stats {cluster.stats[node.name]}"
    )
    tracebacks = [r for r in caplog.records if r.exc_info and "boom" in str(r.exc_info[1])]
    assert tracebacks, "expected the unexpected error logged with its traceback; none was"

    results = cluster.publish_items([ITEM])
    assert [(r.node, r.ok) for r in results] == [(node.name, True)], (
        f"expected the next publish to reach the node (its sender alive), got {results}"
    )
    assert len(node.items) == 1, f"expected the node to have 1 item, got {len(node.items)}"


def test_an_item_that_does_not_encode_costs_only_itself(node):
    cluster = PushpinCluster([node.url], timeout=2)
    broken = {"channel": "probe-cluster", "formats": {"http-stream": {"content": {1, 2}}}}
    with pytest.raises(PublishError, match="TypeError") as raised:
        cluster.publish_items([broken])
    assert [r.ok for r in raised.value.results] == [False], raised.value.results
    results = cluster.publish_items([ITEM])
    assert [r.ok for r in results] == [True], f"expected the next item delivered, got {results}"


@pytest.mark.parametrize(
    ("counter", "reachable", "expected"),
    [
        ("PUBLISHED", True, (True, "")),  # counting a success fails: the node has the item
        ("PUBLISH_FAILURES", False, (False, "ConnectionRefusedError")),  # counting a failure
    ],
)
def test_a_failing_metrics_call_loses_neither_an_answer_nor_the_sender(
    node, monkeypatch, counter, reachable, expected
):
    url = node.url if reachable else refused_url()
    cluster = PushpinCluster([url], timeout=1)
    name = url.removeprefix("http://")

    def outcome():
        try:
            results = cluster.publish_items([ITEM])
        except PublishError as exc:
            results = exc.results
        return [(r.node, r.ok, r.error.split(":")[0]) for r in results]

    assert outcome() == [(name, *expected)]  # the sender exists, with its metric series
    series = getattr(app_metrics, counter)
    broken = raise_once(series.labels, RuntimeError("metrics"), lambda label: label == name)
    monkeypatch.setattr(series, "labels", broken)
    for attempt in ("while the metric raises", "after it"):
        got = outcome()
        assert got == [(name, *expected)], (
            f"expected the answer {expected} {attempt}, got {got} (no answer: node '?')"
        )


# -- 4. a stalled node holds bounded memory ---------------------------------------------------


def test_a_stalled_node_holds_at_most_the_queue_bytes(stalled_node):
    limit = 1024 * 1024
    cluster = PushpinCluster([stalled_node.url], timeout=30, queue_bytes=limit)
    size = len(json.dumps(BIG).encode())  # an item's size: its JSON-encoded length
    name = stalled_node.name
    cluster.publish_items([BIG], blocking=False)
    assert stalled_node.stalled.wait(5), "expected the first item's POST to reach the node"
    # That item is in flight (its bytes still held); what fits beside it is queued.
    fits = limit // size - 1
    before = metric("rtdash_pushpin_publish_failures_total", node=name)

    tracemalloc.start()
    try:
        cluster.publish_items([BIG] * 200, blocking=False)
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    stats = cluster.stats[name]
    assert stats.failed == 200 - fits, (
        f"expected {200 - fits} of 200 items of {size} bytes to fail at once beyond {limit} "
        f"bytes, got {stats.failed}"
    )
    counted = metric("rtdash_pushpin_publish_failures_total", node=name) - before
    assert counted == 200 - fits, f"expected {200 - fits} failures counted, got {counted}"
    expected = f"send queue full ({(fits + 1) * size} bytes waiting, limit {limit}, "
    assert stats.last_error.startswith(expected + "PUSHPIN_PUBLISH_QUEUE_BYTES)"), (
        f"expected the error to start {expected!r}..., got {stats.last_error!r}"
    )
    assert held < 2 * limit, (
        f"expected the queue to hold about {limit} bytes for 200 items of {size}, "
        f"it grew memory by {held}"
    )

    # The node answers again: the queued items go, their bytes are free for new ones.
    stalled_node.stall = False
    stalled_node.release.set()
    assert cluster.finish(timeout=10), "expected the queue to drain once the node answers"
    assert len(stalled_node.items) == fits, f"expected {fits} items, got {len(stalled_node.items)}"
    results = cluster.publish_items([BIG] * fits)
    assert all(r.ok for r in results), f"expected {fits} more big items accepted, got {results}"


def test_an_item_larger_than_the_queue_bytes_fails_at_once(node):
    cluster = PushpinCluster([node.url], timeout=2, queue_bytes=65536)
    with pytest.raises(PublishError, match=r"limit 65536, PUSHPIN_PUBLISH_QUEUE_BYTES"):
        cluster.publish_items([BIG])
    assert node.items == [], f"expected nothing sent, got {len(node.items)} item(s)"


def test_the_item_count_bound_still_holds(stalled_node):
    cluster = PushpinCluster([stalled_node.url], timeout=30, queue_size=5)
    cluster.publish_items([ITEM], blocking=False)
    assert stalled_node.stalled.wait(5), "expected the first item's POST to reach the node"
    cluster.publish_items([ITEM] * 20, blocking=False)
    stats = cluster.stats[stalled_node.name]
    expected = "send queue full (5 items waiting, limit 5, PUSHPIN_PUBLISH_QUEUE_SIZE)"
    assert (stats.failed, stats.last_error) == (15, expected), (
        f"expected 15 of 20 items to fail with {expected!r}, got {stats.failed}: "
        f"{stats.last_error!r}"
    )
    stalled_node.release.set()
    assert cluster.finish(timeout=10), "expected every queued item answered"


def test_the_byte_bound_is_a_setting_the_app_passes_on(monkeypatch):
    from django.conf import settings
    from django.test import override_settings

    from realtime import publishing

    assert settings.PUSHPIN_PUBLISH_QUEUE_BYTES == 16 * 1024 * 1024, (
        f"expected a 16 MiB default, got {settings.PUSHPIN_PUBLISH_QUEUE_BYTES}"
    )
    monkeypatch.setattr(publishing, "_cluster", None)  # a cluster of this test's own
    with override_settings(PUSHPIN_PUBLISH_QUEUE_BYTES=12345):
        got = publishing.get_cluster().queue_bytes
    assert got == 12345, f"expected get_cluster() to pass PUSHPIN_PUBLISH_QUEUE_BYTES, got {got}"


def test_a_burst_of_big_items_goes_in_bodies_pushpin_accepts(stalled_node):
    """Items that queued up behind a stalled node go in batches, each under Pushpin's body
    limit: one body of 40 items of 64 KB would be refused whole."""
    cluster = PushpinCluster([stalled_node.url], timeout=30)
    cluster.publish_items([ITEM], blocking=False)
    assert stalled_node.stalled.wait(5), "expected the first item's POST to reach the node"
    cluster.publish_items([BIG] * 40, blocking=False)  # queued behind it
    stalled_node.stall = False
    stalled_node.release.set()
    assert cluster.finish(timeout=10), "expected the queue to drain once the node answers"
    stats = cluster.stats[stalled_node.name]
    assert (len(stalled_node.items), stats.failed) == (40, 1), (
        f"expected the 40 big items delivered (only the stalled first item failed), got "
        f"{len(stalled_node.items)} delivered, {stats.failed} failed: {stats.last_error}"
    )
    too_big = [size for size in stalled_node.bodies if size > Node.MAX_BODY]
    assert not too_big, f"expected no body above {Node.MAX_BODY} bytes, got {too_big}"


# -- The resync after a channel goes quiet (realtime.resync) ---------------------------------


def event(channel: str, n: int) -> dict:
    """An event as django-eventstream publishes it (gripcontrol's export: formats in the item)."""
    stream = HttpStreamFormat(f"id: %I\ndata: {n}\n\n", content_filters=["build-id"])
    return {**Item(stream, id=str(n), prev_id=str(n - 1)).export(), "channel": channel}


def resyncs(node: Node) -> list[dict]:
    stream = [item.get("formats", {}).get("http-stream", {}) for item in node.items]
    return [item for item, s in zip(node.items, stream, strict=True) if s.get("content") == ":\n\n"]


def test_a_quiet_channel_gets_its_last_id_published_again(node):
    newest = {"events-a": "3", "events-b": "7"}
    sent_before = metric("rtdash_pushpin_resyncs_total", outcome="sent")
    cluster = PushpinCluster([node.url], resync_delay=0.3, current_id=newest.get)
    cluster.publish_items([event("events-a", 1), event("events-a", 2)])
    cluster.publish_items([event("events-b", 7), event("events-a", 3)])
    time.sleep(0.15)
    assert not resyncs(node), "a resync went out before the channel was quiet for the delay"
    wait_until(lambda: len(resyncs(node)) == 2, what="one resync per quiet channel")
    by_channel = {item["channel"]: item for item in resyncs(node)}
    # prev-id = id = the newest event: a current stream takes it (a comment), one behind asks.
    assert by_channel["events-a"] == {
        "channel": "events-a",
        "id": "3",
        "prev-id": "3",
        "formats": {"http-stream": {"content": ":\n\n", "content-filters": ["build-id"]}},
    }
    assert by_channel["events-b"]["id"] == by_channel["events-b"]["prev-id"] == "7"
    time.sleep(0.5)
    assert len(resyncs(node)) == 2, "the resync was itself resynced, or sent twice"
    assert cluster.resync.sent == 2
    assert metric("rtdash_pushpin_resyncs_total", outcome="sent") - sent_before == 2


def test_a_channel_publishing_faster_than_the_delay_gets_no_resync_until_it_stops(node):
    cluster = PushpinCluster([node.url], resync_delay=0.4, current_id=lambda _: "10")
    for n in range(1, 11):
        cluster.publish_items([event("events-busy", n)])
        time.sleep(0.1)
    assert not resyncs(node), "a channel publishing every 0.1 s got a resync"
    wait_until(lambda: resyncs(node), what="the resync once the channel went quiet")
    assert [item["id"] for item in resyncs(node)] == ["10"]


def test_no_resync_when_another_process_published_the_newest_event(node):
    """Its id would be older than what the nodes have: every current stream would ask the app."""
    skipped_before = metric("rtdash_pushpin_resyncs_total", outcome="skipped")
    cluster = PushpinCluster([node.url], resync_delay=0.1, current_id=lambda _: "9")
    cluster.publish_items([event("events-shared", 5)])
    wait_until(lambda: cluster.resync.skipped == 1, what="the resync skipped")
    time.sleep(0.2)
    assert not resyncs(node) and cluster.resync.sent == 0
    assert metric("rtdash_pushpin_resyncs_total", outcome="skipped") - skipped_before == 1


def test_only_stored_events_are_resynced(node):
    """No id (an unstored publish), a channel with no stored ids (user channels: None), a close."""
    cluster = PushpinCluster([node.url], resync_delay=0.1, current_id={"events-x": "1"}.get)
    close = {**event("events-x", 1), "http-stream": {"action": "close"}}
    user = {**event("user-1", 2), "id": "kick-2", "prev-id": "kick-1"}
    cluster.publish_items([ITEM, close, user])
    time.sleep(0.4)
    assert not resyncs(node)
    assert cluster.resync.skipped == 1  # the user channel: looked up, not ours


def test_finish_sends_pending_resyncs_now_or_on_schedule(node):
    cluster = PushpinCluster([node.url], resync_delay=30, current_id=lambda _: "1")
    cluster.publish_items([event("events-exit", 1)])
    assert cluster.finish(timeout=5)
    assert [item["id"] for item in resyncs(node)] == ["1"], "an exiting process dropped it"

    cluster = PushpinCluster([node.url], resync_delay=0.5, current_id=lambda _: "2")
    cluster.publish_items([event("events-exit", 2)])
    started = time.monotonic()
    assert cluster.finish(timeout=5, resync_on_schedule=True)
    assert time.monotonic() - started >= 0.45, "on schedule means at its due time, not at once"
    assert [item["id"] for item in resyncs(node)] == ["1", "2"]


def test_resync_is_off_for_a_zero_delay_and_without_stored_ids(node):
    assert PushpinCluster([node.url], resync_delay=0, current_id=lambda _: "1").resync is None
    assert PushpinCluster([node.url], resync_delay=3).resync is None


def test_a_failing_look_up_costs_that_resync_not_the_thread(node, caplog):
    answers = iter([RuntimeError("database down"), "2"])

    def current_id(_channel):
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    cluster = PushpinCluster([node.url], resync_delay=0.1, current_id=current_id)
    cluster.publish_items([event("events-flaky", 1)])
    wait_until(lambda: "resync of 1 channel(s) failed" in caplog.text, what="the failure logged")
    cluster.publish_items([event("events-flaky", 2)])
    wait_until(lambda: resyncs(node), what="the next resync, from the same thread")
    assert [item["id"] for item in resyncs(node)] == ["2"]


def test_a_resync_a_node_did_not_take_is_tried_again_a_bounded_number_of_times(node):
    """The node that failed a publish is the one whose streams need the resync most."""
    down = refused_url()
    failed_before = metric("rtdash_pushpin_resyncs_total", outcome="failed")
    cluster = PushpinCluster(
        [node.url, down], timeout=2, resync_delay=0.05, current_id=lambda _: "4"
    )
    cluster.publish_items([event("events-retry", 4)], blocking=False)
    attempts = ChannelResync.ATTEMPTS
    wait_until(lambda: cluster.resync.failed == attempts, what=f"{attempts} failed attempts")
    time.sleep(0.3)
    assert cluster.resync.failed == attempts and cluster.resync.sent == 0, "not bounded"
    assert [item["id"] for item in resyncs(node)] == ["4"] * attempts
    assert metric("rtdash_pushpin_resyncs_total", outcome="failed") - failed_before == attempts
    cluster.finish(timeout=5, resync_on_schedule=True)  # nothing left: returns at once
