"""The app's /events/ view for a request Pushpin signed: a GRIP stream hold whose refresh link
carries the configured (long) timeout."""

import re
import time

import jwt
import pytest
from django.conf import settings

pytestmark = pytest.mark.usefixtures("db")


def signed(client, path):
    token = jwt.encode(
        {"iss": "pushpin", "exp": int(time.time()) + 60},
        settings.PUSHPIN_SIG_KEY,
        algorithm="HS256",
    )
    return client.get(path, HTTP_GRIP_SIG=token)


def test_signed_request_gets_a_stream_hold(client):
    response = signed(client, "/events/?channel=probe-view")
    assert response.status_code == 200, response.content[:300]
    assert response["Grip-Hold"] == "stream"
    assert "event: stream-open" in response.content.decode()


def test_refresh_link_has_the_configured_timeout_spread(client):
    """Without it Pushpin re-asks the app for every stream every 120 s (django-eventstream
    issue #174); the kit asks within the last fifth of REALTIME_STREAM_REFRESH_SECONDS, each
    stream at its own moment, so streams opened together do not refresh together."""
    longest = settings.REALTIME_STREAM_REFRESH_SECONDS
    assert longest == 1800
    timeouts = set()
    for _ in range(20):
        link = signed(client, "/events/?channel=probe-view")["Grip-Link"]
        assert "rel=next" in link, link
        timeout = re.search(r"; timeout=(\d+)$", link)
        assert timeout, link
        timeouts.add(int(timeout.group(1)))
    assert min(timeouts) >= longest * 4 // 5 and max(timeouts) <= longest, timeouts
    assert len(timeouts) > 10, f"20 streams share {len(timeouts)} refresh moments: {timeouts}"


def test_unsigned_request_is_refused(client):
    response = client.get("/events/?channel=probe-view")
    assert response.status_code == 403
