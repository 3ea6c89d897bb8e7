"""A benchmark run -> results/<run>/ (results.json, report.md, PNG plots) and results/summary.md."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

TARGET_LABELS = {
    "kit": "kit: nginx, 2 Pushpin nodes",
    "direct": "one Pushpin node, direct",
    "stock": "Pushpin, stock limits",
    "asgi": "Django under uvicorn, no Pushpin",
    "app": "the app alone (signed as Pushpin asks it)",
}


def machine() -> str:
    cpus = open("/proc/cpuinfo").read().count("processor\t:")
    mem = int(open("/proc/meminfo").read().split()[1]) // 2**20
    model = next(
        (line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if "model name" in line),
        "?",
    )
    return f"{platform.platform(terse=True)}, {cpus} cores ({model}), {mem} GiB"


def ratio(a, b) -> str:
    return f"{a / b:.2f}x" if a and b else "-"


def table(headers: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return [*lines, ""]


def capacity_section(cap: dict) -> list[str]:
    headers = ["streams", "opened", "failed attempts", "connect rate: offered / mean / peak 5 s"]
    headers += ["held at end", "dropped: ramp / hold", "alive at end"]
    headers += ["Pushpin KiB/stream", "nginx KiB/stream", "Django req/s per 1,000 idle streams"]
    row = [cap["streams_wanted"], cap["opened"], cap["failed_connects"]]
    rates = (cap["connect_rate_offered_per_s"], cap["connect_rate_per_s"])
    rates += (cap["connect_rate_peak_per_s"],)
    row += [" / ".join(f"{r}/s" for r in rates)]
    row += [f"{cap['held_at_end']} (after {cap['hold_s']} s)"]
    # The timeline holds open streams; its sample when the hold began splits the drops.
    at_hold = next((n for t, n in cap["timeline"] if t >= cap["ramp_s"]), cap["held_at_end"])
    in_hold = at_hold - cap["held_at_end"]
    row += [f"{cap['dropped'] - in_hold} / {in_hold}", cap["alive_at_end"]]
    row += [cap["pushpin_kib_per_stream"]]
    row += [cap["nginx_kib_per_stream"], cap["django_requests_per_s_per_1000"]]
    return [
        "## Capacity (kit chain, through nginx)",
        "",
        *table(headers, [row]),
        f"All {cap['opened']} streams open after {cap['ramp_s']} s (clients retry a failed"
        f" connect after 1-3 s); time to open, first attempt to open: {cap['connect_s']}.",
        f"Load generator CPU (s per process): {cap['loadgen_cpu_s']}.",
        f"Connect failures: {cap['failures'] or 'none'}.",
        "",
    ]


def fanout_section(fan: list[dict]) -> list[str]:
    headers = ["target", "subscribers", "p50 ms", "p95 ms", "p99 ms", "max ms", "delivered"]
    headers += ["failed connects"]
    rows = [
        [
            TARGET_LABELS[r["target"]],
            r["subscribers"],
            r.get("p50_ms"),
            r.get("p95_ms"),
            r.get("p99_ms"),
            r.get("max_ms"),
            f"{r['delivered']}/{r['expected']}",
            r["failed_connects"],
        ]
        for r in fan
    ]
    by = {(r["target"], r["subscribers"]): r.get("p99_ms") for r in fan}
    ratios = [
        [
            size,
            *(ratio(by.get((t, size)), by.get(("direct", size))) for t in ("kit", "stock", "asgi")),
        ]
        for size in sorted({r["subscribers"] for r in fan})
    ]
    return [
        "## Fan-out latency (publish to receipt, one event at a time)",
        "",
        *table(headers, rows),
        "p99 side by side, same run:",
        "",
        *table(["subscribers", "kit / direct", "stock / direct", "asgi / direct"], ratios),
    ]


def throughput_section(tput: list[dict]) -> list[str]:
    headers = ["target", "subscribers", "publish rate", "offered deliveries/s", "delivered/s"]
    headers += ["p99 latency ms", "publish call p50 / p99 ms"]
    rows = [
        [
            TARGET_LABELS[r["target"]],
            r["subscribers"],
            f"{r['achieved_publish_rate']}/s",
            r["offered_deliveries_per_s"],
            r["delivered_per_s"],
            r["latency"].get("p99_ms"),
            f"{r['publish_call_ms'].get('p50')} / {r['publish_call_ms'].get('p99')}",
        ]
        for r in tput
    ]
    return ["## Throughput (sustained publishing)", "", *table(headers, rows)]


def new_streams_section(rows: list[dict]) -> list[str]:
    headers = ["link", "attempts offered", "opened", "failed", "opened/s", "best 1 s"]
    headers += ["connect p50 / p99 ms", "load generator CPU s"]
    body = [
        [
            TARGET_LABELS[r["target"]],
            f"{r['attempts']} at {r['offered_per_s']}/s",
            r["opened"],
            r["failed"],
            r["opened_per_s"],
            r["peak_per_s"],
            f"{r['connect_s'].get('p50_ms')} / {r['connect_s'].get('p99_ms')}",
            round(sum(r["loadgen_cpu_s"]), 1),
        ]
        for r in rows
    ]
    failures = {r["target"]: r["failures"] for r in rows if r["failures"]}
    note = [f"Failures by link: {failures}.", ""] if failures else []
    title = "## New streams per link (one attempt each, no retry)"
    return [title, "", *table(headers, body), *note]


# The goals per viewer (a browser tab on a dashboard: one stream for all its components).
GOALS = {"fanout_p99_ms": 100, "kib_per_viewer": 16, "new_viewers_per_s": 1000, "storm_s": 15}


def per_viewer_section(run: dict) -> list[str]:
    """What one viewer costs, per target and size: the figures a deployment is sized by."""
    headers = ["target", "viewers", "fan-out p50 / p99 / max ms", "p99 vs goal", "p99 vs asgi"]
    headers += ["CPU µs per delivered event: Pushpin / nginx / app / load generator"]
    asgi = {
        r["subscribers"]: r.get("p99_ms") for r in run.get("fanout", []) if r["target"] == "asgi"
    }
    rows = []
    for r in run.get("fanout", []):
        cpu = r.get("cpu_us_per_delivery", {})
        own = "asgi" if r["target"] == "asgi" else "app"
        rows.append(
            [
                TARGET_LABELS[r["target"]],
                r["subscribers"],
                f"{r.get('p50_ms')} / {r.get('p99_ms')} / {r.get('max_ms')}",
                ratio(r.get("p99_ms"), GOALS["fanout_p99_ms"]),
                ratio(r.get("p99_ms"), asgi.get(r["subscribers"])),
                " / ".join(str(cpu.get(k, "-")) for k in ("pushpin", "nginx", own, "loadgen")),
            ]
        )
    out = ["## Per viewer", "", *table(headers, rows)]
    cap = run.get("capacity")
    if cap:
        total = cap["pushpin_kib_per_stream"] + cap["nginx_kib_per_stream"]
        out += [
            f"Memory per idle viewer (RSS growth ÷ {cap['held_at_end']} viewers): Pushpin "
            f"{cap['pushpin_kib_per_stream']} KiB + nginx {cap['nginx_kib_per_stream']} KiB = "
            f"{total:.1f} KiB ({ratio(total, GOALS['kib_per_viewer'])} the goal of "
            f"{GOALS['kib_per_viewer']} KiB); the app {cap.get('app_kib_per_stream', '-')} KiB.",
            f"New viewers until all {cap['opened']} were in: {cap['connect_rate_per_s']}/s "
            f"(offered {cap['connect_rate_offered_per_s']}/s, best 5 s "
            f"{cap['connect_rate_peak_per_s']}/s; goal {GOALS['new_viewers_per_s']}/s); refusals "
            f"by status: {cap['failures'] or 'none'}.",
            "",
        ]
    return out


def storm_section(storm: dict) -> list[str]:
    headers = ["viewers", "cut by the kill", "back", "all back and caught up after", "lost"]
    headers += ["duplicated", "refusals while reconnecting", "app requests/s meanwhile"]
    row = [
        storm["viewers"],
        storm["dropped_by_the_kill"],
        storm["back"],
        f"{storm['recovered_s']} s (goal {GOALS['storm_s']} s)",
        storm["lost"],
        storm["duplicated"],
        storm["refusals"] or "none",
        storm["app_requests_per_s"],
    ]
    return [
        "## Reconnect storm (a node holding half the viewers killed while events flow)",
        "",
        *table(headers, [row]),
        f"{storm['published']} events published; each viewer open before the first must have "
        f"every one, once ({storm.get('opened_late', 0)} opened later, not counted). Viewers "
        f"missing events: {storm['viewers_missing_events']}; the publisher's resyncs reached "
        f"streams {storm.get('resync_comments', 0)} times.",
        "",
    ]


def markdown(run: dict) -> str:
    kind = run["mode"] + (", partial" if run.get("partial") else "")
    out = [f"# Benchmark ({kind}), {run['started']}", "", f"Machine: {run['machine']}.", ""]
    if run.get("fanout"):
        out += per_viewer_section(run)
    if run.get("storm"):
        out += storm_section(run["storm"])
    if run.get("capacity"):
        out += capacity_section(run["capacity"])
    if run.get("new_streams"):
        out += new_streams_section(run["new_streams"])
    if run.get("fanout"):
        out += fanout_section(run["fanout"])
    if run.get("throughput"):
        out += throughput_section(run["throughput"])
    return "\n".join(out)


def plots(run: dict, folder: Path) -> list[str]:
    made = []
    fan = run.get("fanout", [])
    if fan:
        fig, ax = plt.subplots(figsize=(7, 4))
        for target in TARGET_LABELS:
            rows = sorted(
                (r for r in fan if r["target"] == target and r.get("p99_ms")),
                key=lambda r: r["subscribers"],
            )
            if rows:
                (line,) = ax.plot(
                    [r["subscribers"] for r in rows],
                    [r["p99_ms"] for r in rows],
                    marker="o",
                    label=f"{TARGET_LABELS[target]} p99",
                )
                ax.plot(
                    [r["subscribers"] for r in rows],
                    [r["p50_ms"] for r in rows],
                    color=line.get_color(),
                    linestyle="--",
                    alpha=0.6,
                )
        ax.set(
            xscale="log",
            yscale="log",
            xlabel="subscribers",
            ylabel="publish → receipt (ms)",
            title="Fan-out latency (p99 solid, p50 dashed)",
        )
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(folder / "latency_vs_subscribers.png", dpi=110)
        made.append("latency_vs_subscribers.png")

        biggest = max(r["subscribers"] for r in fan)
        fig, ax = plt.subplots(figsize=(7, 4))
        for r in fan:
            if r["subscribers"] == biggest and r["latency_s"]:
                values = sorted(v * 1000 for v in r["latency_s"])
                ax.plot(
                    values,
                    [i / len(values) for i in range(len(values))],
                    label=TARGET_LABELS[r["target"]],
                )
        ax.set(
            xscale="log",
            xlabel="publish → receipt (ms)",
            ylabel="fraction of deliveries",
            title=f"Latency distribution, {biggest} subscribers",
        )
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(folder / "latency_distribution.png", dpi=110)
        made.append("latency_distribution.png")
    cap = run.get("capacity")
    if cap:
        fig, ax = plt.subplots(figsize=(7, 4))
        ax.plot([t for t, _ in cap["timeline"]], [n for _, n in cap["timeline"]])
        ax.set(xlabel="seconds", ylabel="open streams", title="Streams held over time (kit chain)")
        fig.tight_layout()
        fig.savefig(folder / "streams_over_time.png", dpi=110)
        made.append("streams_over_time.png")
    plt.close("all")
    return made


def write(run: dict, results: Path) -> Path:
    folder = results / run["started"].replace(":", "").replace("-", "")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(run, indent=1))
    text = markdown(run)
    images = plots(run, folder)
    (folder / "report.md").write_text(
        text + "\n" + "\n".join(f"![{i}]({i})" for i in images) + "\n"
    )
    # The README's figures come from a whole full run only.
    if run["mode"] == "full" and not run.get("partial"):
        (results / "summary.md").write_text(text + "\n")
    return folder
