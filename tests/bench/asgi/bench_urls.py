from django.urls import path
from django_eventstream.views import events

# django-eventstream's own view: with no Grip-Sig it streams from this process.
urlpatterns = [path("events/", events)]
