from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django_eventstream import send_event

from realtime import channels
from realtime.cluster import HostedGripPublisher, PublishError
from realtime.publishing import get_cluster


class Command(BaseCommand):
    help = (
        "Store one event and publish it to every Pushpin node (or the hosted GRIP service of "
        "GRIP_URL). Exits non-zero, naming the nodes, when any node could not be reached (the "
        "event stays stored: clients get it when they reconnect)."
    )

    def add_arguments(self, parser):
        parser.add_argument("channel")
        parser.add_argument("event", help="event type (the SSE 'event:' field)")
        parser.add_argument("data", help="event data, sent as is")

    def handle(self, channel, event, data, **options):
        try:
            channels.validate(channel)
        except channels.ChannelError as exc:
            raise CommandError(str(exc)) from exc
        if not event or any(c in event for c in "\r\n\0"):
            raise CommandError("event type must be a non-empty single line")
        size = len(data.encode())
        if size > settings.REALTIME_MAX_EVENT_BYTES:
            raise CommandError(
                f"event data is {size} bytes; the limit is {settings.REALTIME_MAX_EVENT_BYTES} "
                "(REALTIME_MAX_EVENT_BYTES)"
            )
        try:
            send_event(channel, event, data, json_encode=False, async_publish=False)
        except PublishError as exc:
            raise CommandError(f"event stored, but {exc}") from exc
        cluster = get_cluster()
        if isinstance(cluster, HostedGripPublisher):
            self.stdout.write(f"published to the hosted GRIP service {cluster.service.name}")
            return
        nodes = cluster.nodes()
        self.stdout.write(f"published to {len(nodes)} Pushpin node(s): {', '.join(nodes)}")
