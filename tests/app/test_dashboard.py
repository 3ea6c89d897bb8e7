"""The dashboard page: SSE components point at the same-origin event stream, and everything the
page needs is served from the app's own static files (works with no internet)."""

import re

import pytest

pytestmark = pytest.mark.usefixtures("db")


def page(client) -> str:
    response = client.get("/", follow=True)
    assert response.status_code == 200, f"expected the dashboard, got {response.status_code}"
    return response.content.decode()


def test_sse_components_name_their_channel_and_the_same_origin_events_path(client):
    """The page's script (sse-page.js) opens one stream from these: the browser test checks
    the URL it connects to."""
    html = page(client)
    parts = re.findall(r'data-sse-channel="([^"]+)" data-sse-path="([^"]+)"', html)
    assert parts == [("dashboard", "/events/")] * 3, f"expected 3 live components, found {parts}"
    assert "sse-connect" not in html, "a component opens a stream of its own"
    assert ":7999" not in html and "pushpin" not in html.lower(), (
        "a Pushpin address leaked into the page"
    )


def test_ordinary_and_sse_components_render_side_by_side(client):
    html = page(client)
    swaps = re.findall(r'sse-swap="([^"]+)"', html)
    assert swaps == [
        "dashboardsdemolivedashboardcomponentload",
        "dashboardsdemolivedashboardcomponentload_history",
        "dashboardsdemolivedashboardcomponentpublishes",
    ]
    # The ordinary stat (events stored) renders its value into the page itself.
    assert "events kept for replay" in html


def test_every_script_is_served_by_the_app(client):
    html = page(client)
    sources = re.findall(r'<script[^>]*src="([^"]+)"', html)
    assert sources, "no scripts found"
    external = [src for src in sources if not src.startswith("/static/")]
    assert not external, f"scripts from outside the app's static files: {external}"
    wanted_scripts = (
        "htmx.min.js",
        "htmx.sse.min.js",
        "plotly.min.js",
        "realtime/sse-resume.js",
        "realtime/sse-page.js",
    )
    for wanted in wanted_scripts:
        assert any(src.endswith(wanted) for src in sources), f"{wanted} not on the page"
    for src in sources:
        assert client.get(src).status_code == 200, f"{src} is not served"


def test_no_cors_header_is_needed_or_sent(client):
    from django.conf import settings

    assert not getattr(settings, "EVENTSTREAM_ALLOW_ORIGIN", None)
    assert not getattr(settings, "EVENTSTREAM_ALLOW_ORIGINS", None)
