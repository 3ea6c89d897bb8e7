"""End to end on the running compose stack: an event published by the app reaches clients
through nginx on 127.0.0.1 and through every Pushpin node, and a reconnecting client gets
exactly what it missed."""

import time
import uuid

import pytest

from support.sse import SSEStream

pytestmark = pytest.mark.slow


def channel() -> str:
    return f"probe-{uuid.uuid4().hex[:12]}"


def via_nginx(stack, chan, **kw) -> SSEStream:
    stream = SSEStream("127.0.0.1", stack.http_port, f"/events/?channel={chan}", **kw)
    assert stream.status == 200, (
        f"expected 200 from nginx, got {stream.status}: {stream.__dict__.get('body')}"
    )
    return stream


def test_published_event_reaches_client_through_nginx_within_1s(stack):
    chan = channel()
    stream = via_nginx(stack, chan)
    try:
        stream.wait_open()
        assert stream.headers.get("Content-Type", "").startswith("text/event-stream")
        payload = f"hello-{uuid.uuid4().hex}"
        stack.publish(chan, "greeting", payload)
        published = time.monotonic()
        event = stream.next(timeout=5)
        assert event is not None, "no event arrived within 5 s of `manage.py publish` returning"
        assert (event.type, event.data) == ("greeting", payload)
        latency = event.received_at - published
        assert latency <= 1.0, (
            f"event arrived {latency:.3f} s after the publish returned (limit 1 s)"
        )
        assert event.id == f"{chan}:1", f"expected the first stored id {chan}:1, got {event.id}"
    finally:
        stream.close()


def test_one_publish_reaches_clients_on_every_pushpin_node(stack):
    nodes = stack.pushpin_nodes()
    assert len(nodes) >= 2, f"expected at least 2 Pushpin nodes, found {nodes}"
    chan = channel()
    # Three clients straight on each node (with the Host the app's origin has, as nginx sends),
    # six more through nginx (balanced over the nodes).
    origin = {"Host": f"127.0.0.1:{stack.http_port}"}
    streams = [
        SSEStream(node, 7999, f"/events/?channel={chan}", headers=origin)
        for node in nodes
        for _ in range(3)
    ]
    streams += [via_nginx(stack, chan) for _ in range(6)]
    try:
        for stream in streams:
            assert stream.status == 200, f"stream refused: {stream.status}"
            stream.wait_open()
        stack.publish(chan, "fanout", "to-everyone")
        missing = []
        for stream in streams:
            event = stream.next(timeout=5)
            if event is None or (event.type, event.data) != ("fanout", "to-everyone"):
                missing.append(f"{stream.host}:{stream.port} got {event}")
        assert not missing, (
            f"{len(missing)} of {len(streams)} clients missed the publish: {missing}"
        )
    finally:
        for stream in streams:
            stream.close()


def test_reconnect_with_last_event_id_gets_exactly_the_missed_events_in_order(stack):
    chan = channel()
    first = via_nginx(stack, chan)
    try:
        first.wait_open()
        stack.publish(chan, "seq", "0")
        seen = first.next(timeout=5)
        assert seen is not None and seen.data == "0", f"expected event 0, got {seen}"
    finally:
        first.close()
    for n in (1, 2, 3):  # published while the client is away
        stack.publish(chan, "seq", str(n))

    again = via_nginx(stack, chan, last_event_id=seen.id)
    try:
        again.wait_open()
        replayed = again.collect(4, timeout=3)  # ask for one more than expected: no extras
        assert [e.data for e in replayed] == ["1", "2", "3"], (
            f"expected exactly events 1, 2, 3 after {seen.id}, "
            f"got {[(e.id, e.data) for e in replayed]}"
        )
        assert [e.id for e in replayed] == [f"{chan}:{n}" for n in (2, 3, 4)]
        stack.publish(chan, "seq", "4")  # and it keeps streaming live afterwards
        live = again.next(timeout=5)
        assert live is not None and live.data == "4", f"expected live event 4, got {live}"
    finally:
        again.close()
