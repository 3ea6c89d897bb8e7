"""What an anonymous client cannot do to the running stack: degrade the probes by flooding the
origin, make the app replay unbounded history, get a 500 out of a forged stream link, find a
credential in a log, reach Pushpin or the app without nginx, or kill the published port with a
connection burst. Each figure measured here is in the README's "Reliability and security"."""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import jwt
import pytest
import requests

from support.sse import SSEStream
from support.stack import one_off

pytestmark = pytest.mark.slow


def origin(stack) -> str:
    return f"http://127.0.0.1:{stack.http_port}"


def new_channel() -> str:
    return f"probe-{uuid.uuid4().hex[:12]}"


# -- /healthz and floods ------------------------------------------------------------------------


def test_the_public_origin_does_not_serve_the_apps_healthz(stack):
    response = requests.get(f"{origin(stack)}/healthz", timeout=5)
    assert response.status_code == 404, f"nginx answered /healthz with {response.status_code}"
    assert requests.get(f"{origin(stack)}/nginx-health", timeout=5).status_code == 200


def probe(url: str) -> int | str:
    """What a probe on the container's own address sees (the kubelet's, a load balancer's):
    the status, with a 5 s timeout like the image's healthcheck."""
    try:
        return requests.get(url, timeout=5).status_code
    except requests.RequestException as exc:
        return type(exc).__name__


def test_probes_stay_healthy_while_50_clients_flood_the_origin(stack, docker_client, images):
    """50 concurrent anonymous clients hammer the origin (the app's /healthz, the dashboard page,
    static files, new streams) for 15 s; meanwhile the app's and nginx's own probes answer 200
    every time, and a visitor from another address loads the page."""
    base = origin(stack)
    paths = ["/healthz", "/dashboards/demo/livedashboard/", "/static/realtime/sse-resume.js"]
    stop = threading.Event()
    statuses: Counter = Counter()
    lock = threading.Lock()

    def flood(n: int) -> None:
        session = requests.Session()
        i = n
        while not stop.is_set():
            i += 1
            path = paths[i % len(paths)] if i % 4 else f"/events/?channel={new_channel()}"
            try:
                response = session.get(f"{base}{path}", timeout=10, stream=True)
                status = response.status_code
                response.close()
            except requests.RequestException as exc:
                status = type(exc).__name__
            with lock:
                statuses[status] += 1

    app = stack.address(stack.container("app"), "streams")
    nginx = stack.address(stack.container("nginx"), "streams")
    probes: list[tuple[str, int | str]] = []
    with ThreadPoolExecutor(50) as pool:
        for n in range(50):
            pool.submit(flood, n)
        try:
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                probes.append(("app", probe(f"http://{app}:8000/healthz")))
                probes.append(("nginx", probe(f"http://{nginx}:8080/nginx-health")))
                time.sleep(0.3)
            visitor = one_off(
                docker_client,
                images["app"],
                [
                    "curl",
                    "-s",
                    "-m",
                    "10",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    "-H",
                    "Host: 127.0.0.1",
                    "http://nginx:8080/dashboards/demo/livedashboard/",
                ],
                network=f"{stack.project}_edge",
            )
        finally:
            stop.set()
    failed = [p for p in probes if p[1] != 200]
    print(f"\nflood: {sum(statuses.values())} requests {dict(statuses)}; {len(probes)} probes")
    assert not failed, f"{len(failed)} of {len(probes)} probes failed during the flood: {failed}"
    assert statuses[404] > 0 and statuses[429] > 0, f"the flood was not refused: {statuses}"
    assert not [s for s in statuses if isinstance(s, int) and s >= 500], statuses
    assert visitor == (0, "200"), f"another visitor got {visitor!r} during the flood"


# -- bounded replay -------------------------------------------------------------------------------


def publish_sequence(stack, channel: str, count: int) -> None:
    result = stack.manage(
        "probe_publish", channel, "--count", str(count), "--rate", "500", timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]


def replayed(stream: SSEStream, timeout: float = 5) -> tuple[list, list]:
    """(sequence numbers replayed, stream-reset events) until the stream goes quiet."""
    seqs, resets = [], []
    while (event := stream.next(timeout=timeout)) is not None:
        if event.type == "stream-reset":
            resets.append(event)
        elif event.type == "seq":
            seqs.append(json.loads(event.data)["seq"])
        timeout = 1.5
    return seqs, resets


def test_a_resume_replays_at_most_the_limit_then_resets(stack):
    """REALTIME_REPLAY_MAX_EVENTS (200 by default): a resume 150 events behind gets those 150
    exactly; one from id 1, 300 behind, gets stream-reset with the newest id and no replay."""
    channel = new_channel()
    publish_sequence(stack, channel, 301)  # ids 1..301 carry seq 1..301
    within = SSEStream(
        "127.0.0.1", stack.http_port, f"/events/?channel={channel}", last_event_id=f"{channel}:151"
    )
    try:
        assert within.status == 200, within.__dict__.get("body")
        seqs, resets = replayed(within)
    finally:
        within.close()
    assert not resets and seqs == list(range(152, 302)), (
        f"150 behind: expected seq 152..301 and no reset, got {len(seqs)} events "
        f"({seqs[:3]}...{seqs[-3:]}) and {len(resets)} reset(s)"
    )
    beyond = SSEStream(
        "127.0.0.1", stack.http_port, f"/events/?channel={channel}", last_event_id=f"{channel}:1"
    )
    try:
        seqs, resets = replayed(beyond)
    finally:
        beyond.close()
    assert not seqs, f"300 behind: {len(seqs)} events replayed past the limit of 200"
    assert len(resets) == 1 and resets[0].id == f"{channel}:301", (
        f"expected one stream-reset carrying the newest id {channel}:301, got {resets}"
    )


# -- forged stream links, credentials in logs -----------------------------------------------------

FORGED = [
    "?es-meta=garbage&channel=dashboard",
    "?es-meta=&channel=no!such",
    "?es-meta=" + "e" * 3000 + "&channel=dashboard",
    "?channel=dashboard&link=next&recover=true&es-meta=eyJhbGciOiJub25lIn0.e30.",
    "?channel=dashboard&es-meta=a&es-meta=b",
    "?channel=dashboard&link=elsewhere",
]


@pytest.mark.parametrize("query", FORGED, ids=range(len(FORGED)))
def test_a_forged_stream_link_gets_a_4xx_with_the_reason(stack, query):
    response = requests.get(f"{origin(stack)}/events/{query}", timeout=10, stream=True)
    body = response.raw.read(500).decode(errors="replace")
    assert 400 <= response.status_code < 500, f"{query[:60]}: {response.status_code} {body[:200]}"
    assert body.strip(), f"{query[:60]}: a {response.status_code} without a reason"


def test_no_stream_link_credential_in_any_log(stack):
    """A replay of 119 events takes Pushpin through a next link (pages of 100), which carries
    the es-meta token: neither the app's nor Pushpin's nor nginx's log may show it."""
    channel = new_channel()
    publish_sequence(stack, channel, 120)
    stream = SSEStream(
        "127.0.0.1", stack.http_port, f"/events/?channel={channel}", last_event_id=f"{channel}:1"
    )
    try:
        seqs, _ = replayed(stream)
    finally:
        stream.close()
    assert seqs == list(range(2, 121)), f"expected seq 2..120 over two pages, got {len(seqs)}"
    logs = {
        c.name: c.logs(since=int(time.time()) - 120).decode(errors="replace")
        for service in ("app", "pushpin", "nginx")
        for c in stack.containers(service)
    }
    link_lines = [
        line
        for text in logs.values()
        for line in text.splitlines()
        if "es-meta" in line and channel in line
    ]
    assert link_lines, "no next-link request was logged at all: the check would prove nothing"
    # A credential is a token this site signed (clients, and the fuzz tests, may send forged
    # ones, which Pushpin's proxy logs with their request line: they grant nothing).
    key = stack.secrets()["DJANGO_SECRET_KEY"].encode()
    token = re.compile(r"es-meta=([\w-]+\.[\w-]+\.[\w-]+)")

    def signed_here(value: str) -> bool:
        try:
            jwt.decode(value, key, algorithms=["HS256"], options={"verify_exp": False})
        except jwt.PyJWTError:
            return False
        return True

    leaked = {
        name: [t for t in token.findall(text) if signed_here(t)] for name, text in logs.items()
    }
    assert not any(leaked.values()), f"a link token in the logs: {leaked}"


# -- nothing bypasses nginx -----------------------------------------------------------------------


def test_an_outsider_reaches_nginx_but_neither_pushpin_nor_the_app(stack, docker_client, images):
    """A container on the edge network, where nginx listens (as a client of a published port
    on another host would be), cannot open Pushpin's 7999 nor the app's 8000."""
    targets = [f"{node}:7999" for node in stack.pushpin_nodes()]
    targets.append(f"{stack.address(stack.container('app'), 'streams')}:8000")
    script = (
        "import socket, sys, json; out = {}\n"
        "for t in sys.argv[1:]:\n"
        "    h, p = t.rsplit(':', 1); s = socket.socket(); s.settimeout(2)\n"
        "    out[t] = s.connect_ex((h, int(p))); s.close()\n"
        "s = socket.create_connection(('nginx', 8080), 5); out['nginx:8080'] = 0\n"
        "print(json.dumps(out))"
    )
    status, output = one_off(
        docker_client,
        images["app"],
        ["python", "-c", script, *targets],
        network=f"{stack.project}_edge",
    )
    assert status == 0, f"the outsider's probe failed: {output[-1000:]}"
    results = json.loads(output.strip().splitlines()[-1])
    assert results.pop("nginx:8080") == 0, "the outsider cannot reach nginx: the test is void"
    reached = [t for t, code in results.items() if code == 0]
    assert not reached, f"an edge-network client reached {reached} without nginx"
