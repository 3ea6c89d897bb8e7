"""Every setting the app image reads from its environment, declared once.

Each entry says its name, its default (as the environment would spell it), what it means,
which process reads it and whether it is a secret. `realtime.settings.configure()` reads them
into Django's settings; the deployment paths (compose, Ansible, Kubernetes) and the README's
settings table are rendered from this same list (`python -m realtime.conf`), so a setting
cannot be passed by one path and forgotten by another, nor carry two defaults.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from django.core.exceptions import ImproperlyConfigured

# Who reads a setting: the web app (gunicorn and its workers), the producer loop (`ticker`),
# one-off management commands (migrate, publish), or gunicorn's own configuration.
WEB, TICKER, COMMANDS, GUNICORN = "web", "ticker", "commands", "gunicorn"
EVERY = (WEB, TICKER, COMMANDS)


@dataclass(frozen=True)
class Setting:
    name: str
    default: str  # as the environment spells it; "" = empty (off, none, or computed)
    meaning: str
    kind: str = "str"  # str | int | float | bool | list
    secret: bool = False
    read_by: tuple[str, ...] = EVERY
    minimum: float | None = None
    maximum: float | None = None
    # Filled by the deployment, not by the operator (addresses, paths): listed, not defaulted.
    per_deployment: bool = False
    choices: tuple[str, ...] = field(default=())
    # A secret's rule (each value of a list): at least this many characters, never REFUSED.
    min_length: int = 0
    # One of the kit's ports: every deployment path passes the declared value and none offers
    # an override (Prometheus, the firewall rules and the NetworkPolicies are written for it);
    # another value is for running the package outside the kit.
    fixed: bool = False

    def parse(self, environ=os.environ):
        raw = environ.get(self.name)
        value = (self.default if raw is None else raw).strip()
        try:
            parsed = _PARSERS[self.kind](value)
        except ValueError:
            raise ImproperlyConfigured(
                f"{self.name}={value!r} is not {_KIND_NAMES[self.kind]}"
            ) from None
        if self.kind in ("int", "float") and value:
            if self.minimum is not None and parsed < self.minimum:
                raise ImproperlyConfigured(f"{self.name}={value} is below {self.minimum:g}")
            if self.maximum is not None and parsed > self.maximum:
                raise ImproperlyConfigured(f"{self.name}={value} is above {self.maximum:g}")
        if self.choices and value not in self.choices:
            raise ImproperlyConfigured(f"{self.name}={value!r}: use one of {self.choices}")
        return parsed


def _bool(value: str) -> bool:
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("", "0", "false", "no", "off"):
        return False
    raise ValueError(value)


_PARSERS = {
    "str": str,
    "int": lambda v: int(v) if v else 0,
    "float": lambda v: float(v) if v else 0.0,
    "bool": _bool,
    "list": lambda v: [item.strip() for item in v.split(",") if item.strip()],
}
_KIND_NAMES = {
    "str": "text",
    "int": "a whole number",
    "float": "a number",
    "bool": "a boolean (use 1/0, true/false)",
    "list": "a comma-separated list",
}

# Pushpin's public default key: refused for any secret with a rule (min_length).
REFUSED_SECRET = "changeme"  # noqa: S105 - the value refused, not one used

SETTINGS = [
    # -- Django ----------------------------------------------------------------------------------
    Setting(
        "DJANGO_SECRET_KEY",
        "",
        "Django's secret, the same for every app replica (production refuses to start without it)",
        secret=True,
        min_length=32,
    ),
    Setting(
        "DJANGO_SECRET_KEY_FALLBACKS",
        "",
        "while rotating DJANGO_SECRET_KEY: the "
        "previous value(s), still accepted for sessions and stream links",
        kind="list",
        secret=True,
        min_length=32,
    ),
    Setting(
        "DJANGO_DEBUG",
        "0",
        "development mode (insecure fallback keys); never in production",
        kind="bool",
    ),
    Setting(
        "DJANGO_ALLOWED_HOSTS",
        "localhost,127.0.0.1",
        "host names the site is served under",
        kind="list",
    ),
    Setting(
        "DJANGO_CSRF_TRUSTED_ORIGINS",
        "",
        "e.g. https://dash.example.com when served under another origin",
        kind="list",
    ),
    Setting(
        "DJANGO_SECURE_COOKIES",
        "0",
        "session and CSRF cookies over HTTPS only (set it behind TLS)",
        kind="bool",
    ),
    Setting(
        "DJANGO_LOG_LEVEL",
        "INFO",
        "the app's log level",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
    ),
    Setting(
        "DATABASE_URL",
        "",
        "the database, e.g. postgres://user:pass@db:5432/dash; empty: "
        "SQLite in DJANGO_DATA_DIR (one machine)",
        secret=True,
    ),
    Setting(
        "DJANGO_DATA_DIR",
        "",
        "the app's one writable directory (the SQLite database); empty: data/ next to manage.py",
        per_deployment=True,
    ),
    Setting(
        "DJANGO_STATIC_ROOT",
        "",
        "where collectstatic puts the static files; empty: staticfiles/ next to manage.py",
        per_deployment=True,
    ),
    # -- Pushpin and publishing ------------------------------------------------------------------
    Setting(
        "PUSHPIN_SIG_KEY",
        "",
        "Pushpin's sig_key: the app verifies Grip-Sig with it (refused empty)",
        secret=True,
        min_length=16,
    ),
    Setting(
        "PUSHPIN_SIG_KEY_FALLBACKS",
        "",
        "while rotating PUSHPIN_SIG_KEY: the previous value(s), still accepted",
        kind="list",
        secret=True,
        min_length=16,
    ),
    Setting(
        "PUSHPIN_CONTROL_URLS",
        "http://pushpin:5561",
        "publish URLs; every address each host name resolves to is a node that gets every publish",
        kind="list",
        per_deployment=True,
    ),
    Setting(
        "GRIP_URL",
        "",
        "a hosted GRIP service instead of the Pushpin nodes (Fanout), "
        "e.g. https://api.fanout.io/realm/REALM?iss=REALM&key=base64:KEY: publishes go "
        "there with its authentication, and its Grip-Sig is verified with its key",
        secret=True,
    ),
    Setting(
        "PUSHPIN_PUBLISH_TIMEOUT",
        "2",
        "seconds a node gets to accept a publish before it counts as failed",
        kind="float",
        minimum=0.1,
        maximum=60,
    ),
    Setting(
        "PUSHPIN_PUBLISH_QUEUE_SIZE",
        "10000",
        "items queued per node before new ones fail (logged, counted)",
        kind="int",
        minimum=1,
    ),
    Setting(
        "PUSHPIN_PUBLISH_QUEUE_BYTES",
        "16777216",
        "bytes queued per node (JSON-encoded items) before new ones fail (logged, counted)",
        kind="int",
        minimum=65536,
    ),
    Setting(
        "PUSHPIN_RESYNC_SECONDS",
        "3",
        "a channel quiet this long after its last publish gets that event's id published again "
        "(an SSE comment), so that a stream that missed the last event (its node missed the "
        "publish, or its answer raced it) fetches it now rather than at the next event; 0: off. "
        "A channel publishing more often never gets one",
        kind="float",
        minimum=0,
        maximum=60,
    ),
    Setting(
        "PUSHPIN_METRICS_PORT",
        "9810",
        "each Pushpin node's metrics port "
        "(pushpin.conf's prometheus_port, which run-pushpin sets from this); the ops figures "
        "read it",
        kind="int",
        read_by=(TICKER, COMMANDS),
        fixed=True,
    ),
    # -- Streams ---------------------------------------------------------------------------------
    Setting(
        "REALTIME_MAX_EVENT_BYTES",
        "65536",
        "largest event `manage.py publish` accepts",
        kind="int",
        minimum=1,
    ),
    Setting(
        "REALTIME_STREAM_REFRESH_SECONDS",
        "1800",
        "how often Pushpin re-asks the app "
        "about each open stream, each stream at a random moment in the last fifth of the "
        "interval. django-eventstream's 120 s makes idle streams a steady load on the app "
        "and, past ~1,200 streams per node, delays events (its issue #174)",
        kind="int",
        minimum=10,
        maximum=3599,
        read_by=(WEB,),
    ),
    Setting(
        "REALTIME_REPLAY_MAX_EVENTS",
        "200",
        "the most events one resume with "
        "Last-Event-ID replays per channel; past it the client gets stream-reset with the "
        "newest id and the page reloads",
        kind="int",
        minimum=1,
        read_by=(WEB,),
    ),
    Setting(
        "REALTIME_REPLAY_MAX_AGE",
        "300",
        "the oldest event (seconds) a resume replays; older: stream-reset",
        kind="int",
        minimum=1,
        read_by=(WEB,),
    ),
    Setting(
        "REALTIME_EVENT_RETENTION_SECONDS",
        "3600",
        "how long stored events are kept (at least REALTIME_REPLAY_MAX_AGE)",
        kind="int",
        minimum=60,
    ),
    Setting(
        "REALTIME_TRIM_INTERVAL_SECONDS",
        "60",
        "how often each process deletes older "
        "events in bulk, on a background thread, never inside a publish",
        kind="int",
        minimum=1,
    ),
    Setting(
        "REALTIME_RECONNECT_SPREAD_SECONDS",
        "5",
        "a browser whose stream ends (its node went away) reconnects after a random delay "
        "between 0.5 s and this (the stream's SSE `retry:`), so that the viewers of a dead node "
        "come back spread out, not in one burst",
        kind="float",
        minimum=0.5,
        maximum=60,
        read_by=(WEB,),
    ),
    Setting(
        "REALTIME_HEALTH_CACHE_SECONDS",
        "1",
        "/healthz answers every caller within this from one database check per process",
        kind="float",
        minimum=0,
        maximum=30,
        read_by=(WEB,),
    ),
    # -- The producer loop (`manage.py produce`, the ticker) ------------------------------------
    Setting(
        "TICKER_INTERVAL",
        "2",
        "seconds between runs of a producer that does not set its own interval",
        kind="float",
        minimum=0.1,
        read_by=(TICKER,),
    ),
    Setting(
        "TICKER_HEARTBEAT_FILE",
        "",
        "touched after every round of producers, for healthchecks",
        read_by=(TICKER,),
        per_deployment=True,
    ),
    # -- Metrics ---------------------------------------------------------------------------------
    Setting(
        "METRICS_ADDR",
        "",
        "where the metrics listeners bind: an IP, or a CIDR (the "
        "container's address in that network); empty: no listener",
        read_by=(GUNICORN, TICKER),
        per_deployment=True,
    ),
    Setting(
        "METRICS_PORT",
        "9808",
        "the app's metrics port (gunicorn's master adds up every worker)",
        kind="int",
        read_by=(GUNICORN,),
        fixed=True,
    ),
    Setting(
        "TICKER_METRICS_PORT",
        "9809",
        "the producer loop's metrics port",
        kind="int",
        read_by=(TICKER,),
        fixed=True,
    ),
    Setting(
        "OPS_METRICS_URLS",
        "",
        "other publishers' metrics the ops figures add to the "
        "ticker's own (every address a host name resolves to)",
        kind="list",
        read_by=(TICKER, COMMANDS),
        per_deployment=True,
    ),
    Setting(
        "PROMETHEUS_MULTIPROC_DIR",
        "",
        "where each app process writes its metric values "
        "(prometheus_client's multiprocess mode; the app image sets /tmp/prometheus-multiproc)"
        "; gunicorn clears it at start. Set by the image or the systemd unit and never empty: "
        "prometheus_client takes an empty value for a directory",
        read_by=(GUNICORN, WEB, TICKER, COMMANDS),
        per_deployment=True,
    ),
    # -- gunicorn --------------------------------------------------------------------------------
    Setting(
        "GUNICORN_BIND",
        "0.0.0.0:8000",
        "where gunicorn listens",
        read_by=(GUNICORN,),
        per_deployment=True,
    ),
    Setting(
        "GUNICORN_WORKERS",
        "",
        "gunicorn workers; empty: WEB_CONCURRENCY if set (gunicorn's "
        "own variable, never set empty), else min(2 x cores + 1, 8): in a container, the "
        "host's cores, not the container's limit",
        kind="int",
        minimum=1,
        read_by=(GUNICORN,),
        per_deployment=True,
    ),
    Setting(
        "GUNICORN_THREADS",
        "4",
        "threads per gunicorn worker",
        kind="int",
        minimum=1,
        read_by=(GUNICORN,),
    ),
    Setting(
        "GUNICORN_TIMEOUT",
        "30",
        "seconds before a stuck gunicorn worker is replaced",
        kind="int",
        minimum=5,
        read_by=(GUNICORN,),
    ),
    Setting(
        "GUNICORN_FORWARDED_ALLOW_IPS",
        "127.0.0.1",
        "peers (IPs, CIDRs) whose "
        "X-Forwarded-Proto sets the request's scheme: the kit's proxies, nginx and Pushpin. "
        "Django itself trusts no forwarded header",
        kind="list",
        read_by=(GUNICORN,),
        per_deployment=True,
    ),
    Setting(
        "DJANGO_SETTINGS_MODULE",
        "",
        "the project's settings module; empty: the one its manage.py names",
        per_deployment=True,
    ),
    Setting(
        "APP_WSGI_APPLICATION",
        "",
        "the project's WSGI application, e.g. "
        "mysite.wsgi.application; empty: its settings' WSGI_APPLICATION",
        read_by=(GUNICORN,),
    ),
]

BY_NAME = {s.name: s for s in SETTINGS}


def value(name: str, environ=os.environ):
    """One declared setting, parsed from the environment."""
    return BY_NAME[name].parse(environ)


GENERATED = "Generated from app/realtime/src/realtime/conf.py by `make settings`: do not edit."


def passed() -> list[Setting]:
    """The settings every deployment path passes with the declared default unless it sets one:
    all but those each path sets itself (addresses, paths, sizes that follow the path)."""
    return [s for s in SETTINGS if not s.per_deployment]


def compose_env() -> str:
    """compose's env_file for the app's containers: each setting from the shell or compose/.env,
    else its default (compose interpolates env files)."""
    lines = [
        f"# {GENERATED}",
        "# The app's settings for compose (env_file of every app container).",
    ]
    for setting in passed():
        if setting.name in REQUIRED_SECRETS:
            missing = f"{setting.name} is not set - run `make up`, which generates compose/.env"
            value = f"${{{setting.name}:?{missing}}}"
        elif setting.fixed:
            value = setting.default
        else:
            value = f"${{{setting.name}:-{setting.default}}}"
        lines.append(f"{setting.name}={value}")
    return "\n".join(lines) + "\n"


def kubernetes_env() -> str:
    """The ConfigMap app-settings' defaults (kustomize `envs`): every passed setting that is not
    a secret (those come from the Secret app-secrets)."""
    lines = [f"# {GENERATED}", "# The app's settings for Kubernetes (ConfigMap app-settings)."]
    lines += [f"{s.name}={s.default}" for s in passed() if not s.secret]
    return "\n".join(lines) + "\n"


def ansible_defaults() -> str:
    """The Ansible role's defaults of the app's settings (vars of the role `app`): every passed
    setting that is not a secret (those come from the vault, wired by deploy.yml)."""
    lines = [
        f"# {GENERATED}",
        "# The app's settings and their defaults, for app.env (tasks/main.yml).",
        "app_setting_defaults:",
    ]
    for setting in passed():
        if not (setting.secret or setting.fixed):
            lines.append(f"  {setting.name}: {json.dumps(setting.default)}")
    lines += [
        "# The kit's ports: written into app.env after app_settings, which may not name them.",
        "app_fixed_settings:",
        *(f"  {s.name}: {json.dumps(s.default)}" for s in passed() if s.fixed),
        "# The secrets, which app_settings may set too (from the vault), and their rules: at least",
        "# this many characters (0: any), never app_refused_secret. Preflight reads them.",
        "app_secret_rules:",
        *(f"  {s.name}: {s.min_length}" for s in SETTINGS if s.secret),
        f"app_refused_secret: {json.dumps(REFUSED_SECRET)}",
    ]
    return "\n".join(lines) + "\n"


def secret_rule(name: str) -> str:
    """A secret's rule in words, for the settings table."""
    setting = BY_NAME[name]
    if not setting.min_length:
        return ""
    return f"at least {setting.min_length} characters, never '{REFUSED_SECRET}'"


def pushpin_declared() -> str:
    """What a Pushpin node takes from the app's declaration, for run-pushpin (sourced): the
    signing key's rule (the node's own check) and the metrics port the ops figures read."""
    setting = BY_NAME["PUSHPIN_SIG_KEY"]
    return (
        f"# {GENERATED}\n"
        "# PUSHPIN_SIG_KEY's rule, the same the app enforces, and the node's metrics port\n"
        "# (sourced by run-pushpin).\n"
        f"sig_key_min_length={setting.min_length}\n"
        f"sig_key_refused={REFUSED_SECRET}\n"
        f"metrics_port={BY_NAME['PUSHPIN_METRICS_PORT'].default}\n"
    )


RENDERERS = {"compose": compose_env, "kubernetes": kubernetes_env, "ansible": ansible_defaults}
# Secrets a deployment cannot start without (the rest may be empty).
REQUIRED_SECRETS = ("DJANGO_SECRET_KEY", "PUSHPIN_SIG_KEY")


def markdown_table() -> str:
    """The settings as the README's table: name, default, meaning, who reads it."""
    rows = ["| setting | default | meaning | read by |", "|---|---|---|---|"]
    for setting in SETTINGS:
        default = (
            "secret" if setting.secret else (f"`{setting.default}`" if setting.default else "—")
        )
        if setting.per_deployment:
            default += " (set per deployment)"
        if setting.fixed:
            default += " (the kit's port: fixed in every deployment path)"
        meaning = "; ".join(filter(None, [setting.meaning, secret_rule(setting.name)]))
        meaning = meaning.replace("|", "\\|")
        rows.append(f"| `{setting.name}` | {default} | {meaning} | {', '.join(setting.read_by)} |")
    return "\n".join(rows)


if __name__ == "__main__":
    import sys

    # python -m realtime.conf [compose|kubernetes|ansible|markdown]
    target = sys.argv[1] if len(sys.argv) > 1 else "markdown"
    print(RENDERERS.get(target, markdown_table)(), end="" if target in RENDERERS else "\n")
