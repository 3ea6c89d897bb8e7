"""`make verify` (tests/verify) against the running compose stack: it passes, printing its table
and writing JUnit XML; it fails naming the node when one Pushpin container is stopped, and
naming the file when a config file inside the running nginx container is edited. The verify
suite's checks are the compose stack's end-to-end and testinfra checks (delivery through nginx
and every node, Last-Event-ID replay, users, listeners, config files, control ports)."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from support.verify_report import delivered_per_node, failed, table

pytestmark = pytest.mark.slow

CHECKS = {
    "service running",
    "own non-root user",
    "listening sockets",
    "config = repository",
    "control ports closed to the edge",
    "health and metrics internal only",
    "delivery via every node",
    "Last-Event-ID resume",
}


def run_verify(stack, tmp_path: Path):
    junit = tmp_path / "verify.xml"
    result = stack.verify(f"PYTEST_ARGS=--junitxml={junit}")
    output = result.stdout + result.stderr
    (tmp_path / "verify.out").write_text(output)  # the whole report, to read after a failure
    rows = table(output, f"verify: compose project {stack.project}")
    return result.returncode, output, rows, junit


def junit_suite(path: Path):
    """The testsuite element of the JUnit XML make verify wrote (our own file)."""
    suite = ET.parse(path).getroot().find("testsuite")  # noqa: S314
    assert suite is not None, path.read_text()[:500]
    return suite


def test_make_verify_passes_on_the_running_stack(stack, tmp_path):
    status, output, rows, junit = run_verify(stack, tmp_path)
    assert status == 0, f"make verify exited {status}; failed {failed(rows)}\n{output[-4000:]}"
    checks = {row[0] for row in rows}
    assert checks == CHECKS, f"checks in the table: {sorted(checks)}"
    assert not failed(rows), failed(rows)
    # Every Pushpin node held streams that got the event, with the delivery time measured.
    nodes = [c.name for c in stack.containers("pushpin")]
    assert len(nodes) >= 2, f"expected at least 2 Pushpin nodes, found {nodes}"
    for node in nodes:
        held = delivered_per_node(rows, node)
        assert len(held) == 3, f"{node}: expected 3 streams delivered, rows {held}"
    via_origin = [
        r
        for r in rows
        if r[0] == "delivery via every node"
        and r[1].startswith("origin 127.0.0.1:")
        and "ms after publish began" in r[3]
    ]
    assert len(via_origin) == 3 * len(nodes), via_origin
    # Every service's containers were looked at.
    for container in stack.containers():
        service = container.labels["com.docker.compose.service"]
        if service in ("app", "ticker", "pushpin", "nginx"):
            assert any(r[1] == container.name for r in rows if r[0] == "own non-root user"), (
                f"{container.name} not in the user check's rows"
            )
    suite = junit_suite(junit)
    counts = {k: int(suite.get(k)) for k in ("tests", "failures", "errors")}
    assert counts == {"tests": len(CHECKS), "failures": 0, "errors": 0}, counts
    assert suite.findall(".//testcase/properties/property"), "no rows in the JUnit XML"


def test_make_verify_fails_naming_a_stopped_pushpin_node(stack, tmp_path):
    node = stack.containers("pushpin")[-1]
    stack.run_docker("stop", "-t", "5", node.name)
    # nginx re-resolves the nodes every 2 s (nginx/upstreams/compose.conf): from then on it
    # balances over the live node only, as it would a moment after any node went away.
    time.sleep(3)
    try:
        status, output, rows, junit = run_verify(stack, tmp_path)
    finally:
        stack.run_docker("start", node.name)
        stack.wait_healthy()
    assert status != 0, f"make verify passed with {node.name} stopped:\n{output[-3000:]}"
    bad = failed(rows)
    named = [r for r in bad if r[1] == node.name and r[0] == "service running"]
    assert named and "expected running, is exited" in named[0][3], bad
    delivery = [r for r in bad if r[0] == "delivery via every node" and r[1] == node.name]
    assert delivery, f"delivery did not fail naming {node.name}: {bad}"
    # The other node still got the event: only the stopped one (and the publish that could
    # not reach it) fail.
    others = {r[1] for r in bad if not r[1].startswith(node.name) and " publish " not in r[1]}
    assert not others, f"expected only {node.name} to fail, also failed: {sorted(others)}"
    assert junit_suite(junit).get("failures") != "0"


def test_make_verify_fails_naming_an_edited_nginx_config_file(stack, tmp_path):
    nginx = stack.container("nginx")
    path = "/etc/nginx/kit/site.conf"
    # The container's root filesystem is read-only from inside; its overlay on this machine
    # is not: the edit is what a hand on the running container would have left.
    merged = Path(nginx.attrs["GraphDriver"]["Data"]["MergedDir"])
    edited = merged / path.lstrip("/")
    original = edited.read_bytes()
    edited.write_bytes(original + b"# edited by hand\n")
    try:
        seen = nginx.exec_run(["tail", "-n", "1", path]).output.decode()
        assert seen == "# edited by hand\n", f"the container does not see the edit: {seen!r}"
        status, output, rows, _ = run_verify(stack, tmp_path)
    finally:
        edited.write_bytes(original)
    assert status != 0, f"make verify passed with {path} edited:\n{output[-3000:]}"
    bad = failed(rows)
    assert [r[1] for r in bad] == [f"{nginx.name}:{path}"], (
        f"expected exactly {nginx.name}:{path} to fail, failed: {bad}"
    )
    assert "differs from the repository's nginx/site.conf" in bad[0][3], bad[0]
    restored = nginx.exec_run(["cat", path]).output
    assert restored == original, "site.conf in the container was not restored"
