"""Settings, all from the environment (12-factor). The README's settings table lists them."""

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def env_bool(name: str, default: bool = False) -> bool:
    value = env_str(name)
    if not value:
        return default
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name}={value!r} is not a boolean (use 1/0, true/false)")


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in env_str(name, default).split(",") if item.strip()]


def env_number(name: str, default, kind=float):
    value = env_str(name)
    try:
        return kind(value) if value else default
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r} is not a number") from None


# Production unless told otherwise: a forgotten setting must fail closed, not open.
DEBUG = env_bool("DJANGO_DEBUG", False)

SECRET_KEY = env_str("DJANGO_SECRET_KEY")
PUSHPIN_SIG_KEY = env_str("PUSHPIN_SIG_KEY")
# Rotation: the previous keys stay accepted (sessions, stream links, Pushpin signatures) while
# every replica and node moves to the new one (README, "Rotating secrets").
SECRET_KEY_FALLBACKS = env_list("DJANGO_SECRET_KEY_FALLBACKS")
PUSHPIN_SIG_KEY_FALLBACKS = env_list("PUSHPIN_SIG_KEY_FALLBACKS")
# The same minimums as Pushpin's image and the Ansible preflight check.
SECRET_KEY_MIN_LENGTH = 32
PUSHPIN_SIG_KEY_MIN_LENGTH = 16


def _check_secret(name: str, value: str, minimum: int, hint: str) -> None:
    if not value:
        raise ImproperlyConfigured(f"{name} is not set. {hint}")
    if value == "changeme":
        raise ImproperlyConfigured(f"{name} is Pushpin's default 'changeme'. {hint}")
    if len(value) < minimum:
        raise ImproperlyConfigured(
            f"{name} is too short: use at least {minimum} random characters."
        )


if not DEBUG:
    _check_secret(
        "DJANGO_SECRET_KEY",
        SECRET_KEY,
        SECRET_KEY_MIN_LENGTH,
        "In production (DJANGO_DEBUG unset) every app replica needs the same long random "
        "secret; `make up` generates one into compose/.env, Ansible takes it from the vault, "
        "Kubernetes from the app-secrets Secret.",
    )
    _check_secret(
        "PUSHPIN_SIG_KEY",
        PUSHPIN_SIG_KEY,
        PUSHPIN_SIG_KEY_MIN_LENGTH,
        "The app verifies each Pushpin node's Grip-Sig with it; set the same generated secret "
        "on both.",
    )
    for _value in SECRET_KEY_FALLBACKS:
        _check_secret("DJANGO_SECRET_KEY_FALLBACKS", _value, SECRET_KEY_MIN_LENGTH, "")
    for _value in PUSHPIN_SIG_KEY_FALLBACKS:
        _check_secret("PUSHPIN_SIG_KEY_FALLBACKS", _value, PUSHPIN_SIG_KEY_MIN_LENGTH, "")
else:
    SECRET_KEY = SECRET_KEY or "insecure-development-key-never-use-in-production"
    PUSHPIN_SIG_KEY = PUSHPIN_SIG_KEY or "insecure-development-sig-key-for-local-use"

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS")
# No SECURE_PROXY_SSL_HEADER: Django would believe X-Forwarded-Proto from any client that
# reaches the app. gunicorn sets the request's scheme from it only for the kit's own proxies
# (GUNICORN_FORWARDED_ALLOW_IPS, app/gunicorn.conf.py).
SESSION_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_eventstream",
    "dashboards",
    "realtime",
    "demo",
    "ops",
]

MIDDLEWARE = [
    "realtime.health.HealthCheckMiddleware",
    "django_grip.GripMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Database: SQLite in DJANGO_DATA_DIR by default (one machine), PostgreSQL via DATABASE_URL.
DATA_DIR = Path(env_str("DJANGO_DATA_DIR", str(BASE_DIR / "data")))
DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL") or f"sqlite:///{DATA_DIR / 'db.sqlite3'}",
        conn_max_age=60,
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several processes (app workers, ticker) write events: WAL lets readers run alongside the
    # writer, and IMMEDIATE transactions take the write lock up front instead of failing with
    # "database is locked" when two publishers upgrade their read locks at once.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # A database host that is down fails a new connection in seconds, not minutes.
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("connect_timeout", 5)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = Path(env_str("DJANGO_STATIC_ROOT", str(BASE_DIR / "staticfiles")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("DJANGO_LOG_LEVEL", "INFO")},
}

# --- Real-time delivery ----------------------------------------------------------------------
# Every address each control URL's host resolves to is a Pushpin node that gets every publish.
PUSHPIN_CONTROL_URLS = env_list("PUSHPIN_CONTROL_URLS", "http://pushpin:5561")
PUSHPIN_PUBLISH_TIMEOUT = env_number("PUSHPIN_PUBLISH_TIMEOUT", 2.0)
PUSHPIN_PUBLISH_QUEUE_SIZE = env_number("PUSHPIN_PUBLISH_QUEUE_SIZE", 10000, int)
PUSHPIN_PUBLISH_QUEUE_BYTES = env_number("PUSHPIN_PUBLISH_QUEUE_BYTES", 16777216, int)

# django-grip verifies each proxied request's Grip-Sig with this key (issuer "pushpin"); a
# request without a valid signature is not treated as proxied.
# Every accepted key (the current one and, while rotating, the previous ones) is an entry.
GRIP_PROXIES = [
    {"control_uri": url, "key": key, "verify_iss": "pushpin"}
    for key in [PUSHPIN_SIG_KEY, *PUSHPIN_SIG_KEY_FALLBACKS]
    for url in PUSHPIN_CONTROL_URLS[:1]
]

# django-eventstream's database storage, with bounded replay and bulk trimming
# (realtime/storage.py).
EVENTSTREAM_STORAGE_CLASS = "realtime.storage.BoundedStorage"
# One resume replays at most this many events per channel, none older than this many seconds;
# past either the client gets stream-reset with the newest id (the page reloads).
REALTIME_REPLAY_MAX_EVENTS = env_number("REALTIME_REPLAY_MAX_EVENTS", 200, int)
REALTIME_REPLAY_MAX_AGE = env_number("REALTIME_REPLAY_MAX_AGE", 300, int)
# Stored events are a replay buffer, not a history: older ones are deleted in bulk, at most
# once per interval per process, off the publish path.
REALTIME_EVENT_RETENTION_SECONDS = env_number("REALTIME_EVENT_RETENTION_SECONDS", 3600, int)
REALTIME_TRIM_INTERVAL_SECONDS = env_number("REALTIME_TRIM_INTERVAL_SECONDS", 60, int)
if REALTIME_REPLAY_MAX_AGE > REALTIME_EVENT_RETENTION_SECONDS:
    raise ImproperlyConfigured(
        "REALTIME_REPLAY_MAX_AGE cannot exceed REALTIME_EVENT_RETENTION_SECONDS: "
        "events must be kept as long as a resume may replay them"
    )
# /healthz shares one database check per process for this long (realtime/health.py).
REALTIME_HEALTH_CACHE_SECONDS = env_number("REALTIME_HEALTH_CACHE_SECONDS", 1.0)
EVENTSTREAM_CHANNELMANAGER_CLASS = "realtime.channels.ChannelManager"
# Declared channels (fnmatch patterns) and who may read them: public, authenticated or staff.
REALTIME_CHANNELS = {
    "dashboard": "public",
    "private": "authenticated",
    "ops": "staff",
    # Synthetic probes (monitoring, end-to-end checks) publish and listen on their own channels.
    "probe-*": "public",
}
REALTIME_MAX_EVENT_BYTES = env_number("REALTIME_MAX_EVENT_BYTES", 64 * 1024, int)
# How often Pushpin re-asks the app about each open stream (its Grip-Link timeout). Idle streams
# then cost the app streams / this many requests per second. Below 3600: django-eventstream's
# signed link expires after an hour.
REALTIME_STREAM_REFRESH_SECONDS = env_number("REALTIME_STREAM_REFRESH_SECONDS", 1800, int)
if not 10 <= REALTIME_STREAM_REFRESH_SECONDS < 3600:
    raise ImproperlyConfigured("REALTIME_STREAM_REFRESH_SECONDS must be between 10 and 3599")

TICKER_INTERVAL = env_number("TICKER_INTERVAL", 2.0)
TICKER_HEARTBEAT_FILE = env_str("TICKER_HEARTBEAT_FILE")

# --- Metrics and the ops dashboard -----------------------------------------------------------
# The metrics listeners bind an internal address only: an IP, or the CIDR of the internal
# network to listen on (compose's control network). Unset: no listener. gunicorn's own
# (METRICS_PORT, default 9808) is read by gunicorn.conf.py; the ticker's port is below.
METRICS_ADDR = env_str("METRICS_ADDR")
TICKER_METRICS_PORT = env_number("TICKER_METRICS_PORT", 9809, int)
# Where each Pushpin node serves its metrics (pushpin.conf's prometheus_port), on the address
# it takes publishes on.
PUSHPIN_METRICS_PORT = env_number("PUSHPIN_METRICS_PORT", 9810, int)
# Other publishers' metrics endpoints the ops figures add up (the ticker's own are read
# in-process); every address each host name resolves to is read.
OPS_METRICS_URLS = env_list("OPS_METRICS_URLS")
