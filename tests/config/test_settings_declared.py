"""The app's settings are declared once (app/realtime/src/realtime/conf.py) and reach every
deployment path from there: compose, Kubernetes and Ansible each pass every setting, with the
declared default unless the path sets its own value, and no path writes a default of its own."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
import yaml

from support.k8s import K8S, Render, render
from support.stack import REPO

sys.path.insert(0, str(REPO / "app" / "realtime" / "src"))
from realtime import conf

PASSED = {s.name for s in conf.passed()}
SECRETS = {s.name for s in conf.SETTINGS if s.secret}
APP_IMAGE_SERVICES = ("app", "ticker", "migrate")


def test_every_rendered_copy_is_up_to_date():
    result = subprocess.run(
        [sys.executable, str(REPO / "app" / "render-settings"), "--check"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


FIXED = {s.name: s.default for s in conf.SETTINGS if s.fixed}


def compose_services(**environ) -> dict:
    env = {**os.environ, "DJANGO_SECRET_KEY": "x" * 40, "PUSHPIN_SIG_KEY": "y" * 20, **environ}
    config = subprocess.run(
        [
            "docker",
            "compose",
            "-f",
            str(REPO / "compose/compose.yaml"),
            "config",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return json.loads(config.stdout)["services"]


def test_compose_passes_every_setting_to_every_app_container():
    services = compose_services()
    for name in APP_IMAGE_SERVICES:
        missing = PASSED - set(services[name]["environment"])
        assert not missing, f"compose's {name} does not get {sorted(missing)}"
    ticker = services["ticker"]["environment"]
    for setting in ("TICKER_HEARTBEAT_FILE", "OPS_METRICS_URLS"):
        assert ticker.get(setting), f"compose's ticker gets no {setting}"


def test_the_kits_ports_are_no_knob_for_compose():
    # Prometheus, the firewall and the NetworkPolicies are written for these ports: a value in
    # the shell or compose/.env must not move one of them away from what they expect.
    services = compose_services(**{name: "19999" for name in FIXED})
    for name in APP_IMAGE_SERVICES:
        given = {k: services[name]["environment"][k] for k in FIXED}
        assert given == FIXED, f"compose's {name} took a port from the environment: {given}"


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_kubernetes_passes_every_setting_to_every_app_container(overlay):
    rendered = Render(overlay, render(K8S / "overlays" / overlay))
    (settings,) = [
        o for o in rendered.of_kind("ConfigMap") if o["metadata"]["name"].startswith("app-settings")
    ]
    missing = (PASSED - SECRETS) - set(settings["data"])
    assert not missing, f"{overlay}: the ConfigMap app-settings lacks {sorted(missing)}"
    leaked = SECRETS & set(settings["data"])
    assert not leaked, f"{overlay}: secrets in a ConfigMap: {sorted(leaked)}"
    for workload in rendered.workloads():
        for container in workload["spec"]["template"]["spec"].get("containers", []):
            if not container["image"].split(":")[0].endswith("rtdash/app"):
                continue
            sources = {
                ref.get("configMapRef", ref.get("secretRef", {})).get("name", "").split("-")[0]
                for ref in container.get("envFrom", [])
            }
            assert {"app"} <= sources and any(
                r.get("secretRef", {}).get("name") == "app-secrets"
                for r in container.get("envFrom", [])
            ), f"{overlay}: {workload['metadata']['name']} reads not both app-settings, app-secrets"


def test_ansible_writes_every_setting_into_the_app_environment():
    role = REPO / "ansible" / "roles" / "app"
    rendered = yaml.safe_load((role / "vars/main/settings.yml").read_text())
    defaults = rendered["app_setting_defaults"] | rendered["app_fixed_settings"]
    wired = yaml.safe_load((role / "vars/main/derived.yml").read_text())["app_wired_settings"]
    assert set(defaults) == PASSED - SECRETS, (
        f"vars/main/settings.yml: extra {sorted(set(defaults) - PASSED)}, "
        f"missing {sorted(PASSED - SECRETS - set(defaults))}"
    )
    needed = {"DJANGO_SECRET_KEY", "PUSHPIN_SIG_KEY", "DATABASE_URL"} | {
        s.name for s in conf.SETTINGS if s.per_deployment and s.name != "PROMETHEUS_MULTIPROC_DIR"
    } - {"GUNICORN_WORKERS", "TICKER_HEARTBEAT_FILE"}
    assert needed <= set(wired), f"app.env does not wire {sorted(needed - set(wired))}"
    template = (role / "templates" / "app.env.j2").read_text()
    assert "{% for name, value in app_env | dictsort %}" in template


# Where a default of the app's settings would be a second copy: the deployment paths' own base
# files (overlays and inventories set deployment values; those are choices, not defaults).
BASE_FILES = [
    REPO / "compose" / "compose.yaml",
    *sorted((K8S / "base").glob("*.yaml")),
    *sorted((REPO / "ansible" / "group_vars").glob("*.yml")),
    *sorted((REPO / "ansible" / "roles").glob("*/defaults/main.yml")),
    *sorted((REPO / "ansible" / "roles").glob("*/tasks/*.yml")),
    *sorted((REPO / "ansible" / "roles").glob("*/templates/*.j2")),
]


@pytest.mark.parametrize("path", BASE_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_no_path_writes_a_default_of_its_own(path):
    # Secrets have no default; comments may show an example.
    text = "\n".join(ln for ln in path.read_text().splitlines() if not ln.lstrip().startswith("#"))
    found = sorted(name for name in PASSED - SECRETS if re.search(rf"\b{name}\b\s*[:=]", text))
    assert not found, (
        f"{path.relative_to(REPO)} sets {found}: their defaults are the declaration's "
        "(the rendered settings file); a deployment sets its own values in its inventory/overlay"
    )
