import logging
import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from realtime import metrics, producers
from realtime.publishing import get_cluster
from realtime.shutdown import StopOnSignal

logger = logging.getLogger(__name__)

HEARTBEAT_S = 5.0


class Command(BaseCommand):
    help = (
        "Run the periodic producers that installed apps register (realtime.producers): each at "
        "its own interval (default TICKER_INTERVAL), until SIGTERM or --count rounds."
    )

    def add_arguments(self, parser):
        parser.add_argument("--count", type=int, default=0, help="stop after N rounds (0: never)")
        parser.add_argument(
            "--only", action="append", default=[], help="run only this producer (repeatable)"
        )
        parser.add_argument(
            "--heartbeat-file",
            default=settings.TICKER_HEARTBEAT_FILE,
            help="touched after every round, for healthchecks (default: TICKER_HEARTBEAT_FILE)",
        )

    def handle(self, count, only, heartbeat_file, **options):
        found = producers.registered()
        if only:
            found = [p for p in found if p.name in only or p.name.rsplit(".", 1)[-1] in only]
        if not found and only:
            raise CommandError(f"no registered producer is named {', '.join(only)}")
        if not found:
            # A project without producers still gets a healthy ticker: it says so and idles.
            logger.warning(
                "produce: no producer is registered (an installed app registers its own in its "
                "producers.py with @realtime.producers.producer); idling"
            )
        stopping = StopOnSignal()
        # This process's publish counters, for Prometheus (internal address only).
        metrics.serve(settings.METRICS_ADDR, settings.TICKER_METRICS_PORT)
        for each in found:
            each.start()
        default = settings.TICKER_INTERVAL
        due = {each.name: time.monotonic() for each in found}
        logger.info(
            "produce: %s", ", ".join(f"{p.name} every {p.every or default:g} s" for p in found)
        )
        rounds = 0
        while not stopping and (count == 0 or rounds < count):
            now = time.monotonic()
            ran = False
            for each in found:
                if now < due[each.name]:
                    continue
                ran = True
                try:
                    # Stored, then queued for every node: a slow node never stalls this loop;
                    # failures are logged and counted by the publisher.
                    each.run()
                except Exception:
                    metrics.PRODUCER_FAILURES.labels(each.name).inc()
                    logger.exception(
                        "produce: %s failed; it runs again at its next turn", each.name
                    )
                due[each.name] = max(now, due[each.name]) + (each.every or default)
            rounds += ran
            # Alive even between producers of long intervals (the healthcheck wants 30 s).
            if heartbeat_file:
                Path(heartbeat_file).touch()
            deadline = min([*due.values(), time.monotonic() + HEARTBEAT_S])
            while not stopping and time.monotonic() < deadline:
                time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
        # Queued publishes would be lost on exit.
        get_cluster().finish()
        logger.info("produce: stopped after %d round(s)", rounds)
