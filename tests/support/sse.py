"""A small EventSource for tests and benchmarks: parses an SSE stream on a background thread,
remembers the last event id, and can open the follow-up stream with Last-Event-ID the way a
browser does after a disconnect."""

from __future__ import annotations

import http.client
import queue
import socket
import threading
import time
import uuid
from dataclasses import dataclass

# Events the server sends for its own bookkeeping, not application events.
CONTROL_EVENTS = {"stream-open", "keep-alive"}


@dataclass(frozen=True)
class Event:
    type: str
    data: str
    id: str | None
    received_at: float


class SSEStream:
    def __init__(
        self,
        host: str,
        port: int,
        path: str,
        last_event_id: str | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 10.0,
    ):
        self.host, self.port, self.path = host, port, path
        self.last_id = last_event_id
        self._queue: queue.Queue[Event | None] = queue.Queue()
        self._conn = http.client.HTTPConnection(host, port, timeout=timeout)
        send = {"Accept": "text/event-stream", "Cache-Control": "no-cache", **(headers or {})}
        if last_event_id:
            send["Last-Event-ID"] = last_event_id
        self._conn.request("GET", path, headers=send)
        self.response = self._conn.getresponse()
        self.status = self.response.status
        self.headers = dict(self.response.getheaders())
        self.closed = threading.Event()
        if self.status == 200:
            # Streams are long-lived: reads block until the next event or keep-alive.
            self._conn.sock.settimeout(None)
            self._thread = threading.Thread(target=self._read, daemon=True)
            self._thread.start()
        else:
            self.body = self.response.read().decode(errors="replace")
            self._conn.close()
            self.closed.set()

    def _read(self) -> None:
        etype, data, eid = "message", [], None
        try:
            for raw in iter(self.response.readline, b""):  # de-chunks
                line = raw.decode().rstrip("\r\n")
                if not line:
                    if data or etype != "message":
                        if eid is not None:
                            self.last_id = eid
                        self._queue.put(Event(etype, "\n".join(data), eid, time.monotonic()))
                    etype, data, eid = "message", [], None
                    continue
                if line.startswith(":"):
                    continue
                name, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if name == "event":
                    etype = value
                elif name == "data":
                    data.append(value)
                elif name == "id":
                    eid = value
        except (OSError, ValueError, AttributeError, http.client.HTTPException):
            # (AttributeError: the connection was closed under the reader by close().)
            pass
        finally:
            self.closed.set()
            self._queue.put(None)

    def next(self, timeout: float = 5.0, include_control: bool = False) -> Event | None:
        """The next application event, or None when the stream ended or `timeout` passed."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            try:
                event = self._queue.get(timeout=remaining)
            except queue.Empty:
                return None
            if event is None:
                self._queue.put(None)  # stay ended for later callers
                return None
            if include_control or event.type not in CONTROL_EVENTS:
                return event

    def collect(
        self, count: int, timeout: float = 10.0, event_type: str | None = None
    ) -> list[Event]:
        """Up to `count` application events (of `event_type`, if given) within `timeout`."""
        found: list[Event] = []
        deadline = time.monotonic() + timeout
        while len(found) < count:
            event = self.next(timeout=deadline - time.monotonic())
            if event is None:
                break
            if event_type is None or event.type == event_type:
                found.append(event)
        return found

    def wait_open(self, timeout: float = 10.0) -> None:
        """Block until the server's stream-open arrives: the subscription is then in place."""
        event = self.next(timeout=timeout, include_control=True)
        if event is None or event.type != "stream-open":
            raise AssertionError(
                f"stream {self.path} on {self.host}:{self.port}: "
                f"expected stream-open first, got {event}"
            )

    def close(self) -> None:
        try:
            if self._conn.sock is not None:
                self._conn.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._conn.close()
        self.closed.wait(5)


def probe_channel() -> str:
    """A fresh channel of the public `probe-*` family, kept for synthetic checks and tests."""
    return f"probe-{uuid.uuid4().hex[:12]}"


def open_stream(host: str, port: int, chan: str, where: str = "", **kw) -> SSEStream:
    """A stream of `chan` on host:port that must be answered 200 (`where` names it)."""
    stream = SSEStream(host, port, f"/events/?channel={chan}", **kw)
    assert stream.status == 200, (
        f"{where or f'{host}:{port}'}: expected 200 for /events/, got {stream.status}: "
        f"{stream.__dict__.get('body', '')[:200]}"
    )
    return stream


@dataclass(frozen=True)
class Receipt:
    seq: int
    sent_at: float  # wall clock, from the publisher's payload
    received_at: float  # wall clock, here
    id: str | None


class Follower(threading.Thread):
    """Follows a stream the way a browser page with sse-resume.js does: whenever the stream
    ends or cannot be opened (EOF, reset, HTTP error), reconnect after `retry` seconds with the
    last event id seen, so the server replays what was missed."""

    def __init__(self, host: str, port: int, path: str, event_type: str = "seq", retry=0.5):
        super().__init__(daemon=True)
        self.host, self.port, self.path = host, port, path
        self.event_type, self.retry = event_type, retry
        self.receipts: list[Receipt] = []
        self.resets: list[Event] = []
        self.connects = 0
        self.failed_connects: list[str] = []
        self.last_id: str | None = None
        self._stop_event = threading.Event()
        self._stream: SSEStream | None = None

    def run(self) -> None:
        import json

        while not self._stop_event.is_set():
            try:
                stream = SSEStream(self.host, self.port, self.path, last_event_id=self.last_id)
            except OSError as exc:
                self.failed_connects.append(f"{type(exc).__name__}: {exc}")
                self._stop_event.wait(self.retry)
                continue
            if stream.status != 200:
                self.failed_connects.append(f"HTTP {stream.status}")
                self._stop_event.wait(self.retry)
                continue
            self.connects += 1
            self._stream = stream
            while not self._stop_event.is_set():
                event = stream.next(timeout=1.0)
                if event is None:
                    if stream.closed.is_set():
                        break
                    continue
                if event.id:
                    self.last_id = event.id
                if event.type == "stream-reset":
                    self.resets.append(event)
                elif event.type == self.event_type:
                    body = json.loads(event.data)
                    self.receipts.append(
                        Receipt(body["seq"], body["sent_at"], time.time(), event.id)
                    )
            stream.close()
            self._stop_event.wait(self.retry)

    def stop(self) -> None:
        self._stop_event.set()
        if self._stream is not None:
            self._stream.close()
        self.join(10)

    def seqs(self) -> list[int]:
        return [r.seq for r in self.receipts]
