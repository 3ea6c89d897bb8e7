"""Publishes the ops dashboard's components: each tick, read the figures (figures.py), render
every component and send it on the `ops` channel through the Pushpin cluster."""

from __future__ import annotations

import logging

from . import render
from .figures import Figures, collect_for_this_app

logger = logging.getLogger(__name__)


class OpsPublisher:
    def __init__(self):
        from .dashboards import OpsDashboard

        self.components = {c.key: c for c in OpsDashboard().get_components()}
        self.previous: Figures | None = None

    def tick(self) -> Figures:
        figures = collect_for_this_app()
        rates = figures.rates(self.previous)
        self.previous = figures
        values = {**render.stats(figures, rates), **render.charts(figures)}
        for key, value in values.items():
            self.components[key].publish(value)
        for error in figures.source_errors:
            logger.warning("ops: cannot read publisher counters %s", error)
        return figures
