"""The README's "Your own dashboards" block: a new django-dashboards project, from
`django-admin startproject` to `make up APP_DIR=...`, extracted and run as it is."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from support.stack import REPO

HEADING = "## Your own dashboards"
DASHBOARD_PATH = "/dashboards/sales/salesdashboard/"


def readme_block() -> str:
    """The one fenced sh block under the heading (and before the next heading)."""
    text = (REPO / "README.md").read_text()
    section = text.split(f"\n{HEADING}\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^```sh\n(.*?)^```$", section, re.S | re.M)
    assert len(blocks) == 1, f"expected one sh block under {HEADING!r}, found {len(blocks)}"
    return blocks[0]


def run_block(directory: Path, env: dict[str, str], make_shim: bool = False, timeout=1200):
    """Run the block in `directory` (bash -e), with the kit's virtualenv first on PATH (Django
    installed, as the README assumes). With `make_shim`, `make` only records its arguments:
    the project is created, nothing is deployed."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', os.environ['PATH'])}"
    if make_shim:
        shim = directory / ".shim"
        shim.mkdir()
        (shim / "make").write_text('#!/bin/sh\necho "$@" > "$(dirname "$0")/make.args"\n')
        (shim / "make").chmod(0o755)
        path = f"{shim}{os.pathsep}{path}"
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", readme_block()],
        cwd=directory,
        env={**env, "KIT": str(REPO), "PATH": path},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, (
        f"the README block failed ({result.returncode}):\n--- stdout\n{result.stdout[-4000:]}"
        f"\n--- stderr\n{result.stderr[-4000:]}"
    )
    return result


def create(directory: Path) -> Path:
    """The block's project, created without deploying it; returns the project directory."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PUSHPIN_"))}
    run_block(directory, base, make_shim=True)
    project = directory / "mysite"
    args = (directory / ".shim" / "make.args").read_text().split()
    assert args == ["-C", str(REPO), "up", f"APP_DIR={project}"], f"the block ran make {args}"
    return project
