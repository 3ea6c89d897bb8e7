"""pytest plugin of `make verify` (`pytest -p verify.plugin`): the target options, the `target`
fixture, and the table printed at the end (check, host or pod, result, measured figure). Each
row also goes into the JUnit XML (`--junitxml`) as a property of its test."""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytest

from verify.targets import Target, TargetError, parse_target


@dataclass
class Row:
    check: str
    where: str
    ok: bool
    figure: str = ""
    detail: str = ""


class Results:
    """Every row the checks record, per check; a check fails naming each failing row."""

    def __init__(self) -> None:
        self.rows: list[Row] = []

    def add(self, check: str, where: str, ok: bool, figure: str = "", detail: str = "") -> Row:
        # One line per row, whatever a host printed.
        figure, detail = (" | ".join(t.split("\n")) for t in (figure, detail))
        row = Row(check, where, bool(ok), figure, detail)
        self.rows.append(row)
        return row


class Check:
    """The rows of one check (one test): `row()` per host, pod or stream, then `done()`."""

    def __init__(self, results: Results, request, name: str):
        self.results, self.request, self.name = results, request, name
        self.rows: list[Row] = []

    def row(self, where: str, ok: bool, figure: str = "", detail: str = "") -> bool:
        row = self.results.add(self.name, where, ok, figure, detail)
        self.rows.append(row)
        self.request.node.user_properties.append(
            (f"{where}", f"{'ok' if row.ok else 'FAIL'} {figure} {detail}".strip())
        )
        return row.ok

    def done(self) -> None:
        failed = [r for r in self.rows if not r.ok]
        assert self.rows, f"{self.name}: nothing was checked"
        assert not failed, f"{self.name}: " + "; ".join(f"{r.where}: {r.detail}" for r in failed)


def pytest_addoption(parser):
    group = parser.getgroup("verify", "make verify: the deployment to check")
    env = os.environ.get
    group.addoption("--project", default=env("PROJECT", ""), help="compose project (make up's)")
    group.addoption("--inventory", default=env("INVENTORY", ""), help="Ansible inventory")
    group.addoption("--ansible-args", default=env("ANSIBLE_ARGS", ""), help="vault, SSH options")
    group.addoption("--namespace", default=env("K8S_NAMESPACE", ""), help="Kubernetes namespace")
    group.addoption("--origin", default=env("ORIGIN", ""), help="public origin host:port")
    group.addoption("--kubectl", default=env("KUBECTL", "kubectl"))


def _target(config) -> Target:
    option = config.option
    return parse_target(
        project=option.project,
        inventory=option.inventory,
        namespace=option.namespace,
        ansible_args=option.ansible_args,
        origin=option.origin,
        kubectl=option.kubectl,
    )


def pytest_configure(config):
    config.pluginmanager.register(_Session(config), "verify-session")


class _Session:
    def __init__(self, config):
        self.config = config
        self.results = Results()
        self.chosen: Target | None = None
        try:
            self.chosen = _target(config)
        except TargetError as exc:
            raise pytest.UsageError(f"make verify: {exc}") from exc

    def pytest_sessionstart(self, session):
        try:
            self.chosen.preflight()
        except TargetError as exc:
            pytest.exit(f"make verify: {exc}", returncode=2)

    def pytest_terminal_summary(self, terminalreporter):
        rows = self.results.rows
        if not rows or self.chosen is None:
            return
        write = terminalreporter.write_line
        terminalreporter.section(f"verify: {self.chosen.name}")
        widths = [
            max(len(h), *(len(v) for v in values))
            for h, values in (
                ("check", [r.check for r in rows]),
                ("host/pod", [r.where for r in rows]),
                ("result", ["FAIL"]),
            )
        ]
        line = "{{:<{}}}  {{:<{}}}  {{:<{}}}  {{}}".format(*widths)
        write(line.format("check", "host/pod", "result", "measured"))
        for r in rows:
            figure = r.figure if r.ok else f"{r.figure} {r.detail}".strip()
            write(line.format(r.check, r.where, "ok" if r.ok else "FAIL", figure))
        failed = sum(not r.ok for r in rows)
        write(f"{len(rows) - failed} of {len(rows)} rows ok, {failed} failed")


def _session(config) -> _Session:
    return config.pluginmanager.get_plugin("verify-session")


@pytest.fixture(scope="session")
def target(request):
    """The deployment checked (verify.targets), closed (port-forwards) at the end."""
    chosen = _session(request.config).chosen
    yield chosen
    chosen.close()


@pytest.fixture
def check(request):
    """Rows of the current check, named by the first line of the test's docstring."""
    doc = (request.function.__doc__ or request.function.__name__).strip().splitlines()[0]
    return Check(_session(request.config).results, request, doc.rstrip("."))
