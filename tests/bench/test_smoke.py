"""The benchmark runs: a tiny run of every scenario against every target (its own stack, as
`make bench` starts it) produces the report, the plots and sane figures. No figure is held to
a goal here: that is what `make bench` measures, on a quiet machine."""

import json
import subprocess
import sys

import pytest

from support.stack import REPO

pytestmark = pytest.mark.slow


def test_a_tiny_run_reports_every_scenario_with_sane_figures(docker_client, images, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "bench.run", "--smoke", "--results", str(tmp_path)],
        cwd=REPO / "tests",
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (folder,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    run = json.loads((folder / "results.json").read_text())
    report = (folder / "report.md").read_text()
    for section in ("## Per viewer", "## Reconnect storm", "## Capacity", "## New streams"):
        assert section in report, f"{section} missing from the report"
    assert {"latency_vs_subscribers.png", "streams_over_time.png"} <= {
        p.name for p in folder.iterdir()
    }
    cap = run["capacity"]
    assert cap["opened"] == 60 and cap["alive_at_end"] == cap["held_at_end"] > 0, cap
    for row in run["fanout"]:
        assert row["delivered"] == row["expected"] > 0, row
        assert 0 < row["p50_ms"] <= row["p99_ms"] <= row["max_ms"] < 10_000, row
        cpu = row["cpu_us_per_delivery"]
        assert all(v >= 0 for v in cpu.values()) and {"pushpin", "nginx"} <= set(cpu), cpu
    storm = run["storm"]
    assert storm["lost"] == 0 and storm["duplicated"] == 0, storm
    assert storm["back"] >= storm["dropped_by_the_kill"] > 0, storm
    assert all(row["opened"] > 0 for row in run["new_streams"]), run["new_streams"]
    assert (
        not (REPO / "tests/bench/results/summary.md").read_text().startswith("# Benchmark (smoke)")
    ), "a smoke run overwrote the README's summary"
