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
    target: Target, sizes: list[int], events: int, rate: float, connect_rate: float, processes: int
) -> list:
    """One event at a time to N subscribers: publish-to-receipt latency, growing N."""
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
            summary = target.publish(channel, rate, events)
            deadline = time.monotonic() + 15
            while pool.report()["events"] < open_now * events and time.monotonic() < deadline:
                time.sleep(0.5)
            final = pool.report(samples=True)
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
            if report["opened"] >= streams or time.monotonic() - started > streams / 50:
                break
            time.sleep(1)
        ramp_s = time.monotonic() - started
        ramp = report
        hold_started = time.time()
        while time.monotonic() - started < ramp_s + hold_s:
            time.sleep(10)
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
            "django_requests_in_hold": django,
            "django_requests_per_s_per_1000": round(django / window / max(held, 1) * 1000, 3),
            "loadgen_cpu_s": final["cpu_s_per_process"],
            "timeline": timeline,
            "publish": summary,
        }
    finally:
        pool.close()
        pool.stop()
