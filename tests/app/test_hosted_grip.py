"""GRIP_URL: publishing to a hosted GRIP service instead of the kit's Pushpin nodes. A real
Pushpin node behind a real nginx that demands the service's key stands in for the hosted
endpoint: the right key publishes (a stream on the node gets the event), a wrong one fails with
the reason and a non-zero exit."""

from __future__ import annotations

import secrets
import time
import uuid

import pytest
import requests

from support.app import DEV_ENV, manage
from support.pushpin import received
from support.sse import SSEStream

pytestmark = pytest.mark.usefixtures("db")

TOKEN = secrets.token_urlsafe(24)
STAND_IN = """
worker_processes 1;
pid /tmp/nginx.pid;
error_log stderr warn;
events {}
http {
    access_log /dev/stdout;
    client_body_temp_path /tmp/body;
    proxy_temp_path /tmp/proxy;
    fastcgi_temp_path /tmp/fastcgi;
    uwsgi_temp_path /tmp/uwsgi;
    scgi_temp_path /tmp/scgi;
    server {
        listen 8080;
        location /publish/ {
            if ($http_authorization != "Bearer %(token)s") {
                return 401 "missing or wrong key\\n";
            }
            proxy_pass http://hosted-pushpin:5561;
        }
        location / {
            proxy_pass http://hosted-pushpin:7999;
            proxy_buffering off;
        }
    }
}
"""


@pytest.fixture(scope="module")
def hosted(docker_client, images, tmp_path_factory):
    """The stand-in service on 127.0.0.1: Pushpin, and nginx in front demanding the key."""
    conf = tmp_path_factory.mktemp("hosted") / "nginx.conf"
    conf.write_text(STAND_IN % {"token": TOKEN})
    name = f"rtdash-hosted-{uuid.uuid4().hex[:6]}"
    network = docker_client.networks.create(name, labels={"rtdash.test": "hosted"})
    started = []
    try:
        pushpin = docker_client.containers.run(
            images["pushpin"],
            detach=True,
            name=f"{name}-pushpin",
            network=name,
            environment={
                "PUSHPIN_SIG_KEY": secrets.token_urlsafe(24),
                "PUSHPIN_CONTROL_ADDR": "0.0.0.0",
            },
            ports={"9810/tcp": ("127.0.0.1", None)},
            labels={"rtdash.test": "hosted"},
        )
        started.append(pushpin)
        network.disconnect(pushpin)
        network.connect(pushpin, aliases=["hosted-pushpin"])
        edge = docker_client.containers.run(
            images["nginx"],
            ["nginx", "-g", "daemon off;"],
            detach=True,
            name=f"{name}-edge",
            network=name,
            volumes={str(conf): {"bind": "/etc/nginx/nginx.conf", "mode": "ro"}},
            ports={"8080/tcp": ("127.0.0.1", None)},
            labels={"rtdash.test": "hosted"},
        )
        started.append(edge)
        edge.reload()
        port = edge.attrs["NetworkSettings"]["Ports"]["8080/tcp"][0]["HostPort"]
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{base}/.pushpin/health/", timeout=2).ok:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.3)
        else:
            raise AssertionError(f"the stand-in service never answered:\n{edge.logs()[-2000:]}")
        yield base, pushpin
    finally:
        for container in started:
            container.remove(force=True)
        network.remove()


def publish(grip_url: str, data: str):
    env = {**DEV_ENV, "GRIP_URL": grip_url, "PUSHPIN_PUBLISH_TIMEOUT": "3"}
    return manage("publish", f"probe-{uuid.uuid4().hex[:8]}", "update", data, env=env)


def test_publishing_with_the_right_key_reaches_the_service(hosted):
    base, pushpin = hosted
    before = received(pushpin)
    result = publish(f"{base}/?key={TOKEN}", "with-the-key")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "published to the hosted GRIP service 127.0.0.1:" in result.stdout, result.stdout
    deadline = time.monotonic() + 5
    while received(pushpin) < before + 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert received(pushpin) == before + 1, "the service's node never got the publish"


def test_a_stream_on_the_service_gets_what_the_app_publishes(hosted):
    """The publisher's own path end to end: a client holds Pushpin's test stream (channel
    "test") through the stand-in, and an item published through GRIP_URL arrives on it."""
    from realtime.cluster import HostedGripPublisher

    base, _ = hosted
    host, port = base.removeprefix("http://").split(":")
    stream = SSEStream(host, int(port), "/.pushpin/health/stream")
    try:
        assert stream.status == 200, stream.__dict__.get("body")
        publisher = HostedGripPublisher(f"{base}/?key={TOKEN}", timeout=3)
        results = publisher.publish_items(
            [
                {
                    "channel": "test",
                    "formats": {"http-stream": {"content": "event: hi\ndata: via-grip-url\n\n"}},
                }
            ]
        )
        assert [r.ok for r in results] == [True], results
        event = stream.next(timeout=5)
        assert event is not None and event.data == "via-grip-url", f"the stream got {event}"
    finally:
        stream.close()


def test_a_wrong_key_fails_with_the_reason_and_a_non_zero_exit(hosted):
    base, pushpin = hosted
    before = received(pushpin)
    result = publish(f"{base}/?key=not-the-key", "with-a-wrong-key")
    assert result.returncode == 1, f"expected exit 1, got {result.returncode}: {result.stdout}"
    assert "the hosted GRIP service refused the publish" in result.stderr, result.stderr[-1500:]
    assert "HTTP 401: missing or wrong key" in result.stderr, result.stderr[-1500:]
    assert TOKEN not in result.stderr and "not-the-key" not in result.stderr, "a key was printed"
    assert received(pushpin) == before, "the publish got through without the key"
