"""The real-time layer as a distribution: it builds a wheel, installs into a clean virtualenv
(no project, no source checkout on the path) and its own unit tests pass there, without Docker,
in under 30 s."""

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support.stack import REPO

# A virtualenv with Django and the rest from PyPI: a minute, and the network.
pytestmark = pytest.mark.slow

PACKAGE = REPO / "app" / "realtime"


def run(cmd, cwd, timeout=600):
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, (
        f"{' '.join(map(str, cmd))} exited {result.returncode}:\n"
        f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return result


def test_the_package_installs_in_a_clean_venv_and_its_tests_pass_there(tmp_path):
    # Built from a copy: setuptools writes build/ and egg-info into the tree it builds.
    source = tmp_path / "source"
    shutil.copytree(PACKAGE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "tests"))
    dist = tmp_path / "dist"
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", dist, source], tmp_path)
    (wheel,) = dist.glob("rtdash_realtime-*.whl")
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", venv], tmp_path)
    python = venv / "bin" / "python"
    # The package's test extra, at the releases this repository's tests use.
    pins = [
        line
        for line in (REPO / "requirements-dev.txt").read_text().splitlines()
        if line.startswith(("pytest==", "pytest-timeout=="))
    ]
    install = [python, "-m", "pip", "install", "-q", f"{wheel}[test]", *pins]
    run([*install, "-c", PACKAGE / "requirements.lock"], tmp_path)
    where = run([python, "-c", "import realtime; print(realtime.__file__)"], tmp_path).stdout
    assert Path(where.strip()).is_relative_to(venv), f"realtime imported from {where.strip()}"
    started = time.monotonic()
    tests = run([python, "-m", "pytest", "-q", PACKAGE / "tests"], tmp_path)
    took = time.monotonic() - started
    print(
        f"\npackage tests in a clean venv: {tests.stdout.strip().splitlines()[-1]} ({took:.1f} s)"
    )
    assert " passed" in tests.stdout and " failed" not in tests.stdout, tests.stdout[-2000:]
    assert took < 30, f"the package's tests took {took:.1f} s (limit 30 s)"
