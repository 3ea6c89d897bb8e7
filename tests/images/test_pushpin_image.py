"""The Pushpin image refuses to start with an unsafe or missing setting, and says which."""

import subprocess

import pytest

from support.stack import REPO


def start(client, image, **env):
    container = client.containers.run(image, detach=True, environment=env)
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


def test_images_build_from_debian_bookworm_slim():
    for name in ("app", "pushpin", "nginx"):
        first = (REPO / name / "Dockerfile").read_text().split("\nFROM ")[1].split()[0]
        assert first == "debian:bookworm-slim", f"{name}/Dockerfile starts FROM {first}"
