import json
import logging
import statistics
import time

from django.core.management.base import BaseCommand, CommandError
from django_eventstream import send_event

from realtime import channels
from realtime.publishing import get_cluster
from realtime.shutdown import StopOnSignal

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = (
        "Publish a numbered sequence on CHANNEL at a steady rate: a synthetic check of the whole "
        'delivery path (clients should see every "seq" exactly once, in order) and a load source. '
        'Each event\'s data is {"seq": N, "sent_at": UNIX_TIME}. Stops after --count events or '
        "on SIGTERM, then prints a JSON summary: pace kept, publish-call latency, and per Pushpin "
        "node what was accepted and what failed."
    )

    def add_arguments(self, parser):
        parser.add_argument("channel")
        parser.add_argument("--rate", type=float, default=20.0, help="events per second")
        parser.add_argument(
            "--count", type=int, default=0, help="events to send (0: until SIGTERM)"
        )
        parser.add_argument("--event", default="seq", help="event type")

    def handle(self, channel, rate, count, event, **options):
        try:
            channels.validate(channel)
        except channels.ChannelError as exc:
            raise CommandError(str(exc)) from exc
        if rate <= 0:
            raise CommandError("--rate must be positive")
        stopping = StopOnSignal()

        interval = 1.0 / rate
        started = time.monotonic()
        due = started
        lateness, call_latency = [], []
        seq = 0
        while not stopping and (count == 0 or seq < count):
            now = time.monotonic()
            if now < due:
                time.sleep(due - now)
                continue
            lateness.append(now - due)
            seq += 1
            sent_at = time.time()
            # Stored, then queued for every node: the call never waits for a slow node.
            send_event(
                channel, event, json.dumps({"seq": seq, "sent_at": sent_at}), json_encode=False
            )
            call_latency.append(time.time() - sent_at)
            due += interval
            if seq % max(1, int(rate * 5)) == 0:
                logger.info("probe_publish: %d events on %s", seq, channel)
        elapsed = time.monotonic() - started
        cluster = get_cluster()
        # Resyncs on schedule, as the long-lived publisher the probe stands for would send them.
        drained = cluster.finish(timeout=cluster.timeout * 4 + 5, resync_on_schedule=True)
        summary = {
            "channel": channel,
            "published": seq,
            "elapsed_s": round(elapsed, 3),
            "rate": round(seq / elapsed, 2) if elapsed else 0,
            "max_lateness_s": round(max(lateness, default=0), 4),
            "call_latency_s": _percentiles(call_latency),
            "drained": drained,
            "node_departures": cluster.node_departures,
            "resolve_failures": cluster.resolve_failures,
            "resyncs": cluster.resync.sent if cluster.resync else 0,
            "resyncs_failed": cluster.resync.failed if cluster.resync else 0,
            "nodes": {
                name: {"published": s.published, "failed": s.failed, "last_error": s.last_error}
                for name, s in sorted(cluster.stats.items())
            },
        }
        self.stdout.write(json.dumps(summary))


def _percentiles(values):
    if not values:
        return {}
    ordered = sorted(values)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {
        "p50": round(statistics.median(ordered), 5),
        "p99": round(pick(0.99), 5),
        "max": round(ordered[-1], 5),
    }
