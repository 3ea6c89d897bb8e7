"""The short path of a stream request through Django's middleware.

Every new stream, every refresh and every page of a replay is a request from Pushpin to
/events/: thousands a second when many viewers arrive at once. Such a request needs only
django-grip's signature check and its GRIP headers, and the user when it names a channel that
is not public; not the site's security headers, static files, CSRF, messages or clickjacking
middleware (Pushpin and nginx send the client what it needs). This middleware, first in the
chain (realtime.settings puts it there), answers /events/ itself with just those, and hands
every other request on unchanged.
"""

from django.contrib.auth import get_user
from django.contrib.sessions.middleware import SessionMiddleware
from django.urls import reverse
from django.utils.functional import SimpleLazyObject
from django_grip import GripMiddleware


class StreamRequestMiddleware:
    def __init__(self, get_response):
        from . import views

        self.get_response = get_response
        self.grip = GripMiddleware(get_response)
        self.sessions = SessionMiddleware(get_response)
        self.view = views.events
        self.path = None

    def __call__(self, request):
        if self.path is None:
            self.path = reverse("events")
        if request.path_info != self.path:
            return self.get_response(request)
        self.grip.process_request(request)
        # The session (a cookie nginx forwards) and the user are looked up only when the view
        # asks, i.e. for a channel that is not public.
        self.sessions.process_request(request)
        request.user = SimpleLazyObject(lambda: get_user(request))
        response = self.view(request)
        return self.grip.process_response(request, response)
