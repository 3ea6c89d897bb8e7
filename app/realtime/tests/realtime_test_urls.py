from django.urls import include, path

urlpatterns = [path("", include("realtime.urls"))]
