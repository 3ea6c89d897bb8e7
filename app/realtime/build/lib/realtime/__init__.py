"""The real-time layer of the kit: live django-dashboards components over Server-Sent Events,
held by Pushpin and published to every node. The package's README documents its API."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("rtdash-realtime")
except PackageNotFoundError:  # run from a source checkout that was not installed
    __version__ = "0+unknown"


def __getattr__(name: str):
    # `realtime.publish(...)`, without importing Django's settings when the package is imported.
    if name == "publish":
        from .publishing import publish

        return publish
    raise AttributeError(name)
