"""prometheus_client's multiprocess mode: its directory, prepared and cleared explicitly.

With PROMETHEUS_MULTIPROC_DIR set (the app image sets it), every process writes its metric
values to files there and the metrics listener adds them up. The directory must exist before
`realtime.metrics` is imported (its metrics write their files from the start), and must be
emptied once when a process group starts, or a previous run's counts would be added in.
Nothing here imports Django: gunicorn's master process uses it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from prometheus_client import CollectorRegistry
from prometheus_client import multiprocess as _multiprocess


def directory() -> Path | None:
    value = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
    return Path(value) if value else None


def prepare() -> None:
    """Create the directory if it is missing (a fresh tmpfs); its contents stay."""
    if (found := directory()) is not None:
        found.mkdir(parents=True, exist_ok=True)


def clear() -> None:
    """Empty the directory (created if missing); once, when the process group starts."""
    found = directory()
    if found is None:
        return
    found.mkdir(parents=True, exist_ok=True)
    for entry in found.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def mark_process_dead(pid: int) -> None:
    """A gunicorn worker exited: its counters stay counted, its live gauges go."""
    if (found := directory()) is not None:
        _multiprocess.mark_process_dead(pid, str(found))


def registry() -> CollectorRegistry:
    """What the metrics listener serves: every process's values in multiprocess mode."""
    found = directory()
    if found is None:
        from prometheus_client import REGISTRY

        return REGISTRY
    collected = CollectorRegistry()
    _multiprocess.MultiProcessCollector(collected, str(found))
    return collected
