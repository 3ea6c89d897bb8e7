import logging
import time
from collections import deque
from datetime import UTC, datetime
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand

from demo import metrics
from demo.dashboards import LiveDashboard
from ops.publisher import OpsPublisher
from realtime import metrics as app_metrics
from realtime.publishing import get_cluster
from realtime.shutdown import StopOnSignal

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = (
        "Publish the live dashboard components' new values, and the ops dashboard's figures, "
        "every TICKER_INTERVAL seconds."
    )

    def add_arguments(self, parser):
        parser.add_argument("--interval", type=float, default=settings.TICKER_INTERVAL)
        parser.add_argument("--count", type=int, default=0, help="stop after N ticks (0: never)")
        parser.add_argument(
            "--heartbeat-file",
            default=settings.TICKER_HEARTBEAT_FILE,
            help="touched after every tick, for healthchecks (default: TICKER_HEARTBEAT_FILE)",
        )

    def handle(self, interval, count, heartbeat_file, **options):
        components = {c.key: c for c in LiveDashboard().get_components()}
        stat, chart = components["load"], components["load_history"]
        history: deque[tuple[str, float]] = deque(maxlen=60)
        stopping = StopOnSignal()
        # This process's publish counters, for Prometheus (internal address only).
        app_metrics.serve(settings.METRICS_ADDR, settings.TICKER_METRICS_PORT)
        ops = OpsPublisher()
        logger.info("ticker: publishing every %.1f s to channel %r", interval, stat.channel)
        ticks = 0
        while not stopping and (count == 0 or ticks < count):
            value = metrics.load_average()
            history.append((datetime.now(UTC).strftime("%H:%M:%S"), float(value.text)))
            try:
                # Stored, then queued for every Pushpin node; failures are logged and counted
                # by the cluster publisher without stalling this loop.
                stat.publish(value)
                chart.publish(metrics.load_chart(list(history)))
            except Exception:
                logger.exception("ticker: tick failed; retrying next interval")
            try:
                ops.tick()
            except Exception:
                logger.exception("ticker: ops figures failed; retrying next interval")
            ticks += 1
            if heartbeat_file:
                Path(heartbeat_file).touch()
            deadline = time.monotonic() + interval
            while not stopping and time.monotonic() < deadline:
                time.sleep(min(0.2, interval))
        # Queued publishes would be lost on exit.
        get_cluster().finish()
        logger.info("ticker: stopped after %d tick(s)", ticks)
