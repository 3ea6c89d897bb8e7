"""Publishing: one event reaches every Pushpin node (real ones, in containers); a node that is
down or stalled costs a bounded timeout and a named, counted failure, never a stalled publisher."""

import socket
import threading
import time
import uuid

import pytest

from support.app import DEV_ENV, manage
from support.pushpin import pushpin_nodes, received, wait_answering


@pytest.fixture(scope="module")
def nodes(docker_client, images):
    with pushpin_nodes(docker_client, images["pushpin"], 2) as found:
        yield found


@pytest.fixture
def stalled_node():
    """A TCP port that accepts connections and never answers (a hung or black-holed node)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()


def closed_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def publish(urls, channel, *, timeout="2", data="payload"):
    env = {**DEV_ENV, "PUSHPIN_CONTROL_URLS": ",".join(urls), "PUSHPIN_PUBLISH_TIMEOUT": timeout}
    return manage("publish", channel, "update", data, env=env)


def wait_received(container, count: float, timeout=5.0) -> bool:
    """Whether the node's own count of received publishes reaches `count` in time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if received(container) >= count:
            return True
        time.sleep(0.1)
    return False


@pytest.mark.usefixtures("db")
def test_publish_reaches_every_node(nodes):
    urls, containers = nodes
    channel = f"probe-{uuid.uuid4().hex[:8]}"
    before = {c.name: received(c) for c in containers}
    result = publish(urls, channel)
    assert result.returncode == 0, result.stderr
    assert "published to 2 Pushpin node(s)" in result.stdout, result.stdout
    for container in containers:
        assert wait_received(container, before[container.name] + 1), (
            f"{container.name} never received the publish"
        )


@pytest.mark.usefixtures("db")
def test_publish_fails_clearly_when_no_node_answers():
    result = publish([closed_port(), closed_port()], "probe-nobody")
    assert result.returncode == 1, f"expected exit 1, got {result.returncode}"
    assert "cannot reach any Pushpin node (2 tried)" in result.stderr, result.stderr
    assert "ConnectionRefusedError" in result.stderr
    assert "event stored" in result.stderr, "the message must say the event is kept for replay"


@pytest.mark.usefixtures("db")
def test_publish_fails_clearly_when_the_name_does_not_resolve():
    result = publish(["http://no-such-pushpin.invalid:5561"], "probe-nowhere")
    assert result.returncode == 1
    assert (
        "cannot reach any Pushpin node: no-such-pushpin.invalid resolved to no address"
        in result.stderr
    )


@pytest.mark.usefixtures("db")
def test_a_stalled_node_costs_a_bounded_timeout_and_is_named(nodes, stalled_node):
    urls, containers = nodes
    channel = f"probe-{uuid.uuid4().hex[:8]}"
    before = {c.name: received(c) for c in containers}
    started = time.monotonic()
    result = publish([stalled_node, *urls], channel, timeout="1")
    elapsed = time.monotonic() - started
    assert result.returncode == 1, result.stdout
    assert "publish reached 2 of 3 Pushpin nodes" in result.stderr, result.stderr
    assert f"{stalled_node.removeprefix('http://')}: TimeoutError" in result.stderr, result.stderr
    assert elapsed < 15, f"publish took {elapsed:.1f} s with a 1 s node timeout"
    for container in containers:
        assert wait_received(container, before[container.name] + 1), (
            f"{container.name} missed the publish"
        )


@pytest.mark.usefixtures("db")
def test_rejects_bad_input_before_storing():
    for args, message in [
        (("no such channel!", "update", "x"), "malformed channel name"),
        (("unknown-channel", "update", "x"), "unknown channel"),
        (("probe-x", "bad\nevent", "x"), "event type must be a non-empty single line"),
        (("probe-x", "update", "x" * (64 * 1024 + 1)), "the limit is 65536"),
    ]:
        result = manage("publish", *args)
        assert result.returncode == 1 and message in result.stderr, (args[:2], result.stderr[-500:])


def test_async_publishing_is_not_held_up_by_a_stalled_node(nodes, stalled_node):
    """The in-process publisher: queuing never waits for a node; the stalled node's items fail
    after its own timeout and are counted, while the live nodes get everything at once."""
    from gripcontrol import HttpStreamFormat
    from pubcontrol import Item

    from realtime.cluster import PushpinCluster

    urls, _ = nodes
    cluster = PushpinCluster([stalled_node, *urls], timeout=1.0)
    item = Item(HttpStreamFormat("event: x\ndata: y\n\n"))
    started = time.monotonic()
    for _ in range(50):
        cluster.publish(f"probe-{uuid.uuid4().hex[:6]}", item, blocking=False)
    queued_in = time.monotonic() - started
    assert queued_in < 0.5, f"queuing 50 publishes took {queued_in:.2f} s"
    assert cluster.finish(timeout=30), "queues did not drain"
    stats = {name: (s.published, s.failed) for name, s in cluster.stats.items()}
    stalled = stalled_node.removeprefix("http://")
    assert stats[stalled][0] == 0 and stats[stalled][1] == 50, stats
    live = [v for k, v in stats.items() if k != stalled]
    assert live == [(50, 0), (50, 0)], f"live nodes should have all 50, no failure: {stats}"


def test_a_node_that_restarts_is_used_again(docker_client, images):
    """Kept-alive connections to a node that restarted are replaced, not reported as failures."""
    from realtime.cluster import PushpinCluster

    with pushpin_nodes(docker_client, images["pushpin"], 1, fixed_ports=True) as (
        urls,
        (container,),
    ):
        cluster = PushpinCluster(urls, timeout=2.0)
        item = {"channel": "probe-restart", "formats": {"http-stream": {"content": "data: 1\n\n"}}}
        cluster.publish_items([item])
        container.restart(timeout=2)
        wait_answering(urls[0])
        results = cluster.publish_items([item])
        assert [r.ok for r in results] == [True], results


def test_concurrent_publishers_do_not_lock_sqlite(db):
    """Several writers at once (app workers, ticker): WAL + immediate transactions, no 'locked'."""
    from django.db import connection
    from django_eventstream.storage import DjangoModelStorage

    errors = []

    def write(n):
        try:
            for i in range(20):
                DjangoModelStorage().append_event("probe-concurrent", "seq", f"{n}-{i}")
        except Exception as exc:  # noqa: BLE001
            errors.append(repr(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert DjangoModelStorage().get_current_id("probe-concurrent") >= 80
