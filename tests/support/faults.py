"""Bookkeeping for fault runs: which events were published in which phase, and per phase what
the followers received, lost, got twice, and how long they waited."""

from __future__ import annotations

import itertools
import json
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from support.sse import Follower


@dataclass
class Phase:
    name: str
    started: float
    ended: float = 0.0


@dataclass
class Timeline:
    phases: list[Phase] = field(default_factory=list)

    def begin(self, name: str) -> None:
        now = time.time()
        if self.phases and not self.phases[-1].ended:
            self.phases[-1].ended = now
        self.phases.append(Phase(name, now))

    def end(self) -> None:
        if self.phases and not self.phases[-1].ended:
            self.phases[-1].ended = time.time()

    def phase_of(self, when: float) -> str | None:
        for phase in self.phases:
            if phase.started <= when < (phase.ended or float("inf")):
                return phase.name
        return None


def phase_report(timeline: Timeline, followers: list[Follower], published: int) -> list[dict]:
    """Per phase: published, received, lost, duplicated, longest gap between two receipts,
    and the longest publish-to-receipt delay, over all followers."""
    sent_at: dict[int, float] = {}
    for follower in followers:
        for receipt in follower.receipts:
            sent_at.setdefault(receipt.seq, receipt.sent_at)
    rows = []
    for phase in timeline.phases:
        seqs = {s for s, t in sent_at.items() if timeline.phase_of(t) == phase.name}
        row = {"phase": phase.name, "published": len(seqs), "received": 0, "lost": 0}
        row.update({"duplicated": 0, "longest_gap_s": 0.0, "max_delay_s": 0.0})
        for follower in followers:
            mine = [r for r in follower.receipts if r.seq in seqs]
            got = [r.seq for r in mine]
            row["received"] += len(set(got))
            row["lost"] += len(seqs - set(got))
            row["duplicated"] += len(got) - len(set(got))
            times = sorted(r.received_at for r in follower.receipts)
            inside = [t for t in times if phase.started <= t < phase.ended]
            edges = [phase.started, *inside, phase.ended]
            row["longest_gap_s"] = max(
                row["longest_gap_s"], *(b - a for a, b in itertools.pairwise(edges))
            )
            delays = [r.received_at - r.sent_at for r in mine]
            row["max_delay_s"] = max([row["max_delay_s"], *delays])
        row["longest_gap_s"] = round(row["longest_gap_s"], 2)
        row["max_delay_s"] = round(row["max_delay_s"], 2)
        rows.append(row)
    never = set(range(1, published + 1)) - set(sent_at)
    if never:
        rows.append({"phase": "(seen by no client)", "published": len(never), "lost": len(never)})
    return rows


def print_table(rows: list[dict]) -> str:
    columns = [
        "phase",
        "published",
        "received",
        "lost",
        "duplicated",
        "longest_gap_s",
        "max_delay_s",
    ]
    lines = [" | ".join(columns), " | ".join("---" for _ in columns)]
    lines += [" | ".join(str(row.get(c, "")) for c in columns) for row in rows]
    text = "\n".join(lines)
    print("\n" + text)
    return text


def save(rows: list[dict], extra: dict, name: str) -> Path:
    """Results of the last run, for the README's table (git-ignored)."""
    out = Path(__file__).resolve().parents[1] / "results" / f"{name}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"phases": rows, **extra}, indent=2))
    return out


@contextmanager
def refusing(container, port: int):
    """The container refuses TCP connections to `port` (a reset, so nothing sent meanwhile is
    delivered late, as a paused node would), by a rule in its own network namespace."""
    container.reload()
    rule = [
        "INPUT",
        "-p",
        "tcp",
        "--dport",
        str(port),
        "-j",
        "REJECT",
        "--reject-with",
        "tcp-reset",
    ]
    netns = ["nsenter", "-t", str(container.attrs["State"]["Pid"]), "-n", "iptables"]
    subprocess.run([*netns, "-I", *rule], check=True, capture_output=True, timeout=30)
    try:
        yield
    finally:
        subprocess.run([*netns, "-D", *rule], check=True, capture_output=True, timeout=30)
