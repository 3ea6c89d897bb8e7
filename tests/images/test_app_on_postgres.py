"""The app image on a real PostgreSQL through DATABASE_URL: migrations, stored events that a
reconnecting client would replay, a publish reaching a Pushpin node, and /healthz following the
database's health."""

import secrets
import time
import uuid

import pytest

from support.stack import REPO, run

pytestmark = pytest.mark.slow


def exec_ok(container, *cmd: str) -> str:
    result = container.exec_run(list(cmd))
    output = result.output.decode(errors="replace")
    assert result.exit_code == 0, f"{' '.join(cmd)} exited {result.exit_code}:\n{output[-2000:]}"
    return output


def wait_healthy(container, timeout=90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        container.reload()
        if container.attrs["State"].get("Health", {}).get("Status") == "healthy":
            return
        time.sleep(0.5)
    raise AssertionError(f"{container.name} not healthy: {container.logs()[-2000:].decode()}")


@pytest.fixture(scope="module")
def on_postgres(docker_client, images):
    run(
        [
            "docker",
            "build",
            "-q",
            "-t",
            "rtdash/test-postgres",
            str(REPO / "tests/support/postgres"),
        ]
    )
    name = f"rtdash-pg-{uuid.uuid4().hex[:6]}"
    password = secrets.token_urlsafe(16)
    network = docker_client.networks.create(name, labels={"rtdash.test": "postgres"})
    started = []

    def start(image, alias, **kwargs):
        container = docker_client.containers.run(
            image,
            detach=True,
            name=f"{name}-{alias}",
            network=name,
            labels={"rtdash.test": "postgres"},
            **kwargs,
        )
        started.append(container)
        network.disconnect(container)
        network.connect(container, aliases=[alias])
        return container

    try:
        db = start(
            "rtdash/test-postgres",
            "db",
            environment={
                "POSTGRES_DB": "kit",
                "POSTGRES_USER": "kit",
                "POSTGRES_PASSWORD": password,
            },
        )
        sig_key = secrets.token_urlsafe(24)
        pushpin = start(
            images["pushpin"],
            "pushpin",
            environment={"PUSHPIN_SIG_KEY": sig_key, "PUSHPIN_CONTROL_ADDR": "0.0.0.0"},
        )
        wait_healthy(db)
        app = start(
            images["app"],
            "app",
            environment={
                "DATABASE_URL": f"postgres://kit:{password}@db:5432/kit",
                "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
                "PUSHPIN_SIG_KEY": sig_key,
                "PUSHPIN_CONTROL_URLS": "http://pushpin:5561",
            },
        )
        wait_healthy(pushpin)
        yield app, db
    finally:
        for container in started:
            container.remove(force=True)
        network.remove()


def test_migrations_and_stored_events_on_postgres(on_postgres):
    app, _ = on_postgres
    exec_ok(app, "python", "manage.py", "migrate", "--noinput")
    vendor = exec_ok(
        app,
        "python",
        "manage.py",
        "shell",
        "-c",
        "from django.db import connection; print(connection.vendor)",
    )
    assert vendor.strip().splitlines()[-1] == "postgresql"
    out = exec_ok(app, "python", "manage.py", "publish", "probe-pg", "update", "on-postgres")
    assert "published to 1 Pushpin node(s)" in out, out
    replay = (
        "from django_eventstream.storage import DjangoModelStorage as S; "
        "s = S(); s.append_event('probe-pg', 'update', 'second'); "
        "print([e.data for e in s.get_events('probe-pg', 1)])"
    )
    assert exec_ok(app, "python", "manage.py", "shell", "-c", replay).strip().endswith("['second']")


def healthz_reaches(app, wanted: str, within: float) -> list[str]:
    """Ask /healthz until it answers `wanted` (each answer bounded to 15 s); the answers seen.
    Checks share one result for REALTIME_HEALTH_CACHE_SECONDS, so the first answers after a
    change may still be the previous one."""
    seen, deadline = [], time.monotonic() + within
    while time.monotonic() < deadline:
        result = app.exec_run(
            ["curl", "-s", "-m", "15", "-o", "/dev/null", "-w", "%{http_code}",
             "http://127.0.0.1:8000/healthz"]
        )  # fmt: skip
        seen.append(result.output.decode())
        if seen[-1] == wanted:
            break
        time.sleep(0.5)
    return seen


def test_healthz_follows_the_database(on_postgres):
    app, db = on_postgres
    exec_ok(app, "python", "manage.py", "migrate", "--noinput")
    wait_healthy(app)
    db.pause()
    try:
        seen = healthz_reaches(app, "503", within=20)
        assert seen[-1] == "503", f"with the database hung, /healthz said {seen} for 20 s"
    finally:
        db.unpause()
    seen = healthz_reaches(app, "200", within=20)
    assert seen[-1] == "200", f"with the database back, /healthz said {seen} for 20 s"
