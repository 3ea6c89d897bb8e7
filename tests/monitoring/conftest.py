import pytest

from support.monitoring import MonitoringStack
from support.stack import free_port, new_stack


@pytest.fixture(scope="session")
def monitored(docker_client, tmp_path_factory):
    """A stack with the `monitoring` profile (`make up` with COMPOSE_PROFILES=monitoring), under
    a project of its own; Prometheus published on a free loopback port."""
    port = free_port()
    stack = new_stack(
        tmp_path_factory.mktemp("monitoring"),
        "rtdash-monitoring",
        "172.31.65.0/24",
        COMPOSE_PROFILES="monitoring",
        KIT_PROMETHEUS_PORT=str(port),
    )
    stack.destroy()  # leftovers of an interrupted run
    try:
        stack.make("up")
        yield MonitoringStack(stack, port)
    finally:
        stack.destroy()
