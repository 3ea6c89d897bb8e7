from django.apps import AppConfig


class RealtimeConfig(AppConfig):
    name = "realtime"
    verbose_name = "Real-time delivery through Pushpin"

    def ready(self):
        from . import publishing

        publishing.install()
