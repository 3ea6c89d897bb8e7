"""Periodic producers: functions that publish new values, run by `manage.py produce`.

An installed app registers its producers in a module `producers.py` (found like admin.py):

    from realtime.producers import producer

    @producer(every=5)           # seconds; default TICKER_INTERVAL
    def queue_depth():
        QueueDepth.publish(...)  # an SSE component's new value, or realtime.publish(...)

`manage.py produce` imports every installed app's `producers` module and runs each producer at
its interval, one after the other in one process (the deployments' `ticker`). A producer that
raises is logged and counted and runs again at its next turn; it never stops the others.
A producer may also be a class with a `__call__`: it is instantiated once, when the loop starts.
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)


@dataclass
class Producer:
    name: str
    target: object  # a function, or a class instantiated when the loop starts
    every: float | None = None  # seconds; None: TICKER_INTERVAL
    run: object = field(default=None, repr=False)

    def start(self):
        self.run = self.target() if inspect.isclass(self.target) else self.target


_registry: dict[str, Producer] = {}


def producer(every: float | None = None, name: str | None = None):
    """Register a function (or a callable class) as a periodic producer."""
    if every is not None and every <= 0:
        raise ValueError("a producer's interval must be positive")

    def register(target):
        key = name or f"{target.__module__}.{target.__qualname__}"
        _registry[key] = Producer(key, target, every)
        return target

    return register


def registered() -> list[Producer]:
    """Every registered producer, after importing the installed apps' `producers` modules."""
    from django.utils.module_loading import autodiscover_modules

    autodiscover_modules("producers")
    return list(_registry.values())
