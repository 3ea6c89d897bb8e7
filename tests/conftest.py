import os

import docker
import pytest
from xdist.scheduler import LoadScopeScheduling

from support.stack import REPO, new_stack, run


def pytest_collection_modifyitems(items):
    # `make test-fast` leaves out every test that needs the Docker engine.
    for item in items:
        if "docker_client" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.docker)


# `make test` runs two workers (`-n 2 --dist loadgroup`): the Ansible suite's systemd hosts on
# one, every other test on the other. The two share nothing (own Docker networks, no published
# port). On 2 cores each half runs slower beside the other (a playbook run 104 s -> 177 s), yet
# the suite takes about its longer half (25-29 min) instead of the sum (37). The stacks stay
# together: they share session fixtures (`make images`, the `stack`). The groups are named
# here, by module: xdist 3.8's own loadgroup tags a test by rewriting item._nodeid, which
# pytest 9.2's nodes no longer read.
HOSTS_MODULES = ("tests/ansible/test_deploy.py",)


class _HostsApart(LoadScopeScheduling):
    def _split_scope(self, nodeid: str) -> str:
        return "hosts" if nodeid.startswith(HOSTS_MODULES) else "stacks"


def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") == "loadgroup":
        return _HostsApart(config, log)
    return None  # xdist's own scheduler (`make test-fast`: -n 2, load)


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
    """The kit's images (the app base, the demo's app, pushpin, nginx), built from this
    checkout with `make images` (cached layers)."""
    run(["make", "images"], env={**os.environ, "APP_DIR": str(REPO / "app" / "demo")})
    return {name: f"rtdash/{name}:latest" for name in ("app", "pushpin", "nginx")}
