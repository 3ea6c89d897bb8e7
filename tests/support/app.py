"""The Django app under test: development settings with a throwaway SQLite database, and
`manage()` to run its management commands as real subprocesses."""

import os
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

APP = Path(__file__).resolve().parents[2] / "app" / "demo"
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


@contextmanager
def gunicorn(tmp_path: Path, **env: str):
    """The app under gunicorn, as its image runs it (realtime.gunicorn), on a free loopback port.
    Yields (site port, process); its log (access and error) is at process.log_path."""
    import requests

    from support.stack import free_port

    site = free_port()
    full_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PUSHPIN_"))},
        **DEV_ENV,
        "DJANGO_DATA_DIR": str(tmp_path),
        "GUNICORN_BIND": f"127.0.0.1:{site}",
        "WEB_CONCURRENCY": "2",
        **env,
    }
    log = open(tmp_path / "gunicorn.log", "w+")
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "python:realtime.gunicorn"],
        cwd=APP,
        env=full_env,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    process.log_path = tmp_path / "gunicorn.log"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                requests.get(f"http://127.0.0.1:{site}/static/realtime/sse-resume.js", timeout=3)
                break
            except requests.RequestException:
                if process.poll() is not None:
                    break
                time.sleep(0.2)
        else:
            process.kill()
        if process.poll() is not None:
            raise AssertionError(f"gunicorn did not start:\n{process.log_path.read_text()[-3000:]}")
        yield site, process
    finally:
        process.terminate()
        process.wait(30)
        log.close()
