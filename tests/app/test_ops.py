"""The ops dashboard: staff only, four SSE components on the staff-only `ops` channel, and the
figures it shows read from real Pushpin endpoints and the publisher's own counters."""

import re
import uuid

import pytest

from support.pushpin import metrics_url, pushpin_nodes
from support.stack import free_port

OPS = "/dashboards/ops/opsdashboard/"


@pytest.mark.usefixtures("db")
def test_anonymous_users_are_sent_to_the_login_page(client):
    response = client.get(OPS)
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


@pytest.mark.usefixtures("db")
def test_non_staff_users_are_refused_and_staff_see_live_components(client):
    from django.contrib.auth.models import User

    member = User.objects.create_user(f"member-{uuid.uuid4().hex[:6]}", password="x" * 12)
    client.force_login(member)
    assert client.get(OPS).status_code == 403
    staff = User.objects.create_user(
        f"staff-{uuid.uuid4().hex[:6]}", password="x" * 12, is_staff=True
    )
    client.force_login(staff)
    html = client.get(OPS).content.decode()
    channels = re.findall(r'data-sse-channel="([^"]+)"', html)
    assert channels == ["ops"] * 4, f"expected 4 SSE components on ops: {channels}"


@pytest.fixture(scope="module")
def node(docker_client, images):
    with pushpin_nodes(docker_client, images["pushpin"], 1) as (urls, containers):
        yield urls[0], metrics_url(containers[0])


def test_figures_come_from_the_nodes_and_the_publisher(node):
    from prometheus_client import REGISTRY, generate_latest
    from realtime_ops import render
    from realtime_ops.figures import Figures, Node, add_publisher, parse, read_node

    from realtime.cluster import PushpinCluster

    publish_url, metrics = node
    name = publish_url.removeprefix("http://")
    before = read_node(Node(name, metrics))
    assert before.up, f"{metrics}: {before.error}"
    items = [{"channel": "probe-ops", "formats": {"http-stream": {"content": "x\n"}}}] * 3
    PushpinCluster([publish_url]).publish_items(items)
    after = read_node(Node(name, metrics))
    assert after.received - before.received == 3, "the node's endpoint did not count 3 items"
    down = read_node(Node("127.0.0.1:5561", f"http://127.0.0.1:{free_port()}/metrics"))
    assert not down.up and "ConnectionRefused" in down.error
    figures = Figures(1.0, [after, down])
    add_publisher(figures, parse(generate_latest(REGISTRY).decode()))
    assert figures.published.get(name, 0) >= 3, figures.published
    table = render.table(figures, {name: 1.5})
    assert re.search(rf"^{re.escape(name)}\s+up\s+\d+\s+1\.5\s", table, re.MULTILINE), table
    assert re.search(r"^127\.0\.0\.1:5561\s+DOWN\s", table, re.MULTILINE), table
    assert "on 1 of 2 Pushpin node(s)" in table, table
