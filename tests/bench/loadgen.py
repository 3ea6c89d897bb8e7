"""Load generator: many SSE streams from one asyncio process; several processes share a load.

Each stream is a raw HTTP/1.1 connection (what a browser's EventSource opens) read by a small
incremental parser (chunked or not). Events whose data carries `"sent_at": UNIX_TIME` (what
`manage.py probe_publish` sends) are timed from publish to receipt. A worker reports counters,
its latency samples and its own CPU use, so a saturated client is visible in the results.

With `resume`, a stream the server ends is reopened as a browser's EventSource does: after the
stream's `retry:` time, with `Last-Event-ID`; each stream then records the sequence numbers it
got (`"seq": N`), so that lost and duplicated events can be counted, and when it came back.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import resource
import time
from dataclasses import dataclass, field

SENT_AT = re.compile(rb'"sent_at": ([0-9.]+)')
SEQ = re.compile(rb'"seq": ([0-9]+)')
EVENT_ID = re.compile(rb"^id: (.+)$", re.M)
RETRY = re.compile(rb"^retry: ([0-9]+)$", re.M)


@dataclass
class Counters:
    opened: int = 0
    failed: int = 0  # attempts that could not open (refused, timeout, non-200)
    dropped: int = 0  # ended by the server while we still wanted it
    events: int = 0
    keepalives: int = 0
    connect_s: list[float] = field(default_factory=list)
    opened_at: list[float] = field(default_factory=list)  # wall clock: comparable across processes
    latency_s: list[float] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)
    # resume mode: per stream, the sequence numbers received; when streams ended and came back
    seqs: list[list[int]] = field(default_factory=list)
    ended_at: list[float] = field(default_factory=list)
    back_at: list[float] = field(default_factory=list)  # first event after a reconnect
    resumed: int = 0
    # per stream (as seqs): [what, wall clock, last seq seen], what: "opened" (first), "ended",
    # "reopened", "back"
    history: list[list[list]] = field(default_factory=list)
    comments: int = 0  # SSE comments: the publisher's resyncs (realtime/resync.py)

    def fail(self, reason: str) -> None:
        self.failed += 1
        self.failures[reason] = self.failures.get(reason, 0) + 1


class EventParser:
    """Splits an SSE byte stream (optionally chunk-encoded) into events."""

    def __init__(self, chunked: bool):
        self.chunked = chunked
        self.raw = b""
        self.body = b""
        self.chunk_left = 0

    def feed(self, data: bytes) -> list[bytes]:
        if self.chunked:
            self.raw += data
            while True:
                if self.chunk_left == 0:
                    end = self.raw.find(b"\r\n")
                    if end < 0:
                        break
                    size = self.raw[:end].split(b";")[0].strip()
                    self.raw = self.raw[end + 2 :]
                    if not size:
                        continue  # the CRLF after a chunk's data
                    self.chunk_left = int(size, 16)
                    if self.chunk_left == 0:
                        break
                take = self.raw[: self.chunk_left]
                self.body += take
                self.raw = self.raw[len(take) :]
                self.chunk_left -= len(take)
                if self.chunk_left:
                    break
        else:
            self.body += data
        events = self.body.split(b"\n\n")
        self.body = events.pop()
        return events


async def open_stream(host, port, path, headers, timeout):
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    lines = [f"GET {path} HTTP/1.1", *(f"{k}: {v}" for k, v in headers.items()), "", ""]
    writer.write("\r\n".join(lines).encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    status = int(head.split(b" ", 2)[1])
    chunked = b"transfer-encoding: chunked" in head.lower()
    return reader, writer, status, chunked


async def connect(target: dict, counters: Counters, timeout: float, retry: bool):
    """One attempt, or (retry) attempts until one opens, 1-3 s apart as a browser's EventSource
    reconnects: every failed attempt is counted. Returns (reader, writer, chunked) or None."""
    while True:
        try:
            reader, writer, status, chunked = await open_stream(
                target["host"], target["port"], target["path"], target["headers"], timeout
            )
            if status == 200:
                return reader, writer, chunked
            counters.fail(f"HTTP {status}")
            writer.close()
        except (TimeoutError, OSError, asyncio.IncompleteReadError) as exc:
            counters.fail(type(exc).__name__)
        if not retry:
            return None
        await asyncio.sleep(random.uniform(1, 3))


async def follow(
    target: dict,
    counters: Counters,
    stop: asyncio.Event,
    timeout: float,
    retry: bool = False,
    resume: bool = False,
) -> None:
    started = time.monotonic()
    headers = dict(target["headers"])
    opened = await connect({**target, "headers": headers}, counters, timeout, retry)
    if opened is None:
        return
    counters.opened += 1
    counters.connect_s.append(time.monotonic() - started)
    counters.opened_at.append(time.time())
    seqs: list[int] = []
    history: list[list] = [["opened", time.time(), 0]]
    if resume:
        counters.seqs.append(seqs)
        counters.history.append(history)
    wait_s, last_id, reconnected = 3.0, None, False
    while True:
        reader, writer, chunked = opened
        parser = EventParser(chunked)
        try:
            while not stop.is_set():
                data = await reader.read(65536)
                if not data:
                    raise ConnectionResetError("ended by the server")
                now = time.time()
                for event in parser.feed(data):
                    if b"event: keep-alive" in event:
                        counters.keepalives += 1
                        continue
                    if event.startswith(b":"):
                        counters.comments += 1
                        continue
                    if found := RETRY.search(event):
                        wait_s = int(found.group(1)) / 1000
                    if found := EVENT_ID.search(event):
                        last_id = found.group(1).decode()
                    match = SENT_AT.search(event)
                    if match:
                        counters.events += 1
                        counters.latency_s.append(now - float(match.group(1)))
                        if resume and (seq := SEQ.search(event)):
                            seqs.append(int(seq.group(1)))
                            if reconnected:
                                counters.back_at.append(now)
                                history.append(["back", now, seqs[-1]])
                                reconnected = False
            return
        except (OSError, asyncio.IncompleteReadError):
            if stop.is_set():
                return
            counters.dropped += 1
            if not resume:
                return
        finally:
            writer.close()
        # As a browser: after the stream's retry time, from the last id it saw.
        counters.ended_at.append(time.time())
        if resume:
            history.append(["ended", time.time(), seqs[-1] if seqs else 0])
        await asyncio.sleep(wait_s)
        if last_id:
            headers["Last-Event-ID"] = last_id
        opened = await connect({**target, "headers": headers}, counters, timeout, retry=True)
        counters.resumed += 1
        reconnected = True
        if resume:
            history.append(["reopened", time.time(), seqs[-1] if seqs else 0])


async def run_worker(conn, target: dict) -> None:
    """Serve commands from the parent: open N streams at a rate, report, close."""
    counters = Counters()
    stop = asyncio.Event()
    tasks: list[asyncio.Task] = []
    openers: list[asyncio.Task] = []
    loop = asyncio.get_running_loop()

    async def open_streams(command: dict) -> None:
        interval = 1.0 / command["rate"] if command.get("rate") else 0
        due = time.monotonic()
        for n in range(1, command["count"] + 1):
            tasks.append(
                asyncio.create_task(
                    follow(
                        target,
                        counters,
                        stop,
                        command["timeout"],
                        command["retry"],
                        command.get("resume", False),
                    )
                )
            )
            if interval:
                due += interval
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            elif n % 200 == 0:
                await asyncio.sleep(0)

    while True:
        command = await loop.run_in_executor(None, conn.recv)
        kind = command["cmd"]
        if kind == "open":
            # In the background, so reports can be taken while streams are still opening.
            openers.append(asyncio.create_task(open_streams(command)))
            conn.send({"ok": True})
        elif kind == "report":
            usage = resource.getrusage(resource.RUSAGE_SELF)
            report = {
                "opened": counters.opened,
                "failed": counters.failed,
                "failures": counters.failures,
                "dropped": counters.dropped,
                "open_now": sum(1 for t in tasks if not t.done()),
                "events": counters.events,
                "keepalives": counters.keepalives,
                "comments": counters.comments,
                "cpu_s": usage.ru_utime + usage.ru_stime,
            }
            if command.get("samples"):
                report["latency_s"] = counters.latency_s
                report["connect_s"] = counters.connect_s
                report["opened_at"] = counters.opened_at
            if command.get("streams"):
                report["seqs"] = counters.seqs
                report["ended_at"] = counters.ended_at
                report["back_at"] = counters.back_at
                report["resumed"] = counters.resumed
                report["history"] = counters.history
            if command.get("reset_samples"):
                counters.latency_s, counters.events = [], 0
            conn.send(report)
        elif kind == "close":
            stop.set()
            for task in openers + tasks:
                task.cancel()
            await asyncio.gather(*openers, *tasks, return_exceptions=True)
            openers.clear()
            tasks.clear()
            conn.send({"ok": True})
        elif kind == "exit":
            conn.send({"ok": True})
            return


def worker_main(conn, target_json: str) -> None:
    # One process can hold at most its open-file limit of streams: raise the soft limit to hard.
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(run_worker(conn, json.loads(target_json)))
