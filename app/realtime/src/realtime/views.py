import random
import re

from django.conf import settings
from django.http import HttpResponse
from django.views.decorators.cache import never_cache
from django_eventstream.utils import sse_error_response
from django_eventstream.views import events as eventstream_events

from . import channels, links, metrics

# A Last-Event-ID as django-eventstream writes it: "channel:id" pairs, comma-separated.
LAST_EVENT_ID = re.compile(
    r"^[A-Za-z0-9_.%-]{1,192}:\d{1,18}(,[A-Za-z0-9_.%-]{1,192}:\d{1,18}){0,9}$"
)
# What else a next link carries (django-eventstream writes them; a client may forge any).
LINK_FLAGS = {"link": {"next"}, "recover": {"true"}}


def _text(message: str, status: int) -> HttpResponse:
    return HttpResponse(f"{message}\n", status=status, content_type="text/plain")


def _count(request, response, is_link: bool, resumed: bool):
    """Count what happened to a stream request (the ops dashboard and the alerts use these)."""
    # The GRIP instruction becomes headers later, in django-grip's middleware.
    instruct = getattr(getattr(request, "grip", None), "instruct", None)
    if response.status_code in (400, 403):
        metrics.STREAMS_REFUSED.labels(str(response.status_code)).inc()
    elif response.status_code == 200 and instruct is not None and instruct.hold == "stream":
        if not is_link:
            metrics.STREAMS_OPENED.inc()
            if resumed:
                metrics.STREAM_REPLAYS.inc()
        if not response.streaming and b"event: stream-reset\n" in response.content:
            metrics.STREAM_RESETS.inc()
    return response


@never_cache
def events(request, **kwargs):
    is_link = "es-meta" in request.GET  # Pushpin following the next link it was given
    resumed = bool(request.META.get("HTTP_LAST_EVENT_ID") or request.GET.get("lastEventId"))
    return _count(request, _events(request, is_link, **kwargs), is_link, resumed)


def _events(request, is_link, **kwargs):
    """django-eventstream's view, for requests that Pushpin signed, with input checked first.

    Streams are held by Pushpin, never by the app: a request without a valid Grip-Sig would
    otherwise tie up a worker for the life of the stream.
    """
    if not getattr(request, "grip", None) or not request.grip.proxied:
        return _text(
            "event streams are served through Pushpin: request not signed by a Pushpin node", 403
        )
    problem = _check_query(request)
    if problem:
        return _text(problem, 400)
    if is_link:
        try:
            link = links.decode(request.GET.get("es-meta", ""))
        except links.LinkError as exc:
            return _text(str(exc), 400)
        try:
            user = links.user_of(link)
        except PermissionError as exc:
            # A refresh of a live stream: end it with the reason (Pushpin sends this body and
            # closes the stream, since it holds nothing more).
            return sse_error_response("forbidden", str(exc), {"channels": link.channels})
        denied = [n for n in link.channels if not channels.can_read(user, n)]
        if denied:
            return sse_error_response(
                "forbidden", f"not allowed to read channel(s): {', '.join(denied)}", {}
            )
        if link.resigned:
            request.GET = request.GET.copy()
            request.GET["es-meta"] = link.resigned
    else:
        names = request.GET.getlist("channel")
        if not names:
            return _text("no channel: add ?channel=NAME", 400)
        if len(names) > channels.MAX_CHANNELS:
            return _text(f"too many channels: at most {channels.MAX_CHANNELS} per stream", 400)
        for name in names:
            try:
                channels.validate(name)
            except channels.ChannelError as exc:
                return _text(str(exc), 400)
        denied = [n for n in names if not channels.can_read(request.user, n)]
        if denied:
            return _text(f"not allowed to read channel(s): {', '.join(denied)}", 403)
    response = eventstream_events(request, **kwargs)
    instruct = request.grip.instruct
    if instruct is not None and instruct.next_link:
        # django-eventstream gives its next link no timeout, so Pushpin re-asks the app for every
        # open stream every 120 s (its default), at most 10 per second per node: past ~1,200
        # streams a node falls behind and delays events (django-eventstream issue #174). The
        # refresh only re-checks what a stream may read; missed events are caught up without it.
        # Each refresh is drawn from the last fifth of the interval, so streams that opened
        # together (a restart, a deploy) do not all come back to the app in the same second.
        longest = settings.REALTIME_STREAM_REFRESH_SECONDS
        instruct.next_link_timeout = random.randint(longest * 4 // 5, longest)  # noqa: S311
    if not is_link and response.status_code == 200 and b"event: stream-open\n" in response.content:
        # When its node goes away, a browser reconnects after the stream's `retry:` time: each
        # stream gets its own, spread over REALTIME_RECONNECT_SPREAD_SECONDS, so that the
        # viewers of a dead node do not all come back to the other nodes and the app at once.
        spread = settings.REALTIME_RECONNECT_SPREAD_SECONDS
        retry = random.randint(500, max(500, int(spread * 1000)))  # noqa: S311
        response.content = response.content.replace(
            b"event: stream-open\n", f"retry: {retry}\n\nevent: stream-open\n".encode(), 1
        )
    return response


def _check_query(request) -> str:
    """The reason a stream request's query or Last-Event-ID is malformed, or ''."""
    last_ids = [request.META.get("HTTP_LAST_EVENT_ID", ""), *request.GET.getlist("lastEventId")]
    for last_id in filter(None, last_ids):
        if last_id != "error" and not LAST_EVENT_ID.match(last_id):
            return f"malformed Last-Event-ID {last_id[:80]!r}: expected CHANNEL:NUMBER[,...]"
    for name, allowed in LINK_FLAGS.items():
        values = request.GET.getlist(name)
        if len(values) > 1 or any(v not in allowed for v in values):
            return f"malformed {name}: expected {name}={'|'.join(sorted(allowed))}"
    if len(request.GET.getlist("es-meta")) > 1:
        return "malformed es-meta: given more than once"
    return ""
