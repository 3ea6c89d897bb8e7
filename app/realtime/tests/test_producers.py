"""Producers registered by apps and run by `manage.py produce`: each at its own interval; one
that raises is counted and runs again, the others go on."""

import threading

import pytest
from django.core.management import call_command
from prometheus_client import REGISTRY

from realtime import producers


@pytest.fixture
def registry(monkeypatch):
    """An empty registry for the test (the apps' own producers are not run)."""
    monkeypatch.setattr(producers, "_registry", {})
    monkeypatch.setattr(producers, "registered", lambda: list(producers._registry.values()))
    return producers._registry


def test_each_producer_runs_at_its_interval_and_a_failing_one_does_not_stop_the_others(
    registry, db
):
    runs = {"fast": 0, "slow": 0, "broken": 0}

    @producers.producer(every=0.1, name="fast")
    def fast():
        runs["fast"] += 1

    @producers.producer(every=0.5, name="slow")
    def slow():
        runs["slow"] += 1

    @producers.producer(every=0.1, name="broken")
    def broken():
        runs["broken"] += 1
        raise RuntimeError("boom")

    before = REGISTRY.get_sample_value("rtdash_producer_failures_total", {"producer": "broken"})
    call_command("produce", "--count", "12")
    after = REGISTRY.get_sample_value("rtdash_producer_failures_total", {"producer": "broken"})
    assert runs["fast"] >= 10 and runs["broken"] >= 10, runs
    assert 2 <= runs["slow"] <= 4, f"the 0.5 s producer ran {runs['slow']} times in ~1.2 s"
    assert after - (before or 0) == runs["broken"], "every failure is counted"


def test_a_class_producer_is_made_once_and_keeps_its_state(registry, db):
    made = []

    @producers.producer(every=0.05, name="stateful")
    class Counter:
        def __init__(self):
            made.append(self)
            self.n = 0

        def __call__(self):
            self.n += 1

    call_command("produce", "--count", "5")
    assert len(made) == 1 and made[0].n == 5, (len(made), made and made[0].n)


def test_without_producers_the_loop_idles_and_stops_on_request(registry, db, caplog):
    import signal

    timer = threading.Timer(0.5, lambda: signal.raise_signal(signal.SIGTERM))
    timer.start()
    call_command("produce")  # returns once SIGTERM arrives
    timer.cancel()
    assert "no producer is registered" in caplog.text


def test_an_interval_must_be_positive():
    with pytest.raises(ValueError, match="positive"):
        producers.producer(every=0)
