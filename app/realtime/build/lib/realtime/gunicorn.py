"""gunicorn's configuration for any project on the kit: `gunicorn -c python:realtime.gunicorn`
(the app image's command), run from the project's directory (where manage.py is).

The app never holds a stream (Pushpin does), so plain threaded workers are enough. Every value
is a setting declared in realtime.conf. The WSGI application is APP_WSGI_APPLICATION or, by
default, what the project's settings name (WSGI_APPLICATION, as `startproject` writes it);
the settings module is DJANGO_SETTINGS_MODULE or, by default, the one manage.py names.
"""

import multiprocessing
import os
import re
from pathlib import Path

from realtime import conf


def _settings_module() -> str:
    manage = Path.cwd() / "manage.py"
    found = re.search(
        r"""setdefault\(\s*["']DJANGO_SETTINGS_MODULE["']\s*,\s*["']([\w.]+)["']""",
        manage.read_text() if manage.exists() else "",
    )
    if not found:
        raise RuntimeError(
            "DJANGO_SETTINGS_MODULE is not set and no manage.py here names it: run gunicorn "
            "from the project's directory, or set DJANGO_SETTINGS_MODULE"
        )
    return found.group(1)


def _wsgi_app() -> str:
    name = conf.value("APP_WSGI_APPLICATION")
    if not name:
        # The project's own setting, read without setting Django up in this (master) process.
        import importlib

        module = importlib.import_module(os.environ["DJANGO_SETTINGS_MODULE"])
        name = getattr(module, "WSGI_APPLICATION", "")
    if not name:
        raise RuntimeError("set APP_WSGI_APPLICATION or the project's WSGI_APPLICATION")
    module, _, attribute = name.rpartition(".")
    return f"{module}:{attribute}"


os.environ.setdefault("DJANGO_SETTINGS_MODULE", _settings_module())
wsgi_app = _wsgi_app()

bind = conf.value("GUNICORN_BIND")
workers = (
    conf.value("GUNICORN_WORKERS")
    or int(os.environ.get("WEB_CONCURRENCY") or 0)
    or min(2 * multiprocessing.cpu_count() + 1, 8)
)
worker_class = "gthread"
threads = conf.value("GUNICORN_THREADS")
timeout = conf.value("GUNICORN_TIMEOUT")
graceful_timeout = 20
keepalive = 5
# As large as gunicorn allows: nginx and Pushpin bound request sizes first, and a request they
# passed must get the app's answer, not a 414 that Pushpin cannot relay (it drops the client).
limit_request_line = 8190
accesslog = "-"
errorlog = "-"
# The access log never shows a stream link's credential (realtime/accesslog.py).
logger_class = "realtime.accesslog.RedactingLogger"
# Keeps gunicorn from writing a control socket under $HOME (read-only root filesystems).
control_socket_disable = True
# The request's scheme follows X-Forwarded-Proto only from these peers: the kit's proxies
# (nginx, Pushpin), set per deployment; a client that reaches the app directly is not believed.
forwarded_allow_ips = ",".join(conf.value("GUNICORN_FORWARDED_ALLOW_IPS"))

# Prometheus metrics of every worker, added up (prometheus_client's multiprocess mode: each
# worker writes its values under PROMETHEUS_MULTIPROC_DIR) and served by this master process on
# METRICS_ADDR:METRICS_PORT, an internal address that nginx never proxies.
metrics_addr = conf.value("METRICS_ADDR")
metrics_port = conf.value("METRICS_PORT")


def on_starting(server):
    # Before any worker writes: values of a previous run must not be added in.
    from realtime import multiproc

    multiproc.clear()


def when_ready(server):
    from realtime import metrics

    where = metrics.serve(metrics_addr, metrics_port)
    server.log.info("metrics: %s", f"http://{where}/metrics" if where else "off (METRICS_ADDR)")


def child_exit(server, worker):
    from realtime import multiproc

    multiproc.mark_process_dead(worker.pid)
