"""The demo's producer (run by `manage.py produce`): the live stat and chart's new values."""

from collections import deque
from datetime import UTC, datetime

from realtime.producers import producer

from . import metrics
from .dashboards import LiveDashboard


@producer(name="demo.load")
class Load:
    """The load average now, and the last 60 samples as a chart."""

    def __init__(self):
        self.history: deque[tuple[str, float]] = deque(maxlen=60)
        self.rounds = 0

    def __call__(self):
        value = metrics.load_average()
        self.history.append((datetime.now(UTC).strftime("%H:%M:%S"), float(value.text)))
        self.rounds += 1
        LiveDashboard.load.publish(value)
        LiveDashboard.load_history.publish(metrics.load_chart(list(self.history)))
        LiveDashboard.publishes.publish(metrics.publishes(self.rounds))
