"""A stack's life through `make`: `make up` twice is harmless (nothing recreated, secrets
kept); both secrets rotate without an outage; the published port survives a connection burst,
and a dead one is reported by `make status`; `make down` leaves nothing. The tests run in file
order on one stack of their own."""

from __future__ import annotations

import http.client
import json
import re
import resource
import secrets
import socket
import time
import uuid
from collections import Counter

import pytest
import requests

from support.sse import Follower, SSEStream
from support.stack import new_stack

pytestmark = pytest.mark.slow

LONG_RUNNING = ("app", "ticker", "pushpin", "nginx")


def running_state(stack):
    return {
        c.name: (c.id, c.attrs["State"]["StartedAt"])
        for c in stack.containers()
        if c.labels["com.docker.compose.service"] in LONG_RUNNING
    }


@pytest.fixture(scope="module")
def life(docker_client, tmp_path_factory):
    stack = new_stack(tmp_path_factory.mktemp("life"), "rtdash-lifecycle", "172.31.63.0/24")
    stack.destroy()
    try:
        first = stack.make("up")
        yield stack, first
    finally:
        stack.destroy()


def test_make_up_twice_changes_nothing(life):
    stack, first = life
    assert "==> Secrets: generated" in first.stdout
    assert f"==> Origin: http://127.0.0.1:{stack.http_port}/nginx-health answers" in first.stdout
    assert f"==> Dashboard: http://127.0.0.1:{stack.http_port}/" in first.stdout, first.stdout
    before, secrets_file = running_state(stack), stack.env_file.read_text()
    assert len(before) == 5, f"expected app, ticker, nginx and 2 pushpin nodes: {sorted(before)}"
    assert stack.env_file.stat().st_mode & 0o077 == 0, "secrets file readable by others"

    second = stack.make("up")
    assert "==> Secrets: keeping" in second.stdout
    assert running_state(stack) == before, "the second `make up` recreated or restarted containers"
    assert stack.env_file.read_text() == secrets_file, "the second `make up` changed the secrets"
    stack.wait_healthy()


# -- rotating both secrets ----------------------------------------------------------------------


def set_secrets(stack, **values: str) -> None:
    """Edit the stack's env file as the README's rotation procedure says, keeping its mode."""
    lines = [line for line in stack.env_file.read_text().splitlines() if line]
    settings = dict(line.split("=", 1) for line in lines if not line.startswith("#"))
    settings.update(values)
    body = "\n".join(f"{k}={v}" for k, v in settings.items() if v) + "\n"
    stack.env_file.write_text(body)


def login(stack) -> requests.Session:
    password = uuid.uuid4().hex
    create = (
        "from django.contrib.auth.models import User; "
        "u, _ = User.objects.get_or_create(username='rotator'); "
        f"u.set_password('{password}'); u.save()"
    )
    assert stack.manage("shell", "-c", create).returncode == 0
    base = f"http://127.0.0.1:{stack.http_port}"
    session = requests.Session()
    page = session.get(f"{base}/accounts/login/", timeout=10)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    answer = session.post(
        f"{base}/accounts/login/",
        data={"username": "rotator", "password": password, "csrfmiddlewaretoken": token},
        timeout=10,
        allow_redirects=False,
    )
    assert answer.status_code == 302, f"login failed: {answer.status_code}"
    return session


def private_stream(stack, session) -> SSEStream:
    return SSEStream(
        "127.0.0.1",
        stack.http_port,
        "/events/?channel=private",
        headers={"Cookie": f"sessionid={session.cookies['sessionid']}"},
    )


def make_up_and_wait(stack) -> None:
    stack.make("up")
    stack.wait_healthy()


def test_both_secrets_rotate_without_an_outage(life):
    """README, "Rotating secrets": the new Pushpin key is accepted by the app first, then given
    to the nodes, then the old one retired; Django's key likewise through its fallbacks. A
    client following a channel throughout gets every event exactly once, and a signed-in
    user's session stays valid."""
    stack, _ = life
    session = login(stack)
    old = stack.secrets()
    new_sig, new_secret = secrets.token_urlsafe(32), secrets.token_urlsafe(50)
    channel = f"probe-rotate-{uuid.uuid4().hex[:6]}"
    follower = Follower("127.0.0.1", stack.http_port, f"/events/?channel={channel}")
    follower.start()
    sent = 0

    def publish_some(n: int = 3) -> None:
        nonlocal sent
        for _ in range(n):
            sent += 1
            stack.publish(channel, "seq", json.dumps({"seq": sent, "sent_at": time.time()}))

    try:
        publish_some()
        # 1. The app accepts the new Pushpin key too (the nodes still sign with the old one).
        set_secrets(stack, PUSHPIN_SIG_KEY_FALLBACKS=new_sig)
        make_up_and_wait(stack)
        publish_some()
        # 2. The nodes sign with the new key, the app still accepts the old; Django's key
        # changes, the old one kept as a fallback (sessions, open streams' links stay valid).
        set_secrets(
            stack,
            PUSHPIN_SIG_KEY=new_sig,
            PUSHPIN_SIG_KEY_FALLBACKS=old["PUSHPIN_SIG_KEY"],
            DJANGO_SECRET_KEY=new_secret,
            DJANGO_SECRET_KEY_FALLBACKS=old["DJANGO_SECRET_KEY"],
        )
        make_up_and_wait(stack)
        publish_some()
        stream = private_stream(stack, session)
        assert stream.status == 200, f"the session from before the rotation got {stream.status}"
        stream.close()
        # 3. The old keys retire: everything works with the new ones alone.
        set_secrets(stack, PUSHPIN_SIG_KEY_FALLBACKS="", DJANGO_SECRET_KEY_FALLBACKS="")
        make_up_and_wait(stack)
        publish_some()
        deadline = time.monotonic() + 20
        while len(follower.receipts) < sent and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        follower.stop()
    assert follower.seqs() == list(range(1, sent + 1)), (
        f"expected events 1..{sent} exactly once through the rotation, got {follower.seqs()} "
        f"({follower.connects} connects, failed connects {follower.failed_connects[-5:]})"
    )
    rendered = stack.container("pushpin").exec_run("cat /run/pushpin/pushpin.conf").output
    assert f"sig_key={new_sig}\n".encode() in rendered, "a node does not sign with the new key"


# -- the published port ---------------------------------------------------------------------------


def raise_open_files(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, need), hard))


def test_the_published_origin_survives_6000_connections(life):
    """6,000 client connections held open through the published port at once (each has made a
    request, as a browser's keep-alive connection has), then closed: the origin still answers.
    Through Docker's userland proxy such a burst killed the port (docker-proxy exited while
    every container stayed healthy)."""
    stack, _ = life
    count = 6000
    raise_open_files(count + 500)
    held: list[socket.socket] = []
    request = f"GET /nginx-health HTTP/1.1\r\nHost: 127.0.0.1:{stack.http_port}\r\n\r\n".encode()
    failures: Counter = Counter()
    answered = 0
    try:
        for _ in range(count):
            try:
                sock = socket.create_connection(("127.0.0.1", stack.http_port), timeout=10)
                sock.sendall(request)
                held.append(sock)
            except OSError as exc:
                failures[type(exc).__name__] += 1
        for sock in held:
            try:
                if sock.recv(64).startswith(b"HTTP/1.1 200"):
                    answered += 1
            except OSError as exc:
                failures[type(exc).__name__] += 1
    finally:
        for sock in held:
            sock.close()
    print(f"\n{len(held)} connections held, {answered} answered 200, failures {dict(failures)}")
    assert len(held) == count and answered == count, (
        f"expected {count} connections all answered, got {len(held)} held, {answered} answered, "
        f"failures {dict(failures)}"
    )
    time.sleep(1)
    conn = http.client.HTTPConnection("127.0.0.1", stack.http_port, timeout=5)
    conn.request("GET", "/dashboards/demo/livedashboard/", headers={"Host": "127.0.0.1"})
    assert conn.getresponse().status == 200, "the origin stopped answering after the burst"
    status = stack.make("status", check=False)
    assert status.returncode == 0 and "answers" in status.stdout, status.stdout + status.stderr


def test_a_dead_published_port_is_reported_by_make_status(life, docker_client):
    """nginx cut from its published network: its own healthcheck stays green (it asks itself on
    loopback), the port is dead. `make status` says so and fails."""
    stack, _ = life
    nginx = stack.container("nginx")
    edge = docker_client.networks.get(f"{stack.project}_edge")
    edge.disconnect(nginx)
    try:
        status = stack.make("status", check=False)
        assert status.returncode != 0, f"`make status` passed with a dead port:\n{status.stdout}"
        assert "does not answer" in status.stderr, status.stderr
        assert "node" in status.stdout, "the ops figures were not printed as well"
    finally:
        edge.connect(nginx)


def test_make_down_leaves_nothing(life):
    stack, _ = life
    stack.make("down")
    left = [f"{c.name} ({c.status})" for c in stack.containers(all=True)]
    assert not left, f"`make down` left containers behind: {left}"
