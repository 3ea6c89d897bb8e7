from django.apps import AppConfig


class DemoConfig(AppConfig):
    name = "demo"
    verbose_name = "Demo dashboard"

    def ready(self):
        from . import dashboards  # noqa: F401 - registers the dashboards before URLs load
