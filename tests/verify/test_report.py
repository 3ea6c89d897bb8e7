"""The verify plugin's report, on two checks of its own run against the test inventory (read by
ansible-inventory; no host is contacted): the table per target, the exit status, the failure
naming the host with what was expected and what came, and the rows in the JUnit XML."""

import os
import subprocess
import sys
import xml.etree.ElementTree as ET

from support.stack import REPO

CHECKS = '''
def test_first(target, check):
    """first check."""
    check.row("host-a", True, "12 ms")
    check.row("host-b", False, "3 of 4", detail="expected 4 events, got 3")
    check.done()


def test_second(target, check):
    """second check."""
    check.row("host-c", True, "fine")
    check.done()
'''


def test_a_failed_row_fails_its_check_names_the_host_and_lands_in_the_table(tmp_path):
    (tmp_path / "check_sample.py").write_text(CHECKS)
    junit = tmp_path / "out.xml"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "verify.plugin", "-p", "no:cacheprovider",
         "-o", "python_files=check_*.py", "--rootdir", str(tmp_path), "--inventory=test",
         f"--junitxml={junit}", str(tmp_path / "check_sample.py")],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO / "tests")},
    )  # fmt: skip
    out = result.stdout
    assert result.returncode == 1, f"expected exit 1 (a check failed), got {result.returncode}"
    assert "first check: host-b: expected 4 events, got 3" in out, out
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if "verify: Ansible inventory test" in line)
    assert lines[start + 1].split() == ["check", "host/pod", "result", "measured"], lines[start:]
    rows = [" ".join(line.split()) for line in lines[start + 2 : start + 5]]
    assert rows == [
        "first check host-a ok 12 ms",
        "first check host-b FAIL 3 of 4 expected 4 events, got 3",
        "second check host-c ok fine",
    ], lines[start:]
    assert lines[start + 5] == "2 of 3 rows ok, 1 failed", lines[start:]
    suite = ET.parse(junit).getroot().find("testsuite")  # noqa: S314 (our own file)
    assert (suite.get("tests"), suite.get("failures")) == ("2", "1")
    properties = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert properties == {
        "host-a": "ok 12 ms",
        "host-b": "FAIL 3 of 4 expected 4 events, got 3",
        "host-c": "ok fine",
    }, properties
