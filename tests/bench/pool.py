"""Drives several load-generator processes as one pool of SSE clients."""

from __future__ import annotations

import json
import multiprocessing
import time

from bench.loadgen import worker_main


class LoadPool:
    def __init__(self, target: dict, processes: int):
        context = multiprocessing.get_context("spawn")
        self.conns, self.procs = [], []
        for _ in range(processes):
            parent, child = context.Pipe()
            proc = context.Process(
                target=worker_main, args=(child, json.dumps(target)), daemon=True
            )
            proc.start()
            self.conns.append(parent)
            self.procs.append(proc)

    def _all(self, command: dict, timeout: float = 600) -> list[dict]:
        for conn in self.conns:
            conn.send(command)
        answers = []
        for conn in self.conns:
            if not conn.poll(timeout):
                raise TimeoutError(f"load generator did not answer {command['cmd']} in {timeout}s")
            answers.append(conn.recv())
        return answers

    def open(
        self,
        total: int,
        rate: float | None = None,
        timeout: float = 10,
        retry: bool = False,
        resume: bool = False,
    ) -> None:
        """Open `total` streams, spread over the processes, at `rate` per second overall
        (None: as fast as possible); with `retry`, a failed attempt is retried as a browser
        would; with `resume`, a stream the server ends is reopened from its last id (see
        loadgen). Returns at once: the processes open them in the background (see report())."""
        share, extra = divmod(total, len(self.conns))
        for n, conn in enumerate(self.conns):
            count = share + (1 if n < extra else 0)
            per_rate = rate / len(self.conns) if rate else None
            conn.send(
                {
                    "cmd": "open",
                    "count": count,
                    "rate": per_rate,
                    "timeout": timeout,
                    "retry": retry,
                    "resume": resume,
                }
            )
        for conn in self.conns:
            conn.recv()

    def report(
        self, samples: bool = False, reset_samples: bool = False, streams: bool = False
    ) -> dict:
        command = {"cmd": "report", "samples": samples, "reset_samples": reset_samples}
        reports = self._all({**command, "streams": streams})
        total = {
            "processes": len(reports),
            "cpu_s_per_process": [round(r["cpu_s"], 2) for r in reports],
        }
        for key in ("opened", "failed", "dropped", "open_now", "events", "keepalives", "comments"):
            total[key] = sum(r[key] for r in reports)
        failures: dict[str, int] = {}
        for r in reports:
            for reason, n in r["failures"].items():
                failures[reason] = failures.get(reason, 0) + n
        total["failures"] = failures
        if samples:
            total["latency_s"] = [x for r in reports for x in r["latency_s"]]
            total["connect_s"] = [x for r in reports for x in r["connect_s"]]
            total["opened_at"] = sorted(x for r in reports for x in r["opened_at"])
        if streams:
            total["seqs"] = [seqs for r in reports for seqs in r["seqs"]]
            total["history"] = [h for r in reports for h in r["history"]]
            total["ended_at"] = sorted(x for r in reports for x in r["ended_at"])
            total["back_at"] = sorted(x for r in reports for x in r["back_at"])
            total["resumed"] = sum(r["resumed"] for r in reports)
        return total

    def wait_open(self, count: int, timeout: float, retrying: bool = False) -> dict:
        """Wait until `count` streams are open (or have failed, unless they are `retrying`:
        then until they are all open); the last report."""
        deadline = time.monotonic() + timeout
        while True:
            report = self.report()
            done = report["opened"] + (0 if retrying else report["failed"])
            if done >= count or time.monotonic() > deadline:
                return report
            time.sleep(0.5)

    def close(self) -> None:
        self._all({"cmd": "close"})

    def stop(self) -> None:
        try:
            self._all({"cmd": "exit"}, timeout=30)
        except (OSError, EOFError, TimeoutError):
            pass
        for proc in self.procs:
            proc.join(5)
            if proc.is_alive():
                proc.kill()
