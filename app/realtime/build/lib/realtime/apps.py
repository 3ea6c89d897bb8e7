from django.apps import AppConfig


class RealtimeConfig(AppConfig):
    name = "realtime"
    verbose_name = "Real-time delivery through Pushpin"

    def ready(self):
        from . import multiproc

        # Before any metric exists (the publisher's, imported next).
        multiproc.prepare()
        from . import publishing

        publishing.install()
