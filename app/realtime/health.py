import logging

from django.db import connection
from django.http import JsonResponse

from . import metrics

logger = logging.getLogger(__name__)


class HealthCheckMiddleware:
    """Answers /healthz before host validation: probes (Docker, kubelet, load balancers) call it
    by IP or localhost, which need not be in DJANGO_ALLOWED_HOSTS. 200 only when the database
    answers; never cached."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path_info != "/healthz":
            return self.get_response(request)
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
                cursor.fetchone()
            response = JsonResponse({"status": "ok"})
            metrics.HEALTH_CHECKS.labels("ok").inc()
        except Exception:  # any database failure means "not healthy"
            # The reason goes to the log, not to whoever asked (the endpoint is public).
            logger.exception("healthz: the database does not answer")
            response = JsonResponse({"status": "unhealthy"}, status=503)
            metrics.HEALTH_CHECKS.labels("unhealthy").inc()
        response["Cache-Control"] = "no-store"
        return response
