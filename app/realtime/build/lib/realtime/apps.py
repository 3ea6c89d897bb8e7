from django.apps import AppConfig


class RealtimeConfig(AppConfig):
    name = "realtime"
    verbose_name = "Real-time delivery through Pushpin"

    def ready(self):
        from . import multiproc

        # Before any metric exists (the publisher's, imported next).
        multiproc.prepare()
        from dashboards.registry import registry

        from . import publishing

        publishing.install()
        # Every installed app's dashboards module (as django-dashboards' docs have projects do
        # by hand), so a project's dashboards and their components exist before URLs load.
        registry.autodiscover()
