"""The figures the demo dashboard shows: real numbers from this machine and the event store."""

import json
import os
from datetime import UTC, datetime

from dashboards.component.stat import StatData
from django.core.cache import cache
from django.db.models import Count
from django_eventstream.models import Event

# The page's figures from the event table are computed at most this often per process: an
# anonymous visitor must not be able to make every page load scan the table.
FIGURES_TTL_S = 10


def load_average() -> StatData:
    one, five, _ = os.getloadavg()
    now = datetime.now(UTC).strftime("%H:%M:%S UTC")
    return StatData(
        text=f"{one:.2f}", change_by=round(one - five, 2), sub_text=f"1-min load at {now}"
    )


def publishes(rounds: int) -> StatData:
    now = datetime.now(UTC).strftime("%H:%M:%S UTC")
    return StatData(text=str(rounds), sub_text=f"updates since the producer started; {now}")


def load_chart(samples: list[tuple[str, float]]) -> str:
    """A Plotly figure (JSON) of load samples: what django-dashboards' chart template expects."""
    figure = {
        "data": [
            {
                "type": "scatter",
                "mode": "lines+markers",
                "x": [t for t, _ in samples],
                "y": [v for _, v in samples],
                "name": "load",
            }
        ],
        "layout": {
            "title": {"text": "Load average, live"},
            "margin": {"t": 40, "r": 10, "b": 40, "l": 40},
            "yaxis": {"rangemode": "tozero"},
        },
    }
    return json.dumps(figure)


def events_stored() -> StatData:
    count = cache.get_or_set(
        "demo:events-stored", lambda: Event.objects.exclude(eid=0).count(), FIGURES_TTL_S
    )
    return StatData(text=str(count), sub_text="events kept for replay")


def _per_channel() -> list[dict]:
    return list(
        Event.objects.exclude(eid=0).values("channel").annotate(n=Count("id")).order_by("-n")[:10]
    )


def events_per_channel() -> str:
    rows = cache.get_or_set("demo:events-per-channel", _per_channel, FIGURES_TTL_S)
    figure = {
        "data": [{"type": "bar", "x": [r["channel"] for r in rows], "y": [r["n"] for r in rows]}],
        "layout": {"title": {"text": "Stored events per channel"}, "margin": {"t": 40, "b": 40}},
    }
    return json.dumps(figure)
