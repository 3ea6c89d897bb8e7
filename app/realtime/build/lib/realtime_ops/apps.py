from django.apps import AppConfig


class OpsConfig(AppConfig):
    name = "realtime_ops"
    # The dashboard's URL (/dashboards/ops/opsdashboard/) and its event channel keep this name.
    label = "ops"
    verbose_name = "Operations dashboard"

    def ready(self):
        from realtime import channels

        from . import dashboards  # noqa: F401 - registers the dashboard before URLs load

        # Staff only, like the dashboard itself.
        channels.declare("ops", "staff")
