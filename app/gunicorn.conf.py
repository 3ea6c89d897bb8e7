"""gunicorn settings. The app never holds a stream (Pushpin does), so plain sync-style
threaded workers are enough; every value can be overridden from the environment."""

import multiprocessing
import os

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
workers = int(
    os.environ.get("GUNICORN_WORKERS")
    or os.environ.get("WEB_CONCURRENCY")
    or min(2 * multiprocessing.cpu_count() + 1, 8)
)
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS") or 4)
timeout = int(os.environ.get("GUNICORN_TIMEOUT", 30))
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
forwarded_allow_ips = os.environ.get("GUNICORN_FORWARDED_ALLOW_IPS") or "127.0.0.1"

# Prometheus metrics of every worker, added up (prometheus_client's multiprocess mode: each
# worker writes its values under PROMETHEUS_MULTIPROC_DIR) and served by this master process on
# METRICS_ADDR:METRICS_PORT, an internal address that nginx never proxies.
metrics_addr = os.environ.get("METRICS_ADDR", "")
metrics_port = int(os.environ.get("METRICS_PORT", 9808))


def on_starting(server):
    # Before any worker writes: values of a previous run must not be added in.
    from realtime import metrics

    metrics.clear_multiproc_dir()


def when_ready(server):
    from realtime import metrics

    where = metrics.serve(metrics_addr, metrics_port)
    server.log.info("metrics: %s", f"http://{where}/metrics" if where else "off (METRICS_ADDR)")


def child_exit(server, worker):
    from realtime import metrics

    metrics.mark_process_dead(worker.pid)
