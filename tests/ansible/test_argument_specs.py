"""Each role checks its inputs (meta/argument_specs.yml) before its first task: a wrong type or a
missing required input stops the role naming the variable. A play holds nothing but the role,
for a host that does not exist (any task that reached it would fail unreachable): the check is
the role's first task. The app and pushpin roles start with their dependency (port_allowlist),
so their spec is checked the same way by Ansible's own validate_argument_spec, with the role's
defaults and the wrong input."""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml

from support.ansible_hosts import ANSIBLE_BIN, ANSIBLE_DIR, clean_env

# (role, extra vars, what the failure must name)
CASES = [
    ("nginx", {"nginx_limit_nofile": "lots"}, "nginx_limit_nofile"),
    ("nginx", {"nginx_exporter_enabled": "perhaps"}, "nginx_exporter_enabled"),
    ("monitoring", {"monitoring_start_timeout": "soon"}, "monitoring_start_timeout"),
    ("monitoring", {}, "monitoring_targets"),  # required, no default
    (
        "port_allowlist",
        {"port_allowlist_name": "x", "port_allowlist_ports": "5561"},
        "port_allowlist_ports",
    ),
    ("pushpin", {"pushpin_app_targets": {"not": "a list"}}, "pushpin_app_targets"),
    (
        "pushpin",
        {"pushpin_app_targets": ["a:8000"], "pushpin_control_address": "10.0.0.1"},
        "pushpin_sig_key",
    ),
    ("app", {"app_settings": ["DJANGO_DEBUG=1"]}, "app_settings"),
]
# Roles whose first task is a dependency's (meta/main.yml).
WITH_DEPENDENCIES = {"app", "pushpin"}


def play_of(role: str) -> list[dict]:
    if role not in WITH_DEPENDENCIES:
        return [{"hosts": "all", "gather_facts": False, "roles": [role]}]
    spec = ANSIBLE_DIR / "roles" / role / "meta" / "argument_specs.yml"
    defaults = ANSIBLE_DIR / "roles" / role / "defaults" / "main.yml"
    options = f"(lookup('file', '{spec}') | from_yaml).argument_specs.main.options"
    given = f"lookup('file', '{defaults}') | from_yaml"
    check = {
        "name": f"Validating arguments against arg spec main of role {role}",
        "ansible.builtin.validate_argument_spec": {
            "argument_spec": f"{{{{ {options} }}}}",
            "provided_arguments": f"{{{{ {given} | combine(wrong) }}}}",
        },
    }
    return [{"hosts": "all", "gather_facts": False, "tasks": [check]}]


def run_play(tmp_path, play: list[dict], extra_vars: dict) -> subprocess.CompletedProcess:
    """ansible-playbook on `play` for a host that does not exist (a task that reached it would
    fail unreachable), with the kit's roles and `extra_vars`."""
    (tmp_path / "play.yml").write_text(yaml.safe_dump(play))
    nowhere = ["-i", "rtdash-argspec-nowhere,", "-c", "community.docker.docker"]
    return subprocess.run(
        [str(ANSIBLE_BIN / "ansible-playbook"), *nowhere, "play.yml", "-e", json.dumps(extra_vars)],
        cwd=tmp_path,
        env=clean_env(ANSIBLE_ROLES_PATH=str(ANSIBLE_DIR / "roles")),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(("role", "extra", "named"), CASES, ids=[f"{c[0]}-{c[2]}" for c in CASES])
def test_a_wrong_input_stops_the_role_naming_it(tmp_path, role, extra, named):
    result = run_play(tmp_path, play_of(role), {**extra, "wrong": extra})
    out = result.stdout + result.stderr
    assert result.returncode != 0, f"{role} accepted {extra}:\n{out[-3000:]}"
    # The failure is the argument check, before any task of the role ran.
    assert "Validating arguments against arg spec" in out, out[-3000:]
    assert "UNREACHABLE" not in out, f"a task past the check ran:\n{out[-3000:]}"
    failed = out[out.index("Validating arguments against arg spec") :]
    assert "fatal:" in failed and named in failed, (
        f"{role} with {extra}: expected the argument check to name {named}:\n{failed[-3000:]}"
    )


def run_settings_check(tmp_path, app_settings: dict) -> tuple[str, bool]:
    """The app role's first task (its settings check: an assert, run on the controller) with
    the role's defaults and vars, for a host that does not exist: a check that passes lets the
    next task try to reach it. (Its output, whether a task after it ran.)"""
    role = ANSIBLE_DIR / "roles" / "app"
    play = [
        {
            "hosts": "all",
            "gather_facts": False,
            "vars_files": [
                str(role / "defaults" / "main.yml"),
                *(str(p) for p in sorted((role / "vars" / "main").glob("*.yml"))),
            ],
            "tasks": [{"ansible.builtin.import_tasks": str(role / "tasks" / "main.yml")}],
        }
    ]
    given = {
        "app_django_secret_key": "d" * 40,
        "app_pushpin_sig_key": "p" * 24,
        "app_pushpin_control_urls": ["http://10.99.0.21:5561"],
        "app_settings": app_settings,
    }
    result = run_play(tmp_path, play, given)
    out = result.stdout + result.stderr
    assert "TASK [Check the app's settings]" in out, out[-3000:]
    check = out.split("TASK [Check the app's settings]", 1)[1]
    return check.split("TASK [", 1)[0], "TASK [" in check


@pytest.mark.parametrize(
    ("app_settings", "named"),
    [
        ({"METRICS_PORT": "9900"}, "given: METRICS_PORT"),
        ({"PUSHPIN_METRICS_PORT": "9911"}, "given: PUSHPIN_METRICS_PORT"),
        ({"REALTIME_REPLAY_MAX_EVENT": "5"}, "unknown: REALTIME_REPLAY_MAX_EVENT"),
    ],
    ids=["kit-port", "pushpin-port", "misspelt"],
)
def test_app_settings_may_not_set_the_kits_ports_or_unknown_names(tmp_path, app_settings, named):
    check, went_on = run_settings_check(tmp_path, app_settings)
    assert "fatal:" in check and named in check, check
    assert not went_on, f"a task past the check ran:\n{check}"


def test_declared_app_settings_pass_the_check(tmp_path):
    check, went_on = run_settings_check(tmp_path, {"REALTIME_REPLAY_MAX_EVENTS": "50"})
    assert "ok: [" in check and went_on, f"the check refused declared settings:\n{check}"
