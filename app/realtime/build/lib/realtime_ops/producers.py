"""The ops dashboard's producer: every TICKER_INTERVAL, the figures of every Pushpin node and
publisher, rendered into the dashboard's components and published on the `ops` channel."""

from realtime.producers import producer

from .publisher import OpsPublisher


@producer(name="ops.figures")
class Figures:
    def __init__(self):
        self.publisher = OpsPublisher()

    def __call__(self):
        self.publisher.tick()
