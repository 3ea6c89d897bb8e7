"""The Django app under test: development settings with a throwaway SQLite database, and
`manage()` to run its management commands as real subprocesses."""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

APP = Path(__file__).resolve().parents[2] / "app"
DATA_DIR = tempfile.mkdtemp(prefix="kit-app-tests-")
DEV_ENV = {
    "DJANGO_SETTINGS_MODULE": "config.settings",
    "DJANGO_DEBUG": "1",
    "DJANGO_DATA_DIR": DATA_DIR,
    "DJANGO_ALLOWED_HOSTS": "testserver,localhost",
}


def manage(*args: str, env: dict[str, str] | None = None, timeout: float = 60):
    """Run `manage.py ARGS` in a fresh interpreter with `env` replacing the app settings."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PUSHPIN_"))}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=APP,
        env={**base, **(env if env is not None else DEV_ENV)},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
