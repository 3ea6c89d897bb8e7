import os

import docker
import pytest

from support.stack import COMPOSE_FILE, new_stack, run


@pytest.fixture(scope="session")
def docker_client():
    """The Docker engine the tests start containers on: a missing engine fails, never skips."""
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        pytest.fail(f"Docker engine not reachable ({exc}); run compose/prepare-host.sh")
    return client


@pytest.fixture(scope="session")
def stack(docker_client, tmp_path_factory):
    """The whole stack, started with `make up` under a project of its own, torn down after."""
    stack = new_stack(tmp_path_factory.mktemp("stack"), "rtdash-test", "172.31.62.0/24")
    stack.destroy()  # leftovers of an interrupted run
    try:
        stack.make("up")
        yield stack
    finally:
        stack.destroy()


@pytest.fixture(scope="session")
def images(docker_client):
    """The kit's images (app, pushpin, nginx), built from this checkout (cached layers)."""
    env = {**os.environ, "DJANGO_SECRET_KEY": "unused", "PUSHPIN_SIG_KEY": "unused"}
    run(["docker", "compose", "-f", str(COMPOSE_FILE), "build", "--quiet"], env=env)
    return {name: f"rtdash/{name}:latest" for name in ("app", "pushpin", "nginx")}
