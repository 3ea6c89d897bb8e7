"""The ops dashboard without the demo: a project with `realtime_ops` but not `demo` serves the
ops page, and its producer alone (the demo's is not there) publishes the page's figures to a
real Pushpin node and stores them for replay."""

import json
import os
import uuid

import pytest

from support.app import DEV_ENV, manage
from support.pushpin import pushpin_nodes, received
from support.stack import REPO


@pytest.fixture(scope="module")
def node(docker_client, images):
    with pushpin_nodes(docker_client, images["pushpin"], 1) as (urls, containers):
        yield urls[0], containers[0]


def ops_only(tmp_path, **extra):
    return {
        **DEV_ENV,
        "DJANGO_SETTINGS_MODULE": "projects.ops_only_settings",
        "DJANGO_DATA_DIR": str(tmp_path),
        "PYTHONPATH": os.pathsep.join(
            [str(REPO / "tests" / "support"), str(REPO / "app" / "demo")]
        ),
        **extra,
    }


def test_without_the_demo_the_ops_producer_publishes_the_ops_page(tmp_path, node):
    url, container = node
    env = ops_only(tmp_path, PUSHPIN_CONTROL_URLS=url)
    assert manage("migrate", "-v0", env=env).returncode == 0
    apps = manage(
        "shell", "-c", "from django.conf import settings; print(settings.INSTALLED_APPS)", env=env
    )
    assert "'demo'" not in apps.stdout and "'realtime_ops'" in apps.stdout, apps.stdout
    before = received(container)
    result = manage("produce", "--count", "2", env=env, timeout=90)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "produce: ops.figures every 2 s" in result.stderr, result.stderr[-2000:]
    assert "demo.load" not in result.stderr, "the demo's producer ran without the demo"
    stored = manage(
        "shell",
        "-c",
        "import json; from django_eventstream.models import Event; "
        "ops = Event.objects.filter(channel='ops').exclude(eid=0); "
        "print(json.dumps(sorted({e.type for e in ops})))",
        env=env,
    )
    types = json.loads(stored.stdout.strip().splitlines()[-1])
    assert len(types) == 4 and all(t.startswith("dashboardsopsopsdashboard") for t in types), types
    assert received(container) >= before + 8, "the node did not get two rounds of 4 figures"


def test_without_the_demo_staff_get_the_ops_page(tmp_path):
    env = ops_only(tmp_path)
    assert manage("migrate", "-v0", env=env).returncode == 0
    name = f"staff-{uuid.uuid4().hex[:6]}"
    script = (
        "from django.contrib.auth.models import User; from django.test import Client; "
        f"u = User.objects.create_user({name!r}, password='x' * 12, is_staff=True); "
        "c = Client(); c.force_login(u); r = c.get('/dashboards/ops/opsdashboard/'); "
        "print(r.status_code, r.content.decode().count('data-sse-channel=\"ops\"'))"
    )
    result = manage("shell", "-c", script, env=env)
    assert result.stdout.strip().splitlines()[-1] == "200 4", result.stdout + result.stderr[-1500:]
