"""The alert rules and the scrape config, checked by promtool in the kit's own Prometheus image:
`promtool check` accepts them, `promtool test rules` runs their unit tests (rules.test.yml),
and that test run fails when a rule is broken."""

import os
import re
import shutil
import subprocess

import pytest
import yaml

from support.stack import COMPOSE_FILE, REPO, run

MONITORING = REPO / "monitoring"


@pytest.fixture(scope="module")
def prometheus_image(docker_client):
    env = {**os.environ, "DJANGO_SECRET_KEY": "unused", "PUSHPIN_SIG_KEY": "unused"}
    run(
        ["docker", "compose", "-f", str(COMPOSE_FILE), "--profile", "monitoring",
         "build", "--quiet", "prometheus"],
        env=env,
    )  # fmt: skip
    return "rtdash/prometheus:latest"


def promtool(image: str, directory, *args: str) -> subprocess.CompletedProcess:
    """promtool ARGS in the image, in a read-only copy of `directory` mounted at /m."""
    return subprocess.run(
        ["docker", "run", "--rm", "--network", "none", "-v", f"{directory}:/m:ro", "-w", "/m",
         "--entrypoint", "promtool", image, *args],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_promtool_accepts_the_rules_and_the_config(prometheus_image):
    rules = promtool(prometheus_image, MONITORING, "check", "rules", "rules.yml")
    assert rules.returncode == 0, f"promtool check rules:\n{rules.stdout}{rules.stderr}"
    config = promtool(prometheus_image, MONITORING, "check", "config", "prometheus.yml")
    assert config.returncode == 0, f"promtool check config:\n{config.stdout}{config.stderr}"


def test_the_rules_pass_their_unit_tests(prometheus_image):
    result = promtool(prometheus_image, MONITORING, "test", "rules", "rules.test.yml")
    assert result.returncode == 0, f"promtool test rules:\n{result.stdout}{result.stderr}"
    assert "SUCCESS" in result.stdout


def test_the_unit_tests_catch_a_broken_rule(prometheus_image, tmp_path):
    for name in ("rules.yml", "rules.test.yml"):
        shutil.copy(MONITORING / name, tmp_path / name)
    rules = (tmp_path / "rules.yml").read_text()
    broken = rules.replace('expr: up{job="pushpin"} == 0', 'expr: up{job="pushpin"} == 2')
    assert broken != rules
    (tmp_path / "rules.yml").write_text(broken)
    tmp_path.chmod(0o755)
    result = promtool(prometheus_image, tmp_path, "test", "rules", "rules.test.yml")
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "PushpinNodeDown" in output, (
        f"expected the unit tests to fail on a broken PushpinNodeDown:\n{output}"
    )


def alerting_rules() -> list[dict]:
    groups = yaml.safe_load((MONITORING / "rules.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_every_alert_is_actionable_and_unit_tested():
    tests = (MONITORING / "rules.test.yml").read_text()
    required = {"PushpinNodeDown", "PushpinPublishFailures", "StreamsDroppedSharply"}
    names = {rule["alert"] for rule in alerting_rules()}
    assert required | {"AppDown", "AppUnhealthy"} <= names, f"alerts: {sorted(names)}"
    for rule in alerting_rules():
        name = rule["alert"]
        assert rule["labels"].get("severity") in ("critical", "warning"), f"{name}: severity"
        assert {"summary", "description"} <= set(rule["annotations"]), f"{name}: annotations"
        minutes = re.fullmatch(r"(\d+)m", rule.get("for", "0m"))
        assert minutes and int(minutes.group(1)) >= 1, (
            f"{name}: `for` {rule.get('for')!r} would page on a single bad scrape"
        )
        assert f"alertname: {name}\n" in tests, f"{name} has no unit test in rules.test.yml"
