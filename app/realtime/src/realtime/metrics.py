"""The app's Prometheus metrics, and the internal listener that serves them.

gunicorn runs several worker processes and the ticker is a process of its own, so the metrics
use prometheus_client's multiprocess mode when PROMETHEUS_MULTIPROC_DIR is set: every process
writes its values to files in that directory, and the listener adds them up (counters of
processes that have exited stay counted). The directory is prepared by `realtime.multiproc`
before this module is imported (the app's ready(), gunicorn's on_starting): the metrics below
write their files there as soon as they exist.

The listener binds an internal address only (METRICS_ADDR: an IP, or the CIDR of the internal
network to listen on): nginx never proxies it, and the public site has no /metrics page.
Nothing here imports Django, so gunicorn's master process can serve the metrics.
"""

from __future__ import annotations

import ipaddress
import logging
import socket

from prometheus_client import Counter, Histogram, start_http_server

from .multiproc import registry

logger = logging.getLogger(__name__)

# -- what is counted -------------------------------------------------------------------------
# `node` is the Pushpin node's publish address (host:port), as the cluster publisher names it.
PUBLISHED = Counter(
    "rtdash_pushpin_published",
    "Items a Pushpin node accepted from this app (each publish goes to every node)",
    ["node"],
)
PUBLISH_FAILURES = Counter(
    "rtdash_pushpin_publish_failures",
    "Items that did not reach a Pushpin node (timeout, refused, HTTP error, queue full)",
    ["node"],
)
PUBLISH_SECONDS = Histogram(
    "rtdash_pushpin_publish_seconds",
    "Time a Pushpin node took to accept one publish request (a batch of items)",
    ["node"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
RESYNCS = Counter(
    "rtdash_pushpin_resyncs",
    "Resyncs of a quiet channel's newest event (resync.py): sent (every node took it), failed "
    "(a node did not; tried again), skipped (another process published the channel since)",
    ["outcome"],
)
NODE_DEPARTURES = Counter(
    "rtdash_pushpin_node_departures",
    "Pushpin nodes that stopped resolving (stopped, removed or replaced)",
)
RESOLVE_FAILURES = Counter(
    "rtdash_pushpin_resolve_failures",
    "Look-ups of a Pushpin control host name that failed",
)
STREAMS_OPENED = Counter(
    "rtdash_streams_opened",
    "Event streams the app told Pushpin to hold (new client connections)",
)
STREAM_REPLAYS = Counter(
    "rtdash_stream_replays",
    "New streams that resumed from a Last-Event-ID (the client reconnected)",
)
STREAM_RESETS = Counter(
    "rtdash_stream_resets",
    "stream-reset events sent: a client's Last-Event-ID was older than the events kept",
)
HEALTH_CHECKS = Counter(
    "rtdash_health_checks",
    "/healthz answers: ok (the database answers) or unhealthy (503)",
    ["result"],
)
PRODUCER_FAILURES = Counter(
    "rtdash_producer_failures",
    "Runs of a periodic producer (manage.py produce) that raised",
    ["producer"],
)
STREAMS_REFUSED = Counter(
    "rtdash_streams_refused",
    "Stream requests the app refused, by HTTP status (400 bad input, 403 not allowed)",
    ["status"],
)


# -- the listener -------------------------------------------------------------------------------


class ListenAddressError(ValueError):
    pass


def listen_address(value: str) -> str:
    """The IP to bind for METRICS_ADDR: an IP as is, or this machine's address in a CIDR.

    For a CIDR, ask the kernel which source address it would use towards that network (a UDP
    "connect" sends nothing); it is ours only if it lies inside the network.
    """
    value = value.strip()
    if "/" not in value:
        try:
            ipaddress.ip_address(value)  # a host name would bind wherever it resolves today
        except ValueError as exc:
            raise ListenAddressError(f"METRICS_ADDR={value!r} is not an IP or a CIDR") from exc
        return value
    try:
        network = ipaddress.ip_network(value, strict=False)
    except ValueError as exc:
        raise ListenAddressError(f"METRICS_ADDR={value!r} is not an IP or a CIDR") from exc
    family = socket.AF_INET6 if network.version == 6 else socket.AF_INET
    probe = network.network_address + 1 if network.num_addresses > 1 else network.network_address
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect((str(probe), 9))
            own = sock.getsockname()[0]
        except OSError as exc:
            raise ListenAddressError(f"no route to {network}: {exc}") from exc
    if ipaddress.ip_address(own) not in network:
        raise ListenAddressError(f"this machine has no address in {network} (METRICS_ADDR)")
    return own


def serve(addr: str, port: int) -> str | None:
    """Start the metrics listener on a daemon thread; return "ip:port", or None when off."""
    if not addr:
        logger.info("metrics listener off (METRICS_ADDR is not set)")
        return None
    bind = listen_address(addr)
    start_http_server(port, addr=bind, registry=registry())
    where = f"[{bind}]:{port}" if ":" in bind else f"{bind}:{port}"
    logger.info("metrics on http://%s/metrics", where)
    return where
