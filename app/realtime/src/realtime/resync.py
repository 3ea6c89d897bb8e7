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
    """Schedules one resync item per channel, `delay` seconds after its last publish here."""

    def __init__(
        self,
        publish: Callable[[list[dict]], object],
        delay: float,
        current_id: Callable[[str], str | None],
    ):
        self._publish = publish  # queues items for every node, without waiting
        self.delay = delay
        self._current_id = current_id  # the channel's newest stored id, or None: not ours to sync
        self.sent = 0  # resync items queued
        self.skipped = 0  # due, but another process published the channel's newest event
        self._pending: dict[str, tuple[float, dict]] = {}  # channel -> (due, last item)
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def seen(self, items: list[dict]) -> None:
        """Note published items; each channel's resync is pushed back to `delay` after them."""
        due = time.monotonic() + self.delay
        with self._cond:
            for item in items:
                if _is_stored_event(item):
                    self._pending[item["channel"]] = (due, item)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="pushpin-resync", daemon=True
                )
                self._thread.start()
            self._cond.notify()

    def flush(self, on_schedule: bool = False) -> None:
        """Send every pending resync: now, or (``on_schedule``) each at its due time, as a
        process that stayed up would. Called before a process exits."""
        while True:
            with self._cond:
                if not self._pending:
                    return
                wait = max(d for d, _ in self._pending.values()) - time.monotonic()
                if not on_schedule or wait <= 0:
                    due, self._pending = self._pending, {}
                    break
                self._cond.wait(wait)
        self._send([item for _, item in due.values()])

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending:
                    self._cond.wait()
                now = time.monotonic()
                first = min(d for d, _ in self._pending.values())
                if first > now:
                    self._cond.wait(first - now)
                    continue
                due = [item for d, item in self._pending.values() if d <= now]
                for item in due:
                    del self._pending[item["channel"]]
            try:
                self._send(due)
            except Exception:  # a failed look-up costs these resyncs, never the thread
                logger.exception("resync of %d channel(s) failed", len(due))

    def _send(self, items: list[dict]) -> None:
        out = []
        for item in items:
            if self._current_id(item["channel"]) != item["id"]:
                self.skipped += 1
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
        if out:
            self._publish(out)
            self.sent += len(out)
