"""`make bench` / `make bench-quick`: start the benchmark stack, run every scenario against every
target in the same run, write results/<run>/ (JSON, Markdown, PNG) and results/summary.md.

    python -m bench.run --quick        (about 3 minutes)
    python -m bench.run                (about 20 minutes: 20,000 streams held 5 minutes)
    python -m bench.run --only capacity,fanout --fanout-targets kit --fanout-sizes 1000,5000
                                       (a part of a run, to compare one change against another)
"""

from __future__ import annotations

import argparse
import datetime
import sys
import tempfile
import time
from pathlib import Path

from bench import report, scenarios
from bench.targets import BENCH, BenchStack

MODES = {
    # `make test`'s check that the benchmark runs and reports (tests/bench/test_smoke.py).
    "smoke": {
        "capacity": {"streams": 60, "connect_rate": 200, "hold_s": 2},
        "new_streams": {"count": 40, "rate": 200},
        "storm": {"viewers": 40, "rate": 4, "seconds": 6},
        "fanout_sizes": [20],
        "fanout_events": 2,
        "fanout_rate": 4,
        "throughput": {"subscribers": [10], "rates": [20], "seconds": 1},
        "processes": 1,
    },
    "quick": {
        "capacity": {"streams": 1000, "connect_rate": 300, "hold_s": 5},
        "new_streams": {"count": 500, "rate": 1000},
        "storm": {"viewers": 500, "rate": 4, "seconds": 15},
        "fanout_sizes": [100, 1000],
        "fanout_events": 4,
        "fanout_rate": 4,
        "throughput": {"subscribers": [100], "rates": [50, 200], "seconds": 2},
        "processes": 2,
    },
    "full": {
        "capacity": {"streams": 20000, "connect_rate": 1000, "hold_s": 300},
        "new_streams": {"count": 3000, "rate": 1000},
        "storm": {"viewers": 5000, "rate": 2, "seconds": 45},
        "fanout_sizes": [100, 1000, 5000, 10000],
        "fanout_events": 6,
        "fanout_rate": 2,
        "throughput": {"subscribers": [100, 1000], "rates": [50, 200, 400], "seconds": 5},
        "processes": 4,
    },
}

SCENARIOS = ("capacity", "new_streams", "storm", "fanout", "throughput")
FANOUT_TARGETS = ("kit", "direct", "stock", "asgi")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, about 3 minutes")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: does it run and report")
    parser.add_argument("--keep", action="store_true", help="leave the benchmark stack running")
    parser.add_argument("--results", type=Path, default=BENCH / "results", help="where to write")
    parser.add_argument(
        "--only",
        type=lambda s: s.split(","),
        default=list(SCENARIOS),
        help=f"run only these scenarios (comma-separated, of {','.join(SCENARIOS)})",
    )
    parser.add_argument(
        "--fanout-targets",
        type=lambda s: s.split(","),
        default=list(FANOUT_TARGETS),
        help=f"fan-out only against these targets (of {','.join(FANOUT_TARGETS)})",
    )
    parser.add_argument(
        "--fanout-sizes",
        type=lambda s: [int(n) for n in s.split(",")],
        help="fan-out subscriber counts instead of the mode's",
    )
    parser.add_argument(
        "--capacity-streams", type=int, help="streams the capacity scenario opens instead"
    )
    args = parser.parse_args(argv)
    for chosen, known, option in (
        (args.only, SCENARIOS, "--only"),
        (args.fanout_targets, FANOUT_TARGETS, "--fanout-targets"),
    ):
        if unknown := set(chosen) - set(known):
            parser.error(f"{option}: unknown {sorted(unknown)}; choose from {', '.join(known)}")
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    cfg = dict(MODES[mode])
    if args.fanout_sizes:
        cfg["fanout_sizes"] = args.fanout_sizes
    if args.capacity_streams:
        cfg["capacity"] = {**cfg["capacity"], "streams": args.capacity_streams}
    partial = (
        args.only != list(SCENARIOS)
        or args.fanout_targets != list(FANOUT_TARGETS)
        or cfg != MODES[mode]
    )
    started = time.monotonic()
    run = {
        "mode": mode,
        "started": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": report.machine(),
        "config": cfg,
        "partial": partial,
    }
    with tempfile.TemporaryDirectory() as tmp:
        stack = BenchStack(Path(tmp) / "bench.env")

        def step(what: str) -> None:
            print(f"==> bench: {what} (at {time.monotonic() - started:.0f} s)", flush=True)

        step("starting the stack and the comparison servers")
        stack.up()
        try:
            stack.wait_ready()
            targets = stack.targets()
            if "capacity" in args.only:
                step("capacity (kit)")
                run["capacity"] = scenarios.capacity(
                    stack, targets["kit"], processes=cfg["processes"], **cfg["capacity"]
                )
            if "new_streams" in args.only:
                step("new streams per link (app, direct, kit)")
                run["new_streams"] = scenarios.new_streams(
                    [targets[name] for name in ("app", "direct", "kit")],
                    processes=cfg["processes"], **cfg["new_streams"],
                )  # fmt: skip
            if "storm" in args.only:
                step("reconnect storm (kit)")
                run["storm"] = scenarios.storm(
                    stack, targets["kit"], processes=cfg["processes"], **cfg["storm"]
                )
                stack.wait_ready_kit()
            run["fanout"] = []
            for name in args.fanout_targets if "fanout" in args.only else ():
                step(f"fan-out ({name})")
                run["fanout"] += scenarios.fanout(
                    stack, targets[name], cfg["fanout_sizes"], events=cfg["fanout_events"],
                    rate=cfg["fanout_rate"], connect_rate=500, processes=cfg["processes"],
                )  # fmt: skip
            run["throughput"] = []
            for name in ("kit", "direct") if "throughput" in args.only else ():
                for subscribers in cfg["throughput"]["subscribers"]:
                    step(f"throughput ({name}, {subscribers} subscribers)")
                    run["throughput"] += scenarios.throughput(
                        targets[name], subscribers, cfg["throughput"]["rates"],
                        cfg["throughput"]["seconds"], processes=cfg["processes"],
                    )  # fmt: skip
        finally:
            if not args.keep:
                stack.down()
    run["duration_s"] = round(time.monotonic() - started)
    folder = report.write(run, args.results)
    print(report.markdown(run))
    print(f"==> bench: {run['duration_s']} s; results in {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
