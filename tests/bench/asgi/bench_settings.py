"""The app's settings, serving streams from Django itself (no Pushpin, no GRIP publishing)."""

from config.settings import *  # noqa: F403

ROOT_URLCONF = "bench_urls"
INSTALLED_APPS = [app for app in INSTALLED_APPS if app not in ("realtime", "demo")]  # noqa: F405
GRIP_PROXIES = []  # publish to in-process listeners only
