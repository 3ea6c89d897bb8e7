"""Dashboard components updated by Server-Sent Events (the django-dashboards SSE pattern).

`SSEStat` and `SSEChart` are django-dashboards' Stat and Chart; `SSEMixin` makes any other
component live the same way (set `template_name` to the SSE template and `update_template_name`
to the component's own). The component template wraps the ordinary one in an element that htmx
swaps on the component's event; the page's script (sse-page.js) opens ONE stream for all of a
page's components, on the same-origin path ``/events/?channel=...``: nginx serves it from
Pushpin on the app's own origin, so no Pushpin host name, port or CORS setting reaches the
browser. A publisher renders the ordinary template with a new value and sends it as an event
named after the component (`component.publish(value)`); htmx swaps it in.
"""

from dataclasses import dataclass
from urllib.parse import urlencode

from dashboards.component import Chart, Stat
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.html import strip_spaces_between_tags

RESUME_JS = "realtime/sse-resume.js"
PAGE_JS = "realtime/sse-page.js"
SSE_TEMPLATE = "realtime/components/sse.html"


class SSEMixin:
    """Live updates for a django-dashboards component: its `channel`, the event named after it,
    and `publish(value)`, which renders the component's own template with the value and sends
    it to every viewer."""

    channel: str
    update_template_name: str

    def __set_name__(self, owner, name):
        # Declared on a Dashboard, the component knows its dashboard and key from the start:
        # a producer can publish `MyDashboard.stat.publish(...)` before any page was rendered.
        if self.key is None:
            self.key = name
        if self.dashboard is None:
            self.dashboard = owner

    @property
    def sse_path(self) -> str:
        return reverse("events")

    @property
    def sse_url(self) -> str:
        """This component's stream alone (the page opens one for all its components)."""
        return f"{self.sse_path}?{urlencode({'channel': self.channel})}"

    @property
    def sse_event(self) -> str:
        # The seed's convention: events are named after the component's template id.
        return self.template_id

    def render_update(self, value) -> str:
        html = render_to_string(
            self.update_template_name, {"component": self, "rendered_value": value}
        )
        return strip_spaces_between_tags(html.strip())

    def publish(self, value, wait: bool = False) -> None:
        """Send `value` to every viewer of this component (see realtime.publishing.publish)."""
        from .publishing import publish

        publish(self.channel, self.sse_event, self.render_update(value), wait=wait)


@dataclass
class SSEStat(SSEMixin, Stat):
    template_name: str = SSE_TEMPLATE
    update_template_name: str = Stat.template_name
    channel: str = "dashboard"

    class Media:
        js = (RESUME_JS, PAGE_JS)


@dataclass
class SSEChart(SSEMixin, Chart):
    template_name: str = SSE_TEMPLATE
    update_template_name: str = Chart.template_name
    channel: str = "dashboard"

    class Media:
        js = (*Chart.Media.js, RESUME_JS, PAGE_JS)
