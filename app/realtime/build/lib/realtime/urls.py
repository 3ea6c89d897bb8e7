"""The real-time layer's URLs: `path("", include("realtime.urls"))` in the project's URLconf.

/events/ is the path the SSE components connect to, on the site's own origin; nginx sends it
to the Pushpin nodes, which ask this view what to hold. (/healthz is answered by
realtime.health.HealthCheckMiddleware, before any URL routing.)"""

from django.urls import path

from . import views

urlpatterns = [path("events/", views.events, name="events")]
