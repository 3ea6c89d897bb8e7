"""The Pushpin image refuses to start with an unsafe or missing setting, and says which."""

import subprocess
import time

import docker
import pytest

from support.stack import REPO


def start(client, image, ulimits=None, **env):
    container = client.containers.run(image, detach=True, environment=env, ulimits=ulimits)
    try:
        result = container.wait(timeout=30)
        return result["StatusCode"], container.logs().decode()
    finally:
        container.remove(force=True)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PUSHPIN_CONTROL_ADDR": "0.0.0.0"}, "PUSHPIN_SIG_KEY is not set"),
        (
            {"PUSHPIN_SIG_KEY": "changeme", "PUSHPIN_CONTROL_ADDR": "0.0.0.0"},
            "public default 'changeme'",
        ),
        ({"PUSHPIN_SIG_KEY": "short", "PUSHPIN_CONTROL_ADDR": "0.0.0.0"}, "too short"),
        ({"PUSHPIN_SIG_KEY": "k" * 32}, "PUSHPIN_CONTROL_ADDR is not set"),
        (
            {"PUSHPIN_SIG_KEY": "k" * 32, "PUSHPIN_CONTROL_ADDR": "10.255.254.0/24"},
            "no address in control network",
        ),
    ],
)
def test_pushpin_refuses_to_start(docker_client, images, env, message):
    code, logs = start(docker_client, images["pushpin"], **env)
    assert code == 64, f"expected exit 64, got {code}: {logs}"
    assert message in logs, f"expected {message!r} in: {logs}"


def test_render_config_names_a_missing_setting(tmp_path):
    template = tmp_path / "t.conf"
    template.write_text(
        "# ${NOT_IN_COMMENTS}\n"
        "a=${KIT_TEST_SET}\nb=${KIT_TEST_DEFAULT:-dflt}\nc=${KIT_TEST_MISSING}\n"
    )
    result = subprocess.run(
        [REPO / "pushpin" / "render-config", template],
        env={"KIT_TEST_SET": "value"},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert "KIT_TEST_MISSING is not set" in result.stderr and "line 4" in result.stderr
    assert result.stdout == "# ${NOT_IN_COMMENTS}\na=value\nb=dflt\nc=\n"


def test_images_run_as_non_root(docker_client, images):
    for name, image in images.items():
        user = docker_client.images.get(image).attrs["Config"]["User"]
        assert user and user not in ("0", "root"), f"{name} image runs as {user!r}"
        assert docker_client.images.get(image).attrs["Config"]["Healthcheck"], (
            f"{name}: no healthcheck"
        )


def test_images_build_from_debian_bookworm_slim(docker_client, images):
    """Every image the kit builds (the app's through its base, rtdash/app-base) starts with
    debian:bookworm-slim's layers: it builds wherever that one image can be pulled or seeded."""
    base = docker_client.images.get("debian:bookworm-slim").attrs["RootFS"]["Layers"]
    for tag in images.values():
        layers = docker_client.images.get(tag).attrs["RootFS"]["Layers"]
        assert layers[: len(base)] == base, f"{tag} is not built on debian:bookworm-slim"


RUNNABLE = {"PUSHPIN_SIG_KEY": "k" * 32, "PUSHPIN_CONTROL_ADDR": "0.0.0.0"}


def nofile(soft: int, hard: int) -> list:
    return [docker.types.Ulimit(name="nofile", soft=soft, hard=hard)]


def test_pushpin_refuses_an_open_file_limit_below_its_streams(docker_client, images):
    code, logs = start(docker_client, images["pushpin"], ulimits=nofile(1024, 4096), **RUNNABLE)
    assert code == 64, f"expected exit 64, got {code}: {logs}"
    assert "open-file limit (4096) cannot hold PUSHPIN_CLIENT_MAXCONN=15000" in logs, logs


def test_pushpin_takes_the_whole_hard_open_file_limit(docker_client, images):
    """A runtime's soft limit of 1024 would cap a node at about a thousand streams."""
    container = docker_client.containers.run(
        images["pushpin"],
        detach=True,
        environment=RUNNABLE,
        ulimits=nofile(1024, 16000),
    )
    try:
        limits = ""
        for _ in range(60):
            container.reload()
            assert container.status in ("created", "running"), container.logs().decode()
            found = container.exec_run(["sh", "-c", "cat /proc/$(pgrep -o condure)/limits"])
            if found.exit_code == 0:
                limits = found.output.decode()
                break
            time.sleep(0.5)
        line = next((x for x in limits.splitlines() if x.startswith("Max open files")), "")
        assert line.split()[3:5] == ["16000", "16000"], f"condure's limits: {limits or 'none'}"
    finally:
        container.remove(force=True)


def test_healthy_means_a_new_stream_is_accepted(docker_client, images):
    """Right after a start, both ports answer a few milliseconds before the proxy can hand a
    held stream to the handler (new streams get "500 Accept service unavailable" meanwhile);
    the healthcheck waits for that too. Before it did, about 4 starts in 10 failed here."""
    container = docker_client.containers.run(images["pushpin"], detach=True, environment=RUNNABLE)
    probe = ["curl", "-sN", "-m", "0.5", "http://127.0.0.1:7999/.pushpin/health/stream"]
    try:
        for start in range(6):
            if start:
                container.restart(timeout=5)
            deadline = time.monotonic() + 30
            while container.exec_run(["/usr/local/lib/pushpin-kit/healthcheck"]).exit_code:
                container.reload()
                assert container.status == "running", container.logs().decode()[-2000:]
                assert time.monotonic() < deadline, "not healthy 30 s after its start"
                time.sleep(0.05)
            body = container.exec_run(probe).output.decode()
            assert body.startswith("[stream opened]"), f"start {start + 1}: healthy, then {body!r}"
    finally:
        container.remove(force=True)
