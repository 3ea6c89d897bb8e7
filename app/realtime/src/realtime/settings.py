"""The settings a project needs to run on the kit, in one call at the end of its settings.py:

    from realtime.settings import configure
    configure(globals())

It reads every setting declared in `realtime.conf` from the environment (12-factor: the secret
key, hosts, database, Pushpin nodes...), adds the real-time apps and middleware to the
project's own, and sets what the kit's images and deployments expect (static files served by
whitenoise, logs on stderr, SQLite tuned for several writers). The project keeps everything
else it declares: its apps, URLs, templates, REALTIME_CHANNELS, and any setting it sets
*after* the call.
"""

from __future__ import annotations

from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from . import conf

REALTIME_APPS = ["django_eventstream", "dashboards", "realtime"]
# Before everything else: /healthz answers before host validation, and GRIP's verification of
# Pushpin's signature must precede any view.
FIRST_MIDDLEWARE = [
    "realtime.health.HealthCheckMiddleware",
    # /events/ (Pushpin's requests) on its own short path: realtime/streams.py.
    "realtime.streams.StreamRequestMiddleware",
    "django_grip.GripMiddleware",
]
AFTER_SECURITY = "whitenoise.middleware.WhiteNoiseMiddleware"


def configure(settings: dict, environ=None) -> None:
    """Fill a settings module's globals() from the environment and the kit's defaults."""
    import os

    env = os.environ if environ is None else environ
    value = {s.name: s.parse(env) for s in conf.SETTINGS}
    base = Path(settings.get("BASE_DIR") or Path.cwd())

    # Production unless told otherwise: a forgotten setting must fail closed, not open.
    debug = value["DJANGO_DEBUG"]
    settings["DEBUG"] = debug
    secret, sig = value["DJANGO_SECRET_KEY"], value["PUSHPIN_SIG_KEY"]
    if debug:
        secret = secret or "insecure-development-key-never-use-in-production"
        sig = sig or "insecure-development-sig-key-for-local-use"
    else:
        _check_secrets(value)
    settings["SECRET_KEY"] = secret
    settings["SECRET_KEY_FALLBACKS"] = value["DJANGO_SECRET_KEY_FALLBACKS"]
    settings["PUSHPIN_SIG_KEY"] = sig
    settings["PUSHPIN_SIG_KEY_FALLBACKS"] = value["PUSHPIN_SIG_KEY_FALLBACKS"]

    settings["ALLOWED_HOSTS"] = value["DJANGO_ALLOWED_HOSTS"]
    settings["CSRF_TRUSTED_ORIGINS"] = value["DJANGO_CSRF_TRUSTED_ORIGINS"]
    # No SECURE_PROXY_SSL_HEADER: Django would believe X-Forwarded-Proto from any client that
    # reaches the app. gunicorn sets the request's scheme from it only for the kit's own
    # proxies (GUNICORN_FORWARDED_ALLOW_IPS).
    settings.pop("SECURE_PROXY_SSL_HEADER", None)
    settings["SESSION_COOKIE_SECURE"] = settings["CSRF_COOKIE_SECURE"] = value[
        "DJANGO_SECURE_COOKIES"
    ]

    settings["INSTALLED_APPS"] = _with(settings.get("INSTALLED_APPS", []), REALTIME_APPS)
    settings["MIDDLEWARE"] = _middleware(settings.get("MIDDLEWARE", []))

    data_dir = Path(value["DJANGO_DATA_DIR"] or base / "data")
    settings["DATA_DIR"] = data_dir
    settings["DATABASES"] = {"default": _database(value["DATABASE_URL"], data_dir)}
    settings.setdefault("DEFAULT_AUTO_FIELD", "django.db.models.BigAutoField")

    settings.setdefault("STATIC_URL", "/static/")
    settings["STATIC_ROOT"] = Path(value["DJANGO_STATIC_ROOT"] or base / "staticfiles")
    # Static files from the app itself (compressed, cache-busting names): no volume to share
    # with nginx, in any deployment path.
    settings["STORAGES"] = {
        "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
        "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
    }
    settings["LOGGING"] = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
        "root": {"handlers": ["console"], "level": value["DJANGO_LOG_LEVEL"]},
    }

    # -- Real-time delivery ------------------------------------------------------------------
    for name in (
        "PUSHPIN_CONTROL_URLS",
        "PUSHPIN_PUBLISH_TIMEOUT",
        "PUSHPIN_PUBLISH_QUEUE_SIZE",
        "PUSHPIN_PUBLISH_QUEUE_BYTES",
        "PUSHPIN_RESYNC_SECONDS",
        "PUSHPIN_METRICS_PORT",
        "GRIP_URL",
        "REALTIME_MAX_EVENT_BYTES",
        "REALTIME_STREAM_REFRESH_SECONDS",
        "REALTIME_REPLAY_MAX_EVENTS",
        "REALTIME_REPLAY_MAX_AGE",
        "REALTIME_EVENT_RETENTION_SECONDS",
        "REALTIME_TRIM_INTERVAL_SECONDS",
        "REALTIME_HEALTH_CACHE_SECONDS",
        "REALTIME_RECONNECT_SPREAD_SECONDS",
        "TICKER_INTERVAL",
        "TICKER_HEARTBEAT_FILE",
        "METRICS_ADDR",
        "TICKER_METRICS_PORT",
        "OPS_METRICS_URLS",
    ):
        settings[name] = value[name]
    if value["REALTIME_REPLAY_MAX_AGE"] > value["REALTIME_EVENT_RETENTION_SECONDS"]:
        raise ImproperlyConfigured(
            "REALTIME_REPLAY_MAX_AGE cannot exceed REALTIME_EVENT_RETENTION_SECONDS: "
            "events must be kept as long as a resume may replay them"
        )
    # The project's own channels (REALTIME_CHANNELS, set before this call) come first; apps
    # add theirs with realtime.channels.declare().
    settings.setdefault("REALTIME_CHANNELS", {})
    settings["GRIP_PROXIES"] = _grip_proxies(sig, value["PUSHPIN_SIG_KEY_FALLBACKS"], value)
    settings["EVENTSTREAM_STORAGE_CLASS"] = "realtime.storage.BoundedStorage"
    settings["EVENTSTREAM_CHANNELMANAGER_CLASS"] = "realtime.channels.ChannelManager"


def _check_secret(name: str, secret: str, hint: str = "") -> None:
    # The rule is the declaration's (conf.py), as rendered for Ansible and Pushpin's image.
    minimum = conf.BY_NAME[name].min_length
    if not secret:
        raise ImproperlyConfigured(f"{name} is not set. {hint}".strip())
    if secret == conf.REFUSED_SECRET:
        raise ImproperlyConfigured(f"{name} is Pushpin's default {secret!r}. {hint}".strip())
    if len(secret) < minimum:
        raise ImproperlyConfigured(
            f"{name} is too short: use at least {minimum} random characters."
        )


def _check_secrets(value: dict) -> None:
    _check_secret(
        "DJANGO_SECRET_KEY",
        value["DJANGO_SECRET_KEY"],
        "In production (DJANGO_DEBUG unset) every app replica needs the same long random "
        "secret; `make up` generates one into compose/.env, Ansible takes it from the vault, "
        "Kubernetes from the app-secrets Secret.",
    )
    for fallback in value["DJANGO_SECRET_KEY_FALLBACKS"]:
        _check_secret("DJANGO_SECRET_KEY_FALLBACKS", fallback)
    if value["GRIP_URL"] and not value["PUSHPIN_SIG_KEY"]:
        return  # a hosted GRIP service signs with the key in GRIP_URL
    _check_secret(
        "PUSHPIN_SIG_KEY",
        value["PUSHPIN_SIG_KEY"],
        "The app verifies each Pushpin node's Grip-Sig with it; set the same generated secret "
        "on both.",
    )
    for fallback in value["PUSHPIN_SIG_KEY_FALLBACKS"]:
        _check_secret("PUSHPIN_SIG_KEY_FALLBACKS", fallback)


def _with(items: list[str], extra: list[str]) -> list[str]:
    return [*items, *(item for item in extra if item not in items)]


def _middleware(items: list[str]) -> list[str]:
    rest = [m for m in items if m not in FIRST_MIDDLEWARE and m != AFTER_SECURITY]
    security = "django.middleware.security.SecurityMiddleware"
    at = rest.index(security) + 1 if security in rest else 0
    return [*FIRST_MIDDLEWARE, *rest[:at], AFTER_SECURITY, *rest[at:]]


def _database(url: str, data_dir: Path) -> dict:
    database = dj_database_url.parse(
        url or f"sqlite:///{data_dir / 'db.sqlite3'}", conn_max_age=60, conn_health_checks=True
    )
    if database["ENGINE"] == "django.db.backends.sqlite3":
        # Several processes (app workers, ticker) write events: WAL lets readers run alongside
        # the writer, and IMMEDIATE transactions take the write lock up front instead of
        # failing with "database is locked" when two publishers upgrade their read locks.
        database["OPTIONS"] = {
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
        # (Persistent connections like any database: a new one per request cost 0.6 ms.)
    elif database["ENGINE"] == "django.db.backends.postgresql":
        # A database host that is down fails a new connection in seconds, not minutes.
        database.setdefault("OPTIONS", {}).setdefault("connect_timeout", 5)
    return database


def _grip_proxies(sig_key: str, fallbacks: list[str], value: dict) -> list[dict]:
    """Who may sign the requests that reach /events/ (django-grip verifies Grip-Sig): the
    Pushpin nodes with the current key or, while rotating, a previous one; or a hosted GRIP
    service with the key in GRIP_URL."""
    from . import grip

    if value["GRIP_URL"]:
        return [grip.parse(value["GRIP_URL"]).verifier()]
    return [
        {"control_uri": "", "key": key, "verify_iss": "pushpin"} for key in [sig_key, *fallbacks]
    ]
