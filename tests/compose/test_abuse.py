"""No one let in, nothing broken by bad input: the control ports stay internal, the app trusts
only Pushpin's signature, private channels need a login, malformed requests get a clear 4xx,
and one client hammering /events/ is limited while others keep streaming."""

import json
import re
import subprocess
import time
import uuid

import pytest
import requests

from support.grip import grip_sig
from support.network import local_routes_to
from support.sse import SSEStream
from support.stack import REPO

pytestmark = pytest.mark.slow


# -- control ports --------------------------------------------------------------------------


def test_the_host_has_no_route_into_the_control_network(stack):
    control = stack.address(stack.containers("pushpin")[0], "control")
    local = local_routes_to(control)
    assert not local, f"the host has a route into the control network ({control}): {local}"


def test_only_app_ticker_and_pushpin_are_on_the_control_network(stack, docker_client):
    network = docker_client.networks.get(f"{stack.project}_control")
    network.reload()
    services = {
        docker_client.containers.get(cid).labels.get("com.docker.compose.service")
        for cid in network.attrs["Containers"]
    }
    assert services <= {"app", "ticker", "pushpin", "migrate"}, (
        f"on the control network: {services}"
    )
    assert "nginx" not in services


def test_nginx_has_no_address_on_the_control_network(stack):
    # (That no node's control port accepts nginx on the network they share: make verify's
    # "control ports closed to the edge", run on this stack by test_verify.py.)
    nginx = stack.container("nginx")
    addresses = nginx.exec_run("ip -o -4 addr show").output.decode()
    subnet_prefix = stack.control_subnet.rsplit(".", 1)[0] + "."
    assert subnet_prefix not in addresses, (
        f"nginx has an address on the control network:\n{addresses}"
    )


# -- GRIP signature -------------------------------------------------------------------------


def app_request(stack, grip_sig: str | None):
    app = stack.address(stack.container("app"), "streams")
    headers = {"Host": f"127.0.0.1:{stack.http_port}"}
    if grip_sig is not None:
        headers["Grip-Sig"] = grip_sig
    return requests.get(
        f"http://{app}:8000/events/?channel=probe-sig", headers=headers, timeout=5, stream=True
    )


@pytest.mark.parametrize(
    "case",
    ["missing", "garbage", "wrong-key", "expired", "wrong-issuer", "alg-none"],
)
def test_the_app_does_not_treat_an_unsigned_request_as_proxied(stack, case):
    key = stack.secrets()["PUSHPIN_SIG_KEY"]
    value = {
        "missing": None,
        "garbage": "not-a-jwt",
        "wrong-key": grip_sig("x" * 43),
        "expired": grip_sig(key, exp=int(time.time()) - 10),
        "wrong-issuer": grip_sig(key, iss="someone-else"),
        "alg-none": grip_sig(None, algorithm="none"),
    }[case]
    response = app_request(stack, value)
    assert response.status_code == 403, f"{case}: expected 403, got {response.status_code}"
    assert "Grip-Hold" not in response.headers
    assert "not signed by a Pushpin node" in response.text


def test_the_app_answers_a_request_signed_with_the_key(stack):
    """The control case: the same request signed with the real key gets a GRIP stream hold."""
    response = app_request(stack, grip_sig(stack.secrets()["PUSHPIN_SIG_KEY"]))
    assert response.status_code == 200, response.text[:300]
    assert response.headers.get("Grip-Hold") == "stream", dict(response.headers)


# -- channel authorization ------------------------------------------------------------------


@pytest.fixture(scope="module")
def viewer(stack):
    """A signed-in user's session cookie, obtained through nginx like a browser does."""
    password = uuid.uuid4().hex
    create = (
        "from django.contrib.auth.models import User; "
        "u, _ = User.objects.get_or_create(username='viewer'); "
        f"u.set_password('{password}'); u.save()"
    )
    result = stack.manage("shell", "-c", create)
    assert result.returncode == 0, result.stderr
    base = f"http://127.0.0.1:{stack.http_port}"
    session = requests.Session()
    page = session.get(f"{base}/accounts/login/", timeout=10)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    login = session.post(
        f"{base}/accounts/login/",
        data={"username": "viewer", "password": password, "csrfmiddlewaretoken": token},
        timeout=10,
        allow_redirects=False,
    )
    assert login.status_code == 302, f"login failed: {login.status_code} {login.text[:300]}"
    return session.cookies["sessionid"]


def test_private_channel_is_forbidden_to_anonymous_subscribers(stack):
    stream = SSEStream("127.0.0.1", stack.http_port, "/events/?channel=private")
    assert stream.status == 403, f"expected 403, got {stream.status}"
    assert "not allowed to read channel(s): private" in stream.body


def test_private_channel_streams_to_a_signed_in_user(stack, viewer):
    stream = SSEStream(
        "127.0.0.1",
        stack.http_port,
        "/events/?channel=private",
        headers={"Cookie": f"sessionid={viewer}"},
    )
    try:
        assert stream.status == 200, f"expected 200 for a signed-in user, got {stream.status}"
        stream.wait_open()
        stack.publish("private", "note", "for-members")
        event = stream.next(timeout=5)
        assert event is not None and event.data == "for-members", f"got {event}"
    finally:
        stream.close()


def test_public_channel_stays_open_to_anonymous_subscribers(stack):
    stream = SSEStream("127.0.0.1", stack.http_port, "/events/?channel=dashboard")
    try:
        assert stream.status == 200
    finally:
        stream.close()


# -- malformed input ------------------------------------------------------------------------

TOO_MANY = "&".join(f"channel=probe-{n}" for n in range(11))
BAD_INPUT = {
    # name: (path, extra headers, expected status)
    "malformed Last-Event-ID": ("/events/?channel=dashboard", {"Last-Event-ID": "garbage"}, 400),
    "non-numeric Last-Event-ID": (
        "/events/?channel=dashboard",
        {"Last-Event-ID": "dashboard:abc"},
        400,
    ),
    "Last-Event-ID after a stream-error": (
        "/events/?channel=dashboard",
        {"Last-Event-ID": "error"},
        400,
    ),
    "oversized Last-Event-ID": ("/events/?channel=dashboard", {"Last-Event-ID": "d" * 2000}, 400),
    "malformed lastEventId parameter": ("/events/?channel=dashboard&lastEventId=%00x", {}, 400),
    "no channel": ("/events/", {}, 400),
    "unknown channel": ("/events/?channel=nope", {}, 400),
    "malformed channel name": ("/events/?channel=bad%20name", {}, 400),
    "overlong channel name": ("/events/?channel=probe-" + "x" * 80, {}, 400),
    "too many channels": ("/events/?" + TOO_MANY, {}, 400),
    "oversized query": ("/events/?channel=dashboard&pad=" + "x" * 5000, {}, 414),
    "oversized header": ("/events/?channel=dashboard", {"X-Junk": "j" * 5000}, 400),
    "private channel, anonymous": ("/events/?channel=private", {}, 403),
}


@pytest.mark.parametrize("name", sorted(BAD_INPUT))
def test_bad_input_gets_a_clear_4xx_quickly(stack, name):
    path, headers, expected = BAD_INPUT[name]
    started = time.monotonic()
    response = requests.get(
        f"http://127.0.0.1:{stack.http_port}{path}", headers=headers, timeout=10, stream=True
    )
    elapsed = time.monotonic() - started
    body = response.raw.read(2000, decode_content=True).decode(errors="replace")
    assert response.status_code == expected, (
        f"{name}: expected {expected}, got {response.status_code}: {body[:200]}"
    )
    assert elapsed < 5, f"{name}: answered after {elapsed:.1f} s"
    assert body.strip(), f"{name}: the {expected} says nothing about why"


def test_an_oversized_event_is_refused_by_publish(stack):
    result = stack.manage("publish", "probe-big", "update", "x" * (64 * 1024 + 1))
    assert result.returncode == 1
    assert "the limit is 65536 (REALTIME_MAX_EVENT_BYTES)" in result.stderr, result.stderr


# -- connection flood -----------------------------------------------------------------------

FLOOD = """
import http.client, json, sys, time
statuses, held = {}, []
for _ in range(int(sys.argv[1])):
    conn = http.client.HTTPConnection("nginx", 8080, timeout=5)
    conn.request("GET", "/events/?channel=" + sys.argv[2], headers={"Host": "127.0.0.1"})
    status = conn.getresponse().status
    statuses[status] = statuses.get(status, 0) + 1
    (held.append(conn) if status == 200 else conn.close())
print(json.dumps({"statuses": statuses, "held": len(held)}), flush=True)
time.sleep(float(sys.argv[3]))
"""


def test_one_client_opening_streams_in_a_loop_is_limited_while_others_stream(
    stack, docker_client, images
):
    channel = f"probe-flood-{uuid.uuid4().hex[:6]}"
    others = [
        SSEStream("127.0.0.1", stack.http_port, f"/events/?channel={channel}") for _ in range(3)
    ]
    flooder = docker_client.containers.run(
        images["app"],
        ["python", "-c", FLOOD, "300", channel, "15"],
        network=f"{stack.project}_edge",
        detach=True,
        labels={"rtdash.test": "flood"},
    )
    try:
        for stream in others:
            assert stream.status == 200
            stream.wait_open()
        deadline = time.monotonic() + 60
        while b'"held"' not in flooder.logs() and time.monotonic() < deadline:
            time.sleep(0.5)
        report = json.loads(flooder.logs().decode().strip().splitlines()[-1])
        statuses = {int(k): v for k, v in report["statuses"].items()}
        assert set(statuses) == {200, 429}, f"expected streams, then 429s: {statuses}"
        assert statuses[429] >= 100, f"the flood was not limited: {statuses}"
        assert report["held"] <= 100, f"one address holds {report['held']} streams (limit 100)"
        # While the flood holds its streams, everyone else streams on and can still connect.
        stack.publish(channel, "update", "still-here")
        for stream in others:
            event = stream.next(timeout=5)
            assert event is not None and event.data == "still-here", f"a client missed it: {event}"
        late = SSEStream("127.0.0.1", stack.http_port, f"/events/?channel={channel}")
        assert late.status == 200, f"a new client was refused during the flood: {late.status}"
        late.close()
        print(f"\nflood from one address: {statuses}, streams held {report['held']}")
    finally:
        flooder.remove(force=True)
        for stream in others:
            stream.close()


# -- secrets --------------------------------------------------------------------------------


def test_generated_secrets_are_never_tracked(stack):
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True)
    files = [REPO / f for f in tracked.stdout.decode().split("\0") if f]
    # The app's settings rendered from their declaration are tracked: they hold no value of a
    # secret, only where compose and Kubernetes take them from (checked below).
    rendered = {REPO / "compose/app-settings.env", REPO / "k8s/base/app-settings.env"}
    tracked_env = [f for f in files if f.name.endswith(".env") and f not in rendered]
    assert not tracked_env, f"an env file is tracked: {tracked_env}"
    ignored = subprocess.run(["git", "check-ignore", "-q", "compose/.env"], cwd=REPO)
    assert ignored.returncode == 0, "compose/.env (the generated secrets) is not git-ignored"
    secrets = stack.secrets()
    for f in files:
        if f.is_file():
            content = f.read_bytes()
            for name, value in secrets.items():
                assert value.encode() not in content, (
                    f"{f.relative_to(REPO)} contains the generated {name}"
                )
