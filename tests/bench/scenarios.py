"""The three scenarios. Each returns plain data (dicts) for the report."""

from __future__ import annotations

import time
import uuid

from bench.pool import LoadPool
from bench.targets import BenchStack, Target


def percentiles(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    ordered = sorted(values)

    def at(q):
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 1)

    return {
        "n": len(ordered),
        "p50_ms": at(0.5),
        "p95_ms": at(0.95),
        "p99_ms": at(0.99),
        "max_ms": at(1.0),
    }


def grow(pool: LoadPool, have: int, want: int, rate: float, timeout: float) -> dict:
    pool.open(want - have, rate=rate)
    return pool.wait_open(want, timeout)


def fanout(
    stack: BenchStack,
    target: Target,
    sizes: list[int],
    events: int,
    rate: float,
    connect_rate: float,
    processes: int,
) -> list:
    """One event at a time to N subscribers: publish-to-receipt latency, growing N, and the CPU
    each component spent per delivered event (from its container's own accounting)."""
    channel = f"probe-fanout-{target.name}-{uuid.uuid4().hex[:6]}"
    pool = LoadPool(target.spec(channel), processes)
    rows, have = [], 0
    try:
        for size in sizes:
            report = grow(pool, have, size, connect_rate, timeout=size / connect_rate + 120)
            have = size
            open_now = report["open_now"]
            time.sleep(2)  # let Pushpin's first-subscription refresh pass
            pool.report(reset_samples=True)
            cpu_before = sum(report["cpu_s_per_process"])
            components_before = stack.component_cpu()
            summary = target.publish(channel, rate, events)
            deadline = time.monotonic() + 15
            while pool.report()["events"] < open_now * events and time.monotonic() < deadline:
                time.sleep(0.5)
            final = pool.report(samples=True)
            components = stack.component_cpu()
            delivered = max(final["events"], 1)
            cpu_us = {
                kind: round(
                    (components[kind] - components_before.get(kind, 0)) / delivered * 1e6, 1
                )
                for kind in components
            }
            cpu_us["loadgen"] = round(
                (sum(final["cpu_s_per_process"]) - cpu_before) / delivered * 1e6, 1
            )
            rows.append(
                {
                    "target": target.name,
                    "subscribers": size,
                    "open": final["open_now"],
                    "failed_connects": final["failed"],
                    "failures": final["failures"],
                    "expected": open_now * events,
                    "delivered": final["events"],
                    **percentiles(final["latency_s"]),
                    "publish_call_p50_ms": round(summary["call_latency_s"]["p50"] * 1000, 2),
                    "loadgen_cpu_s": round(sum(final["cpu_s_per_process"]) - cpu_before, 2),
                    "cpu_us_per_delivery": cpu_us,
                    "latency_s": final["latency_s"],
                }
            )
            row = rows[-1]
            print(
                f"  fanout {target.name} {size}: p50 {row['p50_ms']} p99 {row['p99_ms']} ms",
                flush=True,
            )
    finally:
        pool.close()
        pool.stop()
    return rows


def throughput(
    target: Target, subscribers: int, rates: list[int], seconds: float, processes: int
) -> list:
    """Sustained publishing at each rate: deliveries per second reaching the clients."""
    channel = f"probe-tput-{target.name}-{uuid.uuid4().hex[:6]}"
    pool = LoadPool(target.spec(channel), processes)
    rows = []
    try:
        report = grow(pool, 0, subscribers, 500, timeout=subscribers / 500 + 60)
        open_now = report["open_now"]
        time.sleep(2)
        for rate in rates:
            pool.report(reset_samples=True)
            count = int(rate * seconds)
            started = time.monotonic()
            summary = target.publish(channel, rate, count)
            deadline = time.monotonic() + 8  # then count what arrived
            while pool.report()["events"] < open_now * count and time.monotonic() < deadline:
                time.sleep(0.25)
            elapsed = time.monotonic() - started
            final = pool.report(samples=True)
            rows.append(
                {
                    "target": target.name,
                    "subscribers": subscribers,
                    "publish_rate": rate,
                    "achieved_publish_rate": summary["rate"],
                    "offered_deliveries_per_s": rate * open_now,
                    "delivered": final["events"],
                    "expected": open_now * count,
                    "delivered_per_s": round(final["events"] / elapsed),
                    "latency": percentiles(final["latency_s"]),
                    "publish_call_ms": {
                        k: round(v * 1000, 2) for k, v in summary["call_latency_s"].items()
                    },
                }
            )
            row = rows[-1]
            print(
                f"  throughput {target.name} {subscribers} subs @ {rate}/s: "
                f"{row['delivered_per_s']}/s delivered, p99 {row['latency'].get('p99_ms')} ms",
                flush=True,
            )
    finally:
        pool.close()
        pool.stop()
    return rows


def held_now(report: dict) -> int:
    """Streams open now: opened and not since ended by the server (not those still trying)."""
    return report["opened"] - report["dropped"]


def peak_rate(opened_at: list[float], window: float) -> float:
    """The highest rate of new streams over any `window` seconds, from sorted open times."""
    best, first = 0, 0
    for last, at in enumerate(opened_at):
        while at - opened_at[first] > window:
            first += 1
        best = max(best, last - first + 1)
    return round(best / window, 1)


def capacity(
    stack: BenchStack,
    target: Target,
    streams: int,
    connect_rate: float,
    hold_s: float,
    processes: int,
) -> dict:
    """Ramp to N streams through nginx, hold them: connect rate, drops, memory, idle app load."""
    channel = f"probe-capacity-{uuid.uuid4().hex[:6]}"
    rss_before = stack.kit_rss()
    pool = LoadPool(target.spec(channel), processes)
    timeline = []
    try:
        started = time.monotonic()
        # Clients retry a failed connect as browsers do, so the ramp shows how fast N streams
        # get in when N arrive at once (a restart, a deploy), counting every failed attempt.
        pool.open(streams, rate=connect_rate, retry=True)
        while True:
            report = pool.report()
            timeline.append((round(time.monotonic() - started, 1), held_now(report)))
            # Bounded: a ramp slower than 50 streams/s (after a minute's grace) is reported as is.
            if report["opened"] >= streams or time.monotonic() - started > streams / 50 + 60:
                break
            time.sleep(1)
        ramp_s = time.monotonic() - started
        ramp = report
        hold_started = time.time()
        while (left := ramp_s + hold_s - (time.monotonic() - started)) > 0:
            time.sleep(min(10, left))
            report = pool.report()
            timeline.append((round(time.monotonic() - started, 1), held_now(report)))
        hold_ended = time.time()
        # One event to every held stream at the end of the hold: they are alive, not just open.
        pool.report(reset_samples=True)
        summary = target.publish(channel, 1, 1)
        deadline = time.monotonic() + 30
        while pool.report()["events"] < report["open_now"] and time.monotonic() < deadline:
            time.sleep(0.5)
        final = pool.report(samples=True)
        rss_after = stack.kit_rss()
        window = hold_ended - hold_started
        django = stack.django_requests(target.container, hold_started, hold_ended)
        held = final["open_now"]
        pushpin_bytes = sum(
            rss_after[n] - rss_before.get(n, 0) for n in rss_after if "pushpin" in n
        )
        nginx_bytes = sum(rss_after[n] - rss_before.get(n, 0) for n in rss_after if "nginx" in n)
        app_bytes = sum(rss_after[n] - rss_before.get(n, 0) for n in rss_after if "app-" in n)
        return {
            "target": target.name,
            "streams_wanted": streams,
            "opened": ramp["opened"],
            "failed_connects": ramp["failed"],
            "failures": ramp["failures"],
            "ramp_s": round(ramp_s, 1),
            "connect_rate_offered_per_s": connect_rate,
            "connect_rate_per_s": round(ramp["opened"] / ramp_s, 1),
            "connect_rate_peak_per_s": peak_rate(final["opened_at"], 5),
            "connect_s": percentiles(final["connect_s"]),
            "hold_s": round(window),
            "held_at_end": held,
            "dropped": final["dropped"],
            "alive_at_end": final["events"],
            "end_event_latency": percentiles(final["latency_s"]),
            "pushpin_kib_per_stream": round(pushpin_bytes / max(held, 1) / 1024, 1),
            "nginx_kib_per_stream": round(nginx_bytes / max(held, 1) / 1024, 1),
            "app_kib_per_stream": round(app_bytes / max(held, 1) / 1024, 1),
            "django_requests_in_hold": django,
            "django_requests_per_s_per_1000": round(django / window / max(held, 1) * 1000, 3),
            "loadgen_cpu_s": final["cpu_s_per_process"],
            "timeline": timeline,
            "publish": summary,
        }
    finally:
        pool.close()
        pool.stop()


def new_streams(targets: list[Target], count: int, rate: float, processes: int) -> list:
    """New streams per second through each link of the chain, each on its own: the app alone
    (answering the hold as it answers a Pushpin node), one Pushpin node (its proxy, zurl and the
    app), and the kit's chain (nginx in front). Offered at `rate`, one attempt each."""
    rows = []
    for target in targets:
        pool = LoadPool(target.spec(f"probe-new-{target.name}-{uuid.uuid4().hex[:6]}"), processes)
        try:
            started = time.time()
            pool.open(count, rate=rate)
            deadline = time.monotonic() + count / rate + 60
            report = pool.report()
            while report["opened"] + report["failed"] < count and time.monotonic() < deadline:
                time.sleep(0.5)
                report = pool.report()
            final = pool.report(samples=True)
            opened_at = sorted(final["opened_at"])
            span = (opened_at[-1] - started) if opened_at else 0
            rows.append(
                {
                    "target": target.name,
                    "attempts": count,
                    "offered_per_s": rate,
                    "opened": final["opened"],
                    "failed": final["failed"],
                    "failures": final["failures"],
                    "opened_per_s": round(final["opened"] / span, 1) if span else 0,
                    "peak_per_s": peak_rate(opened_at, 1),
                    "connect_s": percentiles(final["connect_s"]),
                    "loadgen_cpu_s": final["cpu_s_per_process"],
                }
            )
            row = rows[-1]
            print(
                f"  new streams {target.name}: {row['opened_per_s']}/s "
                f"({row['opened']} of {count}, {row['failed']} failed), "
                f"connect p99 {row['connect_s'].get('p99_ms')} ms",
                flush=True,
            )
        finally:
            pool.close()
            pool.stop()
    return rows


def storm(
    stack: BenchStack, target: Target, viewers: int, rate: float, seconds: float, processes: int
) -> dict:
    """A reconnect storm: `viewers` streams through nginx (spread over both nodes) follow a
    numbered sequence published at `rate`; a third of the way in, the node holding half of
    them is killed. Its viewers reconnect as browsers do (after the stream's `retry:`, from their
    last id). Measured: how long until every one of them is back and caught up, events lost and
    duplicated (over every viewer), refusals while reconnecting, the app's requests meanwhile."""
    channel = f"probe-storm-{uuid.uuid4().hex[:6]}"
    pool = LoadPool(target.spec(channel), processes)
    count = int(rate * seconds)
    try:
        pool.open(viewers, rate=500, retry=True, resume=True)
        opened = pool.wait_open(viewers, timeout=viewers / 100 + 120, retrying=True)
        time.sleep(3)  # every stream's subscription in place
        nodes = stack.app_resolves()
        publishing_at = time.time()
        publisher = stack.probe_publish_background(channel, rate, count)
        # A third of the way in as the viewers see it: the publisher (a `docker exec`, Django's
        # start) may take seconds to begin, and a kill before its first event measures nothing.
        deadline = time.monotonic() + seconds + 60
        while time.monotonic() < deadline:
            if pool.report()["events"] >= opened["opened"] * max(1, count // 3):
                break
            time.sleep(0.2)
        victim = stack.container("pushpin", 1)
        killed_at = time.time()
        victim.kill()
        summary = publisher.result()
        if len(summary["nodes"]) < len(nodes):  # the figures would measure the bench, not the kit
            raise RuntimeError(f"the publisher reached {summary['nodes']}, not every node {nodes}")

        def owed(report: dict) -> list[tuple[list, list]]:
            # Owed every event: the viewers whose stream was open before the first publish (one
            # that opened later, as a tab opened later, starts from the events after it).
            return [
                (seqs, history)
                for seqs, history in zip(report["seqs"], report["history"], strict=True)
                if history[0][1] < publishing_at
            ]

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            streams = owed(pool.report(streams=True))
            if all(len(set(seqs)) >= count for seqs, _ in streams):
                break
            time.sleep(1)
        report = pool.report(streams=True)
        victim.start()
        ended = [t for t in report["ended_at"] if t >= killed_at]
        back = [t for t in report["back_at"] if t >= killed_at]
        streams = owed(report)
        missing = [sorted(set(range(1, count + 1)) - set(s)) for s, _ in streams]
        # What became of viewers left short: when their stream ended, reopened, came back.
        short = [
            {"missing": m[:10], "got": len(s), "history": h}
            for m, (s, h) in zip(missing, streams, strict=True)
            if m
        ]
        lost = sum(len(m) for m in missing)
        duplicated = sum(len(s) - len(set(s)) for s in report["seqs"])
        recovered_s = round(max(back) - killed_at, 1) if back else None
        window_end = max(back) if back else killed_at + 30
        app_requests = stack.django_requests(target.container, killed_at, window_end)
        return {
            "target": target.name,
            "viewers": viewers,
            "opened": opened["opened"],
            "opened_late": len(report["seqs"]) - len(streams),
            "published": summary["published"],
            "dropped_by_the_kill": len(ended),
            "back": len(back),
            "recovered_s": recovered_s,
            "lost": lost,
            "viewers_missing_events": sum(1 for m in missing if m),
            "missing_sample": [m[:10] for m in missing if m][:5],
            "short_sample": [
                {**v, "history": [[w, round(t - killed_at, 1), n] for w, t, n in v["history"]]}
                for v in short[:5]
            ],
            "resync_comments": report["comments"],
            "duplicated": duplicated,
            "refusals": report["failures"],
            # Per node: published, failed and (when one failed) the last failure's reason.
            "publisher": summary["nodes"],
            "app_requests": app_requests,
            "app_requests_per_s": round(app_requests / max(window_end - killed_at, 1), 1),
        }
    finally:
        pool.close()
        pool.stop()
