from django.apps import AppConfig


class DemoConfig(AppConfig):
    name = "demo"
    verbose_name = "Demo dashboard"

    def ready(self):
        from realtime import channels

        from . import dashboards  # noqa: F401 - registers the dashboards before URLs load

        channels.declare("dashboard", "public")
        channels.declare("private", "authenticated")
