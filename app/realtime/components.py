"""Dashboard components updated by Server-Sent Events (the django-dashboards SSE pattern).

The component template wraps the ordinary component in an htmx ``sse-connect`` element whose
URL is the same-origin path ``/events/?channel=...``: nginx serves it from Pushpin on the app's
own origin, so no Pushpin host name, port or CORS setting reaches the browser. A publisher
renders the ordinary template with a new value and sends it as an event named after the
component; htmx swaps it in.
"""

from dataclasses import dataclass
from urllib.parse import urlencode

from dashboards.component import Chart, Stat
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.html import strip_spaces_between_tags
from django_eventstream import send_event

RESUME_JS = "realtime/sse-resume.js"


class SSEMixin:
    channel: str
    update_template_name: str

    @property
    def sse_url(self) -> str:
        return f"{reverse('events')}?{urlencode({'channel': self.channel})}"

    @property
    def sse_event(self) -> str:
        # The seed's convention: events are named after the component's template id.
        return self.template_id

    def render_update(self, value) -> str:
        html = render_to_string(
            self.update_template_name, {"component": self, "rendered_value": value}
        )
        return strip_spaces_between_tags(html.strip())

    def publish(self, value, async_publish: bool = True) -> None:
        send_event(
            self.channel,
            self.sse_event,
            self.render_update(value),
            json_encode=False,
            async_publish=async_publish,
        )


@dataclass
class SSEStat(SSEMixin, Stat):
    template_name: str = "realtime/components/sse.html"
    update_template_name: str = Stat.template_name
    channel: str = "dashboard"

    class Media:
        js = (RESUME_JS,)


@dataclass
class SSEChart(SSEMixin, Chart):
    template_name: str = "realtime/components/sse.html"
    update_template_name: str = Chart.template_name
    channel: str = "dashboard"

    class Media:
        js = (*Chart.Media.js, RESUME_JS)
