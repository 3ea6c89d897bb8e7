"""The app's /events/ view for a request Pushpin signed: a GRIP stream hold whose refresh link
carries the configured (long) timeout."""

import datetime
import json
import re
import time
import uuid

import jwt
import pytest
from django.conf import settings
from django.test import override_settings
from django.utils import timezone

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


# --- the next link's es-meta token --------------------------------------------------------------


def link_token(channels, user="anonymous", key=None, expires_in=600, **extra):
    meta = {"iss": "es", "exp": int(time.time()) + expires_in, "channels": channels, "user": user}
    return jwt.encode({**meta, **extra}, (key or settings.SECRET_KEY).encode(), algorithm="HS256")


def follow_link(client, token, channel="probe-link"):
    return signed(client, f"/events/?channel={channel}&link=next&recover=true&es-meta={token}")


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("", "empty or too long"),
        ("garbage", "not a valid token"),
        ("x" * 3000, "empty or too long"),
        (link_token(["probe-link"], expires_in=-5), "expired"),
        (link_token(["probe-link"], key="another-site-key-that-is-long-enough"), "not signed"),
        (link_token(["no!such"]), "malformed channel name"),
        (link_token(["undeclared"]), "unknown channel"),
        (link_token([]), "unexpected content"),
        (link_token("probe-link"), "unexpected content"),
        (link_token(["probe-link"], user=["x"]), "unexpected content"),
    ],
    ids=[
        "empty",
        "garbage",
        "huge",
        "expired",
        "wrong-key",
        "bad-channel",
        "unknown-channel",
        "no-channels",
        "channels-not-a-list",
        "user-not-a-string",
    ],
)
def test_malformed_link_tokens_get_400_with_the_reason(client, token, reason):
    response = follow_link(client, token)
    assert response.status_code == 400, (response.status_code, response.content[:200])
    assert reason in response.content.decode(), response.content


def test_a_valid_link_refreshes_the_stream(client):
    response = follow_link(client, link_token(["probe-link"]))
    assert response.status_code == 200, response.content[:300]
    assert response["Grip-Hold"] == "stream"


def test_a_link_signed_with_a_fallback_key_is_accepted_and_re_signed(client):
    old = "the-previous-secret-key-during-a-rotation-0123456789"
    with override_settings(SECRET_KEY_FALLBACKS=[old]):
        response = follow_link(client, link_token(["probe-link"], key=old))
    assert response.status_code == 200, response.content[:300]
    # The next link Pushpin will follow carries a token signed with the current key.
    token = re.search(r"es-meta=([^&>;]+)", response["Grip-Link"]).group(1)
    jwt.decode(token, settings.SECRET_KEY.encode(), algorithms=["HS256"])
    without = follow_link(client, link_token(["probe-link"], key=old))
    assert without.status_code == 400, "a retired key's links must stop working"


def stream_error(response) -> dict:
    assert response.status_code == 200, response.content[:300]
    body = response.content.decode()
    assert "event: stream-error" in body and "Grip-Hold" not in response, body
    return json.loads(body.split("data: ", 1)[1].splitlines()[0])


def test_a_refresh_ends_the_stream_of_a_deactivated_or_deleted_user(client):
    from django.contrib.auth import get_user_model

    name = f"reader-{uuid.uuid4().hex[:6]}"
    user = get_user_model().objects.create_user(name, password="x")  # noqa: S106 - a test user
    token = link_token(["private"], user=str(user.pk))
    assert follow_link(client, token, "private")["Grip-Hold"] == "stream"
    user.is_active = False
    user.save()
    error = stream_error(follow_link(client, token, "private"))
    assert error["condition"] == "forbidden" and "no longer active" in error["text"], error
    user.delete()
    error = stream_error(follow_link(client, token, "private"))
    assert "no longer exists" in error["text"], error


def test_a_refresh_ends_the_stream_when_the_user_lost_the_channel(client):
    from django.contrib.auth import get_user_model

    staff = get_user_model().objects.create_user(
        f"staff-{uuid.uuid4().hex[:6]}",
        password="x",  # noqa: S106 - a throwaway test user
        is_staff=True,
    )
    token = link_token(["ops"], user=str(staff.pk))
    assert follow_link(client, token, "ops")["Grip-Hold"] == "stream"
    staff.is_staff = False
    staff.save()
    error = stream_error(follow_link(client, token, "ops"))
    assert "not allowed to read channel(s): ops" in error["text"], error


@pytest.mark.parametrize(
    "query",
    ["link=later", "recover=yes", "link=next&link=next", "es-meta=a&es-meta=b"],
)
def test_malformed_link_parameters_get_400(client, query):
    response = signed(client, f"/events/?channel=probe-link&{query}")
    assert response.status_code == 400, (query, response.status_code, response.content[:200])


# --- bounded replay ---------------------------------------------------------------------------


def stored(channel, count):
    from realtime.storage import BoundedStorage

    storage = BoundedStorage()
    return [storage.append_event(channel, "seq", str(n)).id for n in range(count)]


def resume(client, channel, last_id):
    return signed(client, f"/events/?channel={channel}&lastEventId={channel}:{last_id}")


def test_a_resume_within_the_limits_replays_what_was_missed(client):
    channel = f"probe-replay-{uuid.uuid4().hex[:6]}"
    ids = stored(channel, 5)
    body = resume(client, channel, ids[1]).content.decode()
    assert "stream-reset" not in body
    assert re.findall(r"^data: (\d+)$", body, re.M) == ["2", "3", "4"], body[-500:]


def test_a_resume_past_the_event_limit_gets_stream_reset_with_the_newest_id(client):
    channel = f"probe-replay-{uuid.uuid4().hex[:6]}"
    with override_settings(REALTIME_REPLAY_MAX_EVENTS=3):
        ids = stored(channel, 6)
        body = resume(client, channel, ids[0]).content.decode()
    assert "event: stream-reset" in body, body[-500:]
    assert f"id: {channel}:{ids[-1]}" in body, f"expected the newest id {ids[-1]}: {body[-300:]}"
    assert not re.findall(r"^data: \d+$", body, re.M), "no event replayed past the limit"


def test_a_resume_from_too_old_an_event_gets_stream_reset(client):
    from django_eventstream.models import Event

    channel = f"probe-replay-{uuid.uuid4().hex[:6]}"
    ids = stored(channel, 3)
    old = timezone.now() - datetime.timedelta(seconds=settings.REALTIME_REPLAY_MAX_AGE + 5)
    Event.objects.filter(channel=channel, eid=ids[0]).update(created=old)
    body = resume(client, channel, ids[0]).content.decode()
    assert "event: stream-reset" in body and f"id: {channel}:{ids[-1]}" in body, body[-500:]


def test_trim_deletes_events_past_the_retention_in_bulk():
    from django_eventstream.models import Event

    from realtime import storage

    channel = f"probe-trim-{uuid.uuid4().hex[:6]}"
    ids = stored(channel, 12)
    past = timezone.now() - datetime.timedelta(
        seconds=settings.REALTIME_EVENT_RETENTION_SECONDS + 60
    )
    Event.objects.filter(channel=channel, eid__lte=ids[9]).update(created=past)
    storage.TRIM_CHUNK, saved = 4, storage.TRIM_CHUNK  # several chunks
    try:
        deleted = storage.trim()
    finally:
        storage.TRIM_CHUNK = saved
    assert deleted >= 10, f"expected at least the 10 old events trimmed, got {deleted}"
    left = sorted(Event.objects.filter(channel=channel).values_list("eid", flat=True))
    assert left == ids[10:], f"expected events {ids[10:]} kept, found {left}"


def test_a_publish_never_waits_for_the_trim(monkeypatch):
    """django-eventstream trims inside every publish; the kit hands it to a background thread."""
    import threading

    from realtime import storage

    started, release = threading.Event(), threading.Event()

    def slow_trim():
        started.set()
        release.wait(10)
        return 0

    monkeypatch.setattr(storage, "trim", slow_trim)
    monkeypatch.setattr(storage, "_last_trim", 0.0)
    try:
        began = time.monotonic()
        stored(f"probe-trim-{uuid.uuid4().hex[:6]}", 3)
        took = time.monotonic() - began
        assert started.wait(5), "no trim was started by the publishes"
        assert took < 2, f"3 publishes took {took:.1f} s while a trim was running"
    finally:
        release.set()


def test_each_new_stream_gets_its_own_reconnect_delay(client):
    """A dead node's viewers must not all come back in the same second: every stream's SSE
    `retry:` is drawn from 0.5 s to REALTIME_RECONNECT_SPREAD_SECONDS."""
    delays = set()
    for _ in range(20):
        body = signed(client, "/events/?channel=probe-retry").content.decode()
        found = re.search(r"^retry: (\d+)$", body, re.M)
        assert found and body.index("retry:") < body.index("event: stream-open"), body[-300:]
        delays.add(int(found.group(1)))
    spread = settings.REALTIME_RECONNECT_SPREAD_SECONDS
    assert min(delays) >= 500 and max(delays) <= spread * 1000, delays
    assert len(delays) > 10, f"20 streams share {len(delays)} reconnect delays: {delays}"
