"""The demo's settings, serving streams from Django itself (no Pushpin, no GRIP publishing):
django-eventstream's own view on /events/, without the kit's stream path or GRIP check."""

from config.settings import *  # noqa: F403

ROOT_URLCONF = "bench_urls"
_KIT_APPS = ("realtime", "realtime_ops", "demo")
INSTALLED_APPS = [app for app in INSTALLED_APPS if app not in _KIT_APPS]  # noqa: F405
MIDDLEWARE = [m for m in MIDDLEWARE if not m.startswith("realtime.")]  # noqa: F405
GRIP_PROXIES = []  # publish to in-process listeners only
