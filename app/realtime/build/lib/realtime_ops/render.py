"""Figures (figures.py) as the ops dashboard's component values and as `make status` text."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from dashboards.component.stat import StatData

from .figures import Figures


def _n(value: float) -> str:
    return f"{value:,.0f}" if value == int(value) else f"{value:,.1f}"


def stats(figures: Figures, rates: dict[str, float]) -> dict[str, StatData]:
    now = datetime.now(UTC).strftime("%H:%M:%S UTC")
    down = [n.name for n in figures.nodes if not n.up]
    failed = sum(figures.failed.values())
    return {
        "streams": StatData(
            text=_n(figures.streams),
            sub_text=f"open streams; {figures.nodes_up} of {len(figures.nodes)} Pushpin node(s) up"
            + (f" (down: {', '.join(down)})" if down else "")
            + f"; {_n(figures.streams_opened)} opened, {_n(figures.replays)} resumed, "
            f"{_n(figures.resets)} reset; {now}",
        ),
        "publish_rate": StatData(
            text=_n(round(sum(rates.values()), 1)) if rates else "…",
            sub_text="publishes/s, summed over the nodes: "
            + (", ".join(f"{n}: {r:.1f}" for n, r in sorted(rates.items())) or "measuring"),
        ),
        "publish_failures": StatData(
            text=_n(failed),
            sub_text="publish failures per node: "
            + (
                ", ".join(f"{node}: {_n(v)}" for node, v in sorted(figures.failed.items()))
                or "none"
            ),
        ),
    }


def per_node_chart(title: str, values: dict[str, float]) -> str:
    """A Plotly bar chart (JSON), what django-dashboards' chart template expects."""
    names = sorted(values)
    return json.dumps(
        {
            "data": [{"type": "bar", "x": names, "y": [values[n] for n in names]}],
            "layout": {
                "title": {"text": title},
                "margin": {"t": 40, "r": 10, "b": 60, "l": 40},
                "yaxis": {"rangemode": "tozero"},
            },
        }
    )


def charts(figures: Figures) -> dict[str, str]:
    return {
        "streams_per_node": per_node_chart(
            "Open streams per Pushpin node", {n.name: n.streams for n in figures.nodes if n.up}
        ),
    }


def table(figures: Figures, rates: dict[str, float]) -> str:
    """The same figures for a terminal (`make status`)."""
    rows = [("node", "state", "streams", "publish/s", "accepted", "failed", "delivered")]
    for node in figures.nodes:
        rows.append(
            (
                node.name,
                "up" if node.up else "DOWN",
                _n(node.streams) if node.up else "-",
                f"{rates[node.name]:.1f}" if node.name in rates else "-",
                _n(figures.published.get(node.name, 0)),
                _n(figures.failed.get(node.name, 0)),
                _n(node.sent) if node.up else "-",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.append("")
    lines.append(
        f"open streams {_n(figures.streams)} on {figures.nodes_up} of {len(figures.nodes)} "
        f"Pushpin node(s); publishes {sum(rates.values()):.1f}/s; failures "
        f"{_n(sum(figures.failed.values()))}"
    )
    lines.append(
        f"streams opened {_n(figures.streams_opened)}, resumed with Last-Event-ID "
        f"{_n(figures.replays)}, reset {_n(figures.resets)}"
    )
    lines.append(f"publisher counters from: {', '.join(figures.sources)}")
    for node in figures.nodes:
        if not node.up:
            lines.append(f"node {node.name} metrics: {node.error}")
    for error in figures.source_errors:
        lines.append(f"cannot read publisher counters {error}")
    return "\n".join(lines)
