"""The app's metrics: counted where they happen (publishes per Pushpin node, stream requests,
health checks), added up over gunicorn's worker processes, and served on the internal metrics
listener only, never on the site."""

import os
import re
import subprocess
import sys
import time
import uuid

import pytest
import requests
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from support.app import APP, DEV_ENV
from support.grip import grip_sig
from support.pushpin import pushpin_nodes
from support.stack import free_port


def value(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture(scope="module")
def node(docker_client, images):
    with pushpin_nodes(docker_client, images["pushpin"], 1) as (urls, _):
        yield urls[0]


def closed_port_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


def test_publishes_are_counted_per_node(node):
    from realtime.cluster import PublishError, PushpinCluster

    dead = closed_port_url()
    cluster = PushpinCluster([node, dead], timeout=1)
    live_name, dead_name = (u.removeprefix("http://") for u in (node, dead))
    before = {
        "ok": value("rtdash_pushpin_published_total", node=live_name),
        "failed": value("rtdash_pushpin_publish_failures_total", node=dead_name),
        "requests": value("rtdash_pushpin_publish_seconds_count", node=live_name),
    }
    items = [{"channel": "probe-metrics", "formats": {"http-stream": {"content": "x\n"}}}] * 4
    with pytest.raises(PublishError, match="reached 1 of 2"):
        cluster.publish_items(items)
    assert value("rtdash_pushpin_published_total", node=live_name) - before["ok"] == 4
    assert value("rtdash_pushpin_publish_failures_total", node=dead_name) - before["failed"] == 4
    assert value("rtdash_pushpin_publish_seconds_count", node=live_name) > before["requests"]
    assert value("rtdash_pushpin_published_total", node=dead_name) == 0


def sig() -> str:
    from django.conf import settings

    return grip_sig(settings.PUSHPIN_SIG_KEY)


@pytest.mark.usefixtures("db")
def test_stream_requests_are_counted(client):
    from django_eventstream import send_event

    channel = f"probe-{uuid.uuid4().hex[:6]}"
    # Stored (the replay needs it); no Pushpin here to publish to, which is logged only.
    send_event(channel, "seed", "x", json_encode=False)
    names = (
        "rtdash_streams_opened_total",
        "rtdash_stream_replays_total",
        "rtdash_stream_resets_total",
    )
    before = [value(n) for n in names]
    refused = value("rtdash_streams_refused_total", status="400")
    signed = {"HTTP_GRIP_SIG": sig()}
    assert client.get(f"/events/?channel={channel}", **signed).status_code == 200
    resumed = client.get(f"/events/?channel={channel}", HTTP_LAST_EVENT_ID=f"{channel}:1", **signed)
    assert resumed.status_code == 200
    reset = client.get(f"/events/?channel={channel}&lastEventId={channel}:999999", **signed)
    assert b"event: stream-reset" in reset.content
    assert client.get("/events/?channel=nope", **signed).status_code == 400
    assert [value(n) - b for n, b in zip(names, before, strict=True)] == [3, 2, 1]
    assert value("rtdash_streams_refused_total", status="400") - refused == 1


def test_listen_address_takes_an_ip_or_this_machines_address_in_a_network():
    from realtime.metrics import ListenAddressError, listen_address

    assert listen_address("0.0.0.0") == "0.0.0.0"
    assert listen_address("127.0.0.0/8") == "127.0.0.1"
    with pytest.raises(ListenAddressError, match=r"no address in 198\.51\.100\.0/24"):
        listen_address("198.51.100.0/24")  # (a UDP "connect" sends nothing)
    with pytest.raises(ListenAddressError, match="not an IP or a CIDR"):
        listen_address("app")


@pytest.fixture
def gunicorn(tmp_path):
    """The app under gunicorn with 3 workers, each replaced after 5 requests (gunicorn's
    max_requests), and the metrics listener on loopback."""
    multiproc = tmp_path / "multiproc"
    multiproc.mkdir()
    (multiproc / "counter_999999.db").write_bytes(b"left over from a previous run")
    site, metrics_port = free_port(), free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PUSHPIN_"))},
        **DEV_ENV,
        "DJANGO_DATA_DIR": str(tmp_path),
        "PROMETHEUS_MULTIPROC_DIR": str(multiproc),
        "METRICS_ADDR": "127.0.0.0/8",
        "METRICS_PORT": str(metrics_port),
        "GUNICORN_BIND": f"127.0.0.1:{site}",
        "WEB_CONCURRENCY": "3",
        "GUNICORN_CMD_ARGS": "--max-requests 5",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "python:realtime.gunicorn"],
        cwd=APP,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=3)
                requests.get(f"http://127.0.0.1:{site}/static/realtime/sse-resume.js", timeout=3)
                break
            except requests.RequestException:
                time.sleep(0.2)
        else:
            process.kill()
            pytest.fail(f"gunicorn did not start:\n{process.communicate()[1][-3000:]}")
        yield site, metrics_port, multiproc
    finally:
        process.terminate()
        process.wait(30)


def scrape(port: int) -> dict[tuple, float]:
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_gunicorn_workers_add_up_on_the_internal_listener(gunicorn):
    site, metrics_port, multiproc = gunicorn
    assert not (multiproc / "counter_999999.db").exists(), "the directory was not cleared"
    requests_made, dropped = 30, 0
    answered = 0
    while answered < requests_made:
        # A new connection each: gunicorn's workers take turns accepting.
        try:
            response = requests.get(
                f"http://127.0.0.1:{site}/healthz", headers={"Connection": "close"}, timeout=5
            )
        except requests.RequestException:
            # gunicorn's gthread worker can exit at max_requests with a connection it accepted
            # unanswered (gunicorn issue #3038), served or not: counted at most once.
            dropped += 1
            assert dropped <= 10, "gunicorn dropped more than 10 connections"
            continue
        assert response.status_code == 200
        answered += 1
    counted = scrape(metrics_port).get(("rtdash_health_checks_total", (("result", "ok"),)))
    # None lost from the processes that exited; none counted twice.
    assert requests_made <= counted <= requests_made + dropped, (
        f"expected {requests_made} health checks counted, plus at most the {dropped} "
        f"connection(s) exiting workers dropped, got {counted}"
    )
    # Every worker served at most 5: the count adds up over live and exited processes.
    workers = {re.search(r"_(\d+)\.db$", p.name).group(1) for p in multiproc.glob("counter_*")}
    assert len(workers) >= requests_made // 5, f"expected 6+ worker processes, files of {workers}"
    site_metrics = requests.get(
        f"http://127.0.0.1:{site}/metrics", headers={"Host": "localhost"}, timeout=5
    )
    assert site_metrics.status_code == 404, f"the site answered /metrics: {site_metrics}"
