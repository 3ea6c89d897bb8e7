"""Nothing lost: a numbered sequence published at a steady rate while clients spread over every
Pushpin node follow it like browsers, through a Pushpin node killed and one hung, restarts of
the app and the ticker, and a reload and a restart of nginx. Every client must end with every
event exactly once, in order."""

import itertools
import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from support.faults import Timeline, phase_report, print_table, refusing, save
from support.sse import Follower, SSEStream

pytestmark = pytest.mark.slow

RATE = 20  # events per second
FOLLOWERS = 8


def wait_for(predicate, timeout: float, what: str, step: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def healthy(container) -> bool:
    container.reload()
    return container.attrs["State"].get("Health", {}).get("Status") == "healthy"


class Probe:
    """`manage.py probe_publish` in a one-off container of the app service: it keeps publishing
    while the app's own containers restart."""

    def __init__(self, stack, channel: str):
        self.stack, self.name = stack, f"{stack.project}-probe"
        self.stack.run_docker("rm", "-f", self.name, check=False)
        stack.compose(
            "run", "--detach", "--no-deps", "--name", self.name, "app",
            "python", "manage.py", "probe_publish", channel, "--rate", str(RATE),
        )  # fmt: skip

    def stop(self) -> dict:
        self.stack.run_docker("stop", "--time", "30", self.name)
        logs = self.stack.run_docker("logs", self.name)
        state = self.stack.run_docker("inspect", "-f", "{{.State.ExitCode}}", self.name).stdout
        self.stack.run_docker("rm", "-f", self.name, check=False)
        summary = [line for line in logs.stdout.splitlines() if line.startswith("{")]
        assert summary, (
            f"probe_publish (exit {state.strip()}) printed no summary:\n{logs.stderr[-3000:]}"
        )
        return json.loads(summary[-1])


def test_no_event_lost_or_duplicated_through_faults(stack, capsys):
    channel = f"probe-faults-{uuid.uuid4().hex[:8]}"
    pushpin = [c for c in stack.containers("pushpin") if c.status == "running"]
    assert len(pushpin) >= 2, "the fault run needs two Pushpin nodes"
    killed, hung = pushpin[0], pushpin[1]

    followers = [
        Follower("127.0.0.1", stack.http_port, f"/events/?channel={channel}")
        for _ in range(FOLLOWERS)
    ]
    for follower in followers:
        follower.start()
    wait_for(lambda: all(f.connects for f in followers), 20, "every follower to connect")
    probe = Probe(stack, channel)
    timeline = Timeline()
    try:
        wait_for(
            lambda: all(f.receipts for f in followers), 30, "the first events at every follower"
        )
        timeline.begin("steady")
        time.sleep(3)

        timeline.begin("pushpin node killed (SIGKILL), back after 5 s")
        killed.kill(signal="KILL")
        time.sleep(5)
        killed.start()
        wait_for(lambda: healthy(killed), 60, f"{killed.name} healthy again")
        time.sleep(2)
        # Back without restarting anything else: it serves new clients directly...
        fresh = SSEStream(
            stack.address(killed, "streams"), 7999, f"/events/?channel={channel}",
            headers={"Host": f"127.0.0.1:{stack.http_port}"},
        )  # fmt: skip
        assert fresh.status == 200, f"restarted node refused a new stream: {fresh.status}"
        fresh.wait_open()
        assert fresh.collect(3, timeout=5), "the restarted node delivered nothing to a new client"
        fresh.close()

        timeline.begin("pushpin node hung (paused 5 s)")
        hung.pause()
        time.sleep(5)
        hung.unpause()
        time.sleep(8)  # out-of-order recovery: Pushpin waits up to message_wait (5 s), then asks

        timeline.begin("app restarted")
        stack.compose("restart", "app")
        wait_for(lambda: all(healthy(c) for c in stack.containers("app")), 60, "app healthy")
        time.sleep(2)

        timeline.begin("ticker restarted")
        stack.compose("restart", "ticker")
        time.sleep(3)

        timeline.begin("nginx reloaded")
        nginx = stack.container("nginx")
        assert nginx.exec_run("nginx -s reload").exit_code == 0
        time.sleep(13)  # old workers close their streams after worker_shutdown_timeout (10 s)

        timeline.begin("nginx restarted")
        stack.compose("restart", "nginx")
        wait_for(lambda: healthy(stack.container("nginx")), 60, "nginx healthy")
        time.sleep(3)
    finally:
        summary = probe.stop()
        timeline.begin("drain")
        published = summary["published"]
        try:
            wait_for(
                lambda: all(f.seqs() and f.seqs()[-1] >= published for f in followers),
                60,
                f"every follower to reach event {published}",
            )
        finally:
            timeline.end()
            for follower in followers:
                follower.stop()

    rows = phase_report(timeline, followers, published)
    with capsys.disabled():
        print(f"\nfault run: {published} events at {summary['rate']}/s to {FOLLOWERS} clients")
        print_table(rows)
        print(
            "publisher:",
            json.dumps({k: summary[k] for k in ("max_lateness_s", "call_latency_s", "nodes")}),
        )
    save(rows, {"publisher": summary, "followers": FOLLOWERS}, "faults")

    expected = list(range(1, published + 1))
    for n, follower in enumerate(followers):
        seqs = follower.seqs()
        disorder = next((i for i, (a, b) in enumerate(itertools.pairwise(seqs)) if b <= a), None)
        assert seqs == expected, (
            f"follower {n}: expected events 1..{published} exactly once in order; "
            f"missing {sorted(set(expected) - set(seqs))[:20]}, "
            f"duplicated {sorted({s for s in seqs if seqs.count(s) > 1})[:20]}, "
            f"first out of order at {disorder}"
        )
        assert not follower.resets, f"follower {n} got stream-reset: {follower.resets}"
    # The publisher kept its pace while a node was dead or hung (each node has its own queue and
    # timeout), and the hung node's misses were counted, not silent.
    assert summary["max_lateness_s"] < 0.5, (
        f"publisher fell behind by {summary['max_lateness_s']} s"
    )
    assert summary["drained"], "publisher exited with items still queued"
    failed = {node: s["failed"] for node, s in summary["nodes"].items() if s["failed"]}
    assert failed, f"the hung node's timeouts were not counted: {summary['nodes']}"


def test_a_client_older_than_storage_gets_an_explicit_reset(stack):
    """Events expire from storage; a client asking to resume before the oldest kept one gets
    `stream-reset`, never a silent gap."""
    channel = f"probe-reset-{uuid.uuid4().hex[:8]}"
    for n in range(1, 6):
        stack.publish(channel, "seq", str(n))
    # What the storage's trimming does to expired events, done now instead of in a day.
    expire = (
        "from django_eventstream.models import Event; "
        f"print(Event.objects.filter(channel='{channel}', eid__lte=3).delete())"
    )
    result = stack.manage("shell", "-c", expire)
    assert result.returncode == 0, result.stderr
    stream = SSEStream(
        "127.0.0.1", stack.http_port, f"/events/?channel={channel}", last_event_id=f"{channel}:1"
    )
    try:
        assert stream.status == 200
        stream.wait_open()
        event = stream.next(timeout=5, include_control=True)
        assert event is not None and event.type == "stream-reset", (
            f"expected stream-reset, got {event}"
        )
        assert json.loads(event.data)["channels"] == [channel]
        assert event.id == f"{channel}:5", (
            f"the reset should point at the newest event, got {event.id}"
        )
        stack.publish(channel, "seq", "6")  # and the stream goes on from there
        live = stream.next(timeout=5)
        assert live is not None and live.data == "6", (
            f"expected event 6 after the reset, got {live}"
        )
    finally:
        stream.close()


def test_a_node_that_missed_the_last_publish_delivers_it_with_no_later_publish(stack):
    """The last event of a burst that one node did not get (refused) reaches that node's
    streams within PUSHPIN_RESYNC_SECONDS (3) + Pushpin's message_wait (5): the publisher
    re-announces the channel's newest id once it is quiet. Without it, the streams would wait for
    the next event or REALTIME_STREAM_REFRESH_SECONDS (30 minutes)."""
    channel = f"probe-resync-{uuid.uuid4().hex[:8]}"
    reached, missed = [c for c in stack.containers("pushpin") if c.status == "running"][:2]
    host = {"Host": f"127.0.0.1:{stack.http_port}"}
    streams = {
        node.name: SSEStream(
            stack.address(node, "streams"), 7999, f"/events/?channel={channel}", headers=host
        )
        for node in (reached, missed)
    }
    try:
        for stream in streams.values():
            assert stream.status == 200, stream.status
            stream.wait_open()
        # A node's first stream on a channel makes it re-ask the app 1 s later (Pushpin's
        # SUBSCRIBED_DELAY, for items published while it subscribed), which would fetch the event.
        time.sleep(2)
        with ThreadPoolExecutor(1) as pool:
            with refusing(missed, 5561):  # its publish port
                # One event, then the resync on schedule, as a long-lived publisher sends it.
                probe = pool.submit(
                    stack.manage, "probe_publish", channel, "--count", "1", "--rate", "1"
                )
                first = streams[reached.name].collect(1, timeout=30)
                assert [e.data for e in first][:1] and json.loads(first[0].data)["seq"] == 1, (
                    f"the node that was reachable did not deliver the event: {first}"
                )
            started = time.monotonic()
            late = streams[missed.name].collect(1, timeout=15)
            waited = time.monotonic() - started
            result = probe.result(timeout=60)
        assert result.returncode == 0, result.stderr[-2000:]
        summary = json.loads(result.stdout.splitlines()[-1])
        failed = {node: s["failed"] for node, s in summary["nodes"].items() if s["failed"]}
        assert list(failed.values()) == [1], f"the refused publish was not counted: {summary}"
        assert summary["resyncs"] == 1, summary
        assert late and json.loads(late[0].data)["seq"] == 1, (
            f"{missed.name} missed the channel's last publish and never delivered it: {late}"
        )
        assert late[0].id == f"{channel}:1", late[0]
        assert waited < 10, f"the missed event took {waited:.1f} s"
        for name, stream in streams.items():  # exactly once: no event after it
            assert stream.collect(1, timeout=1) == [], f"{name} delivered more than one event"
    finally:
        for stream in streams.values():
            stream.close()
