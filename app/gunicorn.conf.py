"""gunicorn settings. The app never holds a stream (Pushpin does), so plain sync-style
threaded workers are enough; every value can be overridden from the environment."""

import multiprocessing
import os

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", min(2 * multiprocessing.cpu_count() + 1, 8)))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", 4))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", 30))
graceful_timeout = 20
keepalive = 5
# As large as gunicorn allows: nginx and Pushpin bound request sizes first, and a request they
# passed must get the app's answer, not a 414 that Pushpin cannot relay (it drops the client).
limit_request_line = 8190
accesslog = "-"
errorlog = "-"
# Keeps gunicorn from writing a control socket under $HOME (read-only root filesystems).
control_socket_disable = True
# Pushpin and nginx are the only clients and set X-Forwarded-*; trust them.
forwarded_allow_ips = os.environ.get("GUNICORN_FORWARDED_ALLOW_IPS", "*")
