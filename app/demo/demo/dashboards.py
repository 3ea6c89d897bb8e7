from dashboards.component import Chart, Stat
from dashboards.dashboard import Dashboard
from dashboards.registry import registry

from realtime.components import SSEChart, SSEStat

from . import metrics


class LiveDashboard(Dashboard):
    """Ordinary components (computed per page load) next to SSE ones (pushed by the demo's
    producer, demo/producers.py). The three live ones read one channel, so the page holds one
    event stream for all of them."""

    load = SSEStat(value=lambda **_: metrics.load_average(), verbose_name="Load (live)")
    load_history = SSEChart(
        value=lambda **_: metrics.load_chart([]), verbose_name="Load history (live)"
    )
    publishes = SSEStat(value=lambda **_: metrics.publishes(0), verbose_name="Updates (live)")
    events_stored = Stat(value=lambda **_: metrics.events_stored(), verbose_name="Events stored")
    events_per_channel = Chart(
        value=lambda **_: metrics.events_per_channel(), verbose_name="Events per channel"
    )

    class Meta:
        name = "Live"


registry.register(LiveDashboard)
