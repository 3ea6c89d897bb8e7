"""Re-announce a channel's last event id once the channel goes quiet, so that no stream is left
behind on the channel's last event.

Pushpin (1.36, and the same in later releases) checks a stream's position only when an item
arrives: an item whose prev-id is not the stream's last id makes the stream ask the app for
what it missed. Two ways a stream ends up behind with no item to tell it so:

- a new or resumed stream whose answer left the app just before a publish reached the node:
  Pushpin spots the first such stale answer per channel, then forgets the channel's last id
  (publishlastids), so the next ones hold silently — the tail of a reconnect storm;
- a node that missed a publish (down, unreachable, timed out): its streams wait for the next
  publish, which for the last event of a burst never comes.

Either way the stream is caught up only by the next publish on the channel, or by
REALTIME_STREAM_REFRESH_SECONDS (30 minutes) later. So the process that published a channel's
newest event publishes, PUSHPIN_RESYNC_SECONDS after it, an item with prev-id = id = that event's
id and an SSE comment as its body: a stream that is current takes it and writes 3 bytes (a
comment, ignored by EventSource); a stream that is behind fails the prev-id check and fetches
what it missed. A channel publishing more often than the delay never gets one (each publish does
the same check). The item's id is the id of an event already published, so Pushpin's id cache
must be off (pushpin.conf id_cache_ttl=0) or it drops the item as a duplicate.

Only the newest event is re-announced: a process whose last event is no longer the channel's
newest (another process published since) leaves the resync to that process, since an older id
would send every current stream of the channel back to the app.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from . import metrics

logger = logging.getLogger(__name__)

COMMENT = ":\n\n"


def _stream_format(item: dict) -> dict:
    # gripcontrol's Item.export() puts the formats in the item, Pushpin's docs under "formats".
    return item.get("http-stream") or item.get("formats", {}).get("http-stream") or {}


def _is_stored_event(item: dict) -> bool:
    """An event in a sequence (id and prev-id) sent to streams (not a close)."""
    stream = _stream_format(item)
    return bool(item.get("id") and item.get("prev-id")) and (
        "content" in stream or "content-bin" in stream
    )


class ChannelResync:
    """Schedules one resync item per channel, `delay` seconds after its last publish here; one
    that does not reach every node (a node slow or down: the very case it repairs) is tried
    again `delay` later, up to ATTEMPTS times, unless a newer publish on the channel took over."""

    ATTEMPTS = 5

    def __init__(
        self,
        publish: Callable[[list[dict]], bool],
        delay: float,
        current_id: Callable[[str], str | None],
    ):
        self._publish = publish  # sends items to every node; whether every node took them
        self.delay = delay
        self._current_id = current_id  # the channel's newest stored id, or None: not ours to sync
        self.sent = 0  # resync items every node took
        self.failed = 0  # resync items some node did not take (each attempt)
        self.skipped = 0  # due, but another process published the channel's newest event
        for outcome in ("sent", "failed", "skipped"):  # series at 0, so that rate() sees the first
            metrics.RESYNCS.labels(outcome)
        # channel -> (due, its last item, attempts made)
        self._pending: dict[str, tuple[float, dict, int]] = {}
        self._sending = False
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def seen(self, items: list[dict]) -> None:
        """Note published items; each channel's resync is pushed back to `delay` after them."""
        due = time.monotonic() + self.delay
        with self._cond:
            for item in items:
                if _is_stored_event(item):
                    self._pending[item["channel"]] = (due, item, 0)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="pushpin-resync", daemon=True
                )
                self._thread.start()
            self._cond.notify_all()

    def flush(self, on_schedule: bool = False, timeout: float = 60) -> None:
        """Before a process exits: send every pending resync at once (one attempt), or with
        ``on_schedule`` wait (up to `timeout`) until they went out as in a process that stays
        up, retries included."""
        with self._cond:
            if on_schedule:
                self._cond.wait_for(lambda: not self._pending and not self._sending, timeout)
                return
            due, self._pending = self._pending, {}
        self._send([entry for _, *entry in due.values()], retry=False)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending:
                    self._cond.wait()
                now = time.monotonic()
                first = min(d for d, _, _ in self._pending.values())
                if first > now:
                    self._cond.wait(first - now)
                    continue
                due = [(item, n) for d, item, n in self._pending.values() if d <= now]
                for item, _ in due:
                    del self._pending[item["channel"]]
                self._sending = True
            try:
                self._send(due, retry=True)
            except Exception:  # a failed look-up costs these resyncs, never the thread
                logger.exception("resync of %d channel(s) failed", len(due))
            finally:
                with self._cond:
                    self._sending = False
                    self._cond.notify_all()

    def _send(self, due: list[tuple[dict, int]], retry: bool) -> None:
        out, sent = [], []
        for item, attempts in due:
            if self._current_id(item["channel"]) != item["id"]:
                self.skipped += 1
                metrics.RESYNCS.labels("skipped").inc()
                continue
            stream = {"content": COMMENT}
            if filters := _stream_format(item).get("content-filters"):
                stream["content-filters"] = filters  # as the channel's events: same checks
            out.append(
                {
                    "channel": item["channel"],
                    "id": item["id"],
                    "prev-id": item["id"],
                    "formats": {"http-stream": stream},
                }
            )
            sent.append((item, attempts + 1))
        if not out:
            return
        if self._publish(out):
            self.sent += len(out)
            metrics.RESYNCS.labels("sent").inc(len(out))
            return
        self.failed += len(out)  # the publisher logged and counted it per node
        metrics.RESYNCS.labels("failed").inc(len(out))
        if not retry:
            return
        again = time.monotonic() + self.delay
        with self._cond:
            for item, attempts in sent:
                if attempts < self.ATTEMPTS and item["channel"] not in self._pending:
                    self._pending[item["channel"]] = (again, item, attempts)
