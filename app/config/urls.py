from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from realtime import views as realtime_views

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="dashboards:demo_livedashboard"), name="home"),
    path("events/", realtime_views.events, name="events"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
    path("dashboards/", include("dashboards.urls")),
]
