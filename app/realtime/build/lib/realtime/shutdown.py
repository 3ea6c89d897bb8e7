import signal


class StopOnSignal:
    """True once SIGTERM or SIGINT arrived: a publishing loop then finishes its step, drains its
    queued publishes and exits cleanly (`docker stop`, systemd, Ctrl-C) instead of dying with
    items still queued for the Pushpin nodes."""

    def __init__(self):
        self.requested = False
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._request)

    def _request(self, signum, frame):
        self.requested = True

    def __bool__(self):
        return self.requested
