"""End to end: an event published on an app host (`manage.py publish`, on a `probe-*` channel
of its own) reaches streams opened through the public origin and streams held on each Pushpin
node, addressed one by one (with the origin's Host, as nginx passes it on), within a second of
the publish returning; a stream resumed with Last-Event-ID gets exactly what it missed, then
live events again. Only probe channels are published on; every stream is closed afterwards."""

from __future__ import annotations

import contextlib
import re
import time

from support.sse import SSEStream, open_stream, probe_channel

# An event must arrive within this of `manage.py publish` returning.
DELIVERY_LIMIT = 1.0
# How long resumed streams are watched for the replay (and for any event too many).
REPLAY_WAIT = 3.0
# Streams per Pushpin node: held on it, addressed directly, and through the public origin
# (nginx balances those over the nodes).
DIRECT_STREAMS_PER_NODE = 3
ORIGIN_STREAMS_PER_NODE = 3


def _open(stack, rows, where: str, *args, **kw) -> None:
    stream = open_stream(*args, where=where, timeout=5, **kw)
    stack.callback(stream.close)
    stream.wait_open(timeout=5)
    rows.append((where, stream))


@contextlib.contextmanager
def streams(target, chan: str, check, last_event_id: str | None = None):
    """[(where, stream)]: DIRECT_STREAMS_PER_NODE streams held on each Pushpin node, addressed
    one by one with the origin's Host, and ORIGIN_STREAMS_PER_NODE per node through the public
    origin; a node or origin that cannot hold one gets a failed row. All closed on exit."""
    opened: list[tuple[str, SSEStream]] = []
    origin = target.origin()
    resume = {"last_event_id": last_event_id}
    with contextlib.ExitStack() as stack:
        nodes = target.nodes("pushpin")
        if not nodes:
            check.row("pushpin", False, detail="expected at least one Pushpin node, found none")
        for node in nodes:
            try:
                if not node.running:
                    raise AssertionError(f"not running ({node.state})")
                address, port = stack.enter_context(target.node_stream_endpoint(node))
                host = {"Host": target.origin_host_header()}
                for n in range(DIRECT_STREAMS_PER_NODE):
                    where = f"{node.name} (direct) #{n + 1}"
                    _open(stack, opened, where, address, port, chan, headers=host, **resume)
            except (AssertionError, OSError) as exc:
                check.row(node.name, False, detail=f"expected streams held on it: {exc}")
        for n in range(ORIGIN_STREAMS_PER_NODE * max(len(nodes), 1)):
            where = f"origin {origin[0]}:{origin[1]} #{n + 1}"
            try:
                _open(stack, opened, where, *origin, chan, **resume)
            except (AssertionError, OSError) as exc:
                check.row(where, False, detail=f"expected a stream: {exc}")
        yield opened


def publish(target, check, chan: str, event: str, data: str) -> tuple[float, float] | None:
    """Publish on the app host: (when it began, when it returned), monotonic, or None when it
    failed (a failed row either way when it did not reach every node)."""
    began = time.monotonic()
    rc, out, took = target.publish(chan, event, data)
    returned = time.monotonic()
    nodes = target.nodes("pushpin")
    said = [line for line in out.splitlines() if "publish" in line or "cannot reach" in line]
    reached = re.search(r"published to (\d+) Pushpin node", out)
    ok = rc == 0 and reached is not None and int(reached.group(1)) == len(nodes)
    check.row(
        f"{target.app_node().name} publish {event}",
        ok,
        f"{took:.2f} s",
        detail=f"expected exit 0 reaching all {len(nodes)} Pushpin node(s), got exit {rc}: "
        f"{(said or out.splitlines() or [''])[-1]}",
    )
    # A publish that missed a node ("event stored, but ...": exit 1) still reached the others:
    # their streams are measured; the failed row above names what it missed.
    return (began, returned) if rc == 0 or "event stored, but" in out else None


def test_a_published_event_reaches_streams_on_every_pushpin_node(target, check):
    """delivery via every node."""
    chan = probe_channel()
    with streams(target, chan, check) as opened:
        began, returned = publish(target, check, chan, "probe", "delivered") or (None, None)
        for where, stream in opened:
            event = stream.next(timeout=5)
            if event is None or (event.type, event.data) != ("probe", "delivered"):
                check.row(where, False, detail=f"expected event probe/delivered, got {event}")
                continue
            if began is None:
                check.row(where, False, detail="the publish failed, yet the event came")
                continue
            after = event.received_at - returned
            content_type = stream.headers.get("Content-Type", "")
            problems = [
                f"arrived {after:.3f} s after the publish returned (limit {DELIVERY_LIMIT} s)"
                if not after <= DELIVERY_LIMIT else "",
                f"id {event.id}, expected the channel's first stored id {chan}:1"
                if event.id != f"{chan}:1" else "",
                f"Content-Type {content_type!r}, expected text/event-stream"
                if not content_type.startswith("text/event-stream") else "",
            ]  # fmt: skip
            # The publish's own time includes starting manage.py: the event comes before the
            # command has returned (a negative figure after it).
            check.row(
                where,
                not any(problems),
                f"{(event.received_at - began) * 1000:.0f} ms after publish began "
                f"({after * 1000:+.0f} ms after it returned)",
                detail="; ".join(p for p in problems if p),
            )
    check.done()


def test_a_resumed_stream_gets_exactly_what_it_missed(target, check):
    """Last-Event-ID resume."""
    chan = probe_channel()
    first = None
    with streams(target, chan, check) as opened:
        publish(target, check, chan, "seq", "0")
        for where, stream in opened:
            event = stream.next(timeout=5)
            if event is None or event.data != "0" or not event.id:
                check.row(where, False, detail=f"expected event 0 with an id, got {event}")
            first = first or event
    if first is None:
        check.done()
        return
    for n in (1, 2, 3):  # published while every client is away
        publish(target, check, chan, "seq", str(n))
    with streams(target, chan, check, last_event_id=first.id) as opened:
        # Every stream gets REPLAY_WAIT to show one event more than expected (none may come).
        deadline = time.monotonic() + REPLAY_WAIT
        for where, stream in opened:
            replayed = stream.collect(4, timeout=max(0.2, deadline - time.monotonic()))
            got = [(e.id, e.data) for e in replayed]
            check.row(
                where,
                got == [(f"{chan}:{k}", str(n)) for n, k in ((1, 2), (2, 3), (3, 4))],
                f"replayed {len(got)} after {first.id}",
                detail=f"expected exactly events 1, 2, 3 ({chan}:2-4) after {first.id}, got {got}",
            )
        publish(target, check, chan, "seq", "4")  # and they stream live again
        for where, stream in opened:
            live = stream.next(timeout=5)
            if live is None or live.data != "4":
                check.row(
                    where, False, detail=f"expected live event 4 after the replay, got {live}"
                )
    check.done()
