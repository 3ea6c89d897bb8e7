"""The demo project's settings with the demo app removed: the ops dashboard must stand alone."""

from config.settings import *  # noqa: F403

INSTALLED_APPS = [app for app in INSTALLED_APPS if app != "demo"]  # noqa: F405
ROOT_URLCONF = "projects.ops_only_urls"
