"""/healthz: 200 when the database answers, 503 when not, and one database check per process
per REALTIME_HEALTH_CACHE_SECONDS however many callers ask at once."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from realtime import health


@pytest.fixture
def fresh_check(monkeypatch):
    """Each test starts without a shared result from an earlier one."""
    monkeypatch.setattr(health, "_check", None)


@pytest.mark.usefixtures("db", "fresh_check")
def test_healthz_is_200_when_the_database_answers(client):
    response = client.get("/healthz", HTTP_HOST="10.1.2.3:8000")  # probes use any host name
    assert response.status_code == 200, response.content
    assert response.json() == {"status": "ok"}
    assert response["Cache-Control"] == "no-store"


@pytest.mark.usefixtures("db", "fresh_check")
def test_healthz_is_503_when_the_database_does_not_answer(client, tmp_path):
    connection.close()
    saved = connection.settings_dict["NAME"]
    connection.settings_dict["NAME"] = str(tmp_path / "missing-dir" / "db.sqlite3")
    try:
        response = client.get("/healthz")
    finally:
        connection.close()
        connection.settings_dict["NAME"] = saved
    assert response.status_code == 503, response.content
    assert response.json() == {"status": "unhealthy"}, "no database detail for the public"


@pytest.mark.usefixtures("db")
def test_concurrent_checks_share_one_database_query(monkeypatch):
    """50 callers at once (a flood of probes or clients) cost one query, and all get 200's
    answer: none is refused because another check is in flight."""
    pings = []
    real_ping = health._ping

    def counted_ping():
        pings.append(time.monotonic())
        time.sleep(0.3)  # a slow database: every caller arrives while the ping is in flight
        real_ping()

    monkeypatch.setattr(health, "_ping", counted_ping)
    check = health.HealthCheck(max_age=5.0)
    start = threading.Barrier(50)

    def call():
        start.wait()
        return check()

    with ThreadPoolExecutor(50) as pool:
        results = list(pool.map(lambda _: call(), range(50)))
    assert results == [(True, "")] * 50, f"expected 50 healthy answers, got {set(results)}"
    assert len(pings) == 1, f"expected one database query for 50 callers, got {len(pings)}"
    assert check() == (True, "") and len(pings) == 1, "a fresh result was not shared"


@pytest.mark.usefixtures("db")
def test_a_hung_database_costs_one_waiting_ping_and_a_bounded_answer(monkeypatch):
    release = threading.Event()
    pings = []

    def hung_ping():
        pings.append(1)
        release.wait(10)

    monkeypatch.setattr(health, "_ping", hung_ping)
    check = health.HealthCheck(max_age=1.0, deadline=0.5)
    try:
        started = time.monotonic()
        with ThreadPoolExecutor(10) as pool:
            results = list(pool.map(lambda _: check(), range(10)))
        elapsed = time.monotonic() - started
        assert all(not ok and "no answer within" in why for ok, why in results), results
        assert elapsed < 2.0, f"10 callers of a hung database waited {elapsed:.1f} s in all"
        assert len(pings) == 1, f"a hung database got {len(pings)} pings piled up, expected 1"
    finally:
        release.set()
    deadline = time.monotonic() + 5
    while check._in_flight is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert check() == (True, ""), "the answer once the database came back"


@pytest.mark.timeout(20)
def test_a_ping_that_finishes_at_once_never_deadlocks_the_check(monkeypatch):
    """A ping may be done before its completion callback is attached (a fast database): the
    callback then runs in the caller's thread, which must not hold the check's lock."""
    monkeypatch.setattr(health, "_ping", lambda: None)
    check = health.HealthCheck(max_age=0.0)
    results = [check() for _ in range(200)]
    assert results == [(True, "")] * 200
