"""The process-wide Pushpin cluster publisher, installed where django-grip looks for it.

django-eventstream's ``send_event`` publishes through ``django_grip.publish``, which uses the
module's PubControl. Installing the cluster there makes every ``send_event`` from any app code
reach every Pushpin node, with no change to the calling code.
"""

import atexit
import os
import threading
from urllib.parse import unquote

import django_grip
from django.conf import settings

from .cluster import HostedGripPublisher, NodeResult, PushpinCluster

_cluster = None
_cluster_pid = None
_lock = threading.Lock()


def get_cluster() -> PushpinCluster:
    """The cluster publisher of this process (recreated after a fork: threads do not survive it)."""
    global _cluster, _cluster_pid
    with _lock:
        if _cluster is None or _cluster_pid != os.getpid():
            limits = {
                "timeout": settings.PUSHPIN_PUBLISH_TIMEOUT,
                "queue_size": settings.PUSHPIN_PUBLISH_QUEUE_SIZE,
                "queue_bytes": settings.PUSHPIN_PUBLISH_QUEUE_BYTES,
            }
            if settings.GRIP_URL:
                _cluster = HostedGripPublisher(settings.GRIP_URL, **limits)
            else:
                _cluster = PushpinCluster(
                    settings.PUSHPIN_CONTROL_URLS,
                    resync_delay=settings.PUSHPIN_RESYNC_SECONDS,
                    current_id=stored_id,
                    **limits,
                )
            _cluster_pid = os.getpid()
        return _cluster


def stored_id(pushpin_channel: str) -> str | None:
    """The newest stored event id of the channel django-eventstream publishes as
    `pushpin_channel` (None for its other channels: user channels have no stored events)."""
    from django.db import connection
    from django_eventstream.eventstream import get_storage

    # django-eventstream names a channel's Pushpin channel "events-" + quote(name)
    # (django_eventstream.utils.publish_event), after django-grip's GRIP_PREFIX.
    prefix = f"{getattr(settings, 'GRIP_PREFIX', '')}events-"
    storage = get_storage()
    if storage is None or not pushpin_channel.startswith(prefix):
        return None
    try:
        return str(storage.get_current_id(unquote(pushpin_channel[len(prefix) :])))
    finally:
        if threading.current_thread().name == "pushpin-resync":
            connection.close()  # that thread's own connection: not held between resyncs


class _LazyCluster:
    """Stands in for django_grip's PubControl; resolves the per-process cluster on each call."""

    def publish(self, *args, **kwargs):
        return get_cluster().publish(*args, **kwargs)

    def finish(self):
        return get_cluster().finish()


def install() -> None:
    django_grip._pubcontrol = _LazyCluster()
    # Asynchronous publishes still queued at exit would be lost without this.
    atexit.register(lambda: _cluster is not None and _cluster.finish())


def publish(channel: str, event: str, data: str, wait: bool = False) -> list[NodeResult]:
    """Store an event and publish it to every Pushpin node (or the hosted GRIP service).

    `data` is sent as it is (a rendered component, JSON text...). The event is stored first, so
    clients that reconnect get it even when a node missed it. By default the call only queues
    the publish (a slow node never holds up the caller; failures are logged and counted); with
    `wait=True` it returns each node's answer and raises PublishError, naming the nodes, unless
    every node accepted it.
    """
    from django_eventstream import send_event

    from . import channels

    channels.validate(channel)
    if not event or any(c in event for c in "\r\n\0"):
        raise ValueError("event type must be a non-empty single line")
    send_event(channel, event, data, json_encode=False, async_publish=not wait)
    return [] if not wait else [NodeResult(node, True) for node in get_cluster().nodes()]
