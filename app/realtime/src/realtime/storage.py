"""Event storage with bounded replay and retention (django-eventstream's database storage).

A client that resumes with a Last-Event-ID gets what it missed, but never more than
REALTIME_REPLAY_MAX_EVENTS events nor events older than REALTIME_REPLAY_MAX_AGE seconds: past
either bound it gets `stream-reset` carrying the newest id (the page then reloads and shows
current values). Without the bound, one anonymous `Last-Event-ID: dashboard:1` made Pushpin page
through the whole retained history (hundreds of requests to the app that nginx never sees), and
every client after an outage replayed hours of stale updates.

Events older than REALTIME_EVENT_RETENTION_SECONDS are deleted in bulk by `trim()`: at most
once per REALTIME_TRIM_INTERVAL_SECONDS per process, on a background thread, so a publish never
waits for it (django-eventstream deletes them one by one inside every publish).
"""

from __future__ import annotations

import datetime
import logging
import threading
import time

from django.conf import settings
from django.db import connection
from django.utils import timezone
from django_eventstream.storage import DjangoModelStorage, EventDoesNotExist

logger = logging.getLogger(__name__)

# Rows per DELETE: short write transactions, so publishers are never blocked for long.
TRIM_CHUNK = 5000

_trim_lock = threading.Lock()
_last_trim = 0.0


class BoundedStorage(DjangoModelStorage):
    def trim_event_log(self):
        # Called by append_event, inside every publish: hand the work to a background thread.
        trim_soon()

    def get_current_id(self, channel):
        # Every new stream asks for it: one indexed row, read without building an ORM query
        # (which cost more than the read itself: ~0.4 ms of the app's answer to a new stream).
        from django_eventstream.models import EventCounter

        table = connection.ops.quote_name(EventCounter._meta.db_table)
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT value FROM {table} WHERE name = %s", [channel])  # noqa: S608
            row = cursor.fetchone()
        return row[0] if row else 0

    def get_events(self, channel, last_id, limit=100):
        from django_eventstream import models

        current = self.get_current_id(channel)
        if last_id < current:
            behind = current - last_id
            if behind > settings.REALTIME_REPLAY_MAX_EVENTS:
                raise EventDoesNotExist(
                    f"{behind} events behind (REALTIME_REPLAY_MAX_EVENTS)", current
                )
            oldest = timezone.now() - datetime.timedelta(seconds=settings.REALTIME_REPLAY_MAX_AGE)
            seen = models.Event.objects.filter(channel=channel, eid=last_id).values("created")
            if seen and seen[0]["created"] < oldest:
                raise EventDoesNotExist("resuming from too old an event", current)
        return super().get_events(channel, last_id, limit=limit)


def trim_soon() -> None:
    """Start a trim on a background thread if none ran in this process lately."""
    global _last_trim
    now = time.monotonic()
    if now - _last_trim < settings.REALTIME_TRIM_INTERVAL_SECONDS:
        return
    if not _trim_lock.acquire(blocking=False):
        return  # one is running
    _last_trim = now
    threading.Thread(target=_trim_in_background, name="trim-events", daemon=True).start()


def _trim_in_background() -> None:
    try:
        trim()
    except Exception:
        logger.exception("trimming old events failed; retrying at the next interval")
    finally:
        connection.close()  # this thread's own connection
        _trim_lock.release()


def trim(now: datetime.datetime | None = None) -> int:
    """Delete events older than the retention; returns how many. (Each channel's id counter
    stays: a publish racing a counter's deletion would fail, and ids must never go back.)"""
    from django_eventstream import models

    cutoff = (now or timezone.now()) - datetime.timedelta(
        seconds=settings.REALTIME_EVENT_RETENTION_SECONDS
    )
    events = 0
    while True:
        ids = list(
            models.Event.objects.filter(created__lt=cutoff).values_list("id", flat=True)[
                :TRIM_CHUNK
            ]
        )
        if not ids:
            break
        events += models.Event.objects.filter(id__in=ids).delete()[0]
    if events:
        logger.info("trimmed %d event(s) older than %s", events, cutoff.isoformat())
    return events
