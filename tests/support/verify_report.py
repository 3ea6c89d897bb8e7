"""Reading the table `make verify` prints (tests/verify/plugin.py), for the tests that run it
against their own deployments."""

from __future__ import annotations

import re


def table(output: str, title: str) -> list[tuple[str, str, str, str]]:
    """(check, host/pod, result, measured) of the table printed under `title`."""
    lines = output.splitlines()
    starts = [i for i, line in enumerate(lines) if title in line and line.startswith("=")]
    assert starts, f"no table titled {title!r} in the output:\n{output[-3000:]}"
    rows = []
    for line in lines[starts[0] + 2 :]:  # after the header line
        if line.startswith("=") or re.match(r"\d+ of \d+ rows ok", line):
            break
        fields = re.split(r"\s{2,}", line.strip(), maxsplit=3)
        rows.append(tuple(fields + [""] * (4 - len(fields))))
    return rows


def failed(rows) -> list[tuple[str, str, str, str]]:
    return [row for row in rows if row[2] == "FAIL"]


def delivered_per_node(rows, node: str) -> list[tuple[str, str, str, str]]:
    """The delivery rows of streams held on `node` directly that got the event."""
    return [
        r
        for r in rows
        if r[0] == "delivery via every node"
        and r[1].startswith(f"{node} (direct)")
        and "ms after publish began" in r[3]
    ]
