"""Publish every GRIP item to every Pushpin node.

Pushpin nodes do not talk to each other, so each publish must reach all of them. The nodes are
the addresses the configured control URLs resolve to *at publish time*: Compose's DNS returns
every replica of a service, a Kubernetes headless Service every ready pod, and an Ansible
inventory can list the hosts. Nodes added by scaling therefore need no app setting change.
The names are looked up again every second, in the background so that a slow resolver holds up
no publish; a failed look-up keeps the host's last known nodes (a DNS blip must not drop
publishes), and a publish that finds no node at all is counted as a failure like any other.

Each node has its own sender thread and bounded queue. A slow or dead node costs its own bounded
timeout and a logged, counted failure; it never delays the other nodes nor stalls the publisher.
Events are stored before they are published, so a client of a node that missed a publish gets
the event on reconnect (Last-Event-ID), and Pushpin itself asks the app for what it missed when
the next publish's prev-id does not match — or, after a channel's last event, the resync's
(resync.py).
"""

from __future__ import annotations

import http.client
import json
import logging
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, wait
from dataclasses import dataclass
from urllib.parse import urlsplit

from . import conf, metrics
from .resync import ChannelResync

logger = logging.getLogger(__name__)

# Pushpin accepts many items per POST; batching keeps throughput high under bursts.
MAX_BATCH = 100
# ... but answers 400 to a body above push_in_max_body_size (1,000,000 in pushpin/pushpin.conf),
# failing every item in it: a batch stops short of this many bytes (a bigger item goes alone).
MAX_BATCH_BYTES = 512 * 1024
# The publisher's limits when a caller gives none: the settings' declared defaults.
TIMEOUT, QUEUE_SIZE, QUEUE_BYTES = (
    conf.BY_NAME[f"PUSHPIN_PUBLISH_{limit}"].parse({})
    for limit in ("TIMEOUT", "QUEUE_SIZE", "QUEUE_BYTES")
)
# While a control host does not resolve, it is looked up again this soon rather than after the
# whole TTL (a DNS blip heals fast), and at most this often (a dead resolver is not hammered).
RESOLVE_RETRY = 0.25
# A host that keeps failing to resolve is logged when it starts, then this often (every failed
# look-up is counted).
RESOLVE_LOG_EVERY = 30.0


def _name(host: str, port: int) -> str:
    """A node's name: its publish address, as the metrics' `node` label has it."""
    return f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"


def _names(addrs) -> str:
    return ", ".join(_name(host, port) for host, port in addrs)


class PublishError(Exception):
    """A publish that did not reach every Pushpin node (the event itself is already stored)."""

    def __init__(self, message: str, results: list[NodeResult]):
        super().__init__(message)
        self.results = results


@dataclass(frozen=True)
class NodeResult:
    node: str
    ok: bool
    error: str = ""


@dataclass(frozen=True)
class Endpoint:
    """Where a sender POSTs its batches: a Pushpin node's publish port, or a hosted GRIP
    service (TLS, a path of its own, an Authorization header made fresh for each request)."""

    path: str = "/publish/"
    tls: bool = False
    authorization: Callable[[], str | None] | None = None
    kind: str = "Pushpin node"  # what logs call it


@dataclass
class NodeStats:
    """Counters per node; exported as metrics and shown by the ops tools."""

    published: int = 0  # items a node accepted
    failed: int = 0  # items that did not reach it (logged when they happen)
    requests: int = 0  # successful POSTs (an item batch each)
    latency_sum_s: float = 0.0  # summed over those POSTs
    last_error: str = ""


class NodeSender:
    """Sends queued items to one Pushpin node, in order, with a bounded timeout per request.

    Its queue is bounded by items and by bytes (items JSON-encoded, as sent), so a stalled node
    holds bounded memory: an item beyond either bound fails at once. Every item's future is
    resolved, whatever happens: an unexpected error fails its batch (logged with its traceback,
    counted) and the sender goes on with the next one.
    """

    def __init__(
        self,
        host: str,
        port: int,
        timeout: float,
        queue_size: int,
        stats: NodeStats,
        queue_bytes: int = QUEUE_BYTES,
        endpoint: Endpoint = Endpoint(),
    ):
        self.host, self.port, self.timeout = host, port, timeout
        self.endpoint = endpoint
        self.name = _name(host, port)
        self.stats = stats
        self.queue_size, self.queue_bytes = queue_size, queue_bytes
        # Series at 0 from the node's first appearance, so that rate() sees its first items.
        metrics.PUBLISHED.labels(self.name)
        metrics.PUBLISH_FAILURES.labels(self.name)
        self.last_seen = time.monotonic()
        self._queue: deque[tuple[bytes, Future]] = deque()  # encoded items
        self._bytes = 0  # held: queued, and in the batch being sent
        self._sending = 0  # items of the batch being sent
        self._stopped = False
        self._cond = threading.Condition()  # guards the four above
        self._conn: http.client.HTTPConnection | None = None
        self._thread = threading.Thread(target=self._run, name=f"pushpin-{self.name}", daemon=True)
        self._thread.start()

    def submit(self, item: dict) -> Future:
        future: Future = Future()
        try:
            data = json.dumps(item).encode()
        except (TypeError, ValueError) as exc:  # the caller's bug; it costs this item only
            self._fail([future], f"item cannot be sent as JSON: {type(exc).__name__}: {exc}")
            return future
        with self._cond:
            if self._stopped:  # its thread may be gone: nothing would answer this item
                error = "sender stopped (the node left)"
            elif len(self._queue) >= self.queue_size:
                error = (
                    f"send queue full ({len(self._queue)} items waiting, limit "
                    f"{self.queue_size}, PUSHPIN_PUBLISH_QUEUE_SIZE)"
                )
            elif self._bytes + len(data) > self.queue_bytes:
                error = (
                    f"send queue full ({self._bytes} bytes waiting, limit {self.queue_bytes}, "
                    f"PUSHPIN_PUBLISH_QUEUE_BYTES); the item has {len(data)} bytes"
                )
            else:
                self._queue.append((data, future))
                self._bytes += len(data)
                self._cond.notify()
                return future
        self._fail([future], error)
        return future

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()

    def idle(self) -> bool:
        with self._cond:
            return not self._queue and not self._sending

    def _run(self) -> None:
        while batch := self._take():
            futures = [future for _, future in batch]
            try:
                self._send([data for data, _ in batch], futures)
            except Exception as exc:
                # Anything else (a bug in the send path, a failing metrics call) costs this batch
                # only: a dead thread would leave the node without publishes for good.
                logger.exception(
                    "unexpected error sending %d item(s) to %s %s",
                    len(batch),
                    self.endpoint.kind,
                    self.name,
                )
                if pending := [future for future in futures if not future.done()]:
                    self._fail(pending, f"{type(exc).__name__}: {exc}")
                self._close()
            finally:
                with self._cond:
                    self._bytes -= sum(len(data) for data, _ in batch)
                    self._sending = 0
        self._close()

    def _take(self) -> list[tuple[bytes, Future]]:
        """The next batch, in order; empty once stopped and drained."""
        with self._cond:
            while not self._queue and not self._stopped:
                self._cond.wait()
            batch, size = [], 0
            while self._queue and len(batch) < MAX_BATCH:
                size += len(self._queue[0][0]) + 1
                if batch and size > MAX_BATCH_BYTES:
                    break
                batch.append(self._queue.popleft())
            self._sending = len(batch)
            return batch

    def _send(self, items: list[bytes], futures: list[Future]) -> None:
        body = b'{"items":[' + b",".join(items) + b"]}"
        started = time.monotonic()
        try:
            status, text = self._post(body)
        except (OSError, http.client.HTTPException) as exc:
            self._close()
            self._fail(futures, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
            return
        if status != 200:
            self._fail(futures, f"HTTP {status}: {text[:200]}")
            return
        latency = time.monotonic() - started
        self.stats.published += len(items)
        self.stats.requests += 1
        self.stats.latency_sum_s += latency
        try:
            metrics.PUBLISHED.labels(self.name).inc(len(items))
            metrics.PUBLISH_SECONDS.labels(self.name).observe(latency)
        finally:
            # The node has them, whatever the metrics did (counted first: callers read them).
            for future in futures:
                future.set_result(NodeResult(self.name, True))

    def _post(self, body: bytes) -> tuple[int, str]:
        # One retry on a fresh connection: a kept-alive connection may have been closed by the
        # node (restart) since the last publish.
        for attempt in (1, 2):
            reused = self._conn is not None
            if self._conn is None:
                self._conn = self._connect()
            headers = {"Content-Type": "application/json"}
            if self.endpoint.authorization and (auth := self.endpoint.authorization()):
                headers["Authorization"] = auth
            try:
                self._conn.request("POST", self.endpoint.path, body=body, headers=headers)
                response = self._conn.getresponse()
                return response.status, response.read().decode(errors="replace")
            except (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected):
                self._close()
                if not reused or attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _connect(self) -> http.client.HTTPConnection:
        if self.endpoint.tls:
            return http.client.HTTPSConnection(
                self.host, self.port, timeout=self.timeout, context=ssl.create_default_context()
            )
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)

    def _fail(self, futures: list[Future], error: str) -> None:
        try:
            self.stats.failed += len(futures)
            self.stats.last_error = error
            metrics.PUBLISH_FAILURES.labels(self.name).inc(len(futures))
            logger.warning(
                "publish to %s %s failed for %d item(s): %s",
                self.endpoint.kind,
                self.name,
                len(futures),
                error,
            )
        except Exception:
            logger.exception("counting a failed publish to %s failed", self.name)
        # Answered whatever happened above (and after counting: callers read the counts).
        for future in futures:
            future.set_result(NodeResult(self.name, False, error))

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class PushpinCluster:
    """A pubcontrol-compatible publisher (``publish``/``finish``) that fans out to every node."""

    def __init__(
        self,
        control_urls: list[str],
        timeout: float = TIMEOUT,
        resolve_ttl: float = 1.0,
        queue_size: int = QUEUE_SIZE,
        queue_bytes: int = QUEUE_BYTES,
        resync_delay: float = 0,
        current_id: Callable[[str], str | None] | None = None,
    ):
        if not control_urls:
            raise ValueError("no Pushpin control URL configured (PUSHPIN_CONTROL_URLS)")
        self.targets = [self._parse(url) for url in control_urls]
        self.timeout = timeout
        self.resolve_ttl = resolve_ttl
        self.queue_size, self.queue_bytes = queue_size, queue_bytes
        self.stats: dict[str, NodeStats] = {}
        self.resolve_failures = 0
        self.node_departures = 0
        self._senders: dict[tuple[str, int], NodeSender] = {}
        # The last good answer per control host: a failed look-up keeps it (a DNS blip must not
        # drop publishes); only a successful answer changes a host's nodes.
        self._host_addrs: dict[tuple[str, int], list[tuple[str, int]]] = {}
        self._failing: dict[tuple[str, int], tuple[int, float]] = {}  # failed in a row, logged at
        self._resolved: list[tuple[str, int]] | None = None  # None until a first look-up ended
        self._next_resolve = 0.0
        self._resolving = False  # one look-up at a time
        self._lock = threading.Lock()
        self._resolved_cond = threading.Condition(self._lock)
        # Off without a way to read a channel's newest id (see resync.py).
        self.resync = (
            ChannelResync(self._publish_resync, resync_delay, current_id)
            if resync_delay > 0 and current_id is not None
            else None
        )

    @staticmethod
    def _parse(url: str) -> tuple[str, int]:
        parts = urlsplit(url if "//" in url else f"http://{url}")
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"bad Pushpin control URL {url!r}: expected http://HOST:PORT")
        return parts.hostname, parts.port or 5561

    def nodes(self) -> list[str]:
        """The node addresses a publish goes to right now."""
        return [self._sender(addr).name for addr in self._resolve()]

    def _resolve(self) -> list[tuple[str, int]]:
        """The node set. Once stale it is looked up again, never under the lock and one look-up
        at a time, in the background: publishes keep the last known set meanwhile, so a slow
        resolver delays none of them but those before the very first answer."""
        with self._lock:
            due = not self._resolving and time.monotonic() >= self._next_resolve
            self._resolving = self._resolving or due
            known = self._resolved
        if due and known is not None:
            try:
                threading.Thread(target=self._refresh, name="pushpin-resolve", daemon=True).start()
            except RuntimeError:  # no thread to be had: look up here rather than never again
                self._refresh()
        elif due:
            self._refresh()
        if known is not None:
            return known
        with self._lock:
            self._resolved_cond.wait_for(lambda: self._resolved is not None)
            return self._resolved

    def _refresh(self) -> None:
        """Look every control host up and install the node set they make."""
        retry = min(RESOLVE_RETRY, self.resolve_ttl)
        next_in = retry
        try:
            found = {target: self._look_up(*target) for target in self.targets}
            if all(isinstance(answer, list) for answer in found.values()):
                next_in = self.resolve_ttl
            with self._lock:
                for target, answer in found.items():
                    if isinstance(answer, list):
                        self._host_addrs[target] = answer
                before = self._resolved or []
                after = sorted({addr for addrs in self._host_addrs.values() for addr in addrs})
                self._resolved = after
                self._retire_senders(time.monotonic())
                self._resolved_cond.notify_all()
            # Still the only look-up running: its counters and logs need no lock.
            self._report(found, before, after)
        finally:
            with self._lock:
                if self._resolved is None:  # a bug above must not leave first publishers waiting
                    self._resolved = []
                self._next_resolve = time.monotonic() + next_in
                self._resolving = False
                self._resolved_cond.notify_all()

    @staticmethod
    def _look_up(host: str, port: int) -> list[tuple[str, int]] | Exception:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:  # gaierror, or a name no resolver accepts
            return exc
        return sorted({(info[4][0], port) for info in infos})  # DNS rotates; the set matters

    def _report(self, found: dict, before: list, after: list) -> None:
        now = time.monotonic()
        for target, answer in found.items():
            streak, logged_at = self._failing.pop(target, (0, 0.0))
            if isinstance(answer, list):
                if streak:
                    logger.info(
                        "Pushpin control host %s resolves again (after %d failed look-ups)",
                        target[0],
                        streak,
                    )
                continue
            self.resolve_failures += 1
            metrics.RESOLVE_FAILURES.inc()
            if not streak or now - logged_at >= RESOLVE_LOG_EVERY:
                kept = self._host_addrs.get(target)
                logger.warning(
                    "Pushpin control host %s does not resolve (%d failed look-up(s) in a row): "
                    "%s; %s",
                    target[0],
                    streak + 1,
                    answer,
                    f"still publishing to its last known node(s) {_names(kept)}"
                    if kept
                    else "no node of it is known",
                )
                logged_at = now
            self._failing[target] = (streak + 1, logged_at)
        if after != before:
            self._log_node_change(before, after)

    def _log_node_change(self, before: list, after: list) -> None:
        gone = [addr for addr in before if addr not in after]
        if gone:
            # A node that stops resolving was stopped or removed: its clients reconnect to the
            # others and replay what they missed. Said loudly, never dropped silently.
            self.node_departures += len(gone)
            metrics.NODE_DEPARTURES.inc(len(gone))
            logger.warning("Pushpin node(s) %s no longer resolve", _names(gone))
        logger.info("Pushpin nodes: %s", _names(after) or "none")

    def _retire_senders(self, now: float) -> None:
        # A node that left (scaled down, replaced) keeps its sender until its queue drains.
        for addr in list(self._senders):
            sender = self._senders[addr]
            if addr in self._resolved:
                sender.last_seen = now
            elif now - sender.last_seen > 60 and sender.idle():
                sender.stop()
                del self._senders[addr]

    def _sender(self, addr: tuple[str, int]) -> NodeSender:
        with self._lock:
            sender = self._senders.get(addr)
            if sender is None:
                host, port = addr
                stats = self.stats.setdefault(_name(host, port), NodeStats())
                sender = NodeSender(
                    host, port, self.timeout, self.queue_size, stats, self.queue_bytes
                )
                self._senders[addr] = sender
            return sender

    def _count_unsent(self, count: int, error: str) -> None:
        # No node to count them against: each control host stands for its unknown nodes (as
        # `node`), so the failure metric and its alert show it like any node's.
        with self._lock:
            for host, port in self.targets:
                stats = self.stats.setdefault(_name(host, port), NodeStats())
                stats.failed += count
                stats.last_error = error
                metrics.PUBLISH_FAILURES.labels(_name(host, port)).inc(count)
        logger.error("%s (%d item(s) not published)", error, count)

    def publish_items(self, items: list[dict], blocking: bool = True) -> list[NodeResult]:
        """Queue items for every node; with ``blocking``, wait for and check every node's answer."""
        if self.resync is not None:  # even if no node takes them now: the resync may reach one
            self.resync.seen(items)
        return self._publish_items(items, blocking)

    def _publish_resync(self, items: list[dict]) -> bool:
        # Waits for every node's answer (on the resync thread, or at exit): a node that did
        # not take it gets it again later.
        try:
            self._publish_items(items, blocking=True)
        except PublishError:
            return False
        return True

    def _publish_items(self, items: list[dict], blocking: bool) -> list[NodeResult]:
        addrs = self._resolve()
        if not addrs:
            hosts = ", ".join(h for h, _ in self.targets)
            error = f"cannot reach any Pushpin node: {hosts} resolved to no address"
            self._count_unsent(len(items), error)
            if blocking:
                raise PublishError(error, [])
            return []
        futures: list[Future] = []
        for addr in addrs:
            sender = self._sender(addr)
            futures.extend(sender.submit(item) for item in items)
        if not blocking:
            return []
        # Each node answers within its timeout (plus one retry); queued work ahead adds to it.
        done, pending = wait(futures, timeout=self.timeout * 4 + 1)
        results = [f.result() for f in done]
        results += [NodeResult("?", False, "no answer in time") for _ in pending]
        failed = [r for r in results if not r.ok]
        if failed:
            first_error = {}
            for r in failed:
                first_error.setdefault(r.node, r.error)
            summary = "; ".join(f"{node}: {error}" for node, error in first_error.items())
            reached = len(addrs) - len(first_error)
            message = self._failure(reached, len(addrs), summary)
            raise PublishError(message, results)
        return results

    @staticmethod
    def _failure(reached: int, tried: int, summary: str) -> str:
        if reached <= 0:
            return f"cannot reach any Pushpin node ({tried} tried): {summary}"
        return f"publish reached {reached} of {tried} Pushpin nodes; failed: {summary}"

    # -- pubcontrol interface used by django_grip.publish() ----------------------------------

    def publish(self, channel, item, blocking=False, callback=None):
        exported = item.export()
        exported["channel"] = channel
        try:
            self.publish_items([exported], blocking=blocking)
        except PublishError as exc:
            if callback is None:
                raise
            callback(False, str(exc))
            return
        if callback is not None:
            callback(True, "")

    def finish(self, timeout: float | None = None, resync_on_schedule: bool = False) -> bool:
        """Wait until every queued item was sent or failed; call before a process exits.
        Pending resyncs are sent first: at once, or each when due (``resync_on_schedule``)."""
        if self.resync is not None:
            self.resync.flush(on_schedule=resync_on_schedule)
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout * 4 + 1)
        while time.monotonic() < deadline:
            with self._lock:
                senders = list(self._senders.values())
            if all(sender.idle() for sender in senders):
                return True
            time.sleep(0.01)
        return False


class HostedGripPublisher(PushpinCluster):
    """The same publisher for a hosted GRIP service (GRIP_URL): one endpoint, reached by its
    name over TLS with the service's authentication; the service fans out itself, so its name
    is not resolved into nodes. Failures are counted and logged under the service's name."""

    def __init__(
        self,
        grip_url: str,
        timeout: float = TIMEOUT,
        queue_size: int = QUEUE_SIZE,
        queue_bytes: int = QUEUE_BYTES,
    ):
        from . import grip

        self.service = grip.parse(grip_url)
        parts = urlsplit(self.service.publish_url)
        tls = parts.scheme == "https"
        self._address = (parts.hostname, parts.port or (443 if tls else 80))
        self._endpoint = Endpoint(
            parts.path, tls, self.service.authorization, kind="hosted GRIP service"
        )
        super().__init__(
            [f"http://{self.service.name}"], timeout, queue_size=queue_size, queue_bytes=queue_bytes
        )

    def _resolve(self) -> list[tuple[str, int]]:
        return [self._address]

    @staticmethod
    def _failure(reached: int, tried: int, summary: str) -> str:
        return f"the hosted GRIP service refused the publish or did not answer: {summary}"

    def _sender(self, addr: tuple[str, int]) -> NodeSender:
        with self._lock:
            sender = self._senders.get(addr)
            if sender is None:
                stats = self.stats.setdefault(self.service.name, NodeStats())
                sender = NodeSender(
                    *addr, self.timeout, self.queue_size, stats, self.queue_bytes, self._endpoint
                )
                self._senders[addr] = sender
            return sender
