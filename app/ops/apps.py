from django.apps import AppConfig


class OpsConfig(AppConfig):
    name = "ops"
    verbose_name = "Operations dashboard"

    def ready(self):
        from . import dashboards  # noqa: F401 - registers the dashboard before URLs load
