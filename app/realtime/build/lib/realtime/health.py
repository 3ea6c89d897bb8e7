"""/healthz: is this app process able to serve, i.e. does its database answer?

Probes (Docker, kubelet, load balancers, Ansible's deploy wait) call it on the app's own
address; nginx does not serve it on the public origin. Each check costs a database round trip,
so one process runs at most one at a time and every caller within REALTIME_HEALTH_CACHE_SECONDS
shares its result: a flood of checks costs one query per interval, and concurrent callers wait
for the check in flight instead of being refused.
"""

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.db import connection
from django.http import JsonResponse

from . import metrics

logger = logging.getLogger(__name__)

# A hung database (not a dead one) never answers, and no client-side query timeout exists, so the
# ping runs on one dedicated thread and callers wait for it with a deadline.
DEADLINE_S = 3.0


def _ping() -> None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    finally:
        # A fresh connection each time (at most one per REALTIME_HEALTH_CACHE_SECONDS): this
        # thread is outside Django's request cycle, which would otherwise never close or
        # re-check it (after a database restart, say).
        connection.close()


class HealthCheck:
    """One database ping in flight per process; its result is shared for `max_age` seconds."""

    def __init__(self, max_age: float, deadline: float = DEADLINE_S):
        self.max_age, self.deadline = max_age, deadline
        self._pinger = ThreadPoolExecutor(max_workers=1, thread_name_prefix="healthz")
        self._lock = threading.Lock()
        self._result: tuple[bool, str] | None = None
        self._checked_at = 0.0
        self._in_flight = None  # the Future of the ping running now

    def __call__(self) -> tuple[bool, str]:
        with self._lock:
            if self._result is not None and time.monotonic() - self._checked_at < self.max_age:
                return self._result
            started = self._in_flight is None
            if started:
                self._in_flight = self._pinger.submit(_ping)
            future = self._in_flight
        if started:
            # Outside the lock: a ping that has already finished runs the callback right here.
            future.add_done_callback(self._done)
        try:
            future.result(timeout=self.deadline)
        except TimeoutError:
            # Still waiting: the next callers wait on the same ping, never a second one.
            return False, f"no answer within {self.deadline:.0f} s"
        except Exception as exc:  # noqa: BLE001 - any database failure means "not healthy"
            return False, f"{type(exc).__name__}: {exc}"
        return True, ""

    def _done(self, future) -> None:
        error = future.exception()
        result = (True, "") if error is None else (False, f"{type(error).__name__}: {error}")
        with self._lock:
            self._result, self._checked_at, self._in_flight = result, time.monotonic(), None


_check: HealthCheck | None = None
_check_lock = threading.Lock()


def database_answers() -> tuple[bool, str]:
    global _check
    with _check_lock:
        if _check is None:
            _check = HealthCheck(settings.REALTIME_HEALTH_CACHE_SECONDS)
    return _check()


class HealthCheckMiddleware:
    """Answers /healthz before host validation: probes call it by IP or localhost, which need
    not be in DJANGO_ALLOWED_HOSTS. 200 only when the database answers in time; never cached
    by clients; the reason for a 503 goes to the log, not to the caller."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path_info != "/healthz":
            return self.get_response(request)
        healthy, reason = database_answers()
        if healthy:
            response = JsonResponse({"status": "ok"})
            metrics.HEALTH_CHECKS.labels("ok").inc()
        else:
            logger.error("healthz: the database does not answer: %s", reason)
            response = JsonResponse({"status": "unhealthy"}, status=503)
            metrics.HEALTH_CHECKS.labels("unhealthy").inc()
        response["Cache-Control"] = "no-store"
        return response
