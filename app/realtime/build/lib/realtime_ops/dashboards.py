"""The ops dashboard: the product's own SSE components, on the staff-only `ops` channel, pushed
by the ticker (realtime_ops.publisher) through the same Pushpin cluster as every other update."""

from dashboards.component.stat import StatData
from dashboards.dashboard import Dashboard
from dashboards.permissions import IsAdminUser
from dashboards.registry import registry

from realtime.components import SSEChart, SSEStat

from . import render

WAITING = StatData(text="…", sub_text="waiting for the first update")


class OpsDashboard(Dashboard):
    # Four components on one channel: the page holds one event stream for all of them.
    streams = SSEStat(channel="ops", value=lambda **_: WAITING, verbose_name="Open streams")
    publish_rate = SSEStat(
        channel="ops", value=lambda **_: WAITING, verbose_name="Publishes per second"
    )
    publish_failures = SSEStat(
        channel="ops", value=lambda **_: WAITING, verbose_name="Publish failures"
    )
    streams_per_node = SSEChart(
        channel="ops",
        value=lambda **_: render.per_node_chart("Open streams per Pushpin node", {}),
        verbose_name="Streams per node",
    )

    class Meta:
        name = "Ops"
        # Anonymous users are sent to the login page, signed-in non-staff get 403; the `ops`
        # event channel is staff-only too (REALTIME_CHANNELS).
        permission_classes = [IsAdminUser]


registry.register(OpsDashboard)
